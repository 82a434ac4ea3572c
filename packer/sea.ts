// Steps 2 and 3 of a pack: the SEA blob, made by the target's exact Node version running on
// this machine, then injected into a copy of the target's Node binary: as an ELF note
// (elf_note.ts) or a PE resource (pe_resource.ts), written here; postject for a layout those
// do not handle, or with ISAPI_USE_POSTJECT=1.
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, chmodSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { addElfNote } from './elf_note';
import { addPeResource, flipSeaFuse, setPeVersion, type VersionInfo } from './pe_resource';
import { UserError } from './user_error';

const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

export interface SeaOptions {
  /** The bundled main script. */
  main: string;
  /** A Node binary of the target's version that runs on this machine (makes the blob). */
  blobMaker: string;
  /** The target's Node binary (copied, then injected). */
  targetNode: string;
  output: string;
  workDir: string;
  /** Code cache is platform specific: only when the blob maker is the target binary's platform. */
  sameplatform: boolean;
  /** Files carried inside the executable (name → path), read with require('node:sea').getAsset(name). */
  assets?: Record<string, string>;
  /** Windows: the version resource that replaces node.exe's ("Node.js", OriginalFilename node.exe). */
  version?: VersionInfo;
}

export async function buildSea(o: SeaOptions): Promise<void> {
  const blob = path.join(o.workDir, 'sea.blob');
  const config = path.join(o.workDir, 'sea-config.json');
  writeFileSync(
    config,
    JSON.stringify({
      main: o.main,
      output: blob,
      disableExperimentalSEAWarning: true,
      useCodeCache: o.sameplatform,
      useSnapshot: false,
      ...(o.assets && Object.keys(o.assets).length ? { assets: o.assets } : {}),
    }),
  );
  const made = spawnSync(o.blobMaker, ['--experimental-sea-config', config], { encoding: 'utf8', cwd: o.workDir });
  if (made.status !== 0) {
    throw new UserError(`making the SEA blob failed: ${(made.stderr || made.stdout).trim()}`);
  }
  // Windows targets: the blob goes in as a PE resource, natively in TypeScript (well under a
  // second; postject takes ~20 s on node.exe). An unexpected PE layout falls back to postject.
  if (isPe(o.targetNode) && !process.env.ISAPI_USE_POSTJECT) {
    const injected = addPeResource(readFileSync(o.targetNode), 'NODE_SEA_BLOB', readFileSync(blob));
    if (injected) {
      flipSeaFuse(injected.image, SENTINEL_FUSE);
      const image = (o.version && setPeVersion(injected.image, o.version)?.image) || injected.image;
      writeExecutable(o.output, [image]);
      return;
    }
  }
  // Linux targets: the blob goes in as an ELF note, natively too (postject: ~4 s).
  if (isElf(o.targetNode) && !process.env.ISAPI_USE_POSTJECT) {
    const image = readFileSync(o.targetNode);
    flipSeaFuse(image, SENTINEL_FUSE);
    const injected = addElfNote(image, 'NODE_SEA_BLOB', readFileSync(blob));
    if (injected) {
      writeExecutable(o.output, [injected.head, injected.tail]);
      return;
    }
  }
  copyFileSync(o.targetNode, o.output);
  chmodSync(o.output, 0o755);
  // postject is CommonJS and slow to load (WebAssembly): load it only when packing.
  const { inject } = await import('postject');
  const warn = console.warn;
  // postject warns that node.exe's Authenticode signature is now invalid: expected, since the
  // binary changed; sign the result after packing if signing is wanted.
  console.warn = () => {};
  try {
    await inject(o.output, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: SENTINEL_FUSE });
  } finally {
    console.warn = warn;
  }
}

/**
 * Writes the executable 128 KiB at a time, as cp does. One write of the whole 120 MB fills the
 * page cache with large folios (Linux 6.x), and every later page fault in the mapped
 * executable then maps a whole folio: a worker served from the packed folder kept ~40 MiB more
 * of its executable resident (express-app idle: 79 MiB against 39 MiB written this way).
 */
function writeExecutable(file: string, parts: Buffer[]): void {
  const CHUNK = 128 * 1024;
  const fd = openSync(file, 'w', 0o755);
  try {
    for (const part of parts) {
      for (let at = 0; at < part.length; ) at += writeSync(fd, part, at, Math.min(CHUNK, part.length - at));
    }
  } finally {
    closeSync(fd);
  }
  chmodSync(file, 0o755);
}

function magic(file: string, bytes: number): string {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(bytes);
    return readSync(fd, head, 0, bytes, 0) === bytes ? head.toString('latin1') : '';
  } finally {
    closeSync(fd);
  }
}

const isPe = (file: string) => magic(file, 2) === 'MZ';
const isElf = (file: string) => magic(file, 4) === '\x7fELF';
