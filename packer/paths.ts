// Where the package's own files are, whether running from source (packer/*.ts under tsx or
// vitest) or from the bundled CLI (build/isapi.cjs): both sit one level below the root.
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from './user_error';

const here = typeof __dirname === 'string' ? __dirname : path.dirname(fileURLToPath(import.meta.url));
export const packageRoot = path.resolve(here, '..');

/**
 * win-ia32: for 32-bit IIS application pools (enable32BitAppOnWin64). Only the bridge the web
 * server loads is 32-bit; the workers are win-x64's (see packer/pack.ts nativeFilesFor).
 */
export type Target = 'linux-x64' | 'win-x64' | 'win-ia32';
export const TARGETS: readonly Target[] = ['linux-x64', 'win-x64', 'win-ia32'];

export function hostTarget(): Target {
  if (process.platform === 'win32') return 'win-x64';
  if (process.platform === 'linux' && process.arch === 'x64') return 'linux-x64';
  throw new UserError(`node-isapi runs on linux-x64 and win-x64; this machine is ${process.platform}-${process.arch}`);
}

export function isWindowsTarget(target: Target): boolean {
  return target.startsWith('win-');
}

/** The file names of the native parts a folder is made of, per target. */
export function bridgeFileName(target: Target): string {
  return isWindowsTarget(target) ? 'isapi-bridge.dll' : 'isapi-bridge.so';
}

export function hostFileName(target: Target): string {
  return isWindowsTarget(target) ? 'isapi-host.exe' : 'isapi-host';
}

/** install / install.exe of every packed folder (native/launcher). */
export function launcherFileName(target: Target): string {
  return isWindowsTarget(target) ? 'isapi-launcher.exe' : 'isapi-launcher';
}

/** Every native file the package ships per target (scripts/release.ts copies exactly these). */
export function nativeFileNames(target: Target): string[] {
  return [bridgeFileName(target), hostFileName(target), launcherFileName(target)];
}

/**
 * build/native/<target>/out: where scripts/build-native.js puts the bridge and the host (a source
 * checkout); with ISAPI_SANITIZE=address|thread, its sanitizer build of linux-x64 (CI).
 */
export function builtNativeDir(target: Target): string {
  const sanitize = process.env.ISAPI_SANITIZE;
  const dir = sanitize && target === 'linux-x64' ? `${target}-${sanitize}` : target;
  return path.join(packageRoot, 'build', 'native', dir, 'out');
}

/** prebuilt/<target>: the binaries the npm package ships, made by scripts/release.ts. */
export function prebuiltNativeDir(target: Target): string {
  return path.join(packageRoot, 'prebuilt', target);
}

/**
 * Where this target's bridge and host are: a source build when there is one (a contributor's
 * `npm run build:native` is always newer than what the last release copied), else the package's
 * prebuilt ones. A sanitizer build is never replaced by the plain prebuilt binaries.
 */
export function nativeDir(target: Target): string {
  const built = builtNativeDir(target);
  if (process.env.ISAPI_SANITIZE || existsSync(path.join(built, bridgeFileName(target)))) return built;
  const prebuilt = prebuiltNativeDir(target);
  return existsSync(path.join(prebuilt, bridgeFileName(target))) ? prebuilt : built;
}

/** A source checkout (the C++ sources are there) rather than an installed package. */
function isSourceCheckout(): boolean {
  return existsSync(path.join(packageRoot, 'native', 'bridge'));
}

function missing(target: Target, what: string, file: string): UserError {
  if (!isSourceCheckout()) {
    return new UserError(
      `node-isapi's prebuilt ${what} for ${target} is missing (${file}): the package is incomplete; reinstall it (npm install -D node-isapi)`,
    );
  }
  const mingw = isWindowsTarget(target) ? ' with mingw-w64 installed (apt-get install -y mingw-w64)' : '';
  return new UserError(`the ${target} ${what} is not built (${path.relative(process.cwd(), file)} is missing): run \`npm run build:native\`${mingw}`);
}

export function bridgeBinary(target: Target): string {
  const file = path.join(nativeDir(target), bridgeFileName(target));
  if (!existsSync(file)) throw missing(target, 'bridge', file);
  return file;
}

export function launcherBinary(target: Target): string {
  const file = path.join(nativeDir(target), launcherFileName(target));
  if (!existsSync(file)) throw missing(target, 'installer launcher', file);
  return file;
}

export function hostBinary(target: Target): string {
  const file = path.join(nativeDir(target), hostFileName(target));
  if (!existsSync(file)) throw missing(target, 'isapi-host', file);
  return file;
}

/** Per-user cache for Node binaries: $ISAPI_CACHE_DIR, else $XDG_CACHE_HOME/node-isapi, else ~/.cache/node-isapi. */
export function cacheDir(): string {
  if (process.env.ISAPI_CACHE_DIR) return process.env.ISAPI_CACHE_DIR;
  if (process.platform === 'win32' && process.env.LOCALAPPDATA) return path.join(process.env.LOCALAPPDATA, 'node-isapi', 'cache');
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'node-isapi');
}
