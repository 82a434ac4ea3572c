// Bundling as users expect and the workers' production defaults (issue 12, items 5 and 6), with
// an Express app written for plain Node (test/fixtures/bundling-app.ts): packed without its
// production environment, served by the real host from an unrelated working directory.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { count, isapiCli, root, waitFor } from '../helpers';
import { startServing } from '../package_helpers';

const fixture = 'test/fixtures/bundling-app.ts';
const out = mkdtempSync(path.join(os.tmpdir(), 'isapi-bundling-'));
const elsewhere = mkdtempSync(path.join(os.tmpdir(), 'isapi-bundling-cwd-'));
const folder = path.join(out, 'bundling-app');
const logFile = path.join(folder, 'logs', 'bundling-app.log');
const fixtureLines = readFileSync(path.join(root, fixture), 'utf8').split('\n');
/** 1-based line of the fixture that contains `text`. */
const lineOf = (text: string) => fixtureLines.findIndex((l) => l.includes(text)) + 1;

/** The environment without the variables the fixtures need, as on a build machine. */
function buildMachineEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['BUNDLING_SECRET', 'ENV_FILTER_TOKEN', 'NODE_ENV', 'ISAPI_ALLOW_LISTEN']) delete env[k];
  return env;
}

function run(args: string[], env: NodeJS.ProcessEnv = buildMachineEnv()): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [isapiCli, ...args], { cwd: root, env });
    let output = '';
    p.stdout.on('data', (d) => (output += d));
    p.stderr.on('data', (d) => (output += d));
    p.on('exit', (code) => resolve({ code, output }));
  });
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

interface Served {
  url: string;
  proc: ChildProcess;
  output: () => string;
}

/** `isapi serve <folder>` started from `elsewhere`, resolved once the host listens. */
async function serve(env: NodeJS.ProcessEnv): Promise<Served> {
  const proc = spawn(process.execPath, [isapiCli, 'serve', folder, '--port', '0'], {
    cwd: elsewhere,
    env: { ...buildMachineEnv(), ISAPI_WORKERS: '2', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const served = await startServing(proc, 'isapi serve', 60_000);
  return { url: `http://127.0.0.1:${served.port}/bundling-app`, proc, output: served.output };
}

function stop(s: Served | undefined): Promise<void> {
  if (!s || s.proc.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    s.proc.once('exit', () => resolve());
    s.proc.kill('SIGTERM');
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(false);
    });
    c.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

let packed = { code: null as number | null, output: '' };
let server: Served | undefined;
let appPort = 0;

beforeAll(async () => {
  packed = await run(['pack', fixture, '--out', out]);
  if (packed.code !== 0) throw new Error(`packing ${fixture} failed:\n${packed.output}`);
  // Files the app reads at run time are deployed beside the worker, as on a server.
  mkdirSync(path.join(folder, 'public'));
  writeFileSync(path.join(folder, 'public', 'hello.txt'), 'from the packed folder\n');
  appPort = await freePort();
  server = await serve({ BUNDLING_SECRET: 'production-secret', BUNDLING_PORT: String(appPort) });
}, 180_000);

afterAll(async () => {
  await stop(server);
  rmSync(out, { recursive: true, force: true });
  rmSync(elsewhere, { recursive: true, force: true });
});

describe('bundling', () => {
  it("shows esbuild's warnings at the user's file and line", () => {
    expect(packed.output).toContain(`${fixture}:${lineOf('x === -0')}:`);
    expect(packed.output).toMatch(/bundling-app\.ts:\d+:\d+: warning: Comparison with -0/);
  });

  it('reports a module name computed at run time, and an unresolvable require in a try block, by file and line', () => {
    expect(packed.output).toContain(`${fixture}:${lineOf('await import(name)')}:16: warning: \`import(name)\` names its module at run time, so it is not bundled`);
    expect(packed.output).toContain(`${fixture}:${lineOf('require(variable)')}:10: warning: \`require(variable)\` names its module at run time`);
    expect(packed.output).toContain(`${fixture}:${lineOf("require('bundling-optional-dependency')")}:22: warning: "bundling-optional-dependency" cannot be resolved, so it is not bundled`);
  });

  it('defines import.meta.url, dirname and filename for the packed folder; express.static(import.meta.dirname/public) serves from it', async () => {
    const meta = (await (await fetch(`${server!.url}/meta`)).json()) as Record<string, string>;
    const filename = path.join(folder, 'bundling-app.ts');
    expect(meta).toEqual({ url: pathToFileURL(filename).href, dirname: folder, filename, here: folder, cwd: elsewhere });
    const r = await fetch(`${server!.url}/hello.txt`);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('from the packed folder\n');
  });
});

describe('production defaults', () => {
  it('packs a script whose top-level code throws without its production environment, with a warning naming the line', () => {
    expect(packed.output).toContain(`warning: ${fixture} failed when its top-level code ran on this machine`);
    expect(packed.output).toContain('Error: BUNDLING_SECRET is not set');
    expect(packed.output).toContain(`${path.join(root, fixture)}:${lineOf("throw new Error('BUNDLING_SECRET")}:`);
    expect(packed.output).toContain('packed anyway: it exports no filter');
    expect(existsSync(path.join(folder, 'bundling-app'))).toBe(true);
  });

  it('runs the workers with NODE_ENV=production: the Express 500 page has no stack', async () => {
    const env = (await (await fetch(`${server!.url}/env`)).json()) as Record<string, unknown>;
    expect(env).toEqual({ nodeEnv: 'production', expressEnv: 'production', secret: 'production-secret'.length });
    const r = await fetch(`${server!.url}/boom`);
    expect(r.status).toBe(500);
    const body = await r.text();
    expect(body).toContain('Internal Server Error');
    expect(body).not.toContain('boom at the handler');
    expect(body).not.toContain('bundling-app.ts');
    expect(body).not.toMatch(/\bat \S+ \(/);
  });

  it("an app's own listen() opens no port in a worker, logged once per worker with the port", async () => {
    const log = await waitFor(() => {
      const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      return count(text, '] worker ') >= 2 && count(text, ' ready (pid ') === 2 ? text : null;
    }, 'both workers ready');
    expect(await refused(appPort)).toBe(true);
    expect(await refused(appPort + 1)).toBe(true);
    const lines = log.split('\n').filter((l) => l.includes(' ignored: the web server owns the port'));
    expect(lines.map((l) => /\[(worker \d+)\]/.exec(l)?.[1]).sort()).toEqual(['worker 0', 'worker 1']);
    for (const l of lines) expect(l).toContain(`node-isapi: listen(${appPort}) ignored`);
  });

  it('keeps a NODE_ENV the environment sets', async () => {
    await stop(server);
    server = await serve({ BUNDLING_SECRET: 'x', BUNDLING_PORT: String(appPort), NODE_ENV: 'staging' });
    const env = (await (await fetch(`${server.url}/env`)).json()) as Record<string, unknown>;
    expect(env).toMatchObject({ nodeEnv: 'staging', expressEnv: 'staging' });
  });

  it("the installer, which runs the same top-level code, refuses with what to change, and installs once it has the environment", () => {
    const install = (env: NodeJS.ProcessEnv, ...extra: string[]) =>
      spawnSync(path.join(folder, 'install'), ['--config', path.join(out, 'host.json'), '--dry-run', ...extra], { env: { ...buildMachineEnv(), ...env }, encoding: 'utf8' });
    const refused = install({}, '--json');
    expect(refused.status).toBe(1);
    expect(JSON.parse(refused.stdout)).toEqual({
      exitCode: 1,
      error: expect.stringMatching(/^the script's top-level code failed: BUNDLING_SECRET is not set\. The installer runs it .*set what it needs in this shell too, or move that code out of the top level/),
    });
    const ok = install({ BUNDLING_SECRET: 'x' });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('dry run: nothing changed');
  });

  it('refuses a filter whose top-level code throws at pack time, saying exactly what to change', async () => {
    const r = await run(['pack', 'test/fixtures/env-filter.ts', '--out', out]);
    expect(r.code).toBe(1);
    expect(r.output).toContain("test/fixtures/env-filter.ts failed while loading it to read its filter's settings (filterFlags");
    expect(r.output).toContain('Error: ENV_FILTER_TOKEN is not set');
    expect(r.output).toContain(`${path.join(root, 'test/fixtures/env-filter.ts')}:7:`);
    expect(r.output).toContain('`NAME=value npx isapi pack test/fixtures/env-filter.ts`');
    expect(r.output).toContain('move what needs it out of the top level');
    expect(existsSync(path.join(out, 'env-filter'))).toBe(false);
  });
});
