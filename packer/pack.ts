// `isapi pack <script>`: bundle → SEA blob → inject into the target's Node → place the bridge
// and the installer's launcher → write the manifest. Everything happens in a temporary folder beside the output, renamed
// into place at the end: a failed pack leaves no half-written folder.
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorker, scriptExports } from './bundle';
import { describeScript } from './describe';
import { describeFile, manifestFileName, type Manifest } from './manifest';
import { DEFAULT_NODE_VERSION, ensureNodeBinaryWithProgress } from './node_binary';
import { bridgeBinary, hostTarget, isWindowsTarget, launcherBinary, packageRoot, TARGETS, type Target } from './paths';
import { buildSea } from './sea';
import { INSTALLER_ASSET, seaMainSource, WORKER_ASSET } from './sea_main';
import { setPeVersion, type VersionInfo } from './pe_resource';
import { bundleInstaller } from '../installer/build';
import { UserError } from './user_error';

export interface PackOptions {
  script: string;
  outDir?: string;
  target?: Target;
  node?: string;
  log?: (line: string) => void;
}

export interface PackResult {
  folder: string;
  manifest: Manifest;
}

/**
 * Moves the packed files into the output folder. A new folder is renamed into place. An existing
 * one (being served, say) keeps everything the packer did not write — logs/, public/, any file
 * of the user's: only the files the previous manifest lists are replaced or removed, each by
 * one rename, the worker executable last (the bridge picks a changed worker up as a redeploy).
 */
function placeFolder(staging: string, folder: string, name: string, files: string[]): void {
  if (!existsSync(folder)) {
    renameSync(staging, folder);
    return;
  }
  const manifestName = manifestFileName(name);
  let previous: string[] = [];
  try {
    const old = JSON.parse(readFileSync(path.join(folder, manifestName), 'utf8')) as Partial<Manifest>;
    previous = Object.keys(old.files ?? {});
  } catch {
    // no manifest (or not ours): replace only what this pack writes
  }
  const worker = files.find((f) => f === name || f === `${name}.exe`);
  const order = [manifestName, ...files.filter((f) => f !== worker), ...(worker ? [worker] : [])];
  for (const f of order) {
    try {
      renameSync(path.join(staging, f), path.join(folder, f));
    } catch (err) {
      throw new UserError(
        `cannot replace ${path.join(folder, f)}: ${(err as Error).message}. The folder is in use: ` +
          `stop the web server (or drop app_offline.htm into the folder) and pack again`,
      );
    }
  }
  for (const f of previous) {
    if (!files.includes(f) && f !== manifestName && !f.includes('/') && !f.includes('\\')) rmSync(path.join(folder, f), { force: true });
  }
}

/** hello.ts → hello; names become file names and a URL path, so keep them plain. */
export function extensionName(script: string): string {
  const base = path.basename(script).replace(/\.(m|c)?(t|j)sx?$/, '');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(base)) {
    throw new UserError(`cannot derive a name from '${path.basename(script)}': use letters, digits, '-', '_' and '.'`);
  }
  return base;
}

function nodeIsapiVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

/**
 * The application's name and version for the Windows version resources: from the nearest
 * package.json above the script (its name, version, author, license), else the script's name
 * and 0.0.0.
 */
export function appIdentity(script: string, name: string): { product: string; version: string; company?: string; copyright?: string } {
  for (let dir = path.dirname(script); ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string; author?: string | { name?: string }; license?: string };
        const author = typeof pkg.author === 'string' ? pkg.author.replace(/\s*[<(].*$/, '') : pkg.author?.name;
        return {
          product: pkg.name ? `${name} (${pkg.name})` : name,
          version: pkg.version ?? '0.0.0',
          company: author || undefined,
          copyright: author ? `${author}${pkg.license ? `, ${pkg.license} license` : ''}` : undefined,
        };
      } catch {
        break;
      }
    }
    if (path.dirname(dir) === dir) break;
  }
  return { product: name, version: '0.0.0' };
}

export interface NativeFiles {
  /** The platform of the worker executable (its Node binary and native addons). */
  workerTarget: Target;
  /** The bridge the web server loads: the built file, and its name in the folder. */
  bridge: { from: string; file: string };
  /** The worker's Node-API addon when it is not the bridge itself. */
  addon?: { from: string; file: string };
}

/**
 * A target's native files. The worker loads the bridge binary as its Node-API addon, except on
 * win-ia32: a 32-bit IIS pool loads the 32-bit bridge, whose workers are x64 Node (no 32-bit
 * Node needed) and so load the x64 build of the bridge, packed beside it under the name the
 * 32-bit bridge gives them (native/bridge/bridge_state.cc, worker_addon_for).
 */
export function nativeFilesFor(target: Target, name: string): NativeFiles {
  const bridge = { from: bridgeBinary(target), file: `_${name}${isWindowsTarget(target) ? '.dll' : '.so'}` };
  if (target !== 'win-ia32') return { workerTarget: target, bridge };
  return { workerTarget: 'win-x64', bridge, addon: { from: bridgeBinary('win-x64'), file: `_${name}.x64.node` } };
}

export async function pack(o: PackOptions): Promise<PackResult> {
  const log = o.log ?? (() => {});
  const target = o.target ?? hostTarget();
  if (!TARGETS.includes(target)) throw new UserError(`unknown --target '${target}': use ${TARGETS.join(' or ')}`);
  const nodeVersion = o.node ?? DEFAULT_NODE_VERSION;
  const script = path.resolve(o.script);
  if (!existsSync(script)) throw new UserError(`${o.script}: no such file`);
  const name = extensionName(script);
  const outRoot = path.resolve(o.outDir ?? 'dist');
  const folder = path.join(outRoot, name);
  const win = isWindowsTarget(target);
  if (win && nodeVersion !== DEFAULT_NODE_VERSION) {
    // The default is the version the Wine suite runs on every CI run; others build the same way
    // but nothing here has run them.
    const major = Number(nodeVersion.split('.')[0]);
    log(
      `warning: Node ${nodeVersion} is untested on win-x64 (the tested version is ${DEFAULT_NODE_VERSION})` +
        (major >= 24 ? `; Node 24 and later do not start under Wine, so \`isapi serve --wine\` cannot run this folder (Windows can)` : ''),
    );
  }

  const step = async <T>(label: string, fn: () => Promise<T> | T, detail?: (r: T) => string): Promise<T> => {
    const t0 = Date.now();
    const r = await fn();
    log(`${label.padEnd(8)} ${detail ? detail(r) + ' ' : ''}(${Date.now() - t0} ms)`);
    return r;
  };

  const exportsFound = await step('check', () => scriptExports(script), (e) =>
    `${path.relative(process.cwd(), script)} exports ${e.names.filter((n) => n.startsWith('__')).join(', ') || 'nothing ISAPI'}`,
  );
  if (!exportsFound.extension && !exportsFound.filter) {
    throw new UserError(
      `${path.relative(process.cwd(), script)} exports no extension: export a function __ExtensionFactory__() ` +
        `returning an Extension (or __FilterFactory__ for a filter)`,
    );
  }
  const natives = nativeFilesFor(target, name);
  const workerTarget = natives.workerTarget;

  mkdirSync(outRoot, { recursive: true });
  const work = mkdtempSync(path.join(outRoot, `.${name}.packing-`));
  try {
    const staging = path.join(work, name);
    mkdirSync(staging);
    // .cjs: the describe step runs it with node, and a package.json above may say "type": "module".
    const bundleFile = path.join(work, `${name}.bundle.cjs`);
    const bundled = await step('bundle', () => bundleWorker(script, name, bundleFile, { target: workerTarget, nodeVersion, log }), (r) =>
      `${(r.bytes / 1024).toFixed(0)} KiB${r.addons.length ? `, native addons: ${r.addons.join(', ')}` : ''}`,
    );

    const hostNode = await step('node', () => ensureNodeBinaryWithProgress(hostTarget(), nodeVersion, log), () => `${hostTarget()} v${nodeVersion}`);
    const targetNode = workerTarget === hostTarget() ? hostNode : await ensureNodeBinaryWithProgress(workerTarget, nodeVersion, log);
    const described = await step('describe', () => describeScript(hostNode, bundleFile, path.relative(process.cwd(), script), { exports: exportsFound, log }), (d) =>
      [d.extension && 'extension', d.filter && `filter (flags 0x${d.filterFlags.toString(16)})`].filter(Boolean).join(' + '),
    );
    const app = appIdentity(script, name);
    const version = (fileName: string, description: string, kind: VersionInfo['kind']): VersionInfo | undefined =>
      win
        ? {
            product: app.product,
            description,
            version: app.version,
            fileName,
            kind,
            company: app.company,
            copyright: app.copyright,
            comments: `packed by node-isapi ${nodeIsapiVersion()} with Node ${nodeVersion}`,
          }
        : undefined;
    // One executable, two programs (packer/sea_main.ts): the worker, and the installer (the
    // same script plus installer/main.ts, which reads its `install` export and custom verbs and
    // never runs its factories). install / install.exe is the small native launcher that starts
    // this executable as the installer, so the folder carries one copy of Node.
    const installerBundle = path.join(work, `${name}.installer.cjs`);
    const installer = await step('installer', () => bundleInstaller(script, name, installerBundle, { target: workerTarget, nodeVersion }), (r) => `${(r.bytes / 1024).toFixed(0)} KiB`);
    const workerFile = path.join(staging, win ? `${name}.exe` : name);
    const installerFile = path.join(staging, win ? 'install.exe' : 'install');
    if (installerFile === workerFile) throw new UserError(`a script named '${name}' would overwrite the folder's installer: rename the script`);
    const seaMain = path.join(work, `${name}.sea-main.cjs`);
    writeFileSync(seaMain, seaMainSource());
    await step('sea', () =>
      buildSea({
        main: seaMain, blobMaker: hostNode, targetNode, output: workerFile, workDir: work, sameplatform: workerTarget === hostTarget(),
        // The installer's native addons are the worker's (same names and files): carried once.
        assets: { ...installer.assets, ...bundled.assets, [WORKER_ASSET]: bundleFile, [INSTALLER_ASSET]: installerBundle },
        version: version(path.basename(workerFile), `${app.product} (node-isapi worker)`, 'app'),
      }),
      () => path.basename(workerFile),
    );
    // The launcher has the worker's bitness: on win-ia32 both are x64 (only the bridge is 32-bit),
    // so the worker inherits a 64-bit process's environment.
    copyFileSync(launcherBinary(workerTarget), installerFile);
    chmodSync(installerFile, 0o755);
    const installerVersion = version('install.exe', `${app.product} installer (node-isapi)`, 'app');
    if (installerVersion) {
      // The launcher is built with a placeholder version resource (native/launcher/launcher.rc).
      const stamped = setPeVersion(readFileSync(installerFile), installerVersion);
      if (stamped) writeFileSync(installerFile, stamped.image);
      else log(`warning: install.exe keeps the launcher's own version resource (unexpected PE layout)`);
    }

    const bridgeFile = path.join(staging, natives.bridge.file);
    const addonFile = natives.addon && path.join(staging, natives.addon.file);
    for (const [from, file, description] of [
      [natives.bridge.from, bridgeFile, `${app.product} ISAPI bridge (node-isapi)`],
      ...(natives.addon && addonFile ? [[natives.addon.from, addonFile, `${app.product} worker addon, x64 (node-isapi)`]] : []),
    ] as const) {
      copyFileSync(from, file);
      const stamp = version(path.basename(file), description, 'dll');
      if (!stamp) continue;
      // The bridge is built with a placeholder version resource (native/bridge/bridge_version.rc).
      const stamped = setPeVersion(readFileSync(file), stamp);
      if (stamped) writeFileSync(file, stamped.image);
      else log(`warning: ${path.basename(file)} keeps the bridge's own version resource (unexpected PE layout)`);
    }

    const manifest: Manifest = {
      manifestVersion: 1,
      name,
      appVersion: app.version,
      target,
      node: nodeVersion,
      nodeIsapi: nodeIsapiVersion(),
      script: path.relative(process.cwd(), script).split(path.sep).join('/'),
      packedAt: new Date().toISOString(),
      entryPoints: { extension: described.extension, filter: described.filter },
      // Read by the bridge's GetFilterVersion (native/bridge/manifest_settings.cc): keep them
      // top-level scalars with these unique names.
      filterFlags: described.filterFlags,
      filterFailurePolicy: described.filterFailurePolicy,
      filterTimeoutMs: described.filterTimeoutMs,
      files: {
        [path.basename(bridgeFile)]: describeFile(bridgeFile, 'bridge'),
        ...(addonFile ? { [path.basename(addonFile)]: describeFile(addonFile, 'addon') } : {}),
        [path.basename(workerFile)]: describeFile(workerFile, 'worker'),
        [path.basename(installerFile)]: describeFile(installerFile, 'installer'),
      },
    };
    writeFileSync(path.join(staging, manifestFileName(name)), JSON.stringify(manifest, null, 2) + '\n');

    placeFolder(staging, folder, name, Object.keys(manifest.files));
    log(`packed   ${path.relative(process.cwd(), folder) || '.'}/ (${Object.keys(manifest.files).join(', ')}, ${manifestFileName(name)})`);
    return { folder, manifest };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
