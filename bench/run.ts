// npm run bench: wrk against several servers with the same load, in one run, printed as ratios
// of throughput and of CPU time per request (the servers' processes, workers included).
//   (a) isapi-host + a C hello extension          — the host's own ceiling
//   (b) isapi-host + the packed examples/hello.ts  — what users get
//   (c) plain Node http hello, same Node version   — the peer we must match
//   (d) isapi-host + the packed examples/express-app.ts (its hello route) — an ordinary app through the bridge
//   (e) the same Express app on plain Node http, same Node version
// then the memory of (d) and (e) at the peak of a 50 MiB upload and a 50 MiB streamed download,
// and what a PREPROC_HEADERS filter adds per request, on the host + C hello extension of (a):
//   (f) + a C filter that adds one request header (native/host/test/preproc_bench_filter.c)
//   (g) + the same filter in TypeScript, packed (bench/fixtures/preproc-filter.ts)
// then the development loop: save → first response of the new code under `isapi dev`
// (bench/dev_loop.ts; BENCH_ONLY=dev runs only that), and, last, the packed folder of hello on
// linux-x64 and win-x64: its size next to Node's own and the warm pack time (bench/pack_figures.ts;
// BENCH_ONLY=pack runs only that).
// Filter rows run BENCH_FILTER_SECONDS (default 5, at most BENCH_SECONDS) each, against a
// baseline measured with that same duration next to them (row (a) itself when they match).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { DEFAULT_NODE_VERSION, ensureNodeBinary } from '../packer/node_binary';
import { devLoop } from './dev_loop';
import { packFigures } from './pack_figures';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'build', 'bench');
const hostExe = path.join(root, 'build', 'native', 'linux-x64', 'out', 'isapi-host');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const filterSeconds = Math.min(seconds, Number(process.env.BENCH_FILTER_SECONDS ?? 5));
const connections = Number(process.env.BENCH_CONNECTIONS ?? 64);
const threads = 2;

interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: string;
  /** CPU time the server's processes spent per request, in µs (NaN when not measured). */
  cpuUs: number;
}

/** Clock ticks per second of /proc/<pid>/stat's utime and stime. */
const clockTicks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** A process and its children: the CPU time they have used so far, in seconds. */
/** The direct children of a process (a host's workers), with their command names. */
function children(pid: number): Array<{ pid: number; comm: string }> {
  const r = spawnSync('ps', ['--ppid', String(pid), '-o', 'pid=,comm='], { encoding: 'utf8' });
  return r.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [p, comm] = l.trim().split(/\s+/);
      return { pid: Number(p), comm: comm ?? '' };
    });
}

function cpuSeconds(pid: number): number {
  const pids = [pid, ...children(pid).map((c) => c.pid)];
  let ticks = 0;
  for (const p of pids) {
    try {
      // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {}
  }
  return ticks / clockTicks;
}

function need(cmd: string, hint: string) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    console.error(`bench: ${cmd} is not installed (${hint})`);
    process.exit(1);
  }
}

function ms(v: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(v)!;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

/**
 * Req/s and latency from wrk, and, given the server's pid, the CPU its processes (and their
 * children: workers) used per request: on a machine shared with other work, req/s moves with
 * what else runs, CPU per request much less.
 */
function wrk(name: string, url: string, duration = seconds, serverPid?: number): Result {
  // Warm up, then measure.
  spawnSync('wrk', ['-t1', '-c8', '-d1s', url]);
  const cpu0 = serverPid ? cpuSeconds(serverPid) : NaN;
  const text = execFileSync('wrk', [`-t${threads}`, `-c${connections}`, `-d${duration}s`, '--latency', url], { encoding: 'utf8' });
  const cpu = serverPid ? cpuSeconds(serverPid) - cpu0 : NaN;
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)![1]);
  const p50 = ms(/\s50%\s+(\S+)/.exec(text)![1]!);
  const p99 = ms(/\s99%\s+(\S+)/.exec(text)![1]!);
  const errors = [/Socket errors:.*/.exec(text)?.[0], /Non-2xx or 3xx responses: \d+/.exec(text)?.[0]].filter(Boolean).join('; ');
  return { name, rps, p50, p99, errors, cpuUs: (cpu / requests) * 1e6 };
}

function listen(proc: ChildProcess, pattern: RegExp): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no listening line:\n${text}`)), 60_000);
    const on = (d: Buffer) => {
      text += d;
      const m = pattern.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout!.on('data', on);
    proc.stderr!.on('data', on);
  });
}

/** Hosts started by startHost(), stopped however the bench ends. */
const hosts: ChildProcess[] = [];
process.on('exit', () => {
  for (const h of hosts) if (h.exitCode === null) h.kill('SIGTERM');
});

function startHost(args: string[]): Promise<{ proc: ChildProcess; port: number }> {
  const proc = spawn(hostExe, ['--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  hosts.push(proc);
  return listen(proc, /listening on http:\/\/[\d.]+:(\d+)\//).then((port) => ({ proc, port }));
}

/** Checks that a filter host's filter really ran: the probe extension reports the header it added. */
async function expectFilterHeader(port: number, value: string, what: string): Promise<void> {
  const text = await (await fetch(`http://127.0.0.1:${port}/probe/vars?name=HTTP_X_BENCH_FILTER`)).text();
  if (!text.includes(`ok: ${value}`)) throw new Error(`bench: the ${what} did not add X-Bench-Filter (probe said: ${text.trim()})`);
}

/** Resident memory in MiB: all of it (RSS) and the process's own part (anonymous pages). */
function memory(pid: number): { rss: number; anon: number } {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0);
    return { rss: kib('Rss') / 1024, anon: kib('Anonymous') / 1024 };
  } catch {
    return { rss: 0, anon: 0 };
  }
}

function rssOfChildren(pid: number): string {
  return children(pid)
    .map((c) => `${c.comm} pid ${c.pid}: ${memory(c.pid).rss.toFixed(1)} MiB`)
    .join(', ');
}

/**
 * The peak memory of the busiest of `pids` (sampled every 10 ms) while a 50 MiB upload and then
 * a 50 MiB streamed download go through the Express example's /upload and /download routes.
 */
async function transferPeak(base: string, pids: number[]): Promise<{ idle: { rss: number; anon: number }; peak: { rss: number; anon: number } }> {
  const busiest = () => pids.map(memory).reduce((m, x) => (x.rss > m.rss ? x : m), { rss: 0, anon: 0 });
  const idle = busiest();
  let peak = idle;
  const timer = setInterval(() => {
    const m = busiest();
    if (m.rss > peak.rss) peak = m;
  }, 10);
  try {
    const up = await fetch(`${base}/upload`, { method: 'POST', body: randomBytes(50 << 20) });
    const { bytes } = (await up.json()) as { bytes: number };
    if (bytes !== 50 << 20) throw new Error(`bench: ${base}/upload counted ${bytes} bytes`);
    let down = 0;
    for await (const chunk of (await fetch(`${base}/download?mib=50`)).body as unknown as AsyncIterable<Uint8Array>) down += chunk.byteLength;
    if (down !== 50 << 20) throw new Error(`bench: ${base}/download sent ${down} bytes`);
  } finally {
    clearInterval(timer);
  }
  return { idle, peak };
}

async function main() {
  // BENCH_ONLY=dev: only the development loop's figure (a few seconds, no wrk).
  if (process.env.BENCH_ONLY === 'dev') return devLoop(root);
  // BENCH_ONLY=pack: only the packed folder's size and the warm pack time (seconds, no wrk).
  if (process.env.BENCH_ONLY === 'pack') return packFigures(root);
  need('wrk', 'apt-get install -y wrk');
  need('gcc', 'apt-get install -y gcc');
  mkdirSync(out, { recursive: true });
  const cExt = path.join(out, 'hello_ext.so');
  execFileSync('gcc', ['-O2', '-shared', '-fPIC', '-I', path.join(root, 'native', 'include'), '-o', cExt, path.join(root, 'native', 'host', 'test', 'hello_ext.c')]);
  execFileSync(process.execPath, [path.join(root, 'bin', 'isapi.cjs'), 'pack', 'examples/hello.ts', '--out', out], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [path.join(root, 'bin', 'isapi.cjs'), 'pack', 'examples/express-app.ts', '--out', out], { cwd: root, stdio: 'inherit' });
  // (f) and (g): the same PREPROC_HEADERS filter in C and in TypeScript, and an extension that
  // shows the header it added (to check each filter host really filters).
  const cFilter = path.join(out, 'preproc_bench_filter.so');
  execFileSync('gcc', ['-O2', '-shared', '-fPIC', '-I', path.join(root, 'native', 'include'), '-o', cFilter, path.join(root, 'native', 'host', 'test', 'preproc_bench_filter.c')]);
  const probeExt = path.join(out, 'ecb_basics_ext.so');
  execFileSync('gcc', ['-O2', '-shared', '-fPIC', '-pthread', '-I', path.join(root, 'native', 'include'), '-o', probeExt, path.join(root, 'native', 'host', 'test', 'ecb_basics_ext.c')]);
  execFileSync(process.execPath, [path.join(root, 'bin', 'isapi.cjs'), 'pack', 'bench/fixtures/preproc-filter.ts', '--out', out], { cwd: root, stdio: 'inherit' });
  // (e): the example's Express app itself on plain Node http, bundled the same way.
  const expressPlain = path.join(out, 'express-plain.cjs');
  await build({
    stdin: {
      contents: `import http from 'node:http';
        import { app } from ${JSON.stringify(path.join(root, 'examples', 'express-app.ts'))};
        const s = http.createServer(app);
        s.keepAliveTimeout = 120000;
        s.listen(0, '127.0.0.1', () => console.log('express listening on ' + s.address().port));`,
      resolveDir: root,
      loader: 'ts',
    },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile: expressPlain,
    alias: { 'node-isapi': path.join(root, 'runtime', 'index.ts') },
    logLevel: 'warning',
  });
  const node = ensureNodeBinary('linux-x64', DEFAULT_NODE_VERSION);

  const host = spawn(hostExe, ['--port', '0', '--vdir', `/c=${cExt}`, '--vdir', `/hello=${path.join(out, 'hello', '_hello.so')}`, '--vdir', `/express-app=${path.join(out, 'express-app', '_express-app.so')}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const hostPort = await listen(host, /listening on http:\/\/[\d.]+:(\d+)\//);
  const plain = spawn(node, ['-e', `
    const http = require('http');
    const body = 'Hello from TypeScript\\n';
    const s = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
    s.keepAliveTimeout = 120000;
    s.listen(0, '127.0.0.1', () => console.log('plain listening on ' + s.address().port));
  `], { stdio: ['ignore', 'pipe', 'pipe'] });
  const plainPort = await listen(plain, /plain listening on (\d+)/);
  const expressProc = spawn(node, [expressPlain], { stdio: ['ignore', 'pipe', 'pipe'] });
  const expressPort = await listen(expressProc, /express listening on (\d+)/);

  const workers = Number(process.env.ISAPI_WORKERS ?? 0) || (await import('node:os')).cpus().length;
  console.log(`\nwrk -t${threads} -c${connections} -d${seconds}s, Node ${DEFAULT_NODE_VERSION}, ${workers} worker(s) for (b) and (d), 1 process for (c) and (e)\n`);
  const a = wrk('(a) host + C extension', `http://127.0.0.1:${hostPort}/c/`, seconds, host.pid);
  const b = wrk('(b) host + packed hello.ts', `http://127.0.0.1:${hostPort}/hello/`, seconds, host.pid);
  const c = wrk('(c) plain Node http', `http://127.0.0.1:${plainPort}/`, seconds, plain.pid);
  const d = wrk('(d) host + packed express-app', `http://127.0.0.1:${hostPort}/express-app/`, seconds, host.pid);
  const e = wrk('(e) Express on plain Node http', `http://127.0.0.1:${expressPort}/`, seconds, expressProc.pid);
  const rss = rssOfChildren(host.pid!);
  const dMem = await transferPeak(`http://127.0.0.1:${hostPort}/express-app`, children(host.pid!).filter((c) => c.comm === 'express-app').map((c) => c.pid));
  const eMem = await transferPeak(`http://127.0.0.1:${expressPort}`, [expressProc.pid!]);
  plain.kill('SIGTERM');
  expressProc.kill('SIGTERM');

  // The filter rows: one host per filter (filters are global to a host), each serving the same
  // C hello extension as (a). Measured one after the other, next to their own baseline.
  const filterExtArgs = ['--vdir', `/c=${cExt}`, '--vdir', `/probe=${probeExt}`];
  const cHost = await startHost(['--filter', cFilter, ...filterExtArgs]);
  const tsHost = await startHost(['--filter', path.join(out, 'preproc-filter', '_preproc-filter.so'), ...filterExtArgs]);
  await expectFilterHeader(cHost.port, 'c', 'C filter');
  await expectFilterHeader(tsHost.port, 'ts', 'TypeScript filter');
  const base = filterSeconds === seconds ? a : wrk('(a) host + C extension, no filter', `http://127.0.0.1:${hostPort}/c/`, filterSeconds);
  const f = wrk('(f) + C PREPROC filter', `http://127.0.0.1:${cHost.port}/c/`, filterSeconds);
  const g = wrk('(g) + TS PREPROC filter', `http://127.0.0.1:${tsHost.port}/c/`, filterSeconds);
  host.kill('SIGTERM');
  cHost.proc.kill('SIGTERM');
  tsHost.proc.kill('SIGTERM');

  const row = (r: Result) =>
    `${r.name.padEnd(30)} ${r.rps.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)} ${r.cpuUs.toFixed(1).padStart(14)}  ${r.errors}`;
  console.log(`${'server'.padEnd(30)} ${'req/s'.padStart(9)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'CPU µs/request'.padStart(14)}`);
  for (const r of [a, b, c, d, e]) console.log(row(r));
  // Throughput ratios, and the same comparison by CPU per request (peer's CPU / ours: 1.0 means
  // the same cost), which holds up better when the machine is busy with other work.
  console.log(`\nb/c = ${(b.rps / c.rps).toFixed(2)}   (goal ≥ 0.7, heading for ≥ 1.0); by CPU per request ${(c.cpuUs / b.cpuUs).toFixed(2)}`);
  console.log(`d/e = ${(d.rps / e.rps).toFixed(2)}   (Express through the bridge vs Express on Node http); by CPU per request ${(e.cpuUs / d.cpuUs).toFixed(2)}`);
  console.log(`b/a = ${(b.rps / a.rps).toFixed(2)}; by CPU per request ${(a.cpuUs / b.cpuUs).toFixed(2)}`);
  console.log(`worker memory after the run: ${rss || 'n/a'}`);
  const mem = (m: { rss: number; anon: number }) => `${m.rss.toFixed(1)} MiB (own ${m.anon.toFixed(1)})`;
  console.log(`\n50 MiB upload + 50 MiB streamed download after the load above, peak resident memory (own = anonymous pages):`);
  console.log(`  (d) Express worker through the bridge: idle ${mem(dMem.idle)}, peak ${mem(dMem.peak)}`);
  console.log(`  (e) Express on plain Node http:        idle ${mem(eMem.idle)}, peak ${mem(eMem.peak)}`);
  console.log(`  d/e peak RSS = ${(dMem.peak.rss / eMem.peak.rss).toFixed(2)}`);

  // What each filter adds to a request, against the baseline of the same duration.
  const plus = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)}`.padStart(9);
  const filterRow = (r: Result, added: boolean) =>
    `${r.name.padEnd(34)} ${r.rps.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)}` +
    `${added ? ` ${plus(r.p50 - base.p50)} ${plus(r.p99 - base.p99)}` : ''.padEnd(20)}  ${r.errors}`;
  console.log(`\nPREPROC_HEADERS filter cost: wrk -t${threads} -c${connections} -d${filterSeconds}s, host + C extension; ${workers} worker(s) for (g)`);
  console.log(`${'server'.padEnd(34)} ${'req/s'.padStart(9)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'+p50 ms'.padStart(9)} ${'+p99 ms'.padStart(9)}`);
  console.log(filterRow(base, false));
  console.log(filterRow(f, true));
  console.log(filterRow(g, true));
  console.log(`added per request vs no filter: C ${plus(f.p50 - base.p50).trim()} ms p50 / ${plus(f.p99 - base.p99).trim()} ms p99, ` +
    `TypeScript ${plus(g.p50 - base.p50).trim()} ms p50 / ${plus(g.p99 - base.p99).trim()} ms p99`);

  await devLoop(root);
  await packFigures(root);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
