// `isapi dev` (issue 15): the real host and bridge serve a script without a SEA; a save is
// answered by the new code with no failed request during the swap; a build error is reported
// (terminal and error page) and recovered from; Ctrl+C stops everything.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { childPids, isapiCli, waitFor } from '../helpers';

interface Dev {
  proc: ChildProcess;
  url: string;
  output: () => string;
}

function startDev(dir: string, args: string[]): Promise<Dev> {
  const proc = spawn(process.execPath, [isapiCli, 'dev', ...args, '--port', '0'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  return waitFor(() => /serving\s+\S+ at (http:\S+)/.exec(out)?.[1], `isapi dev to serve:\n${out}`, 60_000).then((url) => ({ proc, url, output: () => out }));
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
/** `fresh`: a connection of its own (a filter's FINISHED closes the one it answered). */
function get(url: string, fresh = false): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: fresh ? false : agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** Ctrl+C, then the session's folder in the cache goes (each test script has its own). */
async function stop(dev: Dev): Promise<number | null> {
  const code = await new Promise<number | null>((resolve) => {
    if (dev.proc.exitCode !== null) return resolve(dev.proc.exitCode);
    dev.proc.once('exit', (c) => resolve(c));
    dev.proc.kill('SIGINT');
  });
  const folder = /dev folder (\S+)/.exec(dev.output())?.[1];
  if (folder) rmSync(folder, { recursive: true, force: true });
  return code;
}

const SCRIPT = `import { SimpleExtension, type ECB } from 'node-isapi';
import { greeting } from './greeting';
if (greeting() === 'boom') throw new Error('the script fails at start, on purpose');
class App extends SimpleExtension {
  async HttpExtensionProc(ecb: ECB) {
    // /app/slow is in flight across a swap: it must finish on the old code.
    if (ecb.PathInfo.endsWith('/slow')) await new Promise((r) => setTimeout(r, 800));
    if (ecb.PathInfo.endsWith('/throw')) throw new Error('thrown on purpose');
    const body = greeting() + '\\n';
    console.log('served ' + ecb.PathInfo);
    ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
    await ecb.WriteClient(body);
  }
}
export function __ExtensionFactory__() { return new App(); }
`;

describe('isapi dev', () => {
  let dir: string;
  let dev: Dev;
  const greeting = (v: string) => writeFileSync(path.join(dir, 'greeting.ts'), `export const greeting = () => ${v};\n`);

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-dev-'));
    writeFileSync(path.join(dir, 'app.ts'), SCRIPT);
    greeting(`'v1'`);
    dev = await startDev(dir, ['app.ts']);
  });
  afterAll(async () => {
    if (dev) await stop(dev);
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the script through the host and bridge, with the workers\' output in the terminal', async () => {
    expect(dev.url).toMatch(/\/app\/$/);
    const r = await get(dev.url);
    expect(r.status).toBe(200);
    expect(r.body).toBe('v1\n');
    await waitFor(() => dev.output().includes('served /app/'), 'the worker\'s console.log in the terminal');
  });

  it('detailed errors are on: a handler that throws shows its stack, source-mapped to the .ts file', async () => {
    const r = await get(dev.url + 'throw');
    expect(r.status).toBe(500);
    expect(r.body).toContain('thrown on purpose');
    expect(r.body).toMatch(/app\.ts:\d+/);
  });

  it('a save of an imported file is answered by the new code, and no request fails during the swap', async () => {
    const failures: string[] = [];
    const seen = new Set<string>();
    let stopLoad = false;
    let afterSwap = 0;
    // Four clients keep requesting across the swap; plus one request in flight on the old code.
    const client = async () => {
      while (!stopLoad) {
        try {
          const r = await get(dev.url);
          if (r.status !== 200 || !/^v[12]\n$/.test(r.body)) failures.push(`${r.status} ${r.body}`);
          seen.add(r.body);
          if (r.body === 'v2\n') afterSwap++;
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const clients = Array.from({ length: 4 }, client);
    const slow = get(dev.url + 'slow');
    await waitFor(() => seen.has('v1\n'), 'v1 under load');
    const saved = Date.now();
    greeting(`'v2'`);
    await waitFor(() => seen.has('v2\n'), 'the new code to answer', 20_000);
    const swapMs = Date.now() - saved;
    await waitFor(() => afterSwap >= 50, '50 more requests on the new code', 20_000);
    stopLoad = true;
    await Promise.all(clients);
    const slowResult = await slow;
    expect(failures).toEqual([]);
    expect(slowResult).toMatchObject({ status: 200, body: 'v1\n' });
    expect(dev.output()).toMatch(/rebuilt\s+generation 2/);
    console.log(`isapi dev: save → first response of the new code: ${swapMs} ms (under load)`);
  });

  it('a syntax error is printed as file:line:column and served as the error page, then recovered from', async () => {
    greeting(`'v3' +`);
    const page = await waitFor(async () => {
      const r = await get(dev.url);
      return r.status === 500 && r.body.includes('does not build') ? r : null;
    }, 'the dev error page', 20_000);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.body).toMatch(/greeting\.ts:1:\d+: error: /);
    await waitFor(() => /error\s+app\.ts does not build[^\n]*\ngreeting\.ts:1:\d+: error: /.test(dev.output()), 'the error in the terminal');
    greeting(`'v3'`);
    await waitFor(async () => (await get(dev.url)).body === 'v3\n', 'the fixed script to answer', 20_000);
    expect(dev.output()).toContain('(the build error is fixed)');
  });

  it('a script that fails at start is reported once, the previous code keeps serving, a fix is answered', async () => {
    greeting(`'boom'`);
    await waitFor(() => /error\s+generation \d+ does not start/.test(dev.output()), 'the start failure in the terminal', 20_000);
    expect(dev.output()).toContain('the script fails at start, on purpose');
    expect(dev.output()).toMatch(/app\.ts:3:\d+/); // source-mapped
    expect((await get(dev.url)).body).toBe('v3\n');
    greeting(`'v4'`);
    await waitFor(async () => (await get(dev.url)).body === 'v4\n', 'the fixed script to answer', 20_000);
    expect(dev.output().match(/Error: the script fails at start, on purpose/g)!.length).toBe(1);
  });

  it('Ctrl+C stops the host and every worker', async () => {
    const devPid = dev.proc.pid!;
    const host = await waitFor(() => childPids(devPid).find((p) => childPids(p).length > 0), 'the host with its worker');
    const workers = childPids(host);
    expect(workers.length).toBeGreaterThan(0);
    const code = await stop(dev);
    expect(code).toBe(0);
    const alive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await waitFor(() => ![host, ...workers].some(alive), 'the host and the workers to exit');
  });
});

describe('isapi dev of a filter-only script', () => {
  it('runs it as a global filter in front of static files, and reloads it on save', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-dev-filter-'));
    const www = path.join(dir, 'www');
    mkdirSync(www);
    writeFileSync(path.join(www, 'index.html'), '<p>static</p>\n');
    const filter = (value: string) =>
      writeFileSync(
        path.join(dir, 'stamp.ts'),
        `import { SF_NOTIFY_SEND_RESPONSE, SimpleFilter, type FilterContext, type HeaderData } from 'node-isapi';
class Stamp extends SimpleFilter {
  readonly filterFlags = SF_NOTIFY_SEND_RESPONSE;
  HttpFilterProc(fc: FilterContext) { (fc.GetData() as HeaderData).SetHeader('X-Stamp:', '${value}'); }
}
export function __FilterFactory__() { return new Stamp(); }
`,
      );
    filter('one');
    const d = await startDev(dir, ['stamp.ts', '--root', www]);
    try {
      expect(d.url).toMatch(/:\d+\/$/);
      const r = await get(d.url + 'index.html');
      expect(r.status).toBe(200);
      expect(r.body).toBe('<p>static</p>\n');
      expect(r.headers['x-stamp']).toBe('one');
      filter('two');
      await waitFor(async () => (await get(d.url + 'index.html')).headers['x-stamp'] === 'two', 'the new filter', 20_000);
      // New flags: the bridge answers GetFilterVersion when the host loads it, so dev restarts
      // the host with them (same port).
      writeFileSync(
        path.join(dir, 'stamp.ts'),
        `import { SF_NOTIFY_PREPROC_HEADERS, SF_NOTIFY_SEND_RESPONSE, SF_STATUS_REQ_FINISHED, SimpleFilter, type FilterContext, type HeaderData } from 'node-isapi';
class Stamp extends SimpleFilter {
  readonly filterFlags = SF_NOTIFY_SEND_RESPONSE | SF_NOTIFY_PREPROC_HEADERS;
  async HttpFilterProc(fc: FilterContext) {
    const h = fc.GetData() as HeaderData;
    if (fc.NotificationType === SF_NOTIFY_PREPROC_HEADERS) {
      if ((await h.GetHeader('url')) !== '/teapot') return;
      fc.SendResponseHeader('418 I am a teapot', 'Content-Length: 0\\r\\n\\r\\n');
      return SF_STATUS_REQ_FINISHED;
    }
    h.SetHeader('X-Stamp:', 'three');
  }
}
export function __FilterFactory__() { return new Stamp(); }
`,
      );
      await waitFor(async () => (await get(d.url + 'teapot', true).catch(() => ({ status: 0 }))).status === 418, 'the filter with its new flags', 30_000);
      expect((await get(d.url + 'index.html', true)).headers['x-stamp']).toBe('three');
      expect(d.output()).toContain('filter flags changed: restarting the host');
    } finally {
      await stop(d);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
