// Helpers of the tests that use node-isapi as its users get it: the `npm pack` tarball installed
// into a fresh project outside the repository, with no compiler on the PATH.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { root, waitFor } from './helpers';

/** npm's cache for these tests: kept between runs (build/ is not in git), so installs are fast. */
export const npmCache = path.join(root, 'build', 'test-npm-cache');

export interface Tarball {
  file: string;
  bytes: number;
  /** Paths inside the package (without the leading "package/"). */
  files: string[];
  packMs: number;
}

/** `npm pack` of the repository (its prepack: scripts/release.ts builds and checks everything). */
export function packPackage(dest: string): Tarball {
  mkdirSync(dest, { recursive: true });
  const started = Date.now();
  const r = spawnSync('npm', ['pack', '--pack-destination', dest, '--json', '--foreground-scripts'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    env: { ...process.env, ISAPI_SANITIZE: '' },
  });
  const packMs = Date.now() - started;
  if (r.status !== 0) throw new Error(`npm pack failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  // The JSON report is the last thing on stdout; the release script's lines come before it.
  const json = r.stdout.slice(r.stdout.lastIndexOf('[\n  {'));
  const [report] = JSON.parse(json) as Array<{ filename: string; size: number; files: Array<{ path: string }> }>;
  const file = path.join(dest, report!.filename);
  return { file, bytes: statSync(file).size, files: report!.files.map((f) => f.path), packMs };
}

/** Files per top-level entry, for the figures the tests print. */
export function fileSummary(files: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of files) {
    const top = f.includes('/') ? `${f.split('/')[0]}/` : f;
    out[top] = (out[top] ?? 0) + 1;
  }
  return out;
}

// What a build machine without a compiler has: Node, npm and a POSIX shell with its basics.
// Wine's launchers are added for the Windows side (isapi serve --wine runs it).
const BASICS = ['node', 'npm', 'npx', 'sh', 'bash', 'env', 'tar', 'gzip', 'uname', 'cat', 'rm', 'mkdir', 'ls', 'ps', 'script', 'wine', 'wineserver'];
const COMPILERS = ['cmake', 'g++', 'gcc', 'cc', 'c++', 'make', 'x86_64-w64-mingw32-g++', 'x86_64-w64-mingw32-gcc', 'x86_64-w64-mingw32-g++-posix', 'i686-w64-mingw32-g++'];

function which(name: string, pathVar: string): string | undefined {
  for (const dir of pathVar.split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      if (statSync(file).isFile()) return file;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * A PATH of one folder holding links to BASICS only, and proof that no compiler is reachable
 * through it: `command -v` in its shell finds none of COMPILERS.
 */
export function compilerFreePath(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-nocc-bin-'));
  for (const name of BASICS) {
    const file = which(name, process.env.PATH ?? '');
    if (file) symlinkSync(file, path.join(dir, name));
  }
  // node itself: the one running the tests (it may not be on the PATH by that name).
  if (!which('node', dir)) symlinkSync(process.execPath, path.join(dir, 'node'));
  const found = spawnSync(path.join(dir, 'sh'), ['-c', COMPILERS.map((c) => `command -v ${c}`).join('; ') + '; true'], {
    encoding: 'utf8',
    env: { PATH: dir },
  });
  if (found.stdout.trim()) throw new Error(`compilers still reachable through ${dir}: ${found.stdout.trim()}`);
  return dir;
}

/** The environment of a command run in the fresh project: only that PATH, a private HOME for npm. */
export function projectEnv(pathDir: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const keep = ['HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'ISAPI_CACHE_DIR', 'XDG_CACHE_HOME', 'npm_config_registry'];
  const env: NodeJS.ProcessEnv = { PATH: pathDir, npm_config_cache: npmCache, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
  for (const k of keep) if (process.env[k] !== undefined) env[k] = process.env[k];
  return { ...env, ...extra };
}

export interface Run {
  code: number | null;
  output: string;
  ms: number;
}

/** Runs a command to its end; output is stdout and stderr together. */
export function run(command: string, args: string[], o: SpawnOptions & { timeoutMs?: number }): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    const p = spawn(command, args, { ...o, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    p.stdout!.on('data', (d) => (output += d));
    p.stderr!.on('data', (d) => (output += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 300_000);
    p.once('error', (e) => (output += `\n${e.message}`));
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: Date.now() - started });
    });
  });
}

export async function mustRun(command: string, args: string[], o: SpawnOptions & { timeoutMs?: number }): Promise<Run> {
  const r = await run(command, args, o);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.code}):\n${r.output}`);
  return r;
}

/** A fresh project folder under the system temp folder, with its package.json. */
export function freshProject(label: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `isapi-${label}-`));
  writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify({ name: label, private: true, type: 'module' }, null, 2)}\n`);
  return dir;
}

/** Size of a folder's files, in bytes. */
export function folderBytes(dir: string): number {
  return readdirSync(dir, { withFileTypes: true }).reduce(
    (n, e) => n + (e.isDirectory() ? folderBytes(path.join(dir, e.name)) : e.isFile() ? statSync(path.join(dir, e.name)).size : 0),
    0,
  );
}

export const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

export interface Served {
  proc: ChildProcess;
  port: number;
  output: () => string;
  stop: () => Promise<void>;
}

/**
 * A long-running `isapi serve …` (or anything that prints isapi-host's "listening on" line),
 * resolved once the host listens.
 */
export async function startServing(proc: ChildProcess, what: string, timeoutMs = 120_000): Promise<Served> {
  let out = '';
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => (out += d));
  let exited = false;
  proc.once('exit', () => (exited = true));
  const port = await waitFor(
    () => {
      if (exited) throw new Error(`${what} exited before listening:\n${out}`);
      const m = /isapi-host listening on http:\/\/[\d.]+:(\d+)\//.exec(out);
      return m ? Number(m[1]) : 0;
    },
    `${what} to listen`,
    timeoutMs,
  ).catch((e: Error) => {
    proc.kill('SIGKILL');
    throw new Error(`${e.message}\n${out}`);
  });
  const stop = async () => {
    if (exited) return;
    proc.kill('SIGTERM');
    await waitFor(() => exited, `${what} to stop`, 20_000).catch(() => proc.kill('SIGKILL'));
  };
  return { proc, port, output: () => out, stop };
}

export function removeAll(...dirs: string[]): void {
  for (const d of dirs) if (d) rmSync(d, { recursive: true, force: true });
}
