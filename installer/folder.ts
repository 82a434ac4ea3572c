// The packed folder the installer sits in: its manifest names the bridge and the worker.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { readManifest, type Manifest } from '../packer/manifest';
import { InstallError } from './errors';
import { bitnessOf, peMachine } from './pe';

export interface PackedFolder {
  dir: string;
  name: string;
  manifest: Manifest;
  /** Absolute path of the bridge (_name.dll / _name.so). */
  bridge: string;
  bridgeFile: string;
  worker: string | undefined;
  target: Manifest['target'];
  /** The bridge's bitness: from the PE header for a .dll, 64 for linux-x64. */
  bitness: 32 | 64;
}

/**
 * A folder for Windows (win-x64, or win-ia32 for 32-bit pools). The same test as packer/paths.ts
 * isWindowsTarget, written out here: the installer is bundled at pack time from the files the
 * package ships, and those do not include the packer.
 */
export function isWindowsFolder(folder: Pick<PackedFolder, 'target'>): boolean {
  return folder.target.startsWith('win-');
}

export function loadFolder(dir: string): PackedFolder {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new InstallError(`${dir}: no such folder`);
  const manifest = readManifest(dir);
  if (!manifest) {
    throw new InstallError(
      `${dir} holds no <name>.manifest.json: the installer works from the folder \`isapi pack\` wrote, beside the bridge and the worker`,
    );
  }
  const entry = (role: string) => Object.entries(manifest.files).find(([, f]) => f.role === role)?.[0];
  const bridgeFile = entry('bridge');
  if (!bridgeFile) throw new InstallError(`${dir}'s manifest names no bridge: pack the folder again`);
  const bridge = path.join(dir, bridgeFile);
  if (!existsSync(bridge)) throw new InstallError(`${bridge} is missing (the manifest names it): copy the whole folder, or pack it again`);
  const workerFile = entry('worker');
  let bitness: 32 | 64 = 64;
  if (bridgeFile.toLowerCase().endsWith('.dll')) {
    const b = bitnessOf(peMachine(bridge));
    if (!b) throw new InstallError(`${bridge} is not a Windows DLL (no PE header): pack the folder again`);
    bitness = b;
  }
  return {
    dir,
    name: manifest.name,
    manifest,
    bridge,
    bridgeFile,
    worker: workerFile ? path.join(dir, workerFile) : undefined,
    target: manifest.target,
    bitness,
  };
}
