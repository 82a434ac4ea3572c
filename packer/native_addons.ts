// Native addons in dependencies. A `.node` file cannot be bundled into JavaScript: it is carried
// inside the SEA as an asset and loaded at run time by packer/addon_loader.ts. Packages find
// their addon in these ways, all handled here for the worker's target (which may be another
// platform than the build machine's):
//   - require('./x.node') of a file in the package;
//   - require('bindings')('x.node') (better-sqlite3, sqlite3…) and require('node-gyp-build')(__dirname)
//     (prebuildify: utf-8-validate, bufferutil…), answered from build/Release or from the
//     package's prebuilds/<os>-<arch>/ folder for the target;
//   - napi-rs platform packages, `<pkg>-<os>-<arch>[-<abi>]` in the package's optionalDependencies
//     (@node-rs/*, @napi-rs/*…): npm installs only the build machine's, so the target's is
//     fetched from the npm registry (packer/npm_fetch.ts) when it is not installed.
// An addon built for another Node ABI is rebuilt for the worker's Node (packer/addon_rebuild.ts).
import type { OnResolveArgs, Plugin, PluginBuild } from 'esbuild';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ADDON_LOADER_MODULE } from './addon_loader';
import { NODE_ABI, rebuildAddon } from './addon_rebuild';
import { fetchPackage } from './npm_fetch';
import { hostTarget, packageRoot, type Target } from './paths';
import { UserError } from './user_error';

const NATIVE_LOADER = 'isapi-native-loader';

/** A binary's operating system and architecture, as Node names them (process.platform, process.arch). */
interface Platform {
  os: string;
  arch: string;
}

/** 'win-x64' → win32/x64, 'linux-x64' → linux/x64 (and any '<os>-<arch>' target alike). */
function targetPlatform(target: Target): Platform {
  const [os, arch] = target.split('-') as [string, string];
  return { os: os === 'win' ? 'win32' : os, arch };
}

const ELF_MACHINES: Record<number, string> = { 0x3e: 'x64', 0x03: 'ia32', 0xb7: 'arm64', 0x28: 'arm' };
const PE_MACHINES: Record<number, string> = { 0x8664: 'x64', 0x14c: 'ia32', 0xaa64: 'arm64' };

/**
 * What a .node file is, from its header: its OS and architecture (a win32-ia32 and a win32-x64
 * build are both "MZ" files), and, if it is not Node-API, the Node ABI it was built for.
 */
export function inspectAddon(file: string): Platform & { abi: number | null } {
  const buf = readFileSync(file);
  let os = 'other';
  let arch = 'other';
  if (buf.length > 20 && buf[0] === 0x7f && buf.toString('latin1', 1, 4) === 'ELF') {
    os = 'linux';
    arch = ELF_MACHINES[buf.readUInt16LE(18)] ?? 'other';
  } else if (buf.length > 0x40 && buf.toString('latin1', 0, 2) === 'MZ') {
    os = 'win32';
    const pe = buf.readUInt32LE(0x3c);
    if (pe + 6 <= buf.length && buf.toString('latin1', pe, pe + 4) === 'PE\0\0') arch = PE_MACHINES[buf.readUInt16LE(pe + 4)] ?? 'other';
  }
  const m = /node_register_module_v(\d+)/.exec(buf.toString('latin1'));
  return { os, arch, abi: m ? Number(m[1]) : null };
}

/** A .node file registered as an asset. */
interface PackedAddon {
  asset: string;
  sha256: string;
  size: number;
  /**
   * Files to load when the bundle runs outside a SEA, on the build machine (the pack's describe
   * step, isapi dev), by process.platform: the packed file, and for another target the
   * package's build for this machine if it has one.
   */
  local: Record<string, string>;
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

interface PackageJson {
  name: string;
  version: string;
  optionalDependencies?: Record<string, string>;
  dependencies?: Record<string, string>;
  scripts?: Record<string, string>;
}

function readPackage(dir: string): PackageJson {
  try {
    const p = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as Partial<PackageJson>;
    return { ...p, name: p.name ?? path.basename(dir), version: p.version ?? '0.0.0' };
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

// napi-rs names a platform package `<pkg>-<os>-<arch>[-<abi>]` (crc32-win32-x64-msvc).
const PLATFORM_PACKAGE =
  /^((?:@[^/]+\/)?[^/@]+?-(win32|linux|darwin|freebsd|android|openbsd|sunos|aix)-(x64|ia32|arm64|arm|riscv64|s390x|ppc64|loong64|wasm32)((?:-[a-z0-9]+)*))(\/.*)?$/;

/** The platform package suffixes that run on a target, best first. */
function napiSuffixes(p: Platform): string[] {
  return p.os === 'linux' ? [`linux-${p.arch}-gnu`, `linux-${p.arch}`] : p.os === 'win32' ? [`win32-${p.arch}-msvc`, `win32-${p.arch}-gnu`, `win32-${p.arch}`] : [`${p.os}-${p.arch}`];
}

export class NativeAddons {
  readonly assets: Record<string, string> = {};
  readonly names: string[] = [];
  private readonly packed = new Map<string, PackedAddon>();
  private readonly platform: Platform;
  private readonly host: Platform;
  private readonly cross: boolean;

  constructor(
    private readonly target: Target,
    private readonly nodeVersion: string,
    private readonly log: (line: string) => void,
  ) {
    this.platform = targetPlatform(target);
    this.host = targetPlatform(hostTarget());
    this.cross = target !== hostTarget();
  }

  plugin(): Plugin {
    return {
      name: 'isapi-native-addons',
      setup: (b) => {
        b.onResolve({ filter: new RegExp(`^${NATIVE_LOADER}$`) }, () => ({ path: NATIVE_LOADER, namespace: 'isapi-native' }));
        b.onResolve({ filter: /^(bindings|node-gyp-build)$/ }, (args) => {
          if (!args.importer || args.namespace !== 'file') return undefined;
          return { path: packageRootOf(args.importer), namespace: 'isapi-native', pluginData: { kind: args.path } };
        });
        b.onResolve({ filter: /\.node$/ }, (args) => this.resolveNodeFile(args));
        b.onResolve({ filter: PLATFORM_PACKAGE }, (args) => this.resolvePlatformPackage(b, args));
        b.onLoad({ filter: /.*/, namespace: 'isapi-native' }, (args) => {
          if (args.path === NATIVE_LOADER) return { contents: ADDON_LOADER_MODULE, loader: 'js', resolveDir: packageRoot };
          const kind = (args.pluginData as { kind: string }).kind;
          if (kind === 'file') {
            const a = this.pack(args.path, packageRootOf(args.path));
            return { contents: `module.exports = require(${JSON.stringify(NATIVE_LOADER)})(${JSON.stringify(a)});`, loader: 'js', resolveDir: packageRoot };
          }
          if (kind === 'foreign') {
            // Required only on another platform's branch of a package's loader (or a mistake,
            // which this names when it runs).
            const p = inspectAddon(args.path);
            const msg = `node-isapi: ${path.basename(args.path)} is a ${p.os}-${p.arch} binary; this worker runs on ${this.target}`;
            return { contents: `const e = new Error(${JSON.stringify(msg)}); e.code = 'MODULE_NOT_FOUND'; throw e;`, loader: 'js' };
          }
          return this.moduleFor(kind, args.path);
        });
      },
    };
  }

  private fits(file: string, p: Platform = this.platform): boolean {
    const i = inspectAddon(file);
    return i.os === p.os && i.arch === p.arch;
  }

  /** require('./x.node'): the target's binary is packed; another platform's is left out. */
  private resolveNodeFile(args: OnResolveArgs) {
    if (args.namespace !== 'file') return undefined;
    const file = path.resolve(args.resolveDir, args.path);
    // Missing (an optional build a loader tries first): esbuild reports it, or keeps it as a
    // run-time require when it sits in a try block, which the package's own catch handles.
    if (!existsSync(file)) return undefined;
    if (this.fits(file)) return { path: file, namespace: 'isapi-native', pluginData: { kind: 'file' } };
    // Packing for another target: the build machine's binary stays a plain require of its
    // absolute path, for the describe step only (the target's branch of the loader runs on it).
    if (this.cross && this.fits(file, this.host)) return { path: file, external: true };
    return { path: file, namespace: 'isapi-native', pluginData: { kind: 'foreign' } };
  }

  /**
   * require('<pkg>-<os>-<arch>-<abi>') from the package that lists it in optionalDependencies:
   * the target's is resolved where it is installed, else fetched from the npm registry; others
   * stay unresolved requires, which the napi-rs loader never reaches on the target.
   */
  private async resolvePlatformPackage(b: PluginBuild, args: OnResolveArgs) {
    if (args.namespace !== 'file' || !args.importer || (args.pluginData as { isapi?: boolean } | undefined)?.isapi) return undefined;
    const m = PLATFORM_PACKAGE.exec(args.path)!;
    const name = m[1]!;
    const suffix = `${m[2]}-${m[3]}${m[4]}`;
    const owner = readPackage(packageRootOf(args.importer));
    const range = owner.optionalDependencies?.[name] ?? owner.dependencies?.[name];
    if (!range) return undefined;
    const again = (resolveDir: string) => b.resolve(args.path, { kind: args.kind, resolveDir, importer: args.importer, pluginData: { isapi: true } });
    const found = (p: string) => (p.endsWith('.node') ? { path: p, namespace: 'isapi-native', pluginData: { kind: 'file' } } : { path: p });
    if (napiSuffixes(this.platform).includes(suffix)) {
      const installed = await again(args.resolveDir);
      if (installed.errors.length === 0) return found(installed.path);
      const root = fetchPackage(name, range, `${owner.name}@${owner.version} on ${this.target}`, this.log);
      const fetched = await again(root);
      if (fetched.errors.length) throw new UserError(`cannot pack ${owner.name}: ${name}@${range}, fetched from the npm registry into ${root}, does not resolve: ${fetched.errors[0]!.text}`);
      return found(fetched.path);
    }
    if (this.cross && napiSuffixes(this.host).includes(suffix)) {
      const installed = await again(args.resolveDir);
      if (installed.errors.length === 0) return { path: installed.path, external: true };
    }
    return undefined;
  }

  /** The module that replaces `bindings` or `node-gyp-build` for the package at pkgDir. */
  private moduleFor(kind: string, pkgDir: string) {
    const pkg = readPackage(pkgDir);
    const candidates = [...findNodeFiles(path.join(pkgDir, 'build', 'Release')), ...findNodeFiles(path.join(pkgDir, 'prebuilds'))].filter(
      (f) => !/test_extension|[\\/]obj[\\/]/.test(f),
    );
    const usable = this.best(candidates, this.platform);
    if (usable.length === 0) throw new UserError(this.noBinary(kind, pkgDir, pkg, candidates));
    const hostFiles = this.cross ? this.best(candidates, this.host) : [];
    const files: Record<string, PackedAddon> = {};
    for (const f of usable) {
      const base = path.basename(f);
      if (files[base]) continue;
      files[base] = this.pack(f, pkgDir, hostFiles.find((h) => path.basename(h) === base) ?? hostFiles[0]);
    }
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

  /**
   * The candidates that run on a platform, best first, as node-gyp-build picks: build/Release
   * before prebuilds; no Electron or musl builds (the worker is Node on glibc); a Node-API build
   * or one for the worker's ABI before one for another ABI (which would need a rebuild).
   */
  private best(candidates: string[], p: Platform): string[] {
    const want = NODE_ABI[Number(this.nodeVersion.split('.')[0])];
    const score = (f: string) => {
      const tags = path.basename(f).split('.').slice(1, -1);
      const abiTag = tags.map((t) => /^abi(\d+)$/.exec(t)).find(Boolean);
      return (
        (f.includes(`${path.sep}prebuilds${path.sep}`) ? 10 : 0) +
        (abiTag && Number(abiTag[1]) !== want ? 5 : 0) +
        (tags.includes('napi') ? 0 : 1)
      );
    };
    return candidates
      .filter((f) => !/electron|musl/.test(path.basename(f)) && this.fits(f, p))
      .sort((a, b) => score(a) - score(b));
  }

  /** The one line that says why a package's addon cannot be packed, and the way out. */
  private noBinary(kind: string, pkgDir: string, pkg: PackageJson, candidates: string[]): string {
    const what = `${pkg.name}@${pkg.version}`;
    const dir = `${this.platform.os}-${this.platform.arch}`;
    const names = [...new Set(candidates.map((f) => path.basename(f).replace(/\.(napi|glibc|abi\d+)(?=\.)/g, '')))];
    const file = names[0] ?? `${pkg.name.replace(/^@.*\//, '')}.node`;
    const abi = NODE_ABI[Number(this.nodeVersion.split('.')[0])];
    const putIt = `put a ${dir} build of ${file} for Node ${this.nodeVersion} (Node-API, or ABI ${abi}) at ${path.join(path.relative(process.cwd(), pkgDir) || '.', 'prebuilds', dir, file)} and pack again`;
    if (!this.cross) {
      const found = candidates.length ? `only ${candidates.map((f) => path.relative(pkgDir, f)).join(', ')}, built for another platform` : 'none';
      return `cannot pack ${what}: it loads a native addon (via ${kind}) and no ${this.target} build of it was found in ${pkgDir} (${found}); run \`npm rebuild ${pkg.name}\``;
    }
    const installScript = `${pkg.scripts?.install ?? ''} ${pkg.scripts?.preinstall ?? ''}`;
    const downloader = /prebuild-install|node-pre-gyp|prebuild\b/.exec(installScript)?.[0] ?? (pkg.dependencies?.['prebuild-install'] ? 'prebuild-install' : null);
    const has = [...new Set(candidates.map((f) => { const i = inspectAddon(f); return `${i.os}-${i.arch}`; }))].join(', ') || 'none';
    if (downloader) {
      return (
        `cannot pack ${what} for ${this.target}: its native addon's ${dir} binary is not on the npm registry (${downloader} downloads it from elsewhere, e.g. GitHub, when npm installs on ${this.platform.os}; this package has: ${has}). ` +
        `Way out: pack on ${this.target} (npx isapi pack there, after npm install), or ${putIt}`
      );
    }
    return `cannot pack ${what} for ${this.target}: its native addon (via ${kind}) ships no ${dir} binary (it has: ${has}) and addons cannot be compiled for ${this.target} here. Way out: pack on ${this.target}, or ${putIt}`;
  }

  /** Registers one .node file as an asset, rebuilt first if it was built for another Node ABI. */
  private pack(file: string, pkgDir: string, hostFile?: string): PackedAddon {
    const known = this.packed.get(file);
    if (known) return known;
    const pkg = readPackage(pkgDir);
    let use = file;
    const info = inspectAddon(file);
    const want = NODE_ABI[Number(this.nodeVersion.split('.')[0])];
    if (info.abi !== null && want !== undefined && info.abi !== want) {
      use = rebuildAddon(file, pkgDir, pkg, this.nodeVersion, this.target, info.abi, this.log);
    }
    const data = readFileSync(use);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const asset = `addons/${pkg.name.replace(/[^A-Za-z0-9._-]/g, '_')}/${path.basename(use)}`;
    this.assets[asset] = use;
    this.names.push(`${pkg.name}:${path.basename(use)}`);
    const local: Record<string, string> = { [this.platform.os]: use };
    if (hostFile && this.host.os !== this.platform.os) local[this.host.os] = hostFile;
    const a = { asset, sha256, size: data.length, local };
    this.packed.set(file, a);
    return a;
  }
}
