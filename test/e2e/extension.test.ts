// pack → serve → HTTP, over real sockets: the path every user takes.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridgeLog, packed, rawExchange, serveFolders, sleep, waitFor, type Host } from '../helpers';

let host: Host;

beforeAll(async () => {
  host = await serveFolders(['hello', 'echo', 'control']);
});
afterAll(async () => {
  await host?.stop();
});

describe('hello', () => {
  it('answers GET with the greeting', async () => {
    const res = await fetch(`${host.url}/hello/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(await res.text()).toBe('Hello from TypeScript\n');
  });

  it('answers curl, the way the README shows', () => {
    const out = execFileSync('curl', ['-s', '-i', `${host.url}/hello/`], { encoding: 'utf8' });
    expect(out).toMatch(/^HTTP\/1\.1 200 /);
    expect(out).toMatch(/\r\n\r\nHello from TypeScript\n$/);
  });

  it('reuses a keep-alive connection for several requests', async () => {
    const req = `GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n`;
    const { responses, closed } = await rawExchange(host.port, [req, req, req], 3);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(responses.every((r) => r.body.toString() === 'Hello from TypeScript\n')).toBe(true);
    expect(closed).toBe(false);
  });

  it('answers 200 concurrent requests, each correctly', async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => fetch(`${host.url}/echo/n${i}?i=${i}`).then(async (r) => [r.status, await r.text()] as const)),
    );
    results.forEach(([status, text], i) => {
      expect(status).toBe(200);
      expect(text).toContain(`GET /echo/n${i}?i=${i}\n`);
      expect(text).toContain(`QUERY_STRING=i=${i}\n`);
    });
  });
});

describe('echo', () => {
  it('echoes method, path, query and server variables', async () => {
    const res = await fetch(`${host.url}/echo/some/path?a=1&b=two`, { headers: { 'User-Agent': 'vitest-agent' } });
    const text = await res.text();
    expect(res.status).toBe(200);
    expect(text).toContain('GET /echo/some/path?a=1&b=two\n');
    expect(text).toContain('REQUEST_METHOD=GET\n');
    expect(text).toContain('QUERY_STRING=a=1&b=two\n');
    expect(text).toContain('SCRIPT_NAME=/echo\n');
    expect(text).toContain('HTTP_USER_AGENT=vitest-agent\n');
    expect(text).toContain(`SERVER_PORT=${host.port}\n`);
    expect(text).toContain('REMOTE_ADDR=127.0.0.1\n');
    expect(text).toContain('body-length=0\n');
  });

  it('echoes a small POST body after the variables', async () => {
    const res = await fetch(`${host.url}/echo/`, { method: 'POST', body: 'name=value', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    const text = await res.text();
    expect(text).toContain('POST /echo/\n');
    expect(text).toContain('CONTENT_TYPE=application/x-www-form-urlencoded\n');
    expect(text).toContain('body-length=10\n');
    expect(text.endsWith('name=value')).toBe(true);
  });

  it('echoes a 5 MiB POST with Content-Length byte for byte', async () => {
    const body = randomBytes(5 << 20);
    const res = await fetch(`${host.url}/echo/body`, { method: 'POST', body });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe(String(body.length));
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
  });

  it('echoes a 5 MiB chunked POST byte for byte', async () => {
    const body = randomBytes(5 << 20);
    const pieces: Buffer[] = [];
    for (let i = 0; i < body.length; i += 300_000) pieces.push(body.subarray(i, i + 300_000));
    const chunked = Buffer.concat([
      ...pieces.flatMap((p) => [Buffer.from(p.length.toString(16) + '\r\n'), p, Buffer.from('\r\n')]),
      Buffer.from('0\r\n\r\n'),
    ]);
    const head = `POST /echo/body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n`;
    const { responses } = await rawExchange(host.port, [head, chunked], 1);
    expect(responses[0]!.status).toBe(200);
    expect(responses[0]!.headers['transfer-encoding']).toBe('chunked');
    expect(responses[0]!.body.equals(body)).toBe(true);
  });
});

/** Resolves once the process has exited (gone, or a zombie waiting to be reaped). */
function waitForExit(pid: number): Promise<boolean> {
  return waitFor(() => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] === 'Z';
    } catch {
      return true;
    }
  }, `process ${pid} to exit`);
}

describe('worker failures', () => {
  it('a handler that throws gives 500 and the worker keeps serving', async () => {
    const res = await fetch(`${host.url}/control/throw`);
    expect(res.status).toBe(500);
    expect(await res.text()).toContain('500 Internal Server Error');
    const rej = await fetch(`${host.url}/control/reject`);
    expect(rej.status).toBe(500);
    const ok = await fetch(`${host.url}/control/pid`);
    expect(ok.status).toBe(200);
    expect(bridgeLog(packed('control'), 'control')).toContain('handler failed on purpose');
  });

  it('a worker killed mid-request gives 502, and the next request succeeds', async () => {
    // Both workers get a sleeping request; each reports its pid first so the test can kill it.
    const pids = new Set<number>();
    for (let i = 0; i < 20 && pids.size < 2; i++) {
      const r = await Promise.all([fetch(`${host.url}/control/pid`), fetch(`${host.url}/control/pid`)]);
      for (const x of r) pids.add(Number(await x.text()));
    }
    const started = bridgeLog(packed('control'), 'control').split('sleep: started').length;
    const inflight = fetch(`${host.url}/control/sleep?ms=20000`);
    // Killed once its handler runs: a request the worker never took would go to another one.
    await waitFor(() => bridgeLog(packed('control'), 'control').split('sleep: started').length > started, 'the sleeping handler');
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    const res = await inflight;
    expect(res.status).toBe(502);
    expect(await res.text()).toContain('502 Bad Gateway');
    // "Next" means after the bridge noticed: both processes are gone and the bridge logged each
    // exit, so no request can still be racing a dying worker's channel.
    for (const pid of pids) await waitForExit(pid);
    await waitFor(() => {
      const log = bridgeLog(packed('control'), 'control');
      return [...pids].every((pid) => log.includes(`(pid ${pid}) exited`));
    }, 'the bridge to log both exits');
    const next = await fetch(`${host.url}/control/pid`);
    expect(next.status).toBe(200);
    expect(pids.has(Number(await next.text()))).toBe(false);
    expect(bridgeLog(packed('control'), 'control')).toMatch(/exited: signal 9/);
  });

  it('calls after DoneWithSession throw a clear error and send nothing', async () => {
    const { responses, closed } = await rawExchange(host.port, ['GET /control/after-done HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n'], 2);
    expect(responses[0]!.body.toString()).toBe('done');
    expect(responses[1]!.body.toString()).toBe('Hello from TypeScript\n');
    expect(closed).toBe(false);
    await waitFor(() => bridgeLog(packed('control'), 'control').includes('after-done: WriteClient: the request is already finished'), 'the after-done line');
  });
});

describe('a handler that kills its worker', () => {
  it('is answered 502 and never run again on another worker, though it sent nothing', async () => {
    // The worker said nothing about the request: only its record of what it took (the taken
    // board on Linux, a Taken message elsewhere) tells the bridge the handler ran.
    const log = () => bridgeLog(packed('control'), 'control');
    const starts = () => log().split('die: started').length - 1;
    const before = starts();
    const res = await fetch(`${host.url}/control/die`);
    expect(res.status).toBe(502);
    await waitFor(() => /died with 1 request\(s\) in flight; answering them with 502/.test(log()), 'the death line');
    // Another request is answered by the replacement (or the other worker) and the handler
    // did not run a second time.
    expect((await fetch(`${host.url}/control/pid`)).status).toBe(200);
    expect(starts()).toBe(before + 1);
  });
});

describe('streaming', () => {
  it('streams a 32 MiB response', async () => {
    const res = await fetch(`${host.url}/control/stream?mib=32`);
    const buf = Buffer.from(await res.arrayBuffer());
    expect(buf.length).toBe(32 << 20);
    expect(buf.every((b) => b === 0x61)).toBe(true);
  });

  it('eight 32 MiB responses at once fill the channel and still arrive whole (the worker waits for room)', async () => {
    // Together they outrun the channel's socket buffer, so the worker's writer thread meets a
    // full socket: with the event loop watching the channel the descriptor is non-blocking, and
    // a send that took EAGAIN for an error once ended the worker mid-response.
    const deaths = () => bridgeLog(packed('control'), 'control').split('died with').length;
    const before = deaths();
    const bodies = await Promise.all(
      Array.from({ length: 8 }, async () => Buffer.from(await (await fetch(`${host.url}/control/stream?mib=32`)).arrayBuffer())),
    );
    for (const b of bodies) {
      expect(b.length).toBe(32 << 20);
      expect(b.every((x) => x === 0x61)).toBe(true);
    }
    expect(deaths()).toBe(before);
  });
});


describe('ServerSupportFunction through the bridge', () => {
  it('IsKeepConn and IsConnected ask the server', async () => {
    const res = await fetch(`${host.url}/control/keepconn`);
    expect(await res.text()).toBe('keep=true connected=true');
  });

  it('MapURLToPath returns the server mapping', async () => {
    const res = await fetch(`${host.url}/control/map?url=/control/x.txt`);
    expect(await res.text()).toBe(`${packed('control')}/x.txt`);
  });

  it('Redirect is a 302 sent by the server', async () => {
    const res = await fetch(`${host.url}/control/redirect?to=/hello/`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/hello/');
  });

  it('TransmitFile sends a file from the web server process, with status and head', async () => {
    const res = await fetch(`${host.url}/control/transmit`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-transmitted')).toBe('yes');
    const manifest = await res.json();
    expect(manifest.name).toBe('control');
  });

  it('a missing server variable raises ExtensionError 1413 in the handler', async () => {
    const res = await fetch(`${host.url}/control/unknown-var`);
    expect(await res.text()).toBe('ExtensionError: GetServerVariable(NO_SUCH_VARIABLE_X): the server variable does not exist (error 1413)');
  });
});

describe('reload', () => {
  const pidsSeen = async (n: number) => {
    const pids = new Set<number>();
    for (let i = 0; i < n; i++) pids.add(Number(await (await fetch(`${host.url}/control/pid`)).text()));
    return pids;
  };

  it('InternalReloadException answers 503 + Retry-After, then fresh workers serve without failing a request', async () => {
    const before = await pidsSeen(6);
    const res = await fetch(`${host.url}/control/reload`);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    // Keep requests flowing while the generations swap: every one must succeed, until ten in a
    // row come from new processes.
    const statuses: number[] = [];
    let freshInARow = 0;
    for (let i = 0; i < 500 && freshInARow < 10; i++) {
      const r = await fetch(`${host.url}/control/pid`);
      statuses.push(r.status);
      const pid = Number(await r.text());
      freshInARow = r.status === 200 && !before.has(pid) ? freshInARow + 1 : 0;
      await sleep(10);
    }
    expect(freshInARow).toBe(10);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(bridgeLog(packed('control'), 'control')).toContain('reloading all workers: requested by worker');
  });
});

describe('ISAPI_WORKER_MEMORY_LIMIT_MB', () => {
  let limited: Host;
  beforeAll(async () => {
    limited = await serveFolders(['control'], { ISAPI_WORKERS: '1', ISAPI_WORKER_MEMORY_LIMIT_MB: '150' });
  });
  afterAll(async () => {
    await limited?.stop();
  });

  it('a worker whose own memory passes the limit is replaced without failing a request', async () => {
    const pidOf = async () => Number(await (await fetch(`${limited.url}/control/pid`)).text());
    const leaky = await pidOf();
    // Under the limit nothing happens, however long the worker lives (the check runs each second
    // once a worker is 5 s old).
    expect(await (await fetch(`${limited.url}/control/hold?mib=60`)).text()).toBe('holding 60 MiB');
    await sleep(6500);
    expect(await pidOf()).toBe(leaky);
    // Over it, with a request in flight: that request is answered by the old worker, which then
    // drains; requests keep succeeding until a fresh worker answers them.
    expect(await (await fetch(`${limited.url}/control/hold?mib=120`)).text()).toBe('holding 180 MiB');
    const inFlight = fetch(`${limited.url}/control/sleep?ms=1500`);
    const statuses: number[] = [];
    let pid = leaky;
    for (let i = 0; i < 300 && pid === leaky; i++) {
      const r = await fetch(`${limited.url}/control/pid`);
      statuses.push(r.status);
      pid = Number(await r.text());
      await sleep(20);
    }
    expect(pid).not.toBe(leaky);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const slow = await inFlight;
    expect(slow.status).toBe(200);
    expect(await slow.text()).toBe('slept');
    expect(bridgeLog(packed('control'), 'control')).toMatch(
      new RegExp(`\\(pid ${leaky}\\) uses \\d+ MiB, over the limit of 150 MiB \\(ISAPI_WORKER_MEMORY_LIMIT_MB\\): replacing it`),
    );
  });
});
