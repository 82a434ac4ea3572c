// What the bench reads about the servers' processes from /proc: their children (a host's
// workers), the CPU time each has used, and their resident memory now and at its peak.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat's utime and stime. */
const clockTicks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

export interface Proc {
  pid: number;
  /** The command name (a worker's is its executable's name, e.g. `express-app`). */
  comm: string;
}

/** The direct children of a process (a host's workers), with their command names. */
export function children(pid: number): Proc[] {
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

/** CPU seconds (user + system) a process has used so far, all its threads included; NaN once it is gone. */
function cpuSeconds(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return NaN;
  }
}

/** The CPU seconds of a server process and of each of its children at one moment. */
export type CpuSnapshot = Map<number, Proc & { seconds: number }>;

export function cpuSnapshot(pid: number): CpuSnapshot {
  const self = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  const snap: CpuSnapshot = new Map();
  for (const p of [{ pid, comm: self }, ...children(pid)]) snap.set(p.pid, { ...p, seconds: cpuSeconds(p.pid) });
  return snap;
}

/**
 * The CPU seconds each process used between two snapshots, the server process first. A worker
 * started in between counts from zero; one that ended in between is lost (it shows as NaN).
 */
export function cpuUsed(before: CpuSnapshot, after: CpuSnapshot): Array<Proc & { seconds: number }> {
  const pids = [...new Set([...before.keys(), ...after.keys()])];
  return pids.map((pid) => {
    const p = (after.get(pid) ?? before.get(pid))!;
    return { pid, comm: p.comm, seconds: (after.get(pid)?.seconds ?? NaN) - (before.get(pid)?.seconds ?? 0) };
  });
}

/** Resident memory in MiB: all of it (RSS) and the process's own part (anonymous pages). */
export function memory(pid: number): { rss: number; anon: number } {
  try {
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0);
    return { rss: kib('Rss') / 1024, anon: kib('Anonymous') / 1024 };
  } catch {
    return { rss: 0, anon: 0 };
  }
}

function statusMiB(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) / 1024;
}

/**
 * Starts a fresh peak-RSS window for a process: the kernel's high-water mark (VmHWM) is reset to
 * the current RSS (`5` in clear_refs), so no sampling can miss a short peak. Returns the RSS now.
 */
export function resetPeakRss(pid: number): number {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
  return statusMiB(pid, 'VmRSS');
}

/** The peak RSS in MiB since the last resetPeakRss(). */
export function peakRss(pid: number): number {
  return statusMiB(pid, 'VmHWM');
}
