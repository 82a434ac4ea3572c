// `isapi serve`: runs isapi-host (native/host) on a packed folder or a plain ISAPI library.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { readManifest } from './manifest';
import { hostBinary, hostTarget } from './paths';
import { UserError } from './user_error';

export interface ServeOptions {
  folder?: string;
  dll?: string;
  vdir?: string;
  port?: number;
  bind?: string;
  root?: string;
  workers?: number;
  log?: (line: string) => void;
}

export interface HostCommand {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  url: string;
}

/** The isapi-host command line for these options (also used by the tests). */
export function hostCommand(o: ServeOptions): HostCommand {
  const target = hostTarget();
  let library: string;
  let vdir: string;
  let logDir: string;
  if (o.dll) {
    library = path.resolve(o.dll);
    if (!existsSync(library)) throw new UserError(`${o.dll}: no such file`);
    vdir = o.vdir ?? '/' + path.basename(library).replace(/\.(so|dll)$/i, '');
    logDir = path.dirname(library);
  } else {
    if (!o.folder) throw new UserError('isapi serve needs a packed folder (e.g. dist/hello) or --dll <library>');
    const folder = path.resolve(o.folder);
    if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new UserError(`${o.folder}: no such folder (pack it first: isapi pack <script>)`);
    const manifest = readManifest(folder);
    if (!manifest) throw new UserError(`${o.folder} holds no *.manifest.json: it is not a folder made by \`isapi pack\``);
    if (manifest.target !== target) {
      throw new UserError(`${o.folder} was packed for ${manifest.target}; this host runs ${target} folders`);
    }
    const bridge = Object.entries(manifest.files).find(([, f]) => f.role === 'bridge')?.[0];
    if (!bridge) throw new UserError(`${o.folder}'s manifest names no bridge`);
    library = path.join(folder, bridge);
    vdir = o.vdir ?? `/${manifest.name}`;
    logDir = path.join(folder, 'logs');
  }
  if (!vdir.startsWith('/')) vdir = '/' + vdir;
  mkdirSync(logDir, { recursive: true });
  const port = o.port ?? 8080;
  const bind = o.bind ?? '127.0.0.1';
  const args = ['--port', String(port), '--bind', bind, '--vdir', `${vdir}=${library}`, '--access-log', path.join(logDir, 'access.log')];
  if (o.root) args.push('--root', path.resolve(o.root));
  const env = { ...process.env };
  if (o.workers) env.ISAPI_WORKERS = String(o.workers);
  return { command: hostBinary(target), args, env, url: `http://${bind}:${port}${vdir === '/' ? '/' : vdir + '/'}` };
}

export function serve(o: ServeOptions): Promise<number> {
  const cmd = hostCommand(o);
  o.log?.(`serving ${o.dll ?? o.folder} at ${cmd.url} (Ctrl+C stops; logs in ${path.dirname(cmd.args[cmd.args.indexOf('--access-log') + 1]!)})`);
  const child = spawn(cmd.command, cmd.args, { stdio: 'inherit', env: cmd.env });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  process.on('SIGINT', forward('SIGINT'));
  process.on('SIGTERM', forward('SIGTERM'));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}
