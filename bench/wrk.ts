// One wrk run against one server: req/s, latency, and the CPU time the server's processes (the
// server itself and each of its children: a host's workers) spent per request. On a machine
// shared with other work, req/s moves with what else runs; CPU per request much less.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpuSnapshot, cpuUsed, type Proc } from './processes';

export interface WrkOptions {
  seconds: number;
  threads: number;
  connections: number;
}

export interface Result {
  name: string;
  rps: number;
  p50: number;
  p99: number;
  errors: string;
  /** CPU time all the server's processes spent per request, in µs (NaN when not measured). */
  cpuUs: number;
  /** The same per process, the server process first (a host's includes the bridge's threads). */
  processes: Array<Proc & { cpuUs: number }>;
}

function ms(v: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(v)!;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

export function wrk(name: string, url: string, opts: WrkOptions, serverPid?: number): Result {
  // Warm up (this also starts workers that start on their first request), then measure.
  spawnSync('wrk', ['-t1', '-c8', '-d1s', url]);
  const before = serverPid ? cpuSnapshot(serverPid) : undefined;
  const text = execFileSync('wrk', [`-t${opts.threads}`, `-c${opts.connections}`, `-d${opts.seconds}s`, '--latency', url], { encoding: 'utf8' });
  const used = before ? cpuUsed(before, cpuSnapshot(serverPid!)) : [];
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? NaN);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)![1]);
  const p50 = ms(/\s50%\s+(\S+)/.exec(text)![1]!);
  const p99 = ms(/\s99%\s+(\S+)/.exec(text)![1]!);
  const errors = [/Socket errors:.*/.exec(text)?.[0], /Non-2xx or 3xx responses: \d+/.exec(text)?.[0]].filter(Boolean).join('; ');
  const processes = used.map((p) => ({ pid: p.pid, comm: p.comm, cpuUs: (p.seconds / requests) * 1e6 }));
  const cpuUs = before ? processes.reduce((sum, p) => sum + (Number.isNaN(p.cpuUs) ? 0 : p.cpuUs), 0) : NaN;
  return { name, rps, p50, p99, errors, cpuUs, processes };
}

/**
 * The per-process CPU table: the server process, each worker named `workerComm` on its own, and
 * the host's other children (idle workers of other applications) together when they used any.
 */
export function printCpuByProcess(rows: Array<{ result: Result; workerComm?: string }>): void {
  console.log(`\nCPU µs/request by process (a host's own includes the bridge's threads; each worker separately)`);
  console.log(`${'server'.padEnd(30)} ${'total'.padStart(8)} ${'server'.padStart(8)}  workers`);
  for (const { result: r, workerComm } of rows) {
    const [server, ...rest] = r.processes;
    const workers = rest.filter((p) => workerComm && p.comm === workerComm);
    const other = rest.filter((p) => !workers.includes(p)).reduce((sum, p) => sum + (Number.isNaN(p.cpuUs) ? 0 : p.cpuUs), 0);
    const each = workers.map((p) => (Number.isNaN(p.cpuUs) ? `(pid ${p.pid} ended)` : `${p.cpuUs.toFixed(1)} (pid ${p.pid})`));
    const parts = [each.length ? `${workerComm} ${each.join(' + ')}` : '', other >= 0.05 ? `other children ${other.toFixed(1)}` : ''];
    const text = parts.filter(Boolean).join('; ') || '-';
    console.log(`${r.name.padEnd(30)} ${r.cpuUs.toFixed(1).padStart(8)} ${(server?.cpuUs ?? NaN).toFixed(1).padStart(8)}  ${text}`);
  }
}
