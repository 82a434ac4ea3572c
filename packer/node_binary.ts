// Node executables for a target, from the npm packages node-<target>@<version> (plain
// binaries in bin/), fetched once with `npm pack` into the per-user cache.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { cacheDir, type Target } from './paths';
import { UserError } from './user_error';

/** Proven end to end on every target, including win-x64 under Wine (24+ does not start there). */
export const DEFAULT_NODE_VERSION = '22.21.1';

export function nodePackageName(target: Target): string {
  return `node-${target}`;
}

export function nodeExecutableName(target: Target): string {
  return target === 'win-x64' ? 'node.exe' : 'node';
}

/** The cached node binary for target@version, fetching it first if needed. */
export function ensureNodeBinary(target: Target, version: string, log: (line: string) => void = () => {}): string {
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new UserError(`--node wants an exact version like ${DEFAULT_NODE_VERSION}, got '${version}'`);
  const dir = path.join(cacheDir(), 'node', `${target}-v${version}`);
  const exe = path.join(dir, nodeExecutableName(target));
  if (existsSync(exe)) return exe;

  const pkg = `${nodePackageName(target)}@${version}`;
  log(`fetching ${pkg} from the npm registry (once; cached in ${dir})`);
  mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = mkdtempSync(path.join(path.dirname(dir), `.fetch-${target}-`));
  try {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const packed = spawnSync(npm, ['pack', pkg, '--pack-destination', tmp, '--silent'], {
      encoding: 'utf8',
      shell: process.platform === 'win32',
    });
    if (packed.status !== 0) {
      throw new UserError(`could not fetch ${pkg} with npm pack: ${(packed.stderr || packed.stdout).trim().split('\n').pop()}`);
    }
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    if (!tarball) throw new UserError(`npm pack ${pkg} produced no tarball`);
    const untar = spawnSync('tar', ['-xzf', tarball], { cwd: tmp, encoding: 'utf8' });
    if (untar.status !== 0) throw new UserError(`could not unpack ${tarball}: ${untar.stderr.trim()}`);
    const binary = path.join(tmp, 'package', 'bin', nodeExecutableName(target));
    if (!existsSync(binary)) throw new UserError(`${pkg} has no bin/${nodeExecutableName(target)}`);
    mkdirSync(dir, { recursive: true });
    renameSync(binary, exe);
    chmodSync(exe, 0o755);
    return exe;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
