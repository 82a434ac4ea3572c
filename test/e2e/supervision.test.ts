// Supervision under injected faults (issue 16), over real sockets against the real host and
// bridge: scripts that cannot start, workers killed under load, a blocked event loop, clients
// that leave mid-upload or stop reading, and the log that records it all.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridgeLog, childPids, count, leaveMidUpload, packed, parseResponse, root, runCli, startHost, waitFor, type Host } from '../helpers';

/** A private copy of a packed folder, so a test can redeploy it or fill its logs. */
function privateCopy(name: string): string {
  const to = path.join(mkdtempSync(path.join(os.tmpdir(), 'isapi-supervision-')), name);
  cpSync(packed(name), to, { recursive: true });
  return to;
}

function serve(folder: string, name: string, env: NodeJS.ProcessEnv): Promise<Host> {
  return startHost(['--vdir', `/${name}=${path.join(folder, `_${name}.so`)}`], env);
}

async function timed(url: string, init?: RequestInit) {
  const t0 = performance.now();
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) });
  const body = await res.text();
  return { status: res.status, headers: res.headers, body, ms: performance.now() - t0 };
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

describe('a script that fails at startup', () => {
  let folder: string;
  let host: Host;
  beforeAll(async () => {
    folder = privateCopy('broken-start');
    host = await serve(folder, 'broken-start', {
      ISAPI_WORKERS: '2',
      ISAPI_DETAILED_ERRORS: '1',
      ISAPI_RAPID_FAILS_PER_MINUTE: '4',
    });
  });
  afterAll(() => host?.stop());

  it('leaves the web server up and answers 503 at once, naming the application and the reason', async () => {
    const probes = [];
    for (let i = 0; i < 5; i++) probes.push(await timed(`${host.url}/broken-start/`));
    console.log(`503 while no worker can start: ${probes.map((p) => p.ms.toFixed(1)).join(', ')} ms`);
    for (const p of probes) {
      expect(p.status).toBe(503);
      expect(Number(p.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(p.body).toContain("The application 'broken-start' is not available");
      expect(p.body).toContain('before it was ready');
      // ISAPI_DETAILED_ERRORS=1: the worker's own last words.
      expect(p.body).toContain('cannot reach the database');
      // Never the startup timeout (30 s): answered at once.
      expect(p.ms).toBeLessThan(2000);
    }
    expect(host.proc.exitCode).toBeNull();
  });

  it('stops starting workers after ISAPI_RAPID_FAILS_PER_MINUTE failures and says so once', async () => {
    const log = () => bridgeLog(folder, 'broken-start');
    await waitFor(() => log().includes('rapid-fail protection'), 'the rapid-fail line');
    const started = count(log(), 'started (pid');
    for (let i = 0; i < 20; i++) {
      const p = await timed(`${host.url}/broken-start/`);
      expect(p.status).toBe(503);
      expect(p.body).toContain('Too many start failures in a minute');
    }
    expect(count(log(), 'started (pid')).toBe(started);
    expect(count(log(), 'rapid-fail protection')).toBe(1);
  });

  it('recovers on its own when a fixed executable is deployed, without a server restart', async () => {
    const fixed = path.join(folder, 'broken-start.new');
    cpSync(path.join(packed('hello'), 'hello'), fixed);
    renameSync(fixed, path.join(folder, 'broken-start'));
    const ok = await waitFor(async () => {
      const p = await timed(`${host.url}/broken-start/`);
      return p.status === 200 ? p : null;
    }, 'a 200 from the redeployed worker', 20_000);
    expect(ok.body).toBe('Hello from TypeScript\n');
    expect(host.proc.exitCode).toBeNull();
  });
});

describe('faults of a running application', () => {
  let folder: string;
  let host: Host;
  const log = () => bridgeLog(folder, 'faults');
  beforeAll(async () => {
    folder = privateCopy('faults');
    host = await serve(folder, 'faults', { ISAPI_WORKERS: '2', ISAPI_PING_TIMEOUT_MS: '1500' });
  });
  afterAll(() => host?.stop());

  const workers = () => childPids(host.proc.pid!);

  it('kill storm: 60 SIGKILLs under 32 keep-alive clients; every request answered, only in-flight ones with 502', async () => {
    type Outcome = { route: string; status: number; start: number; end: number };
    const outcomes: Outcome[] = [];
    const failures: string[] = [];
    const kills: number[] = [];
    let storming = true;
    const client = async (i: number) => {
      const route = i % 2 ? '/faults/slow?ms=200' : '/faults/fast';
      while (storming) {
        const start = performance.now();
        try {
          const res = await fetch(`${host.url}${route}`, { signal: AbortSignal.timeout(10_000) });
          await res.arrayBuffer();
          outcomes.push({ route, status: res.status, start, end: performance.now() });
        } catch (err) {
          const cause = (err as { cause?: { code?: string; message?: string } }).cause;
          failures.push(`${route}: ${(err as Error).message}${cause ? ` (${cause.code ?? cause.message})` : ''}`);
        }
      }
    };
    await waitFor(() => workers().length === 2, 'two workers');
    const clients = Array.from({ length: 32 }, (_, i) => client(i));
    for (let k = 0; k < 60; k++) {
      await new Promise((r) => setTimeout(r, 500));
      const pids = workers();
      if (pids.length === 0) continue;
      const victim = pids[Math.floor(Math.random() * pids.length)]!;
      try {
        process.kill(victim, 'SIGKILL');
        kills.push(performance.now());
      } catch {
        // it exited a moment ago
      }
    }
    storming = false;
    await Promise.all(clients);

    const ok = outcomes.filter((o) => o.status === 200);
    const bad = outcomes.filter((o) => o.status !== 200);
    // How long each 502 took after the kill that caused it: the last kill before its answer.
    const after502 = bad.map((o) => o.end - Math.max(...kills.filter((k) => k <= o.end)));
    console.log(
      `kill storm: ${kills.length} kills, ${outcomes.length} answers (${ok.length} × 200, ${bad.length} × 502), ` +
        `${failures.length} unanswered; 502 after its kill: p50 ${percentile(after502, 50).toFixed(1)} ms, ` +
        `max ${Math.max(0, ...after502).toFixed(1)} ms, ${after502.filter((t) => t > 1000).length} over 1 s; ` +
        `200s: p99 ${percentile(ok.map((o) => o.end - o.start), 99).toFixed(1)} ms`,
    );
    expect(failures).toEqual([]);
    expect(kills.length).toBeGreaterThanOrEqual(55);
    for (const o of bad) {
      expect(o.status).toBe(502);
      // It was in flight when a worker was killed.
      expect(kills.some((k) => o.start <= k && k <= o.end)).toBe(true);
    }
    await waitFor(() => workers().length === 2, 'the pool back to two workers', 15_000);
    expect(host.proc.exitCode).toBeNull();
    expect((await timed(`${host.url}/faults/fast`)).status).toBe(200);
    // Killing workers that had served is never a start failure: no backoff, no rapid-fail.
    expect(log()).not.toContain('failed to start');
  }, 120_000);

  it('a worker that dies after its whole response but before Done leaves the keep-alive connection usable', async () => {
    // What a kill storm hits now and then: the client has its complete answer and reuses the
    // connection; cutting it then would lose the next request.
    const sock = net.connect(host.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let closed = false;
    sock.on('data', (d) => (buf = Buffer.concat([buf, d])));
    sock.on('close', () => (closed = true));
    sock.on('error', () => {});
    const next = async () => {
      const r = await waitFor(() => parseResponse(buf, closed) ?? (closed ? 'closed' : null), 'a response or a close', 15_000);
      if (r === 'closed') return 'closed' as const;
      buf = buf.subarray(r.used);
      return r.res;
    };
    sock.write('GET /faults/answer-then-hang HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const first = await next();
    if (first === 'closed') throw new Error('the connection closed before the first answer');
    expect(first.status).toBe(200);
    const pid = Number(first.body.toString());
    expect(workers()).toContain(pid);
    process.kill(pid, 'SIGKILL');
    await waitFor(() => log().includes(`(pid ${pid}) died with 1 request(s) in flight`), 'the bridge to see the death');
    sock.write('GET /faults/fast HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const second = await next();
    sock.destroy();
    expect(second === 'closed' ? 'connection closed' : `${second.status} ${second.body}`).toBe('200 ok');
    expect(log()).toContain(`(pid ${pid}) died with 1 request(s) in flight; 1 had sent their whole response (kept as answered)`);
    await waitFor(() => workers().length === 2, 'the pool back to two workers', 15_000);
  });

  it('a worker whose event loop is blocked is replaced after ISAPI_PING_TIMEOUT_MS; its request gets 504', async () => {
    const before = workers();
    const blocked = await timed(`${host.url}/faults/block?ms=60000`);
    console.log(`blocked event loop answered ${blocked.status} after ${blocked.ms.toFixed(0)} ms (ping timeout 1500 ms)`);
    expect(blocked.status).toBe(504);
    expect(blocked.body).toContain('stopped responding');
    expect(blocked.ms).toBeLessThan(20_000);
    expect(log()).toContain('did not answer a heartbeat within 1500 ms');
    expect((await timed(`${host.url}/faults/fast`)).status).toBe(200);
    await waitFor(() => workers().length === 2, 'a replacement worker');
    expect(workers().filter((p) => !before.includes(p)).length).toBeGreaterThanOrEqual(1);
  }, 60_000);

  /** The lines an upload route wrote about how it ended ('<kind>-upload …', not 'receiving'). */
  const outcomes = (kind: string) => log().split('\n').filter((l) => l.includes(`${kind}-upload`) && !l.includes(': receiving'));

  /** Leaves after the server has read the first bytes of the body at `kind` ('ecb', 'node', 'fetch'). */
  const leaveAt = async (kind: string, head: string, part: Buffer) => {
    const before = count(log(), `${kind}-upload: receiving`);
    await leaveMidUpload(host.port, head, part, () => count(log(), `${kind}-upload: receiving`) > before);
  };

  const uploadHead = (url: string, length: number) =>
    `POST ${url} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`;

  it('a client gone mid-body fails ReadClient with ExtensionError 64, sets ecb.aborted and fires onAbort', async () => {
    await leaveAt('ecb', uploadHead('/faults/upload', 4 << 20), Buffer.alloc(1 << 20, 1));
    const line = await waitFor(() => outcomes('ecb')[0], 'the ecb-upload line');
    expect(line).toMatch(/ecb-upload ExtensionError errno=64 aborted=true onAbort=true bytes=\d+: ReadClient: the client went away/);
    expect(Number(/bytes=(\d+)/.exec(line)![1])).toBeLessThan(4 << 20);
  });

  it('the same for a chunked upload cut short', async () => {
    const head = 'POST /faults/upload?chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n';
    const before = outcomes('ecb').length;
    await leaveAt('ecb', head, Buffer.from(`10000\r\n${'c'.repeat(0x10000)}\r\n10000\r\n${'c'.repeat(100)}`));
    await waitFor(() => outcomes('ecb').length > before, 'a second ecb-upload line');
    expect(outcomes('ecb').pop()).toContain('errno=64 aborted=true onAbort=true');
  });

  it("httpExtension apps see 'aborted' and 'error' (ECONNRESET) and never 'end', as on Node's own server", async () => {
    await leaveAt('node', uploadHead('/faults/node/upload', 4 << 20), Buffer.alloc(1 << 20, 1));
    const line = await waitFor(() => outcomes('node')[0], 'the node-upload line');
    expect(line).toMatch(/node-upload events=aborted,error:ECONNRESET bytes=\d+ complete=false/);
    expect(line).not.toContain('end');
  });

  it("the fetch adapter's request body stream errors", async () => {
    await leaveAt('fetch', uploadHead('/faults/fetch/upload', 4 << 20), Buffer.alloc(1 << 20, 1));
    const line = await waitFor(() => outcomes('fetch')[0], 'the fetch-upload line');
    expect(line).toContain('the client went away');
  });

  it('a complete upload still arrives whole', async () => {
    const body = Buffer.alloc(3 << 20, 7);
    const r = await timed(`${host.url}/faults/upload`, { method: 'POST', body });
    expect(r.status).toBe(200);
    expect(r.body).toBe(`received ${body.length}`);
  });
});

describe('through a READ_RAW_DATA filter', () => {
  let folder: string;
  let host: Host;
  beforeAll(async () => {
    folder = privateCopy('faults');
    const so = path.join(path.dirname(folder), 'raw_filter.so');
    execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-I', path.join(root, 'native', 'include'), '-o', so,
      path.join(root, 'native', 'host', 'test', 'raw_filter.c')]);
    host = await startHost(['--filter', so, '--vdir', `/faults=${path.join(folder, '_faults.so')}`], { ISAPI_WORKERS: '1' });
  });
  afterAll(() => host?.stop());

  it('a client gone mid-body is still an abort, never a short body', async () => {
    const log = () => bridgeLog(folder, 'faults');
    await leaveMidUpload(host.port, 'POST /faults/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n',
      Buffer.alloc(1 << 20, 1), () => log().includes('ecb-upload: receiving'));
    const line = await waitFor(() => log().split('\n').find((l) => l.includes('ecb-upload') && !l.includes(': receiving')), 'the ecb-upload line');
    expect(line).toMatch(/ecb-upload ExtensionError errno=64 aborted=true onAbort=true/);
    // The filter rewrote the body it saw (and the server still serves).
    const r = await timed(`${host.url}/faults/upload`, { method: 'POST', body: 'a secret' });
    expect(r.body).toBe('received 8');
  });
});

describe('no head-of-line blocking (one worker)', () => {
  let folder: string;
  let host: Host;
  beforeAll(async () => {
    folder = privateCopy('faults');
    host = await serve(folder, 'faults', { ISAPI_WORKERS: '1' });
  });
  afterAll(() => host?.stop());

  it('a client that stops reading a 100 MiB response delays no other request of the same worker', async () => {
    const stalled = net.connect(host.port, '127.0.0.1');
    stalled.write('GET /faults/big?mib=100 HTTP/1.1\r\nHost: x\r\n\r\n');
    // Read the first bytes (the response has begun), then stop reading for good.
    await new Promise<void>((resolve) => stalled.once('data', () => resolve()));
    stalled.pause();

    const times: number[] = [];
    const failures: string[] = [];
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        for (let i = 0; i < 10; i++) {
          const t0 = performance.now();
          try {
            const res = await fetch(`${host.url}/faults/fast`, { signal: AbortSignal.timeout(15_000) });
            expect(await res.text()).toBe('ok');
            times.push(performance.now() - t0);
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      }),
    );
    console.log(`beside a stalled 100 MiB download: ${times.length} answers, p50 ${percentile(times, 50).toFixed(2)} ms, p99 ${percentile(times, 99).toFixed(2)} ms`);
    expect(failures).toEqual([]);
    expect(times.length).toBe(320);
    stalled.destroy();
    await waitFor(() => bridgeLog(folder, 'faults').includes('big: aborted'), 'the stalled download to end as aborted', 30_000);
  }, 60_000);

  it('uploads that stall hold no thread: requests keep being answered', async () => {
    const socks = Array.from({ length: 12 }, () => {
      const s = net.connect(host.port, '127.0.0.1');
      s.write(`POST /faults/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n${'u'.repeat(1000)}`);
      return s;
    });
    try {
      for (let i = 0; i < 50; i++) {
        const r = await timed(`${host.url}/faults/fast`);
        expect(r.status).toBe(200);
      }
    } finally {
      for (const s of socks) s.destroy();
    }
  });
});

describe('app_offline.htm', () => {
  it('takes the application offline: requests in flight finish, the workers exit, others get 503 with its content; removing it starts fresh workers', async () => {
    const folder = privateCopy('faults');
    const host = await serve(folder, 'faults', { ISAPI_WORKERS: '2' });
    try {
      const workers = () => childPids(host.proc.pid!);
      expect((await timed(`${host.url}/faults/fast`)).status).toBe(200);
      await waitFor(() => workers().length === 2, 'two workers');
      const before = workers();
      const inFlight = timed(`${host.url}/faults/slow?ms=1500&say=offline`);
      await waitFor(() => bridgeLog(folder, 'faults').includes('slow: started offline'), 'the slow request to be running');
      writeFileSync(path.join(folder, 'app_offline.htm'), '<h1>Back soon</h1>\n');
      const offline = await waitFor(async () => {
        const r = await timed(`${host.url}/faults/fast`);
        return r.status === 503 ? r : null;
      }, 'the offline page');
      expect(offline.body).toBe('<h1>Back soon</h1>\n');
      expect(offline.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect((await inFlight).status).toBe(200);
      // The worker executable is no longer running: it can be replaced.
      await waitFor(() => workers().length === 0, 'every worker to exit');
      expect(bridgeLog(folder, 'faults')).toContain('app_offline.htm found');
      rmSync(path.join(folder, 'app_offline.htm'));
      const back = await waitFor(async () => {
        const r = await timed(`${host.url}/faults/pid`);
        return r.status === 200 ? r : null;
      }, 'a fresh worker');
      expect(before).not.toContain(Number(back.body));
    } finally {
      await host.stop();
    }
  });
});

describe('the log', () => {
  it('is capped and rotated (ISAPI_LOG_MAX_KB, ISAPI_LOG_FILES), one file per generation', async () => {
    const folder = privateCopy('faults');
    const host = await serve(folder, 'faults', { ISAPI_WORKERS: '1', ISAPI_LOG_MAX_KB: '64', ISAPI_LOG_FILES: '3' });
    try {
      for (let i = 0; i < 4; i++) expect((await timed(`${host.url}/faults/print?kb=100`)).body).toBe('printed');
      const logs = path.join(folder, 'logs');
      // Rotation runs on the bridge's output thread: wait until it has settled.
      const files = await waitFor(() => {
        const f = readdirSync(logs).filter((n) => n.startsWith('faults')).sort();
        return f.length === 3 && f.includes('faults.log') ? f : null;
      }, 'three generations of the log');
      expect(files).toEqual(['faults.1.log', 'faults.2.log', 'faults.log']);
      // A rotated file holds at most the cap plus the last batch of lines written into it.
      for (const f of ['faults.1.log', 'faults.2.log']) expect(statSync(path.join(logs, f)).size).toBeLessThan(64 * 1024 + 40 * 1024);
      expect(readFileSync(path.join(logs, 'faults.1.log'), 'utf8')).toMatch(/\[worker 0\] x{1023}/);
    } finally {
      await host.stop();
    }
  });

  it('re-packing into a folder keeps logs/ and the user\'s files, and replaces only what the packer wrote', () => {
    const folder = privateCopy('hello');
    const outRoot = path.dirname(folder);
    mkdirSync(path.join(folder, 'logs'), { recursive: true });
    writeFileSync(path.join(folder, 'logs', 'hello.log'), 'an old log line\n');
    mkdirSync(path.join(folder, 'public'));
    writeFileSync(path.join(folder, 'public', 'index.html'), '<p>mine</p>');
    const before = statSync(path.join(folder, 'hello')).mtimeMs;
    const r = runCli(['pack', 'examples/hello.ts', '--out', outRoot]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(readFileSync(path.join(folder, 'logs', 'hello.log'), 'utf8')).toBe('an old log line\n');
    expect(readFileSync(path.join(folder, 'public', 'index.html'), 'utf8')).toBe('<p>mine</p>');
    expect(statSync(path.join(folder, 'hello')).mtimeMs).toBeGreaterThan(before);
    expect(readdirSync(folder).sort()).toEqual(['_hello.so', 'hello', 'hello.manifest.json', 'install', 'logs', 'public']);
  }, 120_000);
});

