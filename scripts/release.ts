// The release build, run by `npm pack` / `npm publish` (package.json "prepack"): everything the
// npm package ships, built and checked, so that installing it needs no compiler.
//
//   prebuilt/<target>/   the bridge and isapi-host of every target in TARGETS (packer/paths.ts)
//   build/isapi.cjs      the `isapi` command (bin/isapi.cjs loads it)
//   lib/                 the runtime as JavaScript for users' own code and tests:
//     node-isapi.cjs       the one implementation (CommonJS), both entry points in it
//     index.cjs/.mjs       `node-isapi`: require and import faces of it
//     testing.cjs/.mjs     `node-isapi/testing`
//     types/esm, types/cjs the .d.ts of both (the same text; a package.json marks cjs/ CommonJS)
//
// One implementation behind both `import` and `require`: a user's script and node-isapi/testing
// must see the same classes (the worker loop tests `instanceof InternalReloadException`), which
// two copies (a CJS and an ESM build) would break whenever both get loaded.
//
// Missing native builds are an error here, whatever the machine lacks: a package without one
// target's binaries would fail only on the user's machine. `npm run build:native` alone (from
// source) still tolerates a missing toolchain.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildCli } from './build-cli.js';
import { builtNativeDir, nativeFileNames, packageRoot, prebuiltNativeDir, TARGETS, type Target } from '../packer/paths';

const root = packageRoot;
const lib = path.join(root, 'lib');
const started = Date.now();
const log = (line: string) => console.log(`release: ${line}`);

function fail(message: string): never {
  console.error(`release: ${message}`);
  process.exit(1);
}

const mib = (bytes: number) => `${(bytes / (1 << 20)).toFixed(2)} MiB`;

// A sanitizer build must never be what ships.
delete process.env.ISAPI_SANITIZE;

// ---------------------------------------------------------------------------------------------
// Native parts.

function buildNative(): void {
  const env = { ...process.env };
  if ((TARGETS as readonly string[]).includes('win-ia32')) env.ISAPI_BUILD_WIN_IA32 = '1';
  const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'build-native.js')], { cwd: root, env, stdio: 'inherit' });
  if (r.status !== 0) fail('the native build failed (output above)');
}

/** What a binary's header says it is, for the checks below. */
function binaryKind(file: string): string {
  const head = readFileSync(file).subarray(0, 4096);
  if (head.readUInt32BE(0) === 0x7f454c46) {
    const machine = head.readUInt16LE(18);
    return machine === 0x3e ? 'elf-x64' : `elf-machine-0x${machine.toString(16)}`;
  }
  if (head.toString('latin1', 0, 2) === 'MZ') {
    const pe = head.readUInt32LE(0x3c);
    if (head.toString('latin1', pe, pe + 4) !== 'PE\0\0') return 'mz-without-pe';
    const machine = head.readUInt16LE(pe + 4);
    return machine === 0x8664 ? 'pe-x64' : machine === 0x14c ? 'pe-ia32' : `pe-machine-0x${machine.toString(16)}`;
  }
  return 'unknown';
}

const EXPECTED_KIND: Record<string, string> = { 'linux-x64': 'elf-x64', 'win-x64': 'pe-x64', 'win-ia32': 'pe-ia32' };

function copyPrebuilt(): Record<string, number> {
  rmSync(path.join(root, 'prebuilt'), { recursive: true, force: true });
  const sizes: Record<string, number> = {};
  for (const target of TARGETS as readonly Target[]) {
    const from = builtNativeDir(target);
    const to = prebuiltNativeDir(target);
    mkdirSync(to, { recursive: true });
    let total = 0;
    for (const name of nativeFileNames(target)) {
      const src = path.join(from, name);
      if (!existsSync(src)) {
        fail(`${target}: ${path.relative(root, src)} was not built; a release ships every target (${TARGETS.join(', ')}), so install its toolchain (mingw-w64 for Windows targets)`);
      }
      const kind = binaryKind(src);
      if (kind !== EXPECTED_KIND[target]) fail(`${target}: ${path.relative(root, src)} is ${kind}, not ${EXPECTED_KIND[target]}`);
      const dst = path.join(to, name);
      copyFileSync(src, dst);
      chmodSync(dst, 0o755);
      total += statSync(dst).size;
    }
    // A binary the native build makes but the package would not ship is a folder that packs
    // in a checkout and fails once installed.
    const extra = readdirSync(from, { withFileTypes: true })
      .filter((e) => e.isFile() && !nativeFileNames(target).includes(e.name))
      .map((e) => e.name);
    if (extra.length) fail(`${target}: ${extra.join(', ')} in ${path.relative(root, from)} would not ship: add ${extra.length > 1 ? 'them' : 'it'} to nativeFileNames() in packer/paths.ts`);
    sizes[target] = total;
  }
  return sizes;
}

// ---------------------------------------------------------------------------------------------
// The runtime as JavaScript, and its types.

const ENTRIES = { index: 'runtime/index.ts', testing: 'runtime/testing.ts' } as const;
type Entry = keyof typeof ENTRIES;

async function buildRuntime(): Promise<void> {
  rmSync(lib, { recursive: true, force: true });
  const impl = path.join(lib, 'node-isapi.cjs');
  await build({
    stdin: {
      contents: (Object.entries(ENTRIES) as Array<[Entry, string]>)
        .map(([name, file]) => `export * as ${name} from ${JSON.stringify(path.join(root, file))};`)
        .join('\n'),
      resolveDir: root,
      sourcefile: 'node-isapi-entry.js',
      loader: 'js',
    },
    bundle: true,
    outfile: impl,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    // Stack traces in users' tests (node --enable-source-maps) name runtime/*.ts, shipped beside.
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'warning',
  });
  const require = createRequire(import.meta.url);
  const loaded = require(impl) as Record<Entry, Record<string, unknown>>;
  for (const name of Object.keys(ENTRIES) as Entry[]) {
    const names = Object.keys(loaded[name]).filter((n) => n !== 'default' && n !== '__esModule').sort();
    const bad = names.filter((n) => !/^[A-Za-z_$][\w$]*$/.test(n));
    if (bad.length) fail(`${name}: exports that are not identifiers: ${bad.join(', ')}`);
    writeFileSync(
      path.join(lib, `${name}.cjs`),
      `'use strict';\n// node-isapi${name === 'index' ? '' : `/${name}`} for require(): see node-isapi.cjs.\nmodule.exports = require('./node-isapi.cjs').${name};\n`,
    );
    // Named exports spelled out: Node's ESM loader cannot see through the re-export above.
    writeFileSync(
      path.join(lib, `${name}.mjs`),
      `// node-isapi${name === 'index' ? '' : `/${name}`} for import: the same objects as require() gets (node-isapi.cjs).\n` +
        `import impl from './node-isapi.cjs';\n` +
        `export const {\n${names.map((n) => `  ${n},`).join('\n')}\n} = impl.${name};\n`,
    );
  }
}

/** Rewrites the relative specifiers of a .d.ts to the file they name, as NodeNext requires. */
function withExtensions(text: string, dir: string): string {
  return text.replace(/(from\s+|import\()(['"])(\.{1,2}\/[^'"]*)\2/g, (whole, lead: string, quote: string, spec: string) => {
    if (/\.(js|cjs|mjs)$/.test(spec)) return whole;
    const file = path.join(dir, spec);
    if (existsSync(`${file}.d.ts`)) return `${lead}${quote}${spec}.js${quote}`;
    if (existsSync(path.join(file, 'index.d.ts'))) return `${lead}${quote}${spec}/index.js${quote}`;
    fail(`types: ${spec} in ${dir} names no declaration file`);
  });
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
}

function buildTypes(): void {
  const esm = path.join(lib, 'types', 'esm');
  const cjs = path.join(lib, 'types', 'cjs');
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.types.json')], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) fail('tsc could not emit the declarations (errors above)');
  for (const file of walk(esm).filter((f) => f.endsWith('.d.ts'))) {
    let text = withExtensions(readFileSync(file, 'utf8'), path.dirname(file));
    // Node's types for Buffer, streams and http: a project made by `tsc --init` (types: []) loads
    // them only when a declaration asks.
    if (!text.includes('<reference types="node"')) text = `/// <reference types="node" />\n${text}`;
    writeFileSync(file, text);
    const twin = path.join(cjs, path.relative(esm, file));
    mkdirSync(path.dirname(twin), { recursive: true });
    writeFileSync(twin, text);
  }
  // The package is "type": "module", so TypeScript reads lib/types/esm as ES modules; the same
  // declarations describe require('node-isapi') once marked CommonJS.
  writeFileSync(path.join(cjs, 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);
}

// ---------------------------------------------------------------------------------------------
// Checks of the result, as a user would meet it.

async function check(pkg: { version: string; files: string[]; exports: Record<string, Record<string, Record<string, string>>> }): Promise<void> {
  for (const entry of pkg.files) {
    if (!existsSync(path.join(root, entry))) fail(`package.json "files" lists ${entry}, which is not there`);
  }
  for (const [subpath, conditions] of Object.entries(pkg.exports)) {
    if (typeof conditions !== 'object') continue;
    for (const [condition, files] of Object.entries(conditions)) {
      for (const file of Object.values(files)) {
        if (!existsSync(path.join(root, file))) fail(`exports["${subpath}"].${condition} names ${file}, which is not there`);
      }
    }
  }
  // Both faces give the same objects: one class, whichever way it was loaded.
  const require = createRequire(import.meta.url);
  for (const name of Object.keys(ENTRIES) as Entry[]) {
    const viaRequire = require(path.join(lib, `${name}.cjs`)) as Record<string, unknown>;
    const viaImport = (await import(pathToFileURL(path.join(lib, `${name}.mjs`)).href)) as Record<string, unknown>;
    const a = Object.keys(viaRequire).filter((n) => n !== '__esModule').sort().join();
    const b = Object.keys(viaImport).sort().join();
    if (a !== b) fail(`${name}: require() and import give different exports`);
    for (const key of Object.keys(viaImport)) if (viaImport[key] !== viaRequire[key]) fail(`${name}: ${key} differs between require() and import`);
  }
  await checkPackTimeSources(pkg.files);
  const cli = spawnSync(process.execPath, [path.join(root, 'bin', 'isapi.cjs'), '--version'], { encoding: 'utf8' });
  if (cli.status !== 0 || cli.stdout.trim() !== pkg.version) fail(`bin/isapi.cjs --version printed '${cli.stdout.trim()}${cli.stderr.trim()}', not ${pkg.version}`);
}

/**
 * The packer bundles these TypeScript sources into every folder at the user's pack time (the
 * worker's loop, `isapi dev`'s error worker, the installer): they, and everything they import,
 * must be in the package.
 */
function packTimeEntries(): string[] {
  const runtime = walk(path.join(root, 'runtime')).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
  return [...runtime.map((f) => path.relative(root, f)), 'installer/main.ts'];
}

async function checkPackTimeSources(files: string[]): Promise<void> {
  const result = await build({
    stdin: { contents: packTimeEntries().map((f) => `import ${JSON.stringify(path.join(root, f))};`).join('\n'), resolveDir: root, loader: 'js' },
    bundle: true,
    write: false,
    metafile: true,
    platform: 'node',
    packages: 'external',
    logLevel: 'silent',
    outfile: path.join(lib, 'pack-time-check.js'),
  });
  const shipped = (rel: string) => files.some((f) => (f.endsWith('/') ? rel.startsWith(f) : rel === f));
  const missing = Object.keys(result.metafile.inputs)
    .filter((f) => !f.startsWith('<stdin>'))
    .map((f) => path.relative(root, path.resolve(root, f)).split(path.sep).join('/'))
    .filter((rel) => !shipped(rel));
  if (missing.length) fail(`the packer bundles ${missing.join(', ')} at pack time, but package.json "files" does not ship it`);
}

// ---------------------------------------------------------------------------------------------

const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
buildNative();
const sizes = copyPrebuilt();
const cliFile: string = await buildCli();
await buildRuntime();
buildTypes();
await check(pkg);
for (const [target, bytes] of Object.entries(sizes)) log(`prebuilt/${target}: ${nativeFileNames(target as Target).join(', ')} (${mib(bytes)})`);
log(`build/isapi.cjs: ${mib(statSync(cliFile).size)}`);
log(`lib/: ${mib(walk(lib).reduce((n, f) => n + statSync(f).size, 0))} (runtime, import + require, .d.ts)`);
log(`node-isapi ${pkg.version} ready to pack in ${((Date.now() - started) / 1000).toFixed(1)} s`);
