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

/** A folder for Windows (IIS, or isapi-host.exe): .dll/.exe file names, PE version resources. */
export function isWindowsTarget(target: Target): boolean {
  return target === 'win-x64' || target === 'win-ia32';
}

export function hostTarget(): Target {
  if (process.platform === 'win32') return 'win-x64';
  if (process.platform === 'linux' && process.arch === 'x64') return 'linux-x64';
  throw new UserError(`node-isapi runs on linux-x64 and win-x64; this machine is ${process.platform}-${process.arch}`);
}

/**
 * build/native/<target>/out: where scripts/build-native.js puts the bridge and the host; with
 * ISAPI_SANITIZE=address|thread, its sanitizer build of linux-x64 (CI).
 */
export function nativeDir(target: Target): string {
  const sanitize = process.env.ISAPI_SANITIZE;
  const dir = sanitize && target === 'linux-x64' ? `${target}-${sanitize}` : target;
  return path.join(packageRoot, 'build', 'native', dir, 'out');
}

export function bridgeBinary(target: Target): string {
  const file = path.join(nativeDir(target), isWindowsTarget(target) ? 'isapi-bridge.dll' : 'isapi-bridge.so');
  if (!existsSync(file)) {
    throw new UserError(
      `the ${target} bridge is not built (${path.relative(process.cwd(), file)} is missing): run \`npm run build:native\`` +
        (isWindowsTarget(target) ? ' with mingw-w64 installed (apt-get install -y mingw-w64)' : ''),
    );
  }
  return file;
}

export function hostBinary(target: Target): string {
  const file = path.join(nativeDir(target), isWindowsTarget(target) ? 'isapi-host.exe' : 'isapi-host');
  if (!existsSync(file)) {
    throw new UserError(`isapi-host for ${target} is not built (${file} is missing): run \`npm run build:native\``);
  }
  return file;
}

/** Per-user cache for Node binaries: $ISAPI_CACHE_DIR, else $XDG_CACHE_HOME/node-isapi, else ~/.cache/node-isapi. */
export function cacheDir(): string {
  if (process.env.ISAPI_CACHE_DIR) return process.env.ISAPI_CACHE_DIR;
  if (process.platform === 'win32' && process.env.LOCALAPPDATA) return path.join(process.env.LOCALAPPDATA, 'node-isapi', 'cache');
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'node-isapi');
}
