// <name>.install-state.json beside the bridge: what each install created, so `remove` undoes
// exactly that and nothing else. One record per backend target (a config file, an IIS site).
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { InstallError } from './errors';
import type { PackedFolder } from './folder';

export interface LocalRecord {
  backend: 'local';
  /** Absolute path of the config file. */
  config: string;
  installedAt: string;
  /** Whether the file existed before the first install; if not, remove deletes it. */
  fileExisted: boolean;
  /** The file's bytes before the first install (base64), restored by remove. */
  original?: string;
  /** sha256 of the bytes install wrote: if the file still has them, remove restores `original` as is. */
  writtenSha256: string;
  applications: string[];
  filters: string[];
}

export interface IisStep {
  /** What the step creates, as the planner and the server check it (`apppool:name`, `app:site/path`…). */
  key: string | null;
  what: string;
  command: string;
  undo: string | null;
}

export interface IisRecord {
  backend: 'iis';
  site: string;
  installedAt: string;
  /** The steps install applied, in order; remove runs their undo commands in reverse. */
  steps: IisStep[];
}

export type InstallRecord = LocalRecord | IisRecord;

export interface InstallState {
  stateVersion: 1;
  name: string;
  installs: InstallRecord[];
}

export function stateFile(folder: PackedFolder): string {
  return path.join(folder.dir, `${folder.name}.install-state.json`);
}

export function readState(folder: PackedFolder): InstallState {
  const file = stateFile(folder);
  if (!existsSync(file)) return { stateVersion: 1, name: folder.name, installs: [] };
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as InstallState;
    if (s.stateVersion !== 1 || !Array.isArray(s.installs)) throw new Error('unknown format');
    return s;
  } catch (err) {
    throw new InstallError(`${file} is damaged (${(err as Error).message}): it records what install created; restore it from a backup, or delete it and clean up by hand`);
  }
}

export function writeState(folder: PackedFolder, state: InstallState): void {
  const file = stateFile(folder);
  if (state.installs.length === 0) {
    rmSync(file, { force: true });
    return;
  }
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
  renameSync(tmp, file);
}

export function findLocal(state: InstallState, config: string): LocalRecord | undefined {
  return state.installs.find((r): r is LocalRecord => r.backend === 'local' && r.config === config);
}

export function findIis(state: InstallState, site: string): IisRecord | undefined {
  return state.installs.find((r): r is IisRecord => r.backend === 'iis' && r.site.toLowerCase() === site.toLowerCase());
}

export function withRecord(state: InstallState, old: InstallRecord | undefined, next: InstallRecord | undefined): InstallState {
  const installs = state.installs.filter((r) => r !== old);
  if (next) installs.push(next);
  return { ...state, installs };
}
