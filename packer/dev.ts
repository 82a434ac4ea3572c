// `isapi dev <script>`: the development loop. The real host and the real bridge serve the
// script, but no SEA is built: the worker is a two-line shell script that runs the bundle with
// the plain Node binary of the target's version (the one the packer caches). On every save the
// bundle is rebuilt incrementally (an esbuild context) into a new generation folder and the
// worker script is rewritten to point at it: the bridge sees its worker executable change and
// reloads through its ordinary path (fresh workers first, then the old ones drain), so no
// request in flight fails. A build error is printed as file:line:column and served as the dev
// error page (by a small worker built from our runtime) until the script builds again.
//
// Its length (~580 lines) is the loop itself: watcher, incremental build, generation folders,
// the host it keeps running and the Wine variant share one object (DevServer), which
// reads best in one place. Host start/stop is host_process.ts; the error page worker is built
// from runtime/.
import { context, type BuildContext, type BuildFailure, type Message } from 'esbuild';
import { type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  constants as fsConstants,
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  watch,
  writeFileSync,
  type FSWatcher,
} from 'node:fs';
import path from 'node:path';
import { bundleWarnings, NativeAddons, scriptExports, workerBuildOptions, writeWorkerFiles, type ScriptExports } from './bundle';
import { describeScript } from './describe';
import { manifestFileName } from './manifest';
import { DEFAULT_NODE_VERSION, ensureNodeBinaryWithProgress } from './node_binary';
import { spawnHost, stopHost } from './host_process';
import { extensionName } from './pack';
import { bridgeBinary, cacheDir, hostBinary, hostTarget, packageRoot, type Target } from './paths';
import { UserError } from './user_error';
import { defaultWinePrefix, ensureWinePrefix, requireWine, toWinePath, wineHostCommand } from './wine';

export interface DevOptions {
  script: string;
  port?: number;
  bind?: string;
  vdir?: string;
  /** Static files for unmapped paths (and in front of which a filter-only script runs). */
  root?: string;
  /** Worker processes (default 1: a swap then starts one process). */
  workers?: number;
  node?: string;
  target?: Target;
  log?: (line: string) => void;
}

/** Generations kept on disk: a draining worker may still read its source map for a stack trace. */
const KEEP_GENERATIONS = 3;

interface Filter {
  flags: number;
  policy: string;
  timeoutMs: number;
}

/** What the host is started with: a change of these needs a host restart, not a worker swap. */
interface HostShape {
  extension: boolean;
  filter: Filter | null;
}

function sameShape(a: HostShape, b: HostShape): boolean {
  return a.extension === b.extension && JSON.stringify(a.filter) === JSON.stringify(b.filter);
}

/** esbuild's messages as a terminal shows them: file:line:column: text, the line and a caret. */
export function formatBuildErrors(errors: Message[], cwd = process.cwd()): string {
  return errors
    .map((e) => {
      if (!e.location) return `error: ${e.text}`;
      const l = e.location;
      const where = `${path.relative(cwd, path.resolve(cwd, l.file)) || l.file}:${l.line}:${l.column + 1}`;
      const caret = l.lineText ? `\n    ${l.lineText}\n    ${' '.repeat(l.column)}${'^'.repeat(Math.max(1, l.length))}` : '';
      return `${where}: error: ${e.text}${caret}`;
    })
    .join('\n');
}

/** The worker that serves the dev error page while the script does not build. */
function errorWorkerEntry(name: string): string {
  return `
import { runWorker } from ${JSON.stringify(path.join(packageRoot, 'runtime', 'worker_main.ts'))};
import { SF_NOTIFY_READ_RAW_DATA, SF_NOTIFY_PREPROC_HEADERS, SF_NOTIFY_URL_MAP, SF_NOTIFY_AUTHENTICATION, SF_NOTIFY_AUTH_COMPLETE, SF_STATUS_REQ_FINISHED } from ${JSON.stringify(path.join(packageRoot, 'runtime', 'constants.ts'))};
const fs = require('node:fs');
const text = fs.readFileSync(process.argv[2], 'utf8');
const flags = Number(process.argv[3] || 0);
const esc = (s) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]);
const page = '<!DOCTYPE html>\\n<html><head><meta charset="utf-8"><title>Build error: ${name}</title></head>' +
  '<body style="font-family:sans-serif"><h1>${name} does not build</h1><p>isapi dev serves this page until the script builds again; save a fix and reload.</p>' +
  '<pre style="background:#fee;padding:1em">' + esc(text) + '</pre></body></html>\\n';
const before = SF_NOTIFY_READ_RAW_DATA | SF_NOTIFY_PREPROC_HEADERS | SF_NOTIFY_URL_MAP | SF_NOTIFY_AUTHENTICATION | SF_NOTIFY_AUTH_COMPLETE;
runWorker({
  __ExtensionFactory__: () => ({
    HttpExtensionProc(ecb) {
      ecb.SendResponseHeaders('500 Internal Server Error', { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(page), 'Cache-Control': 'no-store' });
      return ecb.WriteClient(page);
    },
  }),
  // A filter-only script has no extension to answer: its filter slot answers instead, at the
  // first notification that comes before the response.
  ...(flags ? { __FilterFactory__: () => ({
    filterFlags: flags,
    HttpFilterProc(fc) {
      if (!(fc.NotificationType & before)) return;
      fc.SendResponseHeader('500 Internal Server Error', 'Content-Type: text/html; charset=utf-8\\r\\nContent-Length: ' + Buffer.byteLength(page) + '\\r\\nCache-Control: no-store\\r\\n\\r\\n');
      fc.WriteClient(page);
      return SF_STATUS_REQ_FINISHED;
    },
  }) } : {}),
}, { name: ${JSON.stringify(name)} });
`;
}

class DevServer {
  private readonly log: (line: string) => void;
  private readonly script: string;
  private readonly name: string;
  private readonly dir: string;
  private readonly target: Target;
  private readonly nodeVersion: string;
  private node = '';
  private ctx: BuildContext | null = null;
  private generation = 0;
  private shape: HostShape = { extension: true, filter: null };
  private host: ChildProcess | null = null;
  private hostExited: Promise<void> = Promise.resolve();
  private port: number;
  private url = '';
  private watchers = new Map<string, FSWatcher>();
  private inputs = new Set<string>();
  private building = false;
  private dirty = false;
  private debounce: NodeJS.Timeout | null = null;
  private stopped = false;
  private changedAt = 0;
  private awaitingReady = false;
  private startFailedGeneration = -1;
  private exeTime = 0;
  private broken = false;
  private logOffset = 0;
  private logWatcher: FSWatcher | null = null;
  private resolveStopped!: (code: number) => void;
  readonly done = new Promise<number>((r) => (this.resolveStopped = r));

  constructor(private readonly o: DevOptions) {
    this.log = o.log ?? ((l) => console.log(l));
    this.script = path.resolve(o.script);
    if (!existsSync(this.script)) throw new UserError(`${o.script}: no such file`);
    this.name = extensionName(this.script);
    this.target = o.target ?? hostTarget();
    if (this.target !== hostTarget() && !(this.target === 'win-x64' && process.platform === 'linux')) {
      throw new UserError(`isapi dev cannot run ${this.target} workers on ${hostTarget()}`);
    }
    this.nodeVersion = o.node ?? DEFAULT_NODE_VERSION;
    const id = createHash('sha256').update(this.script).digest('hex').slice(0, 10);
    this.dir = path.join(cacheDir(), 'dev', `${this.name}-${id}`);
    this.port = o.port ?? 8080;
  }

  /** win-x64 on Linux: the Windows host, bridge and Node under Wine. */
  private get wine() {
    return this.target === 'win-x64' && process.platform === 'linux';
  }
  private get workerPath() {
    return path.join(this.dir, this.target === 'win-x64' ? `${this.name}.exe` : this.name);
  }
  private get bridgePath() {
    return path.join(this.dir, `_${this.name}${this.target === 'win-x64' ? '.dll' : '.so'}`);
  }
  private get logPath() {
    return path.join(this.dir, 'logs', `${this.name}.log`);
  }

  async start(): Promise<void> {
    mkdirSync(path.join(this.dir, 'logs'), { recursive: true });
    mkdirSync(path.join(this.dir, 'gen'), { recursive: true });
    // The worker's process.execPath is in the dev folder, as a packed worker's is in its folder
    // (scripts find files beside themselves that way): a hard link to the cached Node, else a copy.
    const link = (from: string, to: string, copy = false) => {
      if (existsSync(to)) return;
      const tmp = `${to}.${process.pid}.tmp`;
      try {
        if (copy) throw new Error('a copy of its own');
        linkSync(from, tmp);
      } catch {
        copyFileSync(from, tmp, fsConstants.COPYFILE_FICLONE);
        chmodSync(tmp, 0o755);
      }
      renameSync(tmp, to);
    };
    const hostNode = await ensureNodeBinaryWithProgress(hostTarget(), this.nodeVersion, this.log);
    this.node = path.join(this.dir, `.node-${this.nodeVersion}`);
    link(hostNode, this.node);
    if (this.wine) {
      // Windows has no #! scripts: the worker is node.exe itself, named <name>.exe. With no
      // script and stdin NUL (as the bridge starts it) it runs an empty program, after the
      // module NODE_OPTIONS preloads: current.cjs, which requires the generation current.json
      // names. A save rewrites current.json and touches <name>.exe: a changed worker executable.
      requireWine();
      ensureWinePrefix(defaultWinePrefix(), this.log);
      // A copy, not a link: its modification time is this session's reload signal, and a link
      // would share it with the cache and every other dev session.
      link(await ensureNodeBinaryWithProgress('win-x64', this.nodeVersion, this.log), this.workerPath, true);
      writeFileSync(
        path.join(this.dir, 'current.cjs'),
        `'use strict';\n// isapi dev (win-x64): preloaded by the worker (NODE_OPTIONS); runs the current generation.\n` +
          `const c = JSON.parse(require('node:fs').readFileSync(require('node:path').join(__dirname, 'current.json'), 'utf8'));\n` +
          `process.argv = [process.argv[0], c.main, ...c.argv];\nrequire(c.main);\n`,
      );
    }
    // The bridge is named after the script (_<name>.so finds <name> and <name>.manifest.json).
    copyFileSync(bridgeBinary(this.target), `${this.bridgePath}.tmp`);
    renameSync(`${this.bridgePath}.tmp`, this.bridgePath);
    for (const g of readdirSync(path.join(this.dir, 'gen'))) rmSync(path.join(this.dir, 'gen', g), { recursive: true, force: true });

    await this.buildErrorWorker();
    const addons = new NativeAddons(this.target, this.nodeVersion, this.log);
    // One context for the life of the session: esbuild re-parses only the files that changed.
    // Its outfile is a name at the depth of the generation folders (the map's relative sources
    // stay right); each rebuild's output is written to its own generation folder (write: false).
    const outfile = path.join(this.dir, 'gen', 'out', `${this.name}.app.js`);
    this.ctx = await context({ ...workerBuildOptions(this.script, this.name, outfile, addons), metafile: true });

    await this.rebuild(true);
    this.tailLog();
    await this.startHost();
    const stop = () => void this.stop(0);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }

  private async buildErrorWorker(): Promise<void> {
    const { build } = await import('esbuild');
    const out = path.join(this.dir, 'error-worker.cjs');
    await build({
      stdin: { contents: errorWorkerEntry(this.name), resolveDir: packageRoot, sourcefile: 'dev-error-worker.js', loader: 'js' },
      bundle: true,
      outfile: out,
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      logLevel: 'silent',
    });
  }

  /** Points the bridge's worker at a command: a new file, renamed over the old one (the bridge polls its stamp). */
  private writeWorker(args: string[], why: string): void {
    if (this.wine) {
      const [main, ...rest] = args;
      const file = path.join(this.dir, 'current.json');
      writeFileSync(`${file}.tmp`, JSON.stringify({ why, main: toWinePath(main!), argv: rest.map((a) => (path.isAbsolute(a) ? toWinePath(a) : a)) }) + '\n');
      renameSync(`${file}.tmp`, file);
      // The Windows bridge may see whole seconds only (mingw's stat): every touch moves the
      // time by at least one, or two saves within a second would look like one.
      this.exeTime = Math.max(Math.floor(Date.now() / 1000), this.exeTime + 1);
      utimesSync(this.workerPath, this.exeTime, this.exeTime);
      return;
    }
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const text = `#!/bin/sh\n# isapi dev: ${why}. The bridge starts this as its worker; isapi dev rewrites it on every save.\nexec ${[this.node, ...args].map(quote).join(' ')} "$@"\n`;
    const tmp = `${this.workerPath}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o755 });
    renameSync(tmp, this.workerPath);
  }

  private writeManifest(): void {
    // Read by the bridge (native/bridge/manifest_settings.cc) for GetFilterVersion's flags.
    const f = this.shape.filter;
    const manifest = {
      manifestVersion: 1,
      name: this.name,
      target: this.target,
      node: this.nodeVersion,
      script: this.script,
      dev: true,
      entryPoints: { extension: this.shape.extension, filter: !!f },
      filterFlags: f?.flags ?? 0,
      filterFailurePolicy: f?.policy ?? 'fail-closed',
      filterTimeoutMs: f?.timeoutMs ?? 5000,
      files: {},
    };
    writeFileSync(path.join(this.dir, manifestFileName(this.name)), JSON.stringify(manifest, null, 2) + '\n');
  }

  /** One build; `first` is the start-up build (the host is not running yet). */
  private warnings = '';

  private async rebuild(first = false): Promise<void> {
    if (this.building) {
      this.dirty = true;
      return;
    }
    this.building = true;
    const t0 = Date.now();
    try {
      // What the script exports is read by a second, shallow build (dependencies external), at
      // the same time as the bundle.
      const exports = scriptExports(this.script).then(
        (e) => e,
        (err: Error) => err,
      );
      let result;
      try {
        result = await this.ctx!.rebuild();
      } catch (err) {
        const errors = (err as BuildFailure).errors ?? [];
        this.watchInputs(errors.map((e) => e.location?.file).filter((f): f is string => !!f));
        this.fail(errors.length ? formatBuildErrors(errors) : String((err as Error)?.message ?? err), first);
        return;
      }
      this.watchInputs(Object.keys(result.metafile!.inputs));
      // The pack's warnings (docs/bundling.md), printed when they change rather than on every save.
      const warnings = bundleWarnings(result).join('\n');
      if (warnings && warnings !== this.warnings) this.log(warnings);
      this.warnings = warnings;
      const gen = ++this.generation;
      const genDir = path.join(this.dir, 'gen', String(gen));
      mkdirSync(genDir, { recursive: true });
      const loader = path.join(genDir, `${this.name}.cjs`);
      writeWorkerFiles(result.outputFiles!, path.join(genDir, `${this.name}.app.js`), loader);

      // Which entry points, and the filter's flags: the host loads a filter at start, so a
      // change there restarts the host; anything else is a worker swap.
      const exp: ScriptExports | Error = await exports;
      if (exp instanceof Error) {
        this.fail(exp.message, first);
        return;
      }
      if (!exp.extension && !exp.filter) {
        this.fail(`${path.relative(process.cwd(), this.script)} exports no extension: export a function __ExtensionFactory__() returning an Extension (or __FilterFactory__ for a filter)`, first);
        return;
      }
      let filter: Filter | null = null;
      if (exp.filter) {
        try {
          const d = describeScript(this.node, loader, path.relative(process.cwd(), this.script));
          filter = { flags: d.filterFlags, policy: d.filterFailurePolicy, timeoutMs: d.filterTimeoutMs };
        } catch (err) {
          this.fail((err as Error).message, first);
          return;
        }
      }
      const shape: HostShape = { extension: exp.extension, filter };
      const restart = !first && !sameShape(shape, this.shape);
      this.shape = shape;
      this.writeManifest();
      this.writeWorker([loader], `generation ${gen} of ${this.script}`);
      this.prune();
      const wasBroken = this.broken;
      this.broken = false;
      const took = Date.now() - (this.changedAt || t0);
      if (first) {
        this.log(`built    ${path.relative(process.cwd(), this.script)} (${Date.now() - t0} ms)`);
      } else if (restart) {
        this.log(`rebuilt  generation ${gen} in ${took} ms; entry points or filter flags changed: restarting the host`);
        await this.restartHost();
      } else {
        this.log(`rebuilt  generation ${gen} in ${took} ms${wasBroken ? ' (the build error is fixed)' : ''}; swapping workers`);
        this.awaitingReady = true;
      }
    } finally {
      this.building = false;
      if (this.dirty && !this.stopped) {
        this.dirty = false;
        this.rebuildInBackground();
      }
    }
  }

  /** A rebuild nobody awaits: what it cannot handle (the host failed to restart) ends the session. */
  private rebuildInBackground(): void {
    this.rebuild().catch((err: Error) => {
      this.log(`error    ${err?.message ?? err}`);
      void this.stop(1);
    });
  }

  /** A build error: shown here and served as the dev error page until the next good build. */
  private fail(text: string, first: boolean): void {
    this.broken = true;
    this.log(`error    ${path.relative(process.cwd(), this.script)} does not build; serving the error page until it does:\n${text}`);
    const gen = ++this.generation;
    const genDir = path.join(this.dir, 'gen', String(gen));
    mkdirSync(genDir, { recursive: true });
    const errorFile = path.join(genDir, 'build-error.txt');
    writeFileSync(errorFile, text + '\n');
    if (first) this.writeManifest();
    else this.awaitingReady = true;
    this.writeWorker([path.join(this.dir, 'error-worker.cjs'), errorFile, String(this.shape.filter?.flags ?? 0)], `build error (generation ${gen})`);
    this.prune();
  }

  private prune(): void {
    const gens = readdirSync(path.join(this.dir, 'gen')).map(Number).filter((n) => Number.isInteger(n) && n <= this.generation - KEEP_GENERATIONS);
    for (const g of gens) rmSync(path.join(this.dir, 'gen', String(g)), { recursive: true, force: true });
  }

  /** Watches the folders of the build's inputs (editors often save by rename: a file watch would go deaf). */
  private watchInputs(files: string[]): void {
    const abs = files
      .filter((f) => !f.includes('node_modules') && !f.startsWith('<') && !f.includes(':'))
      .map((f) => path.resolve(f));
    abs.push(this.script);
    for (const f of abs) this.inputs.add(f);
    for (const d of new Set(abs.map((f) => path.dirname(f)))) {
      if (this.watchers.has(d) || !existsSync(d)) continue;
      const w = watch(d, (_event, filename) => {
        if (!filename || !this.inputs.has(path.join(d, filename.toString()))) return;
        this.changed();
      });
      this.watchers.set(d, w);
    }
  }

  private changed(): void {
    if (this.stopped) return;
    if (!this.debounce) this.changedAt = Date.now();
    // An editor's save is often several events (truncate, write, rename): one build for all of them.
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      this.rebuildInBackground();
    }, 15);
  }

  private hostArgs(): string[] {
    const args = ['--port', String(this.port), '--bind', this.o.bind ?? '127.0.0.1', '--access-log', path.join(this.dir, 'logs', 'access.log')];
    const vdir = this.o.vdir ?? `/${this.name}`;
    if (this.shape.extension || !this.shape.filter) args.push('--vdir', `${vdir.startsWith('/') ? vdir : '/' + vdir}=${this.bridgePath}`);
    if (this.shape.filter) args.push('--filter', this.bridgePath);
    if (this.o.root) args.push('--root', path.resolve(this.o.root));
    return args;
  }

  private startHost(): Promise<void> {
    const env: NodeJS.ProcessEnv = { NODE_ENV: 'development', ...process.env, ISAPI_DETAILED_ERRORS: '1', ISAPI_WORKERS: String(this.o.workers ?? 1) };
    let cmd: { command: string; args: string[]; env: NodeJS.ProcessEnv };
    if (this.wine) {
      env.NODE_OPTIONS = `--require=${toWinePath(path.join(this.dir, 'current.cjs'))}`;
      cmd = wineHostCommand({ command: hostBinary('win-x64'), args: this.hostArgs(), env, url: '', urls: [] }, defaultWinePrefix());
    } else {
      cmd = { command: hostBinary(this.target), args: this.hostArgs(), env };
    }
    const { child } = spawnHost(cmd, this.wine, 'pipe');
    this.host = child;
    this.hostExited = new Promise((r) => child.once('exit', () => r()));
    return new Promise((resolve, reject) => {
      let out = '';
      const onData = (d: Buffer) => {
        const text = d.toString();
        out += text;
        const m = /listening on http:\/\/([^/\s]+):(\d+)\//.exec(out);
        if (m && !this.url) {
          this.port = Number(m[2]);
          const vdir = this.o.vdir ?? `/${this.name}`;
          this.url = `http://${m[1]}:${m[2]}${this.shape.extension || !this.shape.filter ? (vdir === '/' ? '/' : `${vdir}/`) : '/'}`;
          this.log(`serving  ${path.relative(process.cwd(), this.script)} at ${this.url} (workers: plain Node ${this.nodeVersion}; rebuilds on save; Ctrl+C stops)`);
          this.log(`         dev folder ${this.dir} (logs/ there)`);
          resolve();
        } else if (m) {
          resolve();
        }
        for (const line of text.split('\n')) if (line.trim() && !/listening on/.test(line)) this.log(`host     ${line}`);
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', (d: Buffer) => {
        for (const line of d.toString().split('\n')) if (line.trim()) this.log(`host     ${line}`);
      });
      child.once('exit', (code, signal) => {
        if (this.host === child && !this.stopped) {
          this.log(`isapi-host exited (${signal ?? `code ${code}`}); stopping`);
          void this.stop(1);
        }
        reject(new UserError(`isapi-host exited before it listened (${signal ?? `code ${code}`}):\n${out}`));
      });
    });
  }

  /** Asks the host to drain and stop (see spawnHost). */
  private stopHost(child: ChildProcess): void {
    stopHost(child, this.wine);
  }

  private async restartHost(): Promise<void> {
    const old = this.host;
    this.host = null;
    if (old && old.exitCode === null) {
      this.stopHost(old);
      await this.hostExited;
    }
    await this.startHost();
  }

  /** Prints the workers' output (and the bridge's notable events) as the bridge logs it. */
  private tailLog(): void {
    try {
      this.logOffset = statSync(this.logPath).size;
    } catch {
      this.logOffset = 0;
    }
    const read = () => {
      let size: number;
      try {
        size = statSync(this.logPath).size;
      } catch {
        return;
      }
      if (size < this.logOffset) this.logOffset = 0; // rotated
      if (size === this.logOffset) return;
      const fd = openSync(this.logPath, 'r');
      try {
        const buf = Buffer.alloc(size - this.logOffset);
        readSync(fd, buf, 0, buf.length, this.logOffset);
        const text = buf.toString('utf8');
        const last = text.lastIndexOf('\n');
        if (last < 0) return;
        this.logOffset += Buffer.byteLength(text.slice(0, last + 1));
        for (const line of text.slice(0, last).split('\n')) this.logLine(line);
      } finally {
        closeSync(fd);
      }
    };
    this.logWatcher = watch(path.dirname(this.logPath), (_e, f) => f?.toString() === path.basename(this.logPath) && read());
  }

  private logLine(line: string): void {
    const m = /^\S+ \[(bridge|worker \d+)\] (.*)$/.exec(line);
    if (!m) return;
    const [, who, text] = m as unknown as [string, string, string];
    // A generation that cannot start is retried with backoff, printing the same output each
    // time: once is enough (until the next save).
    if (this.startFailedGeneration === this.generation && !/^worker \d+ ready/.test(text)) return;
    if (who !== 'bridge') {
      if (!/released [\d.]+ MiB of executable pages/.test(text)) this.log(`${who.padEnd(8)} ${text}`);
      return;
    }
    if (/failed to start/.test(text) && this.awaitingReady) {
      this.startFailedGeneration = this.generation;
      this.log(`bridge   ${text}`);
      this.log(`error    generation ${this.generation} does not start (its output is above); the previous one keeps serving. Fix and save.`);
      return;
    }
    if (/^worker \d+ ready/.test(text) && this.awaitingReady) {
      this.awaitingReady = false;
      this.log(`ready    generation ${this.generation}${this.broken ? ' (the error page)' : ''} answers (${Date.now() - this.changedAt} ms after the save)`);
    } else if (/fail|error|cannot|could not|killed|crash|no Ready/i.test(text)) {
      this.log(`bridge   ${text}`);
    }
  }

  async stop(code: number): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.debounce) clearTimeout(this.debounce);
    for (const w of this.watchers.values()) w.close();
    this.logWatcher?.close();
    const host = this.host;
    if (host && host.exitCode === null) {
      // isapi-host drains: TerminateExtension runs in the workers, then they exit with it.
      this.stopHost(host);
      await this.hostExited;
    }
    await this.ctx?.dispose();
    // What only a running session needs goes (the Windows worker is an 85 MB copy); logs/ stays.
    rmSync(path.join(this.dir, 'gen'), { recursive: true, force: true });
    if (this.wine) rmSync(this.workerPath, { force: true });
    this.resolveStopped(code);
  }
}

export async function dev(o: DevOptions): Promise<number> {
  const server = new DevServer(o);
  await server.start();
  return server.done;
}
