// Running the Windows artifacts (isapi-host.exe, install.exe, the workers) on Linux under Wine,
// for `isapi serve --wine` and the Wine test suite.
//
// What Wine needs, learnt the hard way (see docs/toolchain.md):
// - A private prefix (WINEPREFIX) per user or per test run. A new prefix says "Windows 7",
//   which Node 22 refuses: `winecfg -v win10` runs once per prefix; a marker file remembers it.
// - WINEDEBUG=-all, or Wine's diagnostics drown the program's output.
// - Node under Wine cannot write to a pipe (EBADF): its stdout and stderr go to a file or a pty.
//   isapi-host.exe (C++) writes to pipes fine.
// - Windows paths: Wine maps drive Z: to the Linux root, so /a/b is Z:\a\b.
// - Cleanup: `wineserver -k` ends every process of a prefix (tests use one prefix each).
import { spawn, spawnSync, type ChildProcess, type StdioOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cacheDir } from './paths';
import type { HostCommand } from './serve';
import { UserError } from './user_error';

export interface WineTools {
  wine: string;
  wineserver: string;
}

const MARKER = '.node-isapi-win10';

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
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

/** wine and wineserver, or undefined when Wine is not installed. */
export function findWine(): WineTools | undefined {
  // The 64-bit loader first: with wine32 installed, plain `wine` is the 32-bit loader, which
  // fails ("could not load kernel32.dll") in a prefix made before wine32 was installed. Every
  // program run here is x64.
  const wine = process.env.ISAPI_WINE || onPath('wine64') || ['/usr/lib/wine/wine64'].find((f) => existsSync(f)) || onPath('wine');
  if (!wine) return undefined;
  const wineserver =
    process.env.ISAPI_WINESERVER || onPath('wineserver') || ['/usr/lib/wine/wineserver64', '/usr/lib/wine/wineserver'].find((f) => existsSync(f));
  if (!wineserver) return undefined;
  return { wine, wineserver };
}

export function requireWine(): WineTools {
  const tools = findWine();
  if (!tools) {
    throw new UserError(
      'Wine is not installed, and --wine runs Windows programs with it: apt-get install -y wine64 wine ' +
        '(Debian/Ubuntu; Wine 8 is tested), or run the folder on Windows',
    );
  }
  return tools;
}

/** The prefix `isapi serve --wine` uses: $ISAPI_WINEPREFIX, else one in the per-user cache. */
export function defaultWinePrefix(): string {
  return process.env.ISAPI_WINEPREFIX || path.join(cacheDir(), 'wine-prefix');
}

/** A fresh private prefix under the system temp folder (tests: one per suite). */
export function temporaryWinePrefix(label = 'wine'): string {
  return mkdtempSync(path.join(os.tmpdir(), `isapi-${label}-`));
}

/** The environment Wine programs run with: the caller's, plus the prefix and quiet Wine. */
export function wineEnv(prefix: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const base = { ...process.env, ...extra };
  // Wine turns the Linux command line into UTF-16 with the locale's character set: under the C
  // locale a path such as …/fü/… arrives as "fÃ¼". Paths here are UTF-8, so say so.
  const locale = base.LC_ALL || base.LC_CTYPE || base.LANG || '';
  const utf8 = /utf-?8/i.test(locale) ? {} : { LC_ALL: undefined, LC_CTYPE: 'C.UTF-8' };
  return {
    ...base,
    ...utf8,
    WINEPREFIX: prefix,
    WINEDEBUG: '-all',
    // No Mono/Gecko installer prompts when the prefix is created (nothing here needs them);
    // a caller's own overrides come after.
    WINEDLLOVERRIDES: ['mscoree,mshtml=', extra.WINEDLLOVERRIDES].filter(Boolean).join(';'),
  };
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Makes `prefix` ready: created if needed, reporting Windows 10 (Node 22 refuses Windows 7).
 * Done once per prefix (a marker file remembers it); concurrent callers wait for the first.
 */
export function ensureWinePrefix(prefix: string, log: (line: string) => void = () => {}): void {
  if (existsSync(path.join(prefix, MARKER))) return;
  const tools = requireWine();
  mkdirSync(path.dirname(prefix), { recursive: true });
  const lock = `${prefix}.lock`;
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (existsSync(path.join(prefix, MARKER))) return;
      // Another process is preparing it; a lock older than two minutes is left over from a crash.
      try {
        if (Date.now() - statSync(lock).mtimeMs > 120_000) rmSync(lock, { recursive: true, force: true });
      } catch {
        // gone meanwhile
      }
      if (Date.now() - started > 180_000) throw new UserError(`timed out waiting for ${lock} (remove it if no other isapi is running)`);
      sleepSync(250);
    }
  }
  try {
    if (existsSync(path.join(prefix, MARKER))) return;
    log(`preparing the Wine prefix ${prefix} (once; takes a few seconds)`);
    mkdirSync(prefix, { recursive: true });
    const env = wineEnv(prefix);
    const r = spawnSync(tools.wine, ['winecfg', '-v', 'win10'], { env, stdio: 'ignore', timeout: 180_000 });
    if (r.status !== 0) {
      throw new UserError(`\`wine winecfg -v win10\` failed in ${prefix} (${r.error?.message ?? `exit code ${r.status}`}): check that Wine runs (wine --version)`);
    }
    // The registry reaches the disk when the prefix's wineserver exits.
    spawnSync(tools.wineserver, ['-w'], { env, stdio: 'ignore', timeout: 60_000 });
    writeFileSync(path.join(prefix, MARKER), 'winecfg -v win10\n');
    log(`prepared the Wine prefix in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** /a/b → Z:\a\b (Wine's Z: drive is the Linux root). Relative paths are made absolute first. */
export function toWinePath(p: string): string {
  return 'Z:' + path.resolve(p).split('/').join('\\');
}

export function isWindowsPath(p: string): boolean {
  return /^[A-Za-z]:[\\/]/.test(p) || p.startsWith('\\\\');
}

/** Z:\a\b → /a/b; other drives through the prefix's dosdevices links (C: → <prefix>/drive_c). */
export function fromWinePath(p: string, prefix?: string): string {
  const m = /^([A-Za-z]):[\\/]?(.*)$/.exec(p);
  if (!m) return p;
  const rest = m[2]!.split(/[\\/]+/).filter(Boolean);
  const drive = m[1]!.toLowerCase();
  let base = '/';
  if (drive !== 'z') {
    if (!prefix) throw new UserError(`${p}: a Windows path on drive ${drive.toUpperCase()}: needs the Wine prefix to be translated`);
    const link = path.join(prefix, 'dosdevices', `${drive}:`);
    base = path.resolve(path.dirname(link), readlinkSync(link));
  }
  return path.join(base, ...rest);
}

export interface WineRunOptions {
  prefix: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/**
 * Runs a Windows program to completion. stdout and stderr go through files, so this works for
 * Node programs (install.exe, workers) too.
 */
export function runWine(exe: string, args: string[], o: WineRunOptions): { code: number | null; stdout: string; stderr: string } {
  const tools = requireWine();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-wine-run-'));
  try {
    const outFile = path.join(dir, 'stdout');
    const errFile = path.join(dir, 'stderr');
    writeFileSync(outFile, '');
    writeFileSync(errFile, '');
    // Shell redirection gives the program regular files as its standard handles.
    const r = spawnSync('sh', ['-c', 'exec "$@" >"$ISAPI_OUT" 2>"$ISAPI_ERR" </dev/null', 'sh', tools.wine, exe, ...args], {
      cwd: o.cwd,
      env: { ...wineEnv(o.prefix, o.env), ISAPI_OUT: outFile, ISAPI_ERR: errFile },
      stdio: 'ignore',
      timeout: o.timeoutMs ?? 120_000,
    });
    return {
      code: r.status,
      stdout: readFileSync(outFile, 'utf8').replace(/\r\n/g, '\n'),
      stderr: readFileSync(errFile, 'utf8').replace(/\r\n/g, '\n') + (r.error ? `\n${r.error.message}` : ''),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** runWine without blocking the event loop (test runners and servers keep answering meanwhile). */
export function runWineAsync(exe: string, args: string[], o: WineRunOptions): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const tools = requireWine();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-wine-run-'));
  const outFile = path.join(dir, 'stdout');
  const errFile = path.join(dir, 'stderr');
  writeFileSync(outFile, '');
  writeFileSync(errFile, '');
  return new Promise((resolve) => {
    const p = spawn('sh', ['-c', 'exec "$@" >"$ISAPI_OUT" 2>"$ISAPI_ERR" </dev/null', 'sh', tools.wine, exe, ...args], {
      cwd: o.cwd,
      env: { ...wineEnv(o.prefix, o.env), ISAPI_OUT: outFile, ISAPI_ERR: errFile },
      stdio: 'ignore',
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    const done = (code: number | null, error?: Error) => {
      clearTimeout(timer);
      const result = {
        code,
        stdout: readFileSync(outFile, 'utf8').replace(/\r\n/g, '\n'),
        stderr: readFileSync(errFile, 'utf8').replace(/\r\n/g, '\n') + (error ? `\n${error.message}` : ''),
      };
      rmSync(dir, { recursive: true, force: true });
      resolve(result);
    };
    p.once('error', (e) => done(null, e));
    p.once('exit', (code) => done(code));
  });
}

const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export interface WineSpawnOptions extends WineRunOptions {
  stdio?: StdioOptions;
  /** Give the program a pty (through `script`): for Node programs whose output is streamed. */
  pty?: boolean;
}

/** Starts a Windows program. The ChildProcess is wine's (it lives as long as the program). */
export function spawnWine(exe: string, args: string[], o: WineSpawnOptions): ChildProcess {
  const tools = requireWine();
  const env = wineEnv(o.prefix, o.env);
  if (o.pty) {
    const cmd = [tools.wine, exe, ...args].map(shellQuote).join(' ');
    return spawn('script', ['-qfec', `exec ${cmd}`, '/dev/null'], { cwd: o.cwd, env, stdio: o.stdio ?? 'pipe' });
  }
  return spawn(tools.wine, [exe, ...args], { cwd: o.cwd, env, stdio: o.stdio ?? 'pipe' });
}

/** Ends every Windows process of the prefix (`wineserver -k`) and waits for its wineserver. */
export function killWine(prefix: string): void {
  const tools = findWine();
  if (!tools || !existsSync(prefix)) return;
  const env = wineEnv(prefix);
  spawnSync(tools.wineserver, ['-k'], { env, stdio: 'ignore', timeout: 30_000 });
  spawnSync(tools.wineserver, ['-w'], { env, stdio: 'ignore', timeout: 30_000 });
}

// isapi-host options whose values are file paths (and --vdir's "path=library").
const PATH_OPTIONS = new Set(['--access-log', '--root', '--filter']);

/** The same isapi-host arguments with every Linux path written the way the Windows host reads it. */
export function windowsHostArgs(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    out.push(a);
    if (i + 1 >= args.length) continue;
    if (PATH_OPTIONS.has(a)) {
      out.push(toWinePath(args[++i]!));
    } else if (a === '--vdir') {
      const v = args[++i]!;
      const eq = v.indexOf('=');
      out.push(eq < 0 ? v : `${v.slice(0, eq)}=${toWinePath(v.slice(eq + 1))}`);
    }
  }
  return out;
}

/**
 * A local host config file (installer/local_config.ts) as the Linux side reads it: Windows
 * paths (written by `wine install.exe --config …`) become Linux paths, relative ones absolute.
 * Returns the file itself when nothing needs translating, else a translated copy in the temp folder.
 */
export function linuxHostConfig(file: string, prefix?: string): string {
  const abs = path.resolve(file);
  if (!existsSync(abs)) return file;
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(abs, 'utf8'));
  } catch {
    return file; // the config reader reports it
  }
  const dir = path.dirname(abs);
  let changed = false;
  const fix = (p: unknown): unknown => {
    if (typeof p !== 'string') return p;
    if (isWindowsPath(p)) {
      changed = true;
      return fromWinePath(p, prefix);
    }
    return path.resolve(dir, p);
  };
  const apps = Array.isArray(config.applications) ? (config.applications as Record<string, unknown>[]) : [];
  const filters = Array.isArray(config.filters) ? (config.filters as Record<string, unknown>[]) : [];
  const out = {
    ...config,
    accessLog: fix(config.accessLog ?? path.join(dir, 'logs', 'access.log')),
    ...(config.root !== undefined ? { root: fix(config.root) } : {}),
    applications: apps.map((a) => (a && typeof a === 'object' ? { ...a, extension: fix(a.extension) } : a)),
    filters: filters.map((f) => (f && typeof f === 'object' ? { ...f, library: fix(f.library) } : f)),
  };
  if (!changed) return file;
  const copy = path.join(os.tmpdir(), `isapi-wine-config-${createHash('sha256').update(abs).digest('hex').slice(0, 12)}.json`);
  writeFileSync(copy, JSON.stringify(out, null, 2) + '\n');
  process.once('exit', () => rmSync(copy, { force: true }));
  return copy;
}

/** An isapi-host.exe command line (Linux paths) as a `wine` command in `prefix`. */
export function wineHostCommand(cmd: HostCommand, prefix: string): HostCommand {
  const tools = requireWine();
  const log = cmd.args.indexOf('--access-log');
  return {
    command: tools.wine,
    args: [toWinePath(cmd.command), ...windowsHostArgs(cmd.args)],
    env: wineEnv(prefix, cmd.env),
    url: cmd.url,
    urls: cmd.urls,
    filters: cmd.filters,
    logs: cmd.logs ?? (log >= 0 ? path.dirname(cmd.args[log + 1]!) : undefined),
  };
}
