// Step 1 of a pack: esbuild bundles the user's script, its dependencies and our runtime into
// one CommonJS file for the SEA (a SEA's main script can only require built-in modules).
import { build, type BuildFailure, type BuildOptions, type Message, type OutputFile, type Plugin } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cacheDir, hostTarget, packageRoot, type Target } from './paths';
import { UserError } from './user_error';

export interface ScriptExports {
  extension: boolean;
  filter: boolean;
  names: string[];
}

export function firstError(err: unknown, script: string): UserError {
  if (err instanceof UserError) return err;
  const errors: Message[] = (err as BuildFailure)?.errors ?? [];
  const e = errors[0];
  if (!e) return new UserError(`${script}: ${(err as Error)?.message ?? err}`);
  const where = e.location ? `${e.location.file}:${e.location.line}:${e.location.column + 1}` : script;
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more error${errors.length > 2 ? 's' : ''})` : '';
  return new UserError(`${where}: ${explain(e.text)}${more}`);
}

/** esbuild's message, plus what to do about the ones a user meets when bundling dependencies. */
function explain(text: string): string {
  const unresolved = /^Could not resolve "([^"]+)"/.exec(text);
  if (unresolved) {
    const spec = unresolved[1]!;
    if (spec.startsWith('.') || spec.startsWith('/')) return `cannot bundle "${spec}": no such file`;
    const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
    return `cannot bundle "${spec}": package "${pkg}" is not installed where the script can find it; run \`npm install ${pkg}\` in the script's project`;
  }
  const loader = /^No loader is configured for "(\.[^"]+)" files: (.*)$/.exec(text);
  if (loader) {
    return `cannot bundle ${loader[2]}: ${loader[1]} files are not JavaScript, TypeScript or JSON; read such a file at run time (fs) from beside the worker instead of importing it`;
  }
  return text;
}

const runtimeAlias = { 'node-isapi': path.join(packageRoot, 'runtime', 'index.ts') };

/** What the script exports, read from esbuild's metafile without running it. */
export async function scriptExports(script: string): Promise<ScriptExports> {
  try {
    const result = await build({
      entryPoints: [script],
      bundle: true,
      write: false,
      metafile: true,
      format: 'esm',
      platform: 'node',
      logLevel: 'silent',
      alias: runtimeAlias,
      outdir: 'out',
      packages: 'external',
    });
    const out = Object.values(result.metafile!.outputs)[0]!;
    const names = out.exports ?? [];
    return {
      names,
      extension: names.includes('__ExtensionFactory__'),
      filter: names.includes('__FilterFactory__'),
    };
  } catch (err) {
    throw firstError(err, script);
  }
}

export interface WorkerBundleOptions {
  /** The target the worker runs on (native addons must match it); the machine's own by default. */
  target?: Target;
  /** The worker's Node version (native addons built for another ABI are rebuilt for it). */
  nodeVersion?: string;
  log?: (line: string) => void;
}

export interface WorkerBundle {
  /** Size of the bundled app. */
  bytes: number;
  /** SEA assets (name → file): the app itself and any native addons. Pass them to the SEA config. */
  assets: Record<string, string>;
  /** Native addons carried as assets, for the pack log. */
  addons: string[];
}

/** The asset that holds the bundled app; the SEA's main script is the small loader below. */
export const APP_ASSET = 'app.js';
/** The asset that holds the app's source map, read by runtime/source_map.ts on the first stack trace. */
export const MAP_ASSET = 'app.js.map';

/**
 * The SEA's main script: compiles the app from its asset as a CommonJS module. Source maps stay
 * off (Node would parse the map up front and decode all of it on the first stack trace): the
 * app's first import, runtime/source_map.ts, maps the frames of its stack traces itself.
 */
function loaderSource(appFile: string): string {
  return `'use strict';
// node-isapi worker: compile the bundled app (kept as a SEA asset; beside this file when run by
// plain node at pack time, as CommonJS or, under "type": "module", as ESM).
const builtin = typeof require === 'function' ? require : process.getBuiltinModule;
const path = builtin('node:path');
const Module = builtin('node:module');
let sea = null;
try { sea = builtin('node:sea'); } catch {}
const fromSea = sea != null && sea.isSea();
const here = typeof __dirname === 'string' ? __dirname : path.dirname(path.resolve(process.argv[1]));
const filename = path.join(fromSea ? path.dirname(process.execPath) : here, ${JSON.stringify(appFile)});
const code = fromSea ? sea.getAsset(${JSON.stringify(APP_ASSET)}, 'utf8') : builtin('node:fs').readFileSync(filename, 'utf8');
const app = new Module(filename, null);
app.filename = filename;
app.paths = [];
app._compile(code, filename);
`;
}

/** The worker's entry: our runtime's main loop around the user's module. */
function workerEntry(script: string, name: string): string {
  return [
    // First, so that stack traces are mapped before any of the user's code runs.
    `import ${JSON.stringify(path.join(packageRoot, 'runtime', 'source_map.ts'))};`,
    `import * as user from ${JSON.stringify(path.resolve(script))};`,
    `import { runWorker } from ${JSON.stringify(path.join(packageRoot, 'runtime', 'worker_main.ts'))};`,
    `runWorker(user, { name: ${JSON.stringify(name)} });`,
  ].join('\n');
}

/**
 * esbuild's options for the worker's app (`appPath`, with its map beside it). Shared by the pack
 * (one build) and `isapi dev` (an incremental context rebuilt on every save).
 */
export function workerBuildOptions(script: string, name: string, appPath: string, addons: NativeAddons): BuildOptions {
  return {
    stdin: { contents: workerEntry(script, name), resolveDir: path.dirname(path.resolve(script)), sourcefile: `${name}-worker-entry.js`, loader: 'js' },
    bundle: true,
    outfile: appPath,
    write: false,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    // Stack traces name the TypeScript file and line (runtime/source_map.ts), from a map kept
    // apart from the app: no sourceMappingURL comment, no sources' text (smaller).
    sourcemap: 'external',
    sourcesContent: false,
    define: { __ISAPI_MAP_ASSET__: JSON.stringify(MAP_ASSET) },
    // V8 keeps a source with any non-ASCII character as a two-byte string: escaped, the app
    // costs half the memory (about 2 MiB less for an Express app).
    charset: 'ascii',
    alias: runtimeAlias,
    plugins: [addons.plugin()],
    logLevel: 'silent',
    legalComments: 'none',
  };
}

/**
 * Writes a build's app, its map (sources made absolute) and the loader (`outFile`) that runs the
 * app with plain node or from a SEA asset. Returns the app's size.
 */
export function writeWorkerFiles(outputFiles: OutputFile[], appPath: string, outFile: string): number {
  const js = outputFiles.find((f) => f.path.endsWith('.js'))!;
  const map = outputFiles.find((f) => f.path.endsWith('.js.map'))!;
  writeFileSync(appPath, js.contents); // 'external': no sourceMappingURL comment for Node to act on
  writeFileSync(`${appPath}.map`, absoluteSources(map.text, path.dirname(appPath)));
  writeFileSync(outFile, loaderSource(path.basename(appPath)));
  return js.contents.byteLength;
}

/** Bundles the worker: our runtime's main loop around the user's module. */
export async function bundleWorker(
  script: string,
  name: string,
  outFile: string,
  options: WorkerBundleOptions = {},
): Promise<WorkerBundle> {
  const appFile = `${name}.app.js`;
  const appPath = path.join(path.dirname(outFile), appFile);
  const addons = new NativeAddons(options.target ?? hostTarget(), options.nodeVersion ?? process.versions.node, options.log ?? (() => {}));
  try {
    const result = await build(workerBuildOptions(script, name, appPath, addons));
    const bytes = writeWorkerFiles(result.outputFiles!, appPath, outFile);
    return {
      bytes,
      assets: { [APP_ASSET]: appPath, [MAP_ASSET]: `${appPath}.map`, ...addons.assets },
      addons: addons.names,
    };
  } catch (err) {
    throw firstError(err, script);
  }
}

/**
 * The map with its sources as absolute paths, as stack traces show them: the packed app runs far
 * from the map's folder, maybe on Windows, where a Linux file URL has no path.
 */
function absoluteSources(mapText: string, outDir: string): string {
  const map = JSON.parse(mapText) as { sources: string[]; sourceRoot?: string };
  map.sources = map.sources.map((s) => (/^[a-z][a-z0-9+.-]+:/i.test(s) ? s : path.resolve(outDir, s)));
  delete map.sourceRoot;
  return JSON.stringify(map);
}

// ---------------------------------------------------------------------------------------------
// Native addons in dependencies. A `.node` file cannot be bundled into JavaScript: it is carried
// inside the SEA as an asset, written once at run time to a private per-user cache folder (named
// by the file's hash), and loaded from there with process.dlopen. Packages find their addon in
// three ways, all handled: require('./x.node'), require('bindings')('x.node') (better-sqlite3,
// sqlite3…) and require('node-gyp-build')(__dirname). An addon built for another Node ABI
// (node_register_module_v<N>) is rebuilt from the package's binding.gyp for the worker's Node,
// with that version's headers (from the same npm package as its binary), once per version.

const NATIVE_LOADER = 'isapi-native-loader';

/** NODE_MODULE_VERSION by Node major version. */
const NODE_ABI: Record<number, number> = { 18: 108, 19: 111, 20: 115, 21: 120, 22: 127, 23: 131, 24: 137, 25: 141 };

interface PackedAddon {
  asset: string;
  sha256: string;
  size: number;
  /** The file packed, loaded directly when the bundle runs outside the SEA (at pack time). */
  file: string;
}

function packageRootOf(file: string): string {
  let dir = path.dirname(file);
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) return path.dirname(file);
    dir = up;
  }
}

function readPackage(dir: string): { name: string; version: string } {
  try {
    const p = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));
    return { name: p.name ?? path.basename(dir), version: p.version ?? '0.0.0' };
  } catch {
    return { name: path.basename(dir), version: '0.0.0' };
  }
}

function findNodeFiles(dir: string, depth = 0): string[] {
  if (!existsSync(dir) || depth > 3) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && e.name !== 'obj.target' && e.name !== 'node_modules') out.push(...findNodeFiles(p, depth + 1));
    else if (e.isFile() && e.name.endsWith('.node')) out.push(p);
  }
  return out;
}

/** What a .node file is: its platform (from the file header) and, if it is not Node-API, its ABI. */
function inspectAddon(file: string): { platform: 'linux' | 'win32' | 'other'; abi: number | null } {
  const buf = readFileSync(file);
  const platform = buf[0] === 0x7f && buf.toString('latin1', 1, 4) === 'ELF' ? 'linux' : buf.toString('latin1', 0, 2) === 'MZ' ? 'win32' : 'other';
  const m = /node_register_module_v(\d+)/.exec(buf.toString('latin1'));
  return { platform, abi: m ? Number(m[1]) : null };
}

export class NativeAddons {
  readonly assets: Record<string, string> = {};
  readonly names: string[] = [];
  private readonly packed = new Map<string, PackedAddon>();

  constructor(
    private readonly target: Target,
    private readonly nodeVersion: string,
    private readonly log: (line: string) => void,
  ) {}

  plugin(): Plugin {
    return {
      name: 'isapi-native-addons',
      setup: (b) => {
        b.onResolve({ filter: new RegExp(`^${NATIVE_LOADER}$`) }, () => ({ path: NATIVE_LOADER, namespace: 'isapi-native' }));
        b.onResolve({ filter: /^(bindings|node-gyp-build)$/ }, (args) => {
          if (!args.importer || args.namespace !== 'file') return undefined;
          return { path: packageRootOf(args.importer), namespace: 'isapi-native', pluginData: { kind: args.path } };
        });
        b.onResolve({ filter: /\.node$/ }, (args) => {
          if (args.namespace !== 'file') return undefined;
          const file = path.resolve(args.resolveDir, args.path);
          return { path: file, namespace: 'isapi-native', pluginData: { kind: 'file' } };
        });
        b.onLoad({ filter: /.*/, namespace: 'isapi-native' }, (args) => {
          if (args.path === NATIVE_LOADER) return { contents: LOADER_MODULE, loader: 'js', resolveDir: packageRoot };
          const kind = (args.pluginData as { kind: string }).kind;
          if (kind === 'file') {
            if (!existsSync(args.path)) throw new UserError(`cannot bundle native addon ${args.path}: no such file (is the package built? run npm rebuild)`);
            const a = this.pack(args.path, packageRootOf(args.path));
            return { contents: `module.exports = require(${JSON.stringify(NATIVE_LOADER)})(${JSON.stringify(a)});`, loader: 'js', resolveDir: packageRoot };
          }
          return this.moduleFor(kind, args.path);
        });
      },
    };
  }

  /** The module that replaces `bindings` or `node-gyp-build` for the package at pkgDir. */
  private moduleFor(kind: string, pkgDir: string) {
    const pkg = readPackage(pkgDir);
    const candidates = [...findNodeFiles(path.join(pkgDir, 'build', 'Release')), ...findNodeFiles(path.join(pkgDir, 'prebuilds'))].filter(
      (f) => !/test_extension|\/obj\//.test(f),
    );
    const usable = candidates.filter((f) => this.fitsPlatform(f));
    if (usable.length === 0) {
      const found = candidates.length ? `only ${candidates.map((f) => path.relative(pkgDir, f)).join(', ')}, built for another platform` : 'none';
      throw new UserError(
        `cannot pack ${pkg.name}: it loads a native addon (via ${kind}) and no ${this.target} build of it was found in ${pkgDir} (${found}); ` +
          (this.target === hostTarget() ? `run \`npm rebuild ${pkg.name}\`` : `packing native addons for ${this.target} from ${hostTarget()} is not supported: pack on ${this.target}`),
      );
    }
    const files: Record<string, PackedAddon> = {};
    for (const f of usable) files[path.basename(f)] = this.pack(f, pkgDir);
    const first = files[path.basename(usable[0]!)]!;
    const contents =
      kind === 'bindings'
        ? `const load = require(${JSON.stringify(NATIVE_LOADER)});
const files = ${JSON.stringify(files)};
module.exports = function bindings(opts) {
  let name = typeof opts === 'string' ? opts : (opts && opts.bindings) || 'bindings.node';
  if (!name.endsWith('.node')) name += '.node';
  const f = files[name.split(/[\\\\/]/).pop()];
  if (!f) throw new Error('node-isapi: the native addon ' + name + ' of ${pkg.name} was not packed (packed: ' + Object.keys(files).join(', ') + ')');
  return load(f);
};`
        : `const load = require(${JSON.stringify(NATIVE_LOADER)});
module.exports = function nodeGypBuild() { return load(${JSON.stringify(first)}); };
module.exports.path = function () { return ${JSON.stringify(first.asset)}; };`;
    return { contents, loader: 'js' as const, resolveDir: packageRoot };
  }

  private fitsPlatform(file: string): boolean {
    const { platform } = inspectAddon(file);
    return platform === (this.target === 'win-x64' ? 'win32' : 'linux');
  }

  /** Registers one .node file as an asset, rebuilt first if it was built for another Node ABI. */
  private pack(file: string, pkgDir: string): PackedAddon {
    const known = this.packed.get(file);
    if (known) return known;
    const pkg = readPackage(pkgDir);
    let use = file;
    const info = inspectAddon(file);
    if (!this.fitsPlatform(file)) {
      throw new UserError(`cannot pack ${path.relative(process.cwd(), file)} (from ${pkg.name}): it is not a ${this.target} binary`);
    }
    const want = NODE_ABI[Number(this.nodeVersion.split('.')[0])];
    if (info.abi !== null && want !== undefined && info.abi !== want) {
      use = rebuildAddon(file, pkgDir, pkg, this.nodeVersion, this.target, info.abi, this.log);
    }
    const data = readFileSync(use);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const asset = `addons/${pkg.name.replace(/[^A-Za-z0-9._-]/g, '_')}/${path.basename(use)}`;
    this.assets[asset] = use;
    this.names.push(`${pkg.name}:${path.basename(use)}`);
    const a = { asset, sha256, size: data.length, file: use };
    this.packed.set(file, a);
    return a;
  }
}

/**
 * Rebuilds a package's addon for another Node version with node-gyp, against that version's
 * headers; cached per package version, Node version and target in the user's cache.
 */
function rebuildAddon(
  file: string,
  pkgDir: string,
  pkg: { name: string; version: string },
  nodeVersion: string,
  target: Target,
  builtAbi: number,
  log: (line: string) => void,
): string {
  const what = `${pkg.name}@${pkg.version}`;
  const fail = (why: string) =>
    new UserError(
      `${what}'s native addon ${path.basename(file)} was built for Node ABI ${builtAbi} but the worker runs Node ${nodeVersion}; ` +
        `rebuilding it failed: ${why}. Build it yourself for Node ${nodeVersion} (npx node-gyp rebuild --target=${nodeVersion} in ${pkgDir}) or pack with --node ${Object.entries(NODE_ABI).find(([, a]) => a === builtAbi)?.[0] ?? '<its version>'}.x`,
    );
  if (target !== hostTarget()) throw fail(`cannot compile for ${target} on ${hostTarget()}`);
  if (!existsSync(path.join(pkgDir, 'binding.gyp'))) throw fail('the package has no binding.gyp');
  const dir = path.join(cacheDir(), 'addon-builds', `${pkg.name.replace(/[^A-Za-z0-9._-]/g, '_')}@${pkg.version}-node${nodeVersion}-${target}`);
  const built = path.join(dir, 'build', 'Release', path.basename(file));
  if (existsSync(built)) return built;

  const headers = nodeHeaders(nodeVersion, target, log);
  const gyp = nodeGypScript();
  if (!gyp) throw fail('node-gyp was not found (it comes with npm; or npm install -D node-gyp)');
  log(`native   rebuilding ${what} for Node ${nodeVersion} (once; cached in ${dir})`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = mkdtempSync(`${dir}.tmp-`);
  try {
    cpSync(pkgDir, tmp, { recursive: true, filter: (src) => !/[\\/](build|node_modules)$/.test(src) || src === pkgDir });
    // A rebuild takes minutes: in a terminal, node-gyp's own lines (one per compiled file) are the
    // progress; elsewhere they are kept for the error message.
    const live = process.stderr.isTTY === true;
    const r = spawnSync(process.execPath, [gyp, 'rebuild', '--release', `--target=${nodeVersion}`, `--nodedir=${headers}`, `--jobs=max`], {
      cwd: tmp,
      encoding: 'utf8',
      env: { ...process.env, npm_config_nodedir: headers },
      stdio: live ? ['ignore', 2, 2] : 'pipe',
    });
    if (r.status !== 0) throw fail(live ? `node-gyp failed (its output is above)` : ((r.stderr || r.stdout) ?? '').trim().split('\n').slice(-3).join(' / '));
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (!existsSync(built)) throw fail(`node-gyp made no ${path.relative(dir, built)}`);
  return built;
}

function nodeGypScript(): string | null {
  const candidates = [
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(path.dirname(process.execPath), 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(packageRoot, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c) => existsSync(c)) ?? null;
}

/** include/node for a Node version, from the npm package node-<target>@<version> (cached). */
function nodeHeaders(version: string, target: Target, log: (line: string) => void): string {
  const dir = path.join(cacheDir(), 'headers', `v${version}`);
  if (existsSync(path.join(dir, 'include', 'node', 'node.h'))) return dir;
  const pkg = `node-${target}@${version}`;
  log(`native   fetching Node ${version} headers from ${pkg} (once; cached in ${dir})`);
  mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = mkdtempSync(path.join(path.dirname(dir), '.fetch-'));
  try {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const packedRun = spawnSync(npm, ['pack', pkg, '--pack-destination', tmp, '--silent'], { encoding: 'utf8', shell: process.platform === 'win32' });
    if (packedRun.status !== 0) throw new UserError(`could not fetch ${pkg} for its headers: ${(packedRun.stderr || packedRun.stdout).trim().split('\n').pop()}`);
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    if (!tarball) throw new UserError(`npm pack ${pkg} produced no tarball`);
    const untar = spawnSync('tar', ['-xzf', tarball, 'package/include'], { cwd: tmp, encoding: 'utf8' });
    if (untar.status !== 0) throw new UserError(`${pkg} has no include/ folder: ${untar.stderr.trim()}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    renameSync(path.join(tmp, 'package', 'include'), path.join(dir, 'include'));
    return dir;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Run-time side: writes an addon asset once into a private cache folder and loads it. The file
 * is named by its hash and checked before use; the folder must belong to this user and be
 * closed to others (POSIX), so no other account can plant a library there.
 */
const LOADER_MODULE = String.raw`'use strict';
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const crypto = require('node:crypto');
const loaded = new Map();

function candidates() {
  const out = [];
  if (process.env.ISAPI_ADDON_CACHE) out.push(process.env.ISAPI_ADDON_CACHE);
  if (process.platform === 'win32') {
    if (process.env.LOCALAPPDATA) out.push(path.join(process.env.LOCALAPPDATA, 'node-isapi', 'addons'));
  } else {
    const home = (() => { try { return os.homedir(); } catch { return ''; } })();
    out.push(process.env.XDG_CACHE_HOME ? path.join(process.env.XDG_CACHE_HOME, 'node-isapi', 'addons') : home ? path.join(home, '.cache', 'node-isapi', 'addons') : '');
  }
  const user = (() => { try { return os.userInfo().username; } catch { return String(process.getuid ? process.getuid() : 'user'); } })();
  out.push(path.join(os.tmpdir(), 'node-isapi-' + user.replace(/[^A-Za-z0-9._-]/g, '_'), 'addons'));
  return out.filter(Boolean);
}

function privateDir(dir) {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (process.platform !== 'win32') {
    const st = fs.statSync(dir);
    if (st.uid !== process.getuid() || (st.mode & 0o022) !== 0) throw new Error(dir + ' is not private to this user');
  }
  return dir;
}

function sha256(file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

module.exports = function loadAddon(a) {
  const done = loaded.get(a.asset);
  if (done) return done.exports;
  let sea = null;
  try { sea = require('node:sea'); } catch {}
  if (!sea || !sea.isSea()) {
    // The bundle run by plain node at pack time: the addon is still where it was packed from.
    const mod = { exports: {} };
    process.dlopen(mod, a.file);
    loaded.set(a.asset, mod);
    return mod.exports;
  }
  const errors = [];
  for (const base of candidates()) {
    try {
      const dir = privateDir(path.join(base, a.sha256.slice(0, 16)));
      const file = path.join(dir, path.basename(a.asset));
      if (!fs.existsSync(file) || fs.statSync(file).size !== a.size || sha256(file) !== a.sha256) {
        const tmp = file + '.' + process.pid + '.tmp';
        fs.writeFileSync(tmp, new Uint8Array(sea.getAsset(a.asset)), { mode: 0o700 });
        fs.renameSync(tmp, file);
      }
      const mod = { exports: {} };
      process.dlopen(mod, file);
      loaded.set(a.asset, mod);
      return mod.exports;
    } catch (err) {
      errors.push(base + ': ' + (err && err.message));
    }
  }
  throw new Error('node-isapi: could not load the native addon ' + a.asset + ' (set ISAPI_ADDON_CACHE to a writable folder private to this user): ' + errors.join('; '));
};
`;
