// The successors of pywin32's samples, packed and served end to end: redirector (proxy + ExecURL
// for excluded paths), redirector-async (streaming both ways), advanced (server variables,
// ReportUnhealthy, reloads, access-log fields, install hooks and verbs, a crash's source line),
// transmit-file (TransmitFile with status/head/tail, offset/length) and thread-pool
// (ThreadPoolExtension: CPU-bound Dispatch on several threads of one worker process).
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridgeLog, packed, rawExchange, root, serveFolders, sleep, testDist, waitFor, type Host } from '../helpers';

/** The 1-based line of the first line of `file` containing `marker`. */
function lineOf(file: string, marker: string): number {
  const lines = readFileSync(path.join(root, file), 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes(marker));
  if (i < 0) throw new Error(`${marker} not found in ${file}`);
  return i + 1;
}

/** Bytes i % 251: a recognisable pattern for large bodies. */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------
// The site the redirectors proxy: a plain Node server started by the test.

let upstream: http.Server;
let upstreamUrl: string;
let release: () => void = () => {};
let endlessClosed: Promise<void> = Promise.resolve();
const BIG = pattern(24 << 20);

function startUpstream(): Promise<void> {
  upstream = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    if (url.pathname === '/redirect') {
      res.writeHead(302, { Location: `${upstreamUrl}/moved/here` });
      return void res.end();
    }
    if (url.pathname === '/reset') return void req.socket.destroy();
    if (url.pathname === '/big') {
      // 24 MiB with a Content-Length, written with backpressure.
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': BIG.length });
      let at = 0;
      const more = () => {
        while (at < BIG.length) {
          const piece = BIG.subarray(at, at + 65536);
          at += piece.length;
          if (!res.write(piece)) return void res.once('drain', more);
        }
        res.end();
      };
      return more();
    }
    if (url.pathname === '/endless') {
      // A body that never ends: 16 KiB every 10 ms until the reader goes away.
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const timer = setInterval(() => res.write(Buffer.alloc(16384, 0x65)), 10);
      endlessClosed = new Promise((resolve) => res.on('close', () => resolve()));
      res.on('close', () => clearInterval(timer));
      return;
    }
    if (url.pathname === '/hold') {
      // The first line at once; the rest only when the test releases it (no length: chunked).
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('first\n');
      const timer = setTimeout(() => release(), 10_000);
      release = () => {
        clearTimeout(timer);
        res.end('rest\n');
      };
      return;
    }
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (d: Buffer) => {
      bytes += d.length;
      hash.update(d);
    });
    req.on('end', () => {
      const body = JSON.stringify({ method: req.method, url: req.url, bytes, sha256: hash.digest('hex'), headers: req.headers });
      res.writeHead(201, 'Made Here', [['Content-Type', 'application/json'], ['X-Upstream', 'yes'], ['Set-Cookie', 'a=1; Path=/'], ['Set-Cookie', 'b=2; Path=/']]);
      res.end(body);
    });
  });
  return new Promise((resolve) =>
    upstream.listen(0, '127.0.0.1', () => {
      upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
      resolve();
    }),
  );
}

let host: Host;
let siteRoot: string;
const accessLog = path.join(testDist, 'logs', 'samples-access.log');

beforeAll(async () => {
  await startUpstream();
  // --root: the files the host serves itself (the redirector's excluded paths reach them via ExecURL).
  siteRoot = mkdtempSync(path.join(os.tmpdir(), 'isapi-samples-root-'));
  mkdirSync(path.join(siteRoot, 'redirector', 'static'), { recursive: true });
  writeFileSync(path.join(siteRoot, 'redirector', 'static', 'hello.txt'), 'served by the host itself\n');
  // transmit-file sends files from its own folder (what /transmit-file/<name> maps to).
  writeFileSync(path.join(packed('transmit-file'), 'data.bin'), pattern(300_000));
  writeFileSync(path.join(packed('transmit-file'), 'note.txt'), 'a < b & c\n');
  host = await serveFolders(['redirector', 'redirector-async', 'advanced', 'transmit-file'], { ISAPI_REDIRECT_TARGET: upstreamUrl }, [
    '--root', siteRoot, '--access-log', accessLog,
  ]);
});

afterAll(async () => {
  release();
  await host?.stop();
  await new Promise((r) => upstream?.close(r));
  if (siteRoot) rmSync(siteRoot, { recursive: true, force: true });
});

describe('redirector', () => {
  it('proxies method, path, query and body to the other site, and its status and headers back', async () => {
    const res = await fetch(`${host.url}/redirector/api/items?x=1&y=two`, { method: 'POST', body: 'name=value', headers: { 'X-Client': 'test' } });
    expect(res.status).toBe(201);
    expect(res.statusText).toBe('Made Here');
    expect(res.headers.get('x-upstream')).toBe('yes');
    expect(res.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; Path=/']);
    const seen = await res.json();
    expect(seen.method).toBe('POST');
    expect(seen.url).toBe('/api/items?x=1&y=two');
    expect(seen.bytes).toBe(10);
    expect(seen.headers['x-client']).toBe('test');
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers.host).toBe(new URL(upstreamUrl).host);
  });

  it('serves excluded paths (/redirector/static/*) from the host itself with ExecURL', async () => {
    const res = await fetch(`${host.url}/redirector/static/hello.txt`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('served by the host itself\n');
    const missing = await fetch(`${host.url}/redirector/static/missing.txt`);
    expect(missing.status).toBe(404);
    // The other site never saw them.
    const proxied = await (await fetch(`${host.url}/redirector/after-static`)).json();
    expect(proxied.url).toBe('/after-static');
  });

  it('points redirects to the other site back through the proxy', async () => {
    const res = await fetch(`${host.url}/redirector/redirect`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/redirector/moved/here');
  });

  it('answers 502 when the other site fails', async () => {
    const res = await fetch(`${host.url}/redirector/reset`);
    expect(res.status).toBe(502);
    expect(await res.text()).toContain('502 Bad Gateway');
  });
});

describe('redirector-async', () => {
  it('proxies like the redirector', async () => {
    const res = await fetch(`${host.url}/redirector-async/api?q=1`, { method: 'PUT', body: 'abc' });
    expect(res.status).toBe(201);
    expect(res.headers.getSetCookie()).toEqual(['a=1; Path=/', 'b=2; Path=/']);
    const seen = await res.json();
    expect([seen.method, seen.url, seen.bytes]).toEqual(['PUT', '/api?q=1', 3]);
  });

  it('streams: the client reads the first bytes while the other site still holds the rest', async () => {
    const res = await fetch(`${host.url}/redirector-async/hold`);
    expect(res.status).toBe(200);
    // No length upstream: the extension frames the body itself with chunked encoding.
    expect(res.headers.get('transfer-encoding')).toBe('chunked');
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(Buffer.from(first.value!).toString()).toBe('first\n');
    release();
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += Buffer.from(r.value).toString();
    expect(rest).toBe('rest\n');
  });

  it('the buffering redirector, by contrast, answers only once the other site is done', async () => {
    const started = Date.now();
    const pending = fetch(`${host.url}/redirector/hold`).then(async (r) => [Date.now() - started, await r.text()] as const);
    await sleep(700);
    release();
    const [elapsed, text] = await pending;
    expect(text).toBe('first\nrest\n');
    expect(elapsed).toBeGreaterThanOrEqual(650);
  });

  it('streams 24 MiB down and 8 MiB up, byte for byte', async () => {
    const down = await fetch(`${host.url}/redirector-async/big`);
    expect(down.headers.get('content-length')).toBe(String(BIG.length));
    expect(sha256(Buffer.from(await down.arrayBuffer()))).toBe(sha256(BIG));
    const body = randomBytes(8 << 20);
    const up = await (await fetch(`${host.url}/redirector-async/upload`, { method: 'POST', body })).json();
    expect(up.bytes).toBe(body.length);
    expect(up.sha256).toBe(sha256(body));
  });

  it('stops reading from the other site when the client goes away', async () => {
    const ac = new AbortController();
    const res = await fetch(`${host.url}/redirector-async/endless`, { signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read();
    const closed = endlessClosed;
    ac.abort();
    const outcome = await Promise.race([closed.then(() => 'closed'), sleep(8000).then(() => 'still open')]);
    expect(outcome).toBe('closed');
  });

  it('answers 502 when the other site fails before answering', async () => {
    const res = await fetch(`${host.url}/redirector-async/reset`);
    expect(res.status).toBe(502);
  });
});

describe('advanced', () => {
  it('dumps the ECB fields and the server variables', async () => {
    const res = await fetch(`${host.url}/advanced/?format=json`, { headers: { 'User-Agent': 'samples-test' } });
    expect(res.status).toBe(200);
    const { fields, variables } = await res.json();
    expect(fields.Method).toBe('GET');
    expect(fields.PathInfo).toBe('/advanced/');
    expect(fields.QueryString).toBe('format=json');
    expect(fields.IsKeepConn).toBe(true);
    expect(variables.SCRIPT_NAME).toBe('/advanced');
    expect(variables.SERVER_PORT).toBe(String(host.port));
    expect(variables.HTTP_USER_AGENT).toBe('samples-test');
    expect(variables.ALL_RAW).toContain('User-Agent: samples-test\r\n');
    expect(variables.APPL_MD_PATH).toBe('/LM/W3SVC/1/ROOT/advanced');
    expect(variables.UNICODE_URL).toBe('/advanced/');
    const text = await (await fetch(`${host.url}/advanced/`)).text();
    expect(text).toContain('# server variables\n');
    expect(text).toContain('REQUEST_METHOD=GET\n');
  });

  it('an uncaught exception gives 500 and a log line naming examples/advanced.ts and the line', async () => {
    const res = await fetch(`${host.url}/advanced/crash`);
    expect(res.status).toBe(500);
    const body = await res.text();
    expect(body).toContain('500 Internal Server Error');
    expect(body).not.toContain('on purpose'); // no details unless ISAPI_DETAILED_ERRORS=1
    const line = lineOf('examples/advanced.ts', "throw new Error('advanced: an uncaught exception");
    // The worker's output reaches the log through the bridge's pipe reader: wait for it.
    const log = await waitFor(() => {
      const text = bridgeLog(packed('advanced'), 'advanced');
      return text.includes(`examples/advanced.ts:${line}:`) ? text : null;
    }, 'the stack trace in the log');
    expect(log).toContain('advanced: an uncaught exception, on purpose');
    expect(log).toContain(`examples/advanced.ts:${line}:`);
    expect((await fetch(`${host.url}/advanced/pid`)).status).toBe(200);
  });

  it('status, LogData and AppendLogParameter reach the access log', async () => {
    const res = await fetch(`${host.url}/advanced/log?note=hi`);
    expect(res.status).toBe(202);
    const line = await waitFor(() => readFileSync(accessLog, 'utf8').split('\n').find((l) => l.includes('/advanced/log')), 'the access log line');
    expect(line).toContain('logdata-from-advanced');
    expect(line).toContain('&advanced=hi');
    expect(line).toMatch(/ 202 /);
  });

  it('ReportUnhealthy shows in the host health check', async () => {
    expect((await fetch(`${host.url}/__isapi-host/health`)).status).toBe(200);
    const res = await fetch(`${host.url}/advanced/unhealthy?reason=disk%20nearly%20full`);
    expect(await res.text()).toBe('reported unhealthy: disk nearly full\n');
    const health = await fetch(`${host.url}/__isapi-host/health`);
    expect(health.status).toBe(503);
    expect(await health.text()).toContain('disk nearly full');
  });

  const pids = async (n: number) => {
    const seen = new Set<number>();
    for (let i = 0; i < n; i++) seen.add(Number(await (await fetch(`${host.url}/advanced/pid`)).text()));
    return seen;
  };
  /** Polls until ten answers in a row come from processes not in `before`; every answer must be 200. */
  const freshWorkers = async (before: Set<number>) => {
    const statuses: number[] = [];
    let fresh = 0;
    for (let i = 0; i < 500 && fresh < 10; i++) {
      const r = await fetch(`${host.url}/advanced/pid`);
      statuses.push(r.status);
      fresh = r.status === 200 && !before.has(Number(await r.text())) ? fresh + 1 : 0;
      await sleep(10);
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(fresh).toBe(10);
  };

  it('InternalReloadException: 503 + Retry-After for that request, then fresh workers', async () => {
    const before = await pids(6);
    const res = await fetch(`${host.url}/advanced/reload`);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    await freshWorkers(before);
  });

  it('`install reload` (a custom verb) touches the watched file and the next request reloads the workers', async () => {
    const folder = packed('advanced');
    const config = path.join(mkdtempSync(path.join(os.tmpdir(), 'isapi-samples-')), 'host.json');
    const before = await pids(6);
    const out = execFileSync(path.join(folder, 'install'), ['reload', '--config', config], { encoding: 'utf8' });
    expect(out).toContain('the next request reloads the workers');
    expect(existsSync(path.join(folder, 'advanced.reload'))).toBe(true);
    const res = await fetch(`${host.url}/advanced/pid`);
    expect(res.status).toBe(503);
    await freshWorkers(before);
    expect(bridgeLog(folder, 'advanced')).toContain('advanced.reload changed');
  });

  it('install hooks run on install and remove', () => {
    const folder = packed('advanced');
    const config = path.join(mkdtempSync(path.join(os.tmpdir(), 'isapi-samples-')), 'host.json');
    const installed = execFileSync(path.join(folder, 'install'), ['--config', config], { encoding: 'utf8' });
    expect(installed).toContain('advanced: installed /advanced (local)');
    const removed = execFileSync(path.join(folder, 'install'), ['remove', '--config', config], { encoding: 'utf8' });
    expect(removed).toContain('advanced: removed');
    expect(execFileSync(path.join(folder, 'install'), ['--help'], { encoding: 'utf8' })).toContain('reload');
  });
});

describe('transmit-file', () => {
  const data = pattern(300_000);

  it('sends the whole file through the server, with status and headers from head', async () => {
    const res = await fetch(`${host.url}/transmit-file/data.bin`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(data.length));
    expect(res.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await res.arrayBuffer()).equals(data)).toBe(true);
  });

  it('a Range request sends one part with offset and length (206)', async () => {
    const res = await fetch(`${host.url}/transmit-file/data.bin`, { headers: { Range: 'bytes=1000-70999' } });
    expect(res.status).toBe(206);
    expect(res.headers.get('content-range')).toBe(`bytes 1000-70999/${data.length}`);
    expect(Buffer.from(await res.arrayBuffer()).equals(data.subarray(1000, 71000))).toBe(true);
    const tail = await fetch(`${host.url}/transmit-file/data.bin`, { headers: { Range: 'bytes=-100' } });
    expect(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(data.length - 100))).toBe(true);
    const beyond = await fetch(`${host.url}/transmit-file/data.bin`, { headers: { Range: 'bytes=400000-' } });
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${data.length}`);
  });

  it('head and tail wrap the file', async () => {
    const res = await fetch(`${host.url}/transmit-file/note.txt?wrap=html`);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    expect(html).toBe('<!DOCTYPE html>\n<html><head><title>note.txt</title></head><body><pre>\na < b & c\n</pre></body></html>\n');
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(html)));
  });

  it('HEAD sends the headers only; a missing file is 404; the connection stays open after TransmitFile', async () => {
    const head = await fetch(`${host.url}/transmit-file/note.txt`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('10');
    expect(await head.text()).toBe('');
    expect((await fetch(`${host.url}/transmit-file/missing.txt`)).status).toBe(404);
    const req = 'GET /transmit-file/note.txt HTTP/1.1\r\nHost: x\r\n\r\n';
    const { responses, closed } = await rawExchange(host.port, [req, req], 2);
    expect(responses.map((r) => r.body.toString())).toEqual(['a < b & c\n', 'a < b & c\n']);
    expect(closed).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

describe('thread-pool (ThreadPoolExtension, one worker process)', () => {
  let pool: Host;
  const get = async (p: string, init?: RequestInit) => {
    const res = await fetch(`${pool.url}/thread-pool/${p}`, init);
    return { status: res.status, json: await res.json() };
  };

  beforeAll(async () => {
    pool = await serveFolders(['thread-pool'], { ISAPI_WORKERS: '1' });
  });
  afterAll(async () => {
    await pool?.stop();
  });

  it('two CPU-bound requests to one worker process run at the same time on two threads', async () => {
    const [a, b] = await Promise.all([get('spin?ms=1500'), get('spin?ms=1500')]);
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(a.json.pid).toBe(b.json.pid);
    expect(a.json.isMainThread).toBe(false);
    expect(b.json.isMainThread).toBe(false);
    expect(a.json.threadId).not.toBe(b.json.threadId);
    // The intervals overlap: each started before the other ended.
    expect(a.json.start).toBeLessThan(b.json.end);
    expect(b.json.start).toBeLessThan(a.json.end);
  });

  it('the main thread answers while the pool threads compute', async () => {
    const busy = Promise.all([get('spin?ms=2000'), get('spin?ms=2000')]);
    await sleep(400);
    const t0 = Date.now();
    const main = await get('main');
    const took = Date.now() - t0;
    const [a] = await busy;
    expect(main.json.isMainThread).toBe(true);
    expect(main.json.pid).toBe(a.json.pid);
    expect(main.json.poolThreads).toBeGreaterThanOrEqual(2);
    expect(took).toBeLessThan(1000);
  });

  it('computes correctly on a thread; the ECB proxy answers server variables and IsKeepConn', async () => {
    expect((await get('primes?below=100000')).json.primes).toBe(9592);
    const vars = await get('vars', { headers: { 'User-Agent': 'pool-agent' } });
    expect(vars.json).toMatchObject({ url: '/thread-pool/vars', userAgent: 'pool-agent', serverSoftware: expect.stringContaining('isapi-host'), keepConn: true, isMainThread: false });
  });

  it('ReadClient and WriteClient from a thread: a 3 MiB upload hashed, a 16 MiB download', async () => {
    const body = randomBytes(3 << 20);
    const up = await get('sha256', { method: 'POST', body });
    expect(up.json.bytes).toBe(body.length);
    expect(up.json.sha256).toBe(sha256(body));
    const down = Buffer.from(await (await fetch(`${pool.url}/thread-pool/stream?mib=16`)).arrayBuffer());
    expect(down.length).toBe(16 << 20);
    expect(down.every((b) => b === 0x62)).toBe(true);
  });

  it('a Dispatch that throws: HandleDispatchError sends 500 without details, the log names the line', async () => {
    const res = await fetch(`${pool.url}/thread-pool/throw`);
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await res.text();
    expect(html).toContain('<h1>500 Internal Server Error</h1>');
    expect(html).not.toContain('on purpose');
    const line = lineOf('examples/thread-pool.ts', "throw new Error('Dispatch failed on purpose')");
    const log = await waitFor(() => {
      const text = bridgeLog(packed('thread-pool'), 'thread-pool');
      return text.includes(`examples/thread-pool.ts:${line}:`) ? text : null;
    }, 'the Dispatch stack trace in the log');
    expect(log).toContain('Dispatch GET /thread-pool/throw: Error: Dispatch failed on purpose');
    expect(log).toContain(`examples/thread-pool.ts:${line}:`);
    expect((await get('primes?below=1000')).json.primes).toBe(168);
  });

  it('InternalReloadException from a thread reloads the worker', async () => {
    const before = (await get('main')).json.pid;
    const res = await fetch(`${pool.url}/thread-pool/reload`);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    let pid = before;
    for (let i = 0; i < 200 && pid === before; i++) {
      const r = await get('primes?below=1000');
      expect(r.status).toBe(200);
      pid = r.json.pid;
      await sleep(20);
    }
    expect(pid).not.toBe(before);
  });

  it('stopping the server waits for a running Dispatch, then stops the pool', async () => {
    const running = get('spin?ms=1500');
    await sleep(300);
    const stopped = pool.stop();
    const res = await running;
    await stopped;
    expect(res.status).toBe(200);
    expect(bridgeLog(packed('thread-pool'), 'thread-pool')).toMatch(/thread-pool: thread pool stopped \(\d+ threads?\)/);
  });

  describe('in development (ISAPI_DETAILED_ERRORS=1), with a 1.5 s request deadline', () => {
    let dev: Host;
    beforeAll(async () => {
      dev = await serveFolders(['thread-pool'], { ISAPI_WORKERS: '1', ISAPI_DETAILED_ERRORS: '1', ISAPI_REQUEST_TIMEOUT_MS: '1500' });
    });
    afterAll(async () => {
      await dev?.stop();
    });

    it('the 500 page shows the exception', async () => {
      const html = await (await fetch(`${dev.url}/thread-pool/throw`)).text();
      expect(html).toContain('Error: Dispatch failed on purpose');
      expect(html).toContain('examples/thread-pool.ts:');
    });

    it('a Dispatch stuck past its deadline has its thread stopped and replaced', async () => {
      const res = await fetch(`${dev.url}/thread-pool/spin?ms=600000`);
      expect(res.status).toBe(504);
      let log = '';
      for (let i = 0; i < 100 && !log.includes('its thread was stopped'); i++) {
        await sleep(100);
        log = bridgeLog(packed('thread-pool'), 'thread-pool');
      }
      expect(log).toContain('Dispatch of GET /thread-pool/spin was still running 5000 ms after its request was dropped; its thread was stopped');
      const [a, b] = await Promise.all([fetch(`${dev.url}/thread-pool/spin?ms=300`), fetch(`${dev.url}/thread-pool/spin?ms=300`)]);
      expect([a.status, b.status]).toEqual([200, 200]);
    });
  });
});
