// <name>.install-state.json beside the bridge: what each install created, so `remove` undoes
// exactly that and nothing else. One record per backend target (a config file, an IIS site).
// For IIS it is also the journal: rewritten (temp file + rename) before and after every step.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
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
  /** A folder the installer creates itself (the command is only shown). */
  dir?: string;
}

export interface IisRecord {
  backend: 'iis';
  site: string;
  installedAt: string;
  /** The steps install applied, in order; remove runs their undo commands in reverse. */
  steps: IisStep[];
  /**
   * The journal: false from before the first step until the last one is done, so an install
   * that was killed or failed half-way is known as such (install resumes it, remove undoes it).
   * Absent in records written before the journal existed (they were complete).
   */
  complete?: boolean;
  /** The step that had started when the record was last written (it may or may not have run). */
  pending?: IisStep;
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
  // Flushed before the rename: after a power cut the journal is the old one or the new one.
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, JSON.stringify(state, null, 2) + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
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
