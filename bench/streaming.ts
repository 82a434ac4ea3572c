// Streaming through Express (issue 17, goal 5): a large streamed download and a large upload
// through the bridge (the packed examples/express-app.ts on the host) and through the same app on
// plain Node http, with curl as the client, and the worker's peak resident memory meanwhile.
// The example's routes: GET /download?mib=N makes N MiB on the fly (chunked, no Content-Length);
// POST /upload counts and SHA-256-hashes the body as it arrives and answers {bytes}. Both servers
// run the same route code, so the ratio is what the bridge costs (the hash bounds both uploads).
// Each transfer runs BENCH_STREAM_RUNS times (default 2), alternating the servers; the best
// counts. Sizes: BENCH_DOWNLOAD_MIB (default 1024), BENCH_UPLOAD_MIB (default 512).
import { execFile } from 'node:child_process';
import { closeSync, openSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { peakRss, resetPeakRss } from './processes';

const run = promisify(execFile);
const MiB = 1 << 20;

export interface StreamServer {
  name: string;
  /** The app's base URL, e.g. http://127.0.0.1:8080/express-app */
  base: string;
  /** The processes running the app's code (a host's workers for it, or plain Node itself). */
  pids: () => number[];
}

export interface StreamFigures {
  downloadGBs: number;
  uploadGBs: number;
  /** Per kind of transfer: the largest growth of any of the server's app processes over its RSS before it, in MiB. */
  downloadRss: { idle: number; peak: number; growth: number };
  uploadRss: { idle: number; peak: number; growth: number };
}

function sizeMiB(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  // The example's route shifts MiB into bytes as a 32-bit integer.
  if (!Number.isInteger(v) || v < 1 || v > 2047) throw new Error(`bench: ${name} must be a whole number of MiB from 1 to 2047 (got ${process.env[name]})`);
  return v;
}

/** A file of `mib` MiB to upload, made once under `dir` (curl streams it from the page cache). */
function uploadFile(dir: string, mib: number): string {
  const file = path.join(dir, `upload-${mib}MiB.bin`);
  try {
    if (statSync(file).size === mib * MiB) return file;
  } catch {}
  const piece = Buffer.alloc(MiB);
  for (let i = 0; i < piece.length; i++) piece[i] = (i * 7) % 251;
  const fd = openSync(file, 'w');
  try {
    for (let i = 0; i < mib; i++) writeSync(fd, piece);
  } finally {
    closeSync(fd);
  }
  return file;
}

/** curl's figures, printed by -w on the last line of its output: bytes moved and seconds taken. */
function curlFigures(stdout: string): { bytes: number; seconds: number; body: string } {
  const lines = stdout.trimEnd().split('\n');
  const [bytes, seconds] = lines.pop()!.trim().split(' ').map(Number);
  return { bytes: bytes!, seconds: seconds!, body: lines.join('\n') };
}

async function download(base: string, mib: number): Promise<number> {
  const url = `${base}/download?mib=${mib}`;
  const { stdout } = await run('curl', ['-sS', '--fail', '-o', '/dev/null', '-w', '\n%{size_download} %{time_total}', url]);
  const { bytes, seconds } = curlFigures(stdout);
  if (bytes !== mib * MiB) throw new Error(`bench: ${url} sent ${bytes} bytes, not ${mib * MiB}`);
  return bytes / seconds / 1e9;
}

async function upload(base: string, file: string, mib: number): Promise<number> {
  const url = `${base}/upload`;
  // -T streams the file with a Content-Length; no Expect: 100-continue round trip.
  const args = ['-sS', '--fail', '-T', file, '-X', 'POST', '-H', 'Expect:', '-H', 'Content-Type: application/octet-stream'];
  const { stdout } = await run('curl', [...args, '-w', '\n%{size_upload} %{time_total}', url], { maxBuffer: MiB });
  const { bytes, seconds, body } = curlFigures(stdout);
  const received = (JSON.parse(body) as { bytes: number }).bytes;
  if (bytes !== mib * MiB || received !== mib * MiB) throw new Error(`bench: ${url}: curl sent ${bytes} bytes, the app received ${received}, not ${mib * MiB}`);
  return bytes / seconds / 1e9;
}

/**
 * Runs `transfer` `runs` times on each server in turn, inside one peak-RSS window per server, and
 * returns per server the best GB/s and the largest RSS growth of its app processes.
 */
async function measure(servers: StreamServer[], runs: number, transfer: (base: string) => Promise<number>) {
  const windows = servers.map((s) => {
    const pids = s.pids();
    if (pids.length === 0) throw new Error(`bench: ${s.name} has no process running the app to measure`);
    return pids.map((pid) => ({ pid, idle: resetPeakRss(pid) }));
  });
  const best = servers.map(() => 0);
  for (let i = 0; i < runs; i++) {
    for (const [k, s] of servers.entries()) best[k] = Math.max(best[k]!, await transfer(s.base));
  }
  return servers.map((_, k) => {
    const grown = windows[k]!.map((w) => ({ idle: w.idle, peak: peakRss(w.pid) })).map((m) => ({ ...m, growth: m.peak - m.idle }));
    const worst = grown.reduce((a, b) => (b.growth > a.growth ? b : a), { idle: NaN, peak: NaN, growth: -Infinity });
    return { gbs: best[k]!, rss: worst };
  });
}

export async function streaming(servers: StreamServer[], dir: string): Promise<{ downloadMiB: number; uploadMiB: number; figures: StreamFigures[] }> {
  const downloadMiB = sizeMiB('BENCH_DOWNLOAD_MIB', 1024);
  const uploadMiB = sizeMiB('BENCH_UPLOAD_MIB', 512);
  const runs = Number(process.env.BENCH_STREAM_RUNS ?? 2);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`bench: BENCH_STREAM_RUNS must be a whole number ≥ 1 (got ${process.env.BENCH_STREAM_RUNS})`);
  const file = uploadFile(dir, uploadMiB);
  const down = await measure(servers, runs, (base) => download(base, downloadMiB));
  const up = await measure(servers, runs, (base) => upload(base, file, uploadMiB));
  const figures = servers.map((_, k) => ({ downloadGBs: down[k]!.gbs, uploadGBs: up[k]!.gbs, downloadRss: down[k]!.rss, uploadRss: up[k]!.rss }));
  return { downloadMiB, uploadMiB, figures };
}

export function printStreaming(servers: StreamServer[], r: Awaited<ReturnType<typeof streaming>>): void {
  const runs = Number(process.env.BENCH_STREAM_RUNS ?? 2);
  const size = (mib: number) => (mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`);
  console.log(`\nStreaming through Express, curl, best of ${runs}: ${size(r.downloadMiB)} streamed download, ${size(r.uploadMiB)} upload`);
  console.log(`(RSS: of the app's processes, the one that grew most: before → peak during the transfers (+growth), MiB)`);
  console.log(`${'server'.padEnd(34)} ${'download GB/s'.padStart(13)} ${'upload GB/s'.padStart(12)}   ${'RSS download'.padEnd(20)} RSS upload`);
  const rss = (m: { idle: number; peak: number; growth: number }) => `${m.idle.toFixed(0)} → ${m.peak.toFixed(0)} (+${m.growth.toFixed(0)})`;
  for (const [k, s] of servers.entries()) {
    const f = r.figures[k]!;
    console.log(`${s.name.padEnd(34)} ${f.downloadGBs.toFixed(2).padStart(13)} ${f.uploadGBs.toFixed(2).padStart(12)}   ${rss(f.downloadRss).padEnd(20)} ${rss(f.uploadRss)}`);
  }
  const [a, b] = r.figures;
  if (a && b) console.log(`${'ratio'.padEnd(34)} ${(a.downloadGBs / b.downloadGBs).toFixed(2).padStart(13)} ${(a.uploadGBs / b.uploadGBs).toFixed(2).padStart(12)}`);
}
