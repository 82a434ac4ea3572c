// `isapi serve`: runs isapi-host (native/host) on a packed folder or a plain ISAPI library.
import { spawnSync } from 'node:child_process';
import { spawnHost } from './host_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { HostConfigError, hostInvocation } from '../installer/local_config';
import { readManifest } from './manifest';
import { hostBinary, hostTarget, isWindowsTarget, type Target } from './paths';
import { bitnessOf, peMachine } from '../installer/pe';
import { UserError } from './user_error';
import { defaultWinePrefix, ensureWinePrefix, linuxHostConfig, requireWine, wineHostCommand } from './wine';

export interface ServeOptions {
  folder?: string;
  dll?: string;
  vdir?: string;
  port?: number;
  bind?: string;
  root?: string;
  workers?: number;
  /** A local host configuration file (written by a folder's `install --config <file>`). */
  config?: string;
  /** Run a win-x64 or win-ia32 folder with the Windows isapi-host.exe under Wine (Linux only). */
  wine?: boolean;
  /** The Wine prefix for --wine (default: $ISAPI_WINEPREFIX, else one in the per-user cache). */
  winePrefix?: string;
  log?: (line: string) => void;
}

export interface HostCommand {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  url: string;
  /** Every application's URL (serve --config may list several); url is the first. */
  urls: string[];
  /** Filters loaded for every request (global filters), by library. */
  filters?: string[];
  /** Where the access log goes, as this machine sees it (the args may be Windows paths). */
  logs?: string;
}

/** The isapi-host command line for these options (also used by the tests). */
export function hostCommand(o: ServeOptions): HostCommand {
  const cmd = o.config ? configHostCommand(o) : folderHostCommand(o);
  return o.wine ? wineHostCommand(cmd, o.winePrefix ?? defaultWinePrefix()) : cmd;
}

/**
 * The Windows host for these DLLs under Wine: a process loads DLLs of its own bitness only, so a
 * win-ia32 folder's 32-bit bridge needs the 32-bit isapi-host.exe (a 32-bit IIS pool's w3wp).
 */
function wineHostFor(args: string[]): string {
  const libraries = args.flatMap((a, i) => (a === '--filter' ? [args[i + 1]!] : a === '--vdir' ? [args[i + 1]!.slice(args[i + 1]!.indexOf('=') + 1)] : []));
  const bits = new Set(libraries.map((l) => (existsSync(l) ? bitnessOf(peMachine(l)) : undefined) ?? 64));
  if (bits.size > 1) {
    throw new UserError('this configuration mixes 32-bit (win-ia32) and 64-bit (win-x64) DLLs: one host process loads one bitness, as one IIS pool does; serve them from two config files');
  }
  return hostBinary(bits.has(32) ? 'win-ia32' : 'win-x64');
}

function folderHostCommand(o: ServeOptions): HostCommand {
  let target: Target = o.wine ? 'win-x64' : hostTarget();
  let library: string;
  let vdir: string;
  let logDir: string;
  let extension = true;
  let filter = false;
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
    if (o.wine && isWindowsTarget(manifest.target)) target = manifest.target;
    if (manifest.target !== target) {
      if (isWindowsTarget(manifest.target) && process.platform === 'linux') {
        throw new UserError(`${o.folder} was packed for ${manifest.target}: run it under Wine with \`isapi serve --wine ${o.folder}\`, or on Windows`);
      }
      throw new UserError(`${o.folder} was packed for ${manifest.target}; ${o.wine ? '--wine runs win-x64 and win-ia32 folders' : `this host runs ${target} folders`}`);
    }
    const bridge = Object.entries(manifest.files).find(([, f]) => f.role === 'bridge')?.[0];
    if (!bridge) throw new UserError(`${o.folder}'s manifest names no bridge`);
    library = path.join(folder, bridge);
    vdir = o.vdir ?? `/${manifest.name}`;
    // What the script exports decides how the host loads the bridge: an extension at its
    // virtual directory, a global filter in front of everything (static files included), or both.
    extension = manifest.entryPoints?.extension ?? true;
    filter = manifest.entryPoints?.filter ?? false;
    if (!extension && !filter) extension = true;
    logDir = path.join(folder, 'logs');
  }
  if (!vdir.startsWith('/')) vdir = '/' + vdir;
  mkdirSync(logDir, { recursive: true });
  const port = o.port ?? 8080;
  const bind = o.bind ?? '127.0.0.1';
  const args = ['--port', String(port), '--bind', bind, '--access-log', path.join(logDir, 'access.log')];
  if (extension) args.push('--vdir', `${vdir}=${library}`);
  if (filter) args.push('--filter', library);
  if (o.root) args.push('--root', path.resolve(o.root));
  const env = { ...process.env };
  if (o.workers) env.ISAPI_WORKERS = String(o.workers);
  const url = `http://${bind}:${port}${extension ? (vdir === '/' ? '/' : vdir + '/') : '/'}`;
  return { command: hostBinary(target), args, env, url, urls: [url], filters: filter ? [library] : [] };
}

/** `isapi serve --config <file>`: every application of the file in one isapi-host. */
function configHostCommand(o: ServeOptions): HostCommand {
  if (o.folder || o.dll || o.vdir || o.root) throw new UserError('--config serves what the file lists: leave out the folder, --dll, --vdir and --root');
  // The Linux build of the host has the same options as the Windows one: ask it (Wine is slow to start).
  const command = hostBinary(hostTarget());
  const help = spawnSync(command, ['--help'], { encoding: 'utf8' });
  let inv;
  try {
    inv = hostInvocation(o.wine ? linuxHostConfig(o.config!, o.winePrefix ?? defaultWinePrefix()) : o.config!, { port: o.port, bind: o.bind, hostSupportsFilters: /--filter\b/.test(help.stdout ?? '') });
  } catch (err) {
    if (err instanceof HostConfigError) throw new UserError(err.message);
    throw err;
  }
  mkdirSync(path.dirname(inv.accessLog), { recursive: true });
  // isapi-host has one environment: the file's variables (checked for conflicts) override ours.
  const env = { ...process.env, ...inv.env };
  if (o.workers) env.ISAPI_WORKERS = String(o.workers);
  const urls = inv.applications.map((a) => `http://${inv.bind}:${inv.port}${a === '/' ? '/' : a + '/'}`);
  return { command: o.wine ? wineHostFor(inv.args) : command, args: inv.args, env, url: urls[0]!, urls };
}

export function serve(o: ServeOptions): Promise<number> {
  if (o.wine) {
    if (process.platform !== 'linux') throw new UserError('--wine runs Windows builds on Linux; on Windows, serve the folder without --wine');
    requireWine();
    ensureWinePrefix(o.winePrefix ?? defaultWinePrefix(), o.log);
  }
  const cmd = hostCommand(o);
  const logs = cmd.logs ?? path.dirname(cmd.args[cmd.args.indexOf('--access-log') + 1]!);
  const filters = cmd.filters?.length
    ? `, as a global filter${cmd.args.includes('--vdir') ? ' too' : ''} (every request${o.root ? `; static files from ${o.root}` : '; add --root <dir> for static files'})`
    : '';
  o.log?.(`serving ${o.config ?? o.dll ?? o.folder} at ${cmd.url}${o.wine ? ' under Wine' : ''}${filters} (Ctrl+C stops; logs in ${logs})`);
  // Every other application of a --config file, one per line.
  for (const u of cmd.urls.slice(1)) o.log?.(`    and ${u}`);
  const { child, stop } = spawnHost(cmd, !!o.wine, 'inherit');
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
}
