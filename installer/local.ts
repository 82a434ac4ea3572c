// The local backend: install into / remove from the local host's configuration file
// (installer/local_config.ts). The file is written in one atomic rename; `remove` gives back
// the exact bytes the file had before install (or deletes it if install created it).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import path from 'node:path';
import type { ResolvedInstallParameters } from '../runtime/install_params';
import { InstallError } from './errors';
import type { PackedFolder } from './folder';
import {
  DEFAULT_SITE,
  HostConfigError,
  parseHostConfig,
  readHostConfig,
  serializeHostConfig,
  type HostApplication,
  type HostConfig,
  type HostFilter,
} from './local_config';
import type { Plan, PlanItem } from './plan';
import { findLocal, type InstallState, type LocalRecord } from './state';

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export function marker(folder: PackedFolder): string {
  return `node-isapi:${folder.name}`;
}

function readConfig(file: string): { config: HostConfig; bytes: Buffer | undefined } {
  try {
    return readHostConfig(file);
  } catch (err) {
    if (err instanceof HostConfigError) throw new InstallError(err.message);
    throw err;
  }
}

/** Writes the file in one step (temp file + rename), so a reader never sees half of it. */
export function writeAtomically(file: string, bytes: Buffer | string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, file);
}

const samePath = (a: string, b: string, base: string) => path.resolve(base, a) === path.resolve(base, b);

export interface LocalInstall {
  plan: Plan;
  /** Bytes to write; undefined when nothing changes. */
  bytes: string | undefined;
  before: Buffer | undefined;
  record: LocalRecord | undefined;
  applications: string[];
  filters: string[];
}

export function planLocalInstall(folder: PackedFolder, params: ResolvedInstallParameters, file: string, state: InstallState): LocalInstall {
  const { config, bytes } = readConfig(file);
  const base = path.dirname(file);
  const site = config.site ?? DEFAULT_SITE;
  if (site !== params.site) {
    throw new InstallError(
      `site '${params.site}' does not exist in ${file}: the file describes one site, '${site}'. ` +
        `Pass --site '${site}', or use another config file for another site`,
    );
  }
  const record = findLocal(state, file);
  const mark = marker(folder);
  const items: PlanItem[] = [];
  const next: HostConfig = { ...config, applications: [...config.applications], filters: [...config.filters] };
  if (!bytes && params.site !== DEFAULT_SITE) next.site = params.site;
  const ours = (e: { installedBy?: string }, lib: string) => e.installedBy === mark && samePath(lib, folder.bridge, base);

  const envNote = Object.keys(params.environment).length ? ` with ${Object.entries(params.environment).map(([k, v]) => `${k}=${v}`).join(' ')}` : '';
  for (const v of params.virtualDirs) {
    const wildcardOnly = v.scriptMaps.length === 1 && v.scriptMaps[0]!.extension === '*' && v.scriptMaps[0]!.verbs[0] === '*';
    const want: HostApplication = { path: v.name, extension: folder.bridge };
    if (!wildcardOnly) want.scriptMaps = v.scriptMaps;
    if (Object.keys(params.environment).length) want.environment = { ...params.environment };
    want.installedBy = mark;
    const i = next.applications.findIndex((a) => a.path === v.name);
    const what = `application ${v.name} → ${folder.bridge}${envNote}`;
    if (i < 0) {
      next.applications.push(want);
      items.push({ action: 'create', what });
    } else if (ours(next.applications[i]!, next.applications[i]!.extension)) {
      if (isDeepStrictEqual(next.applications[i], want)) items.push({ action: 'keep', what });
      else {
        next.applications[i] = want;
        items.push({ action: 'change', what });
      }
    } else {
      const by = next.applications[i]!.installedBy ? `installed by ${next.applications[i]!.installedBy}` : 'added by hand';
      throw new InstallError(
        `${file} already has an application at ${v.name} (${by}, ${next.applications[i]!.extension}): the installer does not replace ` +
          `what it did not create. Remove that entry, or give this virtual directory another name`,
      );
    }
  }
  for (const f of params.filters) {
    const want: HostFilter = { name: f.name, library: f.path, installedBy: mark };
    const i = next.filters.findIndex((x) => x.name === f.name);
    const what = `filter ${f.name} → ${f.path}`;
    if (i < 0) {
      next.filters.push(want);
      items.push({ action: 'create', what });
    } else if (next.filters[i]!.installedBy === mark) {
      if (isDeepStrictEqual(next.filters[i], want)) items.push({ action: 'keep', what });
      else {
        next.filters[i] = want;
        items.push({ action: 'change', what });
      }
    } else {
      throw new InstallError(`${file} already has a filter named '${f.name}' that this installer did not create: rename one of them`);
    }
  }
  // Entries an earlier install of this folder made that the parameters no longer ask for.
  const appPaths = params.virtualDirs.map((v) => v.name);
  const filterNames = params.filters.map((f) => f.name);
  if (record) {
    next.applications = next.applications.filter((a) => {
      const stale = record.applications.includes(a.path) && !appPaths.includes(a.path) && ours(a, a.extension);
      if (stale) items.push({ action: 'remove', what: `application ${a.path} (no longer in the install parameters)` });
      return !stale;
    });
    next.filters = next.filters.filter((f) => {
      const stale = record.filters.includes(f.name) && !filterNames.includes(f.name) && f.installedBy === mark;
      if (stale) items.push({ action: 'remove', what: `filter ${f.name} (no longer in the install parameters)` });
      return !stale;
    });
  }
  const out = serializeHostConfig(next);
  const changed = items.some((i) => i.action !== 'keep') || !bytes;
  return {
    plan: {
      verb: 'install',
      backend: 'local',
      target: `local host config ${file}`,
      notes: bytes ? [] : ['the file does not exist yet: install creates it (remove deletes it again)'],
      items,
    },
    bytes: changed ? out : undefined,
    before: bytes,
    record,
    applications: appPaths,
    filters: filterNames,
  };
}

export function applyLocalInstall(file: string, p: LocalInstall): LocalRecord {
  if (p.bytes === undefined) return p.record!;
  writeAtomically(file, p.bytes);
  return {
    backend: 'local',
    config: file,
    installedAt: new Date().toISOString(),
    fileExisted: p.record ? p.record.fileExisted : p.before !== undefined,
    original: p.record ? p.record.original : p.before?.toString('base64'),
    writtenSha256: sha256(p.bytes),
    applications: p.applications,
    filters: p.filters,
  };
}

/** Puts the file back as it was before this run (rollback). */
export function restoreLocal(file: string, before: Buffer | undefined): void {
  if (before === undefined) rmSync(file, { force: true });
  else writeAtomically(file, before);
}

export interface LocalRemove {
  plan: Plan;
  /** What to do with the file: bytes to write, 'delete', or undefined (leave it). */
  result: Buffer | 'delete' | undefined;
  record: LocalRecord | undefined;
  warnings: string[];
}

export function planLocalRemove(folder: PackedFolder, file: string, state: InstallState): LocalRemove {
  const record = findLocal(state, file);
  const plan: Plan = { verb: 'remove', backend: 'local', target: `local host config ${file}`, notes: [], items: [] };
  const warnings: string[] = [];
  const mark = marker(folder);
  if (!record) {
    if (existsSync(file)) {
      const { config } = readConfig(file);
      const unrecorded = config.applications.filter((a) => a.installedBy === mark).map((a) => a.path);
      if (unrecorded.length) {
        throw new InstallError(
          `${file} has ${unrecorded.join(', ')} marked ${mark}, but ${folder.name}.install-state.json records no install into it: ` +
            `the installer removes only what it created. Delete those entries by hand`,
        );
      }
    }
    plan.notes.push(`nothing recorded: ${folder.name} was not installed into this file from this folder`);
    return { plan, result: undefined, record, warnings };
  }
  if (!existsSync(file)) {
    plan.notes.push('the file no longer exists: only the record is dropped');
    return { plan, result: undefined, record, warnings };
  }
  const current = readFileSync(file);
  const original = record.original !== undefined ? Buffer.from(record.original, 'base64') : undefined;
  for (const a of record.applications) plan.items.push({ action: 'remove', what: `application ${a}` });
  for (const f of record.filters) plan.items.push({ action: 'remove', what: `filter ${f}` });
  if (sha256(current) === record.writtenSha256) {
    plan.notes.push(record.fileExisted ? 'the file is as install left it: its earlier bytes are restored exactly' : 'install created the file: it is deleted');
    return { plan, result: record.fileExisted && original ? original : 'delete', record, warnings };
  }
  // Changed since install (another installer, or by hand): take out only our entries.
  const base = path.dirname(file);
  let config: HostConfig;
  try {
    config = parseHostConfig(current.toString('utf8'), file);
  } catch (err) {
    throw new InstallError((err as Error).message);
  }
  const ours = (e: { installedBy?: string }) => e.installedBy === mark;
  const next: HostConfig = {
    ...config,
    applications: config.applications.filter((a) => {
      if (!record.applications.includes(a.path)) return true;
      if (ours(a) && samePath(a.extension, folder.bridge, base)) return false;
      warnings.push(`${a.path} in ${file} was replaced since install (now ${a.extension}): left as it is`);
      return true;
    }),
    filters: config.filters.filter((f) => !(record.filters.includes(f.name) && ours(f))),
  };
  plan.notes.push('the file changed since install: only the entries install added are taken out');
  if (original && isDeepStrictEqual(parseHostConfig(original.toString('utf8'), file), next)) {
    return { plan, result: original, record, warnings };
  }
  const empty = next.applications.length === 0 && next.filters.length === 0;
  if (!record.fileExisted && empty) return { plan, result: 'delete', record, warnings };
  // Lists the original file did not have are left out again when empty.
  const originalKeys = original ? Object.keys(JSON.parse(original.toString('utf8')) as object) : ['applications', 'filters'];
  const written: Record<string, unknown> = { ...next };
  for (const k of ['applications', 'filters'] as const) if (!originalKeys.includes(k) && next[k].length === 0) delete written[k];
  return { plan, result: Buffer.from(JSON.stringify(written, null, 2) + '\n'), record, warnings };
}

export function applyLocalRemove(file: string, r: LocalRemove): void {
  if (r.result === 'delete') rmSync(file, { force: true });
  else if (r.result) writeAtomically(file, r.result);
}
