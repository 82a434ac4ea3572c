// `isapi pack <script>`: bundle → SEA blob → inject into the target's Node → place the bridge
// → write the manifest. Everything happens in a temporary folder beside the output, renamed
// into place at the end: a failed pack leaves no half-written folder.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { bundleWorker, scriptExports } from './bundle';
import { describeScript } from './describe';
import { describeFile, manifestFileName, type Manifest } from './manifest';
import { DEFAULT_NODE_VERSION, ensureNodeBinaryWithProgress } from './node_binary';
import { bridgeBinary, hostTarget, packageRoot, TARGETS, type Target } from './paths';
import { buildSea } from './sea';
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
  const win = target === 'win-x64';
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
  const bridge = bridgeBinary(target);

  mkdirSync(outRoot, { recursive: true });
  const work = mkdtempSync(path.join(outRoot, `.${name}.packing-`));
  try {
    const staging = path.join(work, name);
    mkdirSync(staging);
    // .cjs: the describe step runs it with node, and a package.json above may say "type": "module".
    const bundleFile = path.join(work, `${name}.bundle.cjs`);
    const bundled = await step('bundle', () => bundleWorker(script, name, bundleFile, { target, nodeVersion, log }), (r) =>
      `${(r.bytes / 1024).toFixed(0)} KiB${r.addons.length ? `, native addons: ${r.addons.join(', ')}` : ''}`,
    );

    const hostNode = await step('node', () => ensureNodeBinaryWithProgress(hostTarget(), nodeVersion, log), () => `${hostTarget()} v${nodeVersion}`);
    const targetNode = target === hostTarget() ? hostNode : await ensureNodeBinaryWithProgress(target, nodeVersion, log);
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
    const workerFile = path.join(staging, win ? `${name}.exe` : name);
    await step('sea', () =>
      buildSea({
        main: bundleFile, blobMaker: hostNode, targetNode, output: workerFile, workDir: work, sameplatform: target === hostTarget(), assets: bundled.assets,
        version: version(path.basename(workerFile), `${app.product} (node-isapi worker)`, 'app'),
      }),
      () => path.basename(workerFile),
    );

    // The installer: a second SEA from the same script plus installer/main.ts (reads the
    // script's `install` export and custom verbs; never runs its factories).
    const installerBundle = path.join(work, `${name}.installer.js`);
    const installer = await step('installer', () => bundleInstaller(script, name, installerBundle, { target, nodeVersion }), (r) => `${(r.bytes / 1024).toFixed(0)} KiB`);
    const installerFile = path.join(staging, win ? 'install.exe' : 'install');
    if (installerFile === workerFile) throw new UserError(`a script named '${name}' would overwrite the folder's installer: rename the script`);
    await step('sea', () =>
      buildSea({
        main: installerBundle, blobMaker: hostNode, targetNode, output: installerFile, workDir: work, sameplatform: target === hostTarget(), assets: installer.assets,
        version: version('install.exe', `${app.product} installer (node-isapi)`, 'app'),
      }),
      () => path.basename(installerFile),
    );

    const bridgeFile = path.join(staging, `_${name}${win ? '.dll' : '.so'}`);
    copyFileSync(bridge, bridgeFile);
    const bridgeVersion = version(path.basename(bridgeFile), `${app.product} ISAPI bridge (node-isapi)`, 'dll');
    if (bridgeVersion) {
      // The bridge is built with a placeholder version resource (native/bridge/bridge_version.rc).
      const stamped = setPeVersion(readFileSync(bridgeFile), bridgeVersion);
      if (stamped) writeFileSync(bridgeFile, stamped.image);
      else log(`warning: ${path.basename(bridgeFile)} keeps the bridge's own version resource (unexpected PE layout)`);
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
