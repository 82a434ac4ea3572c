// <name>.manifest.json: what was packed, so a deployed folder can be identified and verified.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Target } from './paths';

export interface ManifestFile {
  /** addon: the worker's Node-API addon when it is not the bridge (win-ia32: the x64 build). */
  role: 'bridge' | 'worker' | 'installer' | 'addon';
  size: number;
  sha256: string;
}

export interface Manifest {
  manifestVersion: 1;
  name: string;
  /** The application's version (the nearest package.json above the script; 0.0.0 without one). */
  appVersion?: string;
  target: Target;
  node: string;
  nodeIsapi: string;
  script: string;
  packedAt: string;
  entryPoints: { extension: boolean; filter: boolean };
  /** SF_NOTIFY_* flags of the filter (0: none), answered by the bridge's GetFilterVersion. */
  filterFlags: number;
  filterFailurePolicy: 'fail-closed' | 'pass-through';
  filterTimeoutMs: number;
  files: Record<string, ManifestFile>;
}

export function describeFile(file: string, role: ManifestFile['role']): ManifestFile {
  return { role, size: statSync(file).size, sha256: createHash('sha256').update(readFileSync(file)).digest('hex') };
}

export function manifestFileName(name: string): string {
  return `${name}.manifest.json`;
}

/** Reads the manifest of a packed folder; undefined if the folder holds none. */
export function readManifest(folder: string): Manifest | undefined {
  const found = readdirSync(folder).find((f) => f.endsWith('.manifest.json'));
  if (!found) return undefined;
  return JSON.parse(readFileSync(path.join(folder, found), 'utf8')) as Manifest;
}
