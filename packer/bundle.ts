// Step 1 of a pack: esbuild bundles the user's script, its dependencies and our runtime into
// one CommonJS file for the SEA (a SEA's main script can only require built-in modules). Native
// addons are packer/native_addons.ts; what the bundle cannot carry is reported by
// packer/bundle_checks.ts.
import { build, type BuildFailure, type BuildOptions, type Message, type Metafile, type OutputFile } from 'esbuild';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { formatMessage, unbundledRequires } from './bundle_checks';
import { NativeAddons } from './native_addons';
import { hostTarget, packageRoot, type Target } from './paths';
import { UserError } from './user_error';

export { NativeAddons };

export interface ScriptExports {
  extension: boolean;
  filter: boolean;
  names: string[];
}

export function firstError(err: unknown, script: string): UserError {
  if (err instanceof UserError) return err;
  const errors: Message[] = (err as BuildFailure)?.errors ?? [];
  const e = errors[0];
  // Our plugins' own messages (native addons) are complete: esbuild's location would be the
  // plugin's code, not the user's.
  if (e?.detail instanceof UserError) return e.detail;
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
    if (spec.endsWith('.node')) return `cannot bundle "${spec}": no such file (a native addon that is not built: run \`npm rebuild\` in the script's project)`;
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
    // Then the production defaults (NODE_ENV, no listen()), which the user's top-level code sees.
    `import ${JSON.stringify(path.join(packageRoot, 'runtime', 'worker_defaults.ts'))};`,
    `import * as user from ${JSON.stringify(path.resolve(script))};`,
    `import { runWorker } from ${JSON.stringify(path.join(packageRoot, 'runtime', 'worker_main.ts'))};`,
    `runWorker(user, { name: ${JSON.stringify(name)} });`,
  ].join('\n');
}

/**
 * `import.meta` for every module of the bundle (CommonJS has none; esbuild would leave it empty):
 * in the packed worker, `dirname` is the folder of the worker executable (the packed folder, where
 * files the app reads at run time are deployed beside it) and `filename` is the script's file name
 * in that folder; run by plain Node on the build machine (the describe step, isapi dev), the
 * script's own folder and file. `url` is `filename` as a file: URL.
 */
export function importMetaOptions(script: string): Pick<BuildOptions, 'define' | 'banner'> {
  return { define: { 'import.meta': '__isapi_import_meta' }, banner: { js: importMetaBanner(script) } };
}

function importMetaBanner(script: string): string {
  const abs = path.resolve(script);
  return (
    `var __isapi_import_meta = (() => { const p = require("node:path"); let sea = false; ` +
    `try { sea = require("node:sea").isSea(); } catch {} ` +
    `const dirname = sea ? p.dirname(process.execPath) : ${JSON.stringify(path.dirname(abs))}; ` +
    `const filename = p.join(dirname, ${JSON.stringify(path.basename(abs))}); ` +
    `return { dirname, filename, url: require("node:url").pathToFileURL(filename).href }; })();`
  );
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
    define: { __ISAPI_MAP_ASSET__: JSON.stringify(MAP_ASSET), ...importMetaOptions(script).define },
    banner: importMetaOptions(script).banner,
    metafile: true,
    // V8 keeps a source with any non-ASCII character as a two-byte string: escaped, the app
    // costs half the memory (about 2 MiB less for an Express app).
    charset: 'ascii',
    alias: runtimeAlias,
    plugins: [addons.plugin()],
    // Warnings are returned and shown by the caller (bundleWarnings), each once.
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

/**
 * What a pack prints about a build besides errors: esbuild's warnings, and what the user's files
 * leave to run time (packer/bundle_checks.ts). Shared with `isapi dev`.
 */
export function bundleWarnings(result: { warnings: Message[]; metafile?: Metafile }): string[] {
  const lines = result.warnings.map((w) => formatMessage(w));
  if (result.metafile) lines.push(...unbundledRequires(result.metafile));
  return lines;
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
  const log = options.log ?? (() => {});
  const addons = new NativeAddons(options.target ?? hostTarget(), options.nodeVersion ?? process.versions.node, log);
  try {
    const result = await build(workerBuildOptions(script, name, appPath, addons));
    for (const line of bundleWarnings(result)) log(line);
    const bytes = writeWorkerFiles(result.outputFiles!, appPath, outFile);
    return {
      bytes,
      assets: { [APP_ASSET]: appPath, [MAP_ASSET]: `${appPath}.map`, ...addons.assets },
      addons: addons.names,
    };
  } catch (err) {
    for (const w of (err as BuildFailure)?.warnings ?? []) log(formatMessage(w));
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
