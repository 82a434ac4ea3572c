// Fetches one package from the npm registry with npm's own client (`npm pack <spec>`), unpacked
// once into the user's cache. Used for what a pack needs but the project does not have installed:
// another platform's native addon package (napi-rs' `<pkg>-win32-x64-msvc`) and Node's headers.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { cacheDir } from './paths';
import { UserError } from './user_error';

/** cacheDir()/npm/<name>@<range>: a folder whose node_modules/<name> is the unpacked package. */
export function fetchedPackageRoot(name: string, range: string): string {
  return path.join(cacheDir(), 'npm', `${name.replace(/[^A-Za-z0-9._-]/g, '_')}@${range.replace(/[^A-Za-z0-9._-]/g, '_')}`);
}

/**
 * `npm pack name@range` into the cache, unpacked as <root>/node_modules/<name>, so that esbuild
 * resolves it (main, exports, package.json) as if it were installed. Returns <root>.
 */
export function fetchPackage(name: string, range: string, why: string, log: (line: string) => void): string {
  const root = fetchedPackageRoot(name, range);
  const dir = path.join(root, 'node_modules', ...name.split('/'));
  if (existsSync(path.join(dir, 'package.json'))) return root;
  const spec = `${name}@${range}`;
  log(`native   fetching ${spec} from the npm registry for ${why} (once; cached in ${root})`);
  const tmp = unpackTarball(spec, root);
  try {
    mkdirSync(path.dirname(dir), { recursive: true });
    rmSync(dir, { recursive: true, force: true });
    renameSync(path.join(tmp, 'package'), dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return root;
}

/**
 * Downloads spec's tarball with `npm pack` and unpacks `members` of it (all by default) into a
 * fresh temporary folder beside `near`, which the caller moves from and removes. The archive
 * holds everything under `package/`.
 */
export function unpackTarball(spec: string, near: string, members: string[] = []): string {
  mkdirSync(path.dirname(near), { recursive: true });
  const tmp = mkdtempSync(path.join(path.dirname(near), '.fetch-'));
  try {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const packed = spawnSync(npm, ['pack', spec, '--pack-destination', tmp, '--silent'], { encoding: 'utf8', shell: process.platform === 'win32' });
    if (packed.status !== 0) {
      const why = ((packed.stderr || packed.stdout || packed.error?.message) ?? '').trim().split('\n').pop();
      throw new UserError(`could not fetch ${spec} from the npm registry (npm pack): ${why}`);
    }
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    if (!tarball) throw new UserError(`npm pack ${spec} produced no tarball`);
    const untar = spawnSync('tar', ['-xzf', tarball, ...members], { cwd: tmp, encoding: 'utf8' });
    if (untar.status !== 0) throw new UserError(`unpacking ${spec} failed: ${(untar.stderr ?? untar.error?.message ?? '').trim()}`);
    rmSync(path.join(tmp, tarball), { force: true });
    return tmp;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
