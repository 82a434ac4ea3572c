// An addon built for another Node ABI (node_register_module_v<N>, not Node-API) is rebuilt from
// the package's binding.gyp with node-gyp, for the worker's Node, against that version's headers
// (from the same npm package as its binary); once per package version, Node version and target.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { unpackTarball } from './npm_fetch';
import { cacheDir, hostTarget, packageRoot, type Target } from './paths';
import { UserError } from './user_error';

/** NODE_MODULE_VERSION by Node major version. */
export const NODE_ABI: Record<number, number> = { 18: 108, 19: 111, 20: 115, 21: 120, 22: 127, 23: 131, 24: 137, 25: 141 };

/**
 * Rebuilds a package's addon for another Node version with node-gyp, against that version's
 * headers; cached per package version, Node version and target in the user's cache.
 */
export function rebuildAddon(
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
  const tmp = unpackTarball(pkg, dir, ['package/include']);
  try {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    renameSync(path.join(tmp, 'package', 'include'), path.join(dir, 'include'));
    return dir;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
