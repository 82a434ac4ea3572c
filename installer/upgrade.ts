// `install upgrade <installed folder>`, run from a newly packed folder: replaces the installed
// folder's files on a live server, the way the ASP.NET Core Module's app_offline.htm allows.
//
// The bridge's contract (docs/supervision.md, app_offline.htm): while <folder>\app_offline.htm exists it
// drains and stops the workers, releases the worker executable and answers 503 with the file's
// content; when the file goes away it starts fresh workers. So: write app_offline.htm, wait
// until the worker executable can be moved aside, put the new files in place, then remove
// app_offline.htm (unless someone else had put it there). The bridge DLL itself stays loaded
// by the web server: Windows lets a loaded DLL be renamed, so the new one takes its name and
// is loaded when the pool recycles (the caller recycles it before the workers start again).
// Any failure puts every file back as it was.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { manifestFileName } from '../packer/manifest';
import { EXIT, InstallError } from './errors';
import { loadFolder, type PackedFolder } from './folder';

export const APP_OFFLINE = 'app_offline.htm';

export interface UpgradeResult {
  live: PackedFolder;
  /** Files whose bytes changed. */
  replaced: string[];
  bridgeChanged: boolean;
  /** Whether upgrade wrote app_offline.htm (then bringOnline removes it). */
  wroteOffline: boolean;
}

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Moves `file` aside, retrying while the bridge is still releasing it; undefined if it never does. */
function moveAside(file: string, deadline: number): string | undefined {
  const backup = `${file}.replaced-${Date.now()}`;
  for (;;) {
    try {
      renameSync(file, backup);
      return backup;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (!['EBUSY', 'EPERM', 'EACCES'].includes(code ?? '') || Date.now() > deadline) return undefined;
      sleepSync(200); // polling a condition (the file is released) under a deadline
    }
  }
}

export function upgradeFolder(
  fresh: PackedFolder,
  liveDir: string | undefined,
  o: { dryRun: boolean; log: (line: string) => void; waitMs?: number },
): UpgradeResult {
  if (!liveDir) throw new InstallError('upgrade needs the installed folder: run the new folder\'s installer as `install upgrade <installed folder>`');
  const live = loadFolder(path.resolve(liveDir));
  if (path.resolve(live.dir) === path.resolve(fresh.dir)) {
    throw new InstallError(`upgrade copies this folder's files into an installed one: run it from the new folder, not from ${live.dir}`);
  }
  if (live.name !== fresh.name) throw new InstallError(`${live.dir} holds '${live.name}', this folder '${fresh.name}': upgrade replaces a folder of the same script`);
  if (live.target !== fresh.target) throw new InstallError(`${live.dir} was packed for ${live.target}, this folder for ${fresh.target}`);
  // The manifest goes last: until it is in place, the folder describes the files it holds.
  const files = [...Object.keys(fresh.manifest.files).sort((a, b) => Number(a === fresh.bridgeFile) - Number(b === fresh.bridgeFile)), manifestFileName(fresh.name)];
  const changed = files.filter((f) => !existsSync(path.join(live.dir, f)) || sha(path.join(live.dir, f)) !== sha(path.join(fresh.dir, f)));
  const bridgeChanged = changed.includes(fresh.bridgeFile);
  if (o.dryRun || changed.length === 0) {
    for (const f of changed) o.log(`  ~ would replace ${path.join(live.dir, f)}`);
    return { live, replaced: changed, bridgeChanged, wroteOffline: false };
  }
  const offline = path.join(live.dir, APP_OFFLINE);
  const ours = !existsSync(offline);
  if (ours) {
    writeFileSync(offline, `<!doctype html><title>${fresh.name}: updating</title><p>${fresh.name} is being updated. Please try again in a moment.</p>\n`);
  }
  const done: Array<{ dest: string; backup: string | undefined }> = [];
  try {
    const deadline = Date.now() + (o.waitMs ?? 60_000);
    for (const f of changed) {
      const dest = path.join(live.dir, f);
      let backup: string | undefined;
      if (existsSync(dest)) {
        backup = moveAside(dest, deadline);
        if (!backup) {
          throw new InstallError(
            `${dest} is still in use ${Math.round((o.waitMs ?? 60_000) / 1000)} s after ${APP_OFFLINE} was written: the bridge did not release it ` +
              `(an older bridge without app_offline support?). Nothing was replaced; stop the application pool and run upgrade again`,
            EXIT.rolledBack,
          );
        }
      }
      done.push({ dest, backup });
      copyFileSync(path.join(fresh.dir, f), dest);
      o.log(`  ~ replaced ${dest}`);
    }
  } catch (err) {
    for (const { dest, backup } of done.reverse()) {
      rmSync(dest, { force: true });
      if (backup) renameSync(backup, dest);
    }
    if (ours) rmSync(offline, { force: true });
    throw err instanceof InstallError ? err : new InstallError(`upgrade failed and was rolled back (the folder holds its old files): ${(err as Error).message}`, EXIT.rolledBack);
  }
  // Old copies that are free go now; a DLL the web server still has loaded goes on a later upgrade.
  for (const f of readdirSync(live.dir)) {
    if (/\.replaced-\d+$/.test(f)) {
      try {
        rmSync(path.join(live.dir, f));
      } catch {
        // still loaded
      }
    }
  }
  return { live: loadFolder(live.dir), replaced: changed, bridgeChanged, wroteOffline: ours };
}

/** Ends an upgrade: the workers start again (the bridge notices app_offline.htm is gone). */
export function bringOnline(u: UpgradeResult): void {
  if (u.wroteOffline) rmSync(path.join(u.live.dir, APP_OFFLINE), { force: true });
}
