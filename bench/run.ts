// npm run bench: wrk against several servers with the same load, in one run, printed as ratios
// of throughput and of CPU time per request, in total and per process (a host's own, which
// includes the bridge's threads, and each worker's):
//   (a) isapi-host + a C hello extension          — the host's own ceiling
//   (b) isapi-host + the packed examples/hello.ts  — what users get
//   (c) plain Node http hello, same Node version   — the peer we must match
//   (d) isapi-host + the packed examples/express-app.ts (its hello route) — an ordinary app through the bridge
//   (e) the same Express app on plain Node http, same Node version
// then streaming through (d) and (e): a 1 GiB streamed download and a 512 MiB upload with curl,
// in GB/s, and the worker's peak memory meanwhile (bench/streaming.ts; BENCH_STREAM=0 skips it),
// and what a PREPROC_HEADERS filter adds per request, on the host + C hello extension of (a):
//   (f) + a C filter that adds one request header (native/host/test/preproc_bench_filter.c)
//   (g) + the same filter in TypeScript, packed (bench/fixtures/preproc-filter.ts)
// then the goals of issue 17 as measured ratios against their bars (bench/goals.ts), the
// development loop: save → first response of the new code under `isapi dev` (bench/dev_loop.ts;
// BENCH_ONLY=dev runs only that), and, last, the packed folder of hello on linux-x64 and win-x64:
// its size next to Node's own and the warm pack time (bench/pack_figures.ts; BENCH_ONLY=pack).
// BENCH_ONLY=servers runs everything but those two.
// Filter rows run BENCH_FILTER_SECONDS (default 5, at most BENCH_SECONDS) each, against a
// baseline measured with that same duration next to them (row (a) itself when they match).
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_NODE_VERSION, ensureNodeBinary } from '../packer/node_binary';
import { devLoop } from './dev_loop';
import { printGoals } from './goals';
import { packFigures } from './pack_figures';
import { prepare } from './prepare';
import { children, memory } from './processes';
import { plainHello, startHost, startNode } from './servers';
import { printStreaming, streaming, type StreamServer } from './streaming';
import { printCpuByProcess, wrk, type Result, type WrkOptions } from './wrk';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'build', 'bench');
const hostExe = path.join(root, 'build', 'native', 'linux-x64', 'out', 'isapi-host');
const seconds = Number(process.env.BENCH_SECONDS ?? 10);
const filterSeconds = Math.min(seconds, Number(process.env.BENCH_FILTER_SECONDS ?? 5));
const load: WrkOptions = { seconds, threads: 2, connections: Number(process.env.BENCH_CONNECTIONS ?? 64) };

function need(cmd: string, hint: string) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    console.error(`bench: ${cmd} is not installed (${hint})`);
    process.exit(1);
  }
}

/** Checks that a filter host's filter really ran: the probe extension reports the header it added. */
async function expectFilterHeader(port: number, value: string, what: string): Promise<void> {
  const text = await (await fetch(`http://127.0.0.1:${port}/probe/vars?name=HTTP_X_BENCH_FILTER`)).text();
  if (!text.includes(`ok: ${value}`)) throw new Error(`bench: the ${what} did not add X-Bench-Filter (probe said: ${text.trim()})`);
}

function rssOfChildren(pid: number): string {
  return children(pid)
    .map((c) => `${c.comm} pid ${c.pid}: ${memory(c.pid).rss.toFixed(1)} MiB`)
    .join(', ');
}

const row = (r: Result) =>
  `${r.name.padEnd(30)} ${r.rps.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)} ${r.cpuUs.toFixed(1).padStart(14)}  ${r.errors}`;

async function main() {
  // BENCH_ONLY=dev: only the development loop's figure (a few seconds, no wrk).
  if (process.env.BENCH_ONLY === 'dev') return devLoop(root);
  // BENCH_ONLY=pack: only the packed folder's size and the warm pack time (seconds, no wrk).
  if (process.env.BENCH_ONLY === 'pack') return packFigures(root);
  need('wrk', 'apt-get install -y wrk');
  need('gcc', 'apt-get install -y gcc');
  need('curl', 'apt-get install -y curl');
  const built = await prepare(root, out);
  const node = ensureNodeBinary('linux-x64', DEFAULT_NODE_VERSION);

  const host = await startHost(hostExe, ['--vdir', `/c=${built.cExt}`, '--vdir', `/hello=${built.helloDll}`, '--vdir', `/express-app=${built.expressDll}`]);
  const plain = await startNode(node, ['-e', plainHello]);
  const express = await startNode(node, [built.expressPlain]);

  const workers = Number(process.env.ISAPI_WORKERS ?? 0) || (await import('node:os')).cpus().length;
  console.log(`\nwrk -t${load.threads} -c${load.connections} -d${seconds}s, Node ${DEFAULT_NODE_VERSION}, ${workers} worker(s) for (b) and (d), 1 process for (c) and (e)\n`);
  const hostUrl = `http://127.0.0.1:${host.port}`;
  const a = wrk('(a) host + C extension', `${hostUrl}/c/`, load, host.pid);
  const b = wrk('(b) host + packed hello.ts', `${hostUrl}/hello/`, load, host.pid);
  const c = wrk('(c) plain Node http', `http://127.0.0.1:${plain.port}/`, load, plain.pid);
  const d = wrk('(d) host + packed express-app', `${hostUrl}/express-app/`, load, host.pid);
  const e = wrk('(e) Express on plain Node http', `http://127.0.0.1:${express.port}/`, load, express.pid);
  const rss = rssOfChildren(host.pid);
  const streamServers: StreamServer[] = [
    { name: '(d) Express through the bridge', base: `${hostUrl}/express-app`, pids: () => children(host.pid).filter((p) => p.comm === 'express-app').map((p) => p.pid) },
    { name: '(e) Express on plain Node http', base: `http://127.0.0.1:${express.port}`, pids: () => [express.pid] },
  ];
  const stream = process.env.BENCH_STREAM === '0' ? undefined : await streaming(streamServers, out);
  plain.proc.kill('SIGTERM');
  express.proc.kill('SIGTERM');

  // The filter rows: one host per filter (filters are global to a host), each serving the same
  // C hello extension as (a). Measured one after the other, next to their own baseline.
  const filterExtArgs = ['--vdir', `/c=${built.cExt}`, '--vdir', `/probe=${built.probeExt}`];
  const cHost = await startHost(hostExe, ['--filter', built.cFilter, ...filterExtArgs]);
  const tsHost = await startHost(hostExe, ['--filter', built.tsFilterDll, ...filterExtArgs]);
  await expectFilterHeader(cHost.port, 'c', 'C filter');
  await expectFilterHeader(tsHost.port, 'ts', 'TypeScript filter');
  const filterLoad = { ...load, seconds: filterSeconds };
  const base = filterSeconds === seconds ? a : wrk('(a) host + C extension, no filter', `${hostUrl}/c/`, filterLoad);
  const f = wrk('(f) + C PREPROC filter', `http://127.0.0.1:${cHost.port}/c/`, filterLoad);
  const g = wrk('(g) + TS PREPROC filter', `http://127.0.0.1:${tsHost.port}/c/`, filterLoad);
  host.proc.kill('SIGTERM');
  cHost.proc.kill('SIGTERM');
  tsHost.proc.kill('SIGTERM');

  console.log(`${'server'.padEnd(30)} ${'req/s'.padStart(9)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'CPU µs/request'.padStart(14)}`);
  for (const r of [a, b, c, d, e]) console.log(row(r));
  printCpuByProcess([{ result: a }, { result: b, workerComm: 'hello' }, { result: c }, { result: d, workerComm: 'express-app' }, { result: e }]);
  // Throughput ratios, and the same comparison by CPU per request (peer's CPU / ours: 1.0 means
  // the same cost), which holds up better when the machine is busy with other work.
  console.log(`\nb/c = ${(b.rps / c.rps).toFixed(2)}; by CPU per request ${(c.cpuUs / b.cpuUs).toFixed(2)}`);
  console.log(`d/e = ${(d.rps / e.rps).toFixed(2)}   (Express through the bridge vs Express on Node http); by CPU per request ${(e.cpuUs / d.cpuUs).toFixed(2)}`);
  console.log(`b/a = ${(b.rps / a.rps).toFixed(2)}; by CPU per request ${(a.cpuUs / b.cpuUs).toFixed(2)}`);
  console.log(`worker memory after the run: ${rss || 'n/a'}`);
  if (stream) printStreaming(streamServers, stream);

  // What each filter adds to a request, against the baseline of the same duration.
  const plus = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(2)}`.padStart(9);
  const filterRow = (r: Result, added: boolean) =>
    `${r.name.padEnd(34)} ${r.rps.toFixed(0).padStart(9)} ${r.p50.toFixed(2).padStart(9)} ${r.p99.toFixed(2).padStart(9)}` +
    `${added ? ` ${plus(r.p50 - base.p50)} ${plus(r.p99 - base.p99)}` : ''.padEnd(20)}  ${r.errors}`;
  console.log(`\nPREPROC_HEADERS filter cost: wrk -t${load.threads} -c${load.connections} -d${filterSeconds}s, host + C extension; ${workers} worker(s) for (g)`);
  console.log(`${'server'.padEnd(34)} ${'req/s'.padStart(9)} ${'p50 ms'.padStart(9)} ${'p99 ms'.padStart(9)} ${'+p50 ms'.padStart(9)} ${'+p99 ms'.padStart(9)}`);
  console.log(filterRow(base, false));
  console.log(filterRow(f, true));
  console.log(filterRow(g, true));
  console.log(`added per request vs no filter: C ${plus(f.p50 - base.p50).trim()} ms p50 / ${plus(f.p99 - base.p99).trim()} ms p99, ` +
    `TypeScript ${plus(g.p50 - base.p50).trim()} ms p50 / ${plus(g.p99 - base.p99).trim()} ms p99`);

  const [bridgeStream, plainStream] = stream?.figures ?? [];
  printGoals({ a, b, c, d, e, base, f, g, stream: bridgeStream && plainStream ? { bridge: bridgeStream, plain: plainStream } : undefined });

  // BENCH_ONLY=servers: stop here (the figures the native code moves, without the dev loop and pack).
  if (process.env.BENCH_ONLY === 'servers') return;
  await devLoop(root);
  await packFigures(root);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
