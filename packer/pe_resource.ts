// Adds the SEA blob to a Windows Node executable as the RT_RCDATA resource "NODE_SEA_BLOB"
// (what Node looks up at start), in a few hundred milliseconds instead of postject's ~20 s
// on an 85 MB node.exe. The resource section is rebuilt in place with every existing
// resource plus the new one; the sections after it (in node.exe only .reloc) move up; the
// Authenticode signature, invalid once the file changes, is removed; the PE checksum is
// recomputed. A layout this code does not expect returns undefined, and the caller falls back
// to postject, so an unusual binary is never half-handled.
//
// PE/COFF layout: Microsoft's "PE Format" specification (optional header, section table,
// data directories, the .rsrc directory tree).
//
// One file (~500 lines) on purpose: reading the resource tree, rebuilding it and relaying out
// the sections after it share one set of offsets, and splitting them would scatter the checks
// that keep a half-understood image from ever being written.

const RT_RCDATA = 10;
const RT_VERSION = 16;
const DIR_RESOURCE = 2;
const DIR_SECURITY = 4;
const DIR_BASERELOC = 5;
const DIR_DEBUG = 6;

interface ResourceLeaf {
  kind: 'leaf';
  data: Buffer;
  codepage: number;
}
interface ResourceDir {
  kind: 'dir';
  characteristics: number;
  timestamp: number;
  major: number;
  minor: number;
  entries: Array<{ id: number | string; node: ResourceDir | ResourceLeaf }>;
}

interface Section {
  headerOffset: number;
  name: string;
  virtualSize: number;
  va: number;
  rawSize: number;
  rawPtr: number;
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

class PeError extends Error {}

/** The parsed headers of a PE image, enough to move sections and rewrite data directories. */
class PeImage {
  readonly optOffset: number;
  readonly pe32plus: boolean;
  readonly sectionAlignment: number;
  readonly fileAlignment: number;
  readonly dirOffset: number;
  readonly dirCount: number;
  readonly sections: Section[] = [];

  constructor(readonly buf: Buffer) {
    if (buf.length < 0x40 || buf.toString('latin1', 0, 2) !== 'MZ') throw new PeError('not an MZ executable');
    const pe = buf.readUInt32LE(0x3c);
    if (buf.toString('latin1', pe, pe + 4) !== 'PE\0\0') throw new PeError('no PE signature');
    const numberOfSections = buf.readUInt16LE(pe + 6);
    if (buf.readUInt32LE(pe + 12) !== 0) throw new PeError('has a COFF symbol table');
    const sizeOfOptional = buf.readUInt16LE(pe + 20);
    this.optOffset = pe + 24;
    const magic = buf.readUInt16LE(this.optOffset);
    if (magic !== 0x20b && magic !== 0x10b) throw new PeError(`unknown optional header magic 0x${magic.toString(16)}`);
    this.pe32plus = magic === 0x20b;
    this.sectionAlignment = buf.readUInt32LE(this.optOffset + 32);
    this.fileAlignment = buf.readUInt32LE(this.optOffset + 36);
    this.dirCount = buf.readUInt32LE(this.optOffset + (this.pe32plus ? 108 : 92));
    this.dirOffset = this.optOffset + (this.pe32plus ? 112 : 96);
    const table = this.optOffset + sizeOfOptional;
    for (let i = 0; i < numberOfSections; i++) {
      const h = table + i * 40;
      this.sections.push({
        headerOffset: h,
        name: buf.toString('latin1', h, h + 8).replace(/\0+$/, ''),
        virtualSize: buf.readUInt32LE(h + 8),
        va: buf.readUInt32LE(h + 12),
        rawSize: buf.readUInt32LE(h + 16),
        rawPtr: buf.readUInt32LE(h + 20),
      });
    }
  }

  get sizeOfHeaders(): number {
    return this.buf.readUInt32LE(this.optOffset + 60);
  }

  dir(i: number): { rva: number; size: number } {
    if (i >= this.dirCount) return { rva: 0, size: 0 };
    return { rva: this.buf.readUInt32LE(this.dirOffset + i * 8), size: this.buf.readUInt32LE(this.dirOffset + i * 8 + 4) };
  }

  sectionOf(rva: number): number {
    return this.sections.findIndex((s) => rva >= s.va && rva < s.va + Math.max(s.virtualSize, s.rawSize));
  }

  /** File bytes at an RVA (must lie in a section's raw data). */
  bytesAt(rva: number, size: number): Buffer {
    const s = this.sections[this.sectionOf(rva)];
    if (!s) throw new PeError(`RVA 0x${rva.toString(16)} is in no section`);
    const off = rva - s.va;
    if (off + size > s.rawSize) throw new PeError(`resource data at RVA 0x${rva.toString(16)} is not backed by the file`);
    return this.buf.subarray(s.rawPtr + off, s.rawPtr + off + size);
  }
}

function readResourceTree(img: PeImage, rootRva: number): ResourceDir {
  const base = img.bytesAt(rootRva, 16).byteOffset - img.buf.byteOffset;
  const seen = new Set<number>();
  const readDir = (off: number, depth: number): ResourceDir => {
    if (depth > 3 || seen.has(off)) throw new PeError('malformed resource directory');
    seen.add(off);
    const p = base + off;
    const b = img.buf;
    const named = b.readUInt16LE(p + 12);
    const ids = b.readUInt16LE(p + 14);
    const dir: ResourceDir = {
      kind: 'dir',
      characteristics: b.readUInt32LE(p),
      timestamp: b.readUInt32LE(p + 4),
      major: b.readUInt16LE(p + 8),
      minor: b.readUInt16LE(p + 10),
      entries: [],
    };
    for (let i = 0; i < named + ids; i++) {
      const e = p + 16 + i * 8;
      const nameField = b.readUInt32LE(e);
      const target = b.readUInt32LE(e + 4);
      let id: number | string;
      if (nameField & 0x80000000) {
        const s = base + (nameField & 0x7fffffff);
        const len = b.readUInt16LE(s);
        id = b.toString('utf16le', s + 2, s + 2 + len * 2);
      } else {
        id = nameField & 0xffff;
      }
      if (target & 0x80000000) {
        dir.entries.push({ id, node: readDir(target & 0x7fffffff, depth + 1) });
      } else {
        const d = base + target;
        const dataRva = b.readUInt32LE(d);
        const size = b.readUInt32LE(d + 4);
        dir.entries.push({ id, node: { kind: 'leaf', data: Buffer.from(img.bytesAt(dataRva, size)), codepage: b.readUInt32LE(d + 8) } });
      }
    }
    return dir;
  };
  return readDir(0, 0);
}

/** Named entries first (ordinal, case-insensitive as the loader compares), then IDs ascending. */
function sortEntries(dir: ResourceDir): void {
  dir.entries.sort((a, b) => {
    if (typeof a.id === 'string' && typeof b.id === 'string') {
      const x = a.id.toUpperCase();
      const y = b.id.toUpperCase();
      return x < y ? -1 : x > y ? 1 : 0;
    }
    if (typeof a.id === 'string') return -1;
    if (typeof b.id === 'string') return 1;
    return a.id - b.id;
  });
  for (const e of dir.entries) if (e.node.kind === 'dir') sortEntries(e.node);
}

/** Lays the tree out as a resource section at `rva`: directories, names, data entries, data. */
function writeResourceTree(root: ResourceDir, rva: number): Buffer {
  const dirs: ResourceDir[] = [];
  const leaves: ResourceLeaf[] = [];
  const names: string[] = [];
  for (let queue: ResourceDir[] = [root]; queue.length; ) {
    const next: ResourceDir[] = [];
    for (const d of queue) {
      dirs.push(d);
      for (const e of d.entries) {
        if (typeof e.id === 'string') names.push(e.id);
        if (e.node.kind === 'dir') next.push(e.node);
        else leaves.push(e.node);
      }
    }
    queue = next;
  }
  const dirOff = new Map<ResourceDir, number>();
  let pos = 0;
  for (const d of dirs) {
    dirOff.set(d, pos);
    pos += 16 + d.entries.length * 8;
  }
  const nameOff = new Map<string, number>();
  for (const n of names) {
    if (nameOff.has(n)) continue;
    nameOff.set(n, pos);
    pos += 2 + n.length * 2;
  }
  pos = align(pos, 4);
  const leafOff = new Map<ResourceLeaf, number>();
  for (const l of leaves) {
    leafOff.set(l, pos);
    pos += 16;
  }
  const dataOff = new Map<ResourceLeaf, number>();
  for (const l of leaves) {
    pos = align(pos, 8);
    dataOff.set(l, pos);
    pos += l.data.length;
  }
  const out = Buffer.alloc(pos);
  for (const d of dirs) {
    const p = dirOff.get(d)!;
    out.writeUInt32LE(d.characteristics, p);
    out.writeUInt32LE(d.timestamp, p + 4);
    out.writeUInt16LE(d.major, p + 8);
    out.writeUInt16LE(d.minor, p + 10);
    out.writeUInt16LE(d.entries.filter((e) => typeof e.id === 'string').length, p + 12);
    out.writeUInt16LE(d.entries.filter((e) => typeof e.id === 'number').length, p + 14);
    d.entries.forEach((e, i) => {
      const q = p + 16 + i * 8;
      out.writeUInt32LE(typeof e.id === 'string' ? (0x80000000 | nameOff.get(e.id)!) >>> 0 : e.id, q);
      out.writeUInt32LE(e.node.kind === 'dir' ? (0x80000000 | dirOff.get(e.node)!) >>> 0 : leafOff.get(e.node)!, q + 4);
    });
  }
  for (const [n, p] of nameOff) {
    out.writeUInt16LE(n.length, p);
    out.write(n, p + 2, 'utf16le');
  }
  for (const l of leaves) {
    const p = leafOff.get(l)!;
    out.writeUInt32LE(rva + dataOff.get(l)!, p);
    out.writeUInt32LE(l.data.length, p + 4);
    out.writeUInt32LE(l.codepage, p + 8);
    l.data.copy(out, dataOff.get(l)!);
  }
  return out;
}

/** The PE checksum (the algorithm of imagehlp's CheckSumMappedFile). */
export function peChecksum(buf: Buffer, checksumOffset: number): number {
  let sum = 0;
  const words = buf.length >>> 1;
  for (let i = 0; i < words; i++) {
    const off = i * 2;
    if (off === checksumOffset || off === checksumOffset + 2) continue;
    sum += buf[off]! | (buf[off + 1]! << 8);
    if (sum > 0xffffffff) sum = (sum & 0xffffffff) + Math.floor(sum / 0x100000000);
  }
  if (buf.length & 1) sum += buf[buf.length - 1]!;
  sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum &= 0xffff;
  return (sum + buf.length) >>> 0;
}

export interface PeInjectResult {
  image: Buffer;
  /** True when an Authenticode signature was removed (the binary changed; sign again if needed). */
  unsigned: boolean;
}

/**
 * Returns `exe` with `data` as resource RT_RCDATA/`name` (language neutral), or undefined when
 * the layout is not one this function handles (the caller then uses postject).
 * Throws if the resource already exists.
 */
export function addPeResource(exe: Buffer, name: string, data: Buffer): PeInjectResult | undefined {
  return rewritePeResources(exe, (tree) => {
    let types = tree.entries.find((e) => e.id === RT_RCDATA)?.node;
    if (!types) {
      types = { kind: 'dir', characteristics: 0, timestamp: 0, major: 0, minor: 0, entries: [] };
      tree.entries.push({ id: RT_RCDATA, node: types });
    }
    if (types.kind !== 'dir') return false;
    const upper = name.toUpperCase();
    if (types.entries.some((e) => typeof e.id === 'string' && e.id.toUpperCase() === upper)) {
      throw new Error(`the executable already has a ${upper} resource (was it packed already?)`);
    }
    types.entries.push({
      id: upper,
      node: {
        kind: 'dir', characteristics: 0, timestamp: 0, major: 0, minor: 0,
        entries: [{ id: 0, node: { kind: 'leaf', data, codepage: 0 } }],
      },
    });
    return true;
  });
}

/** What a packed executable or DLL says about itself in Explorer's Details tab and to tools. */
export interface VersionInfo {
  /** ProductName, e.g. the script's package name. */
  product: string;
  /** FileDescription. */
  description: string;
  /** Dotted version, up to four numbers (the rest of a semver such as -beta.1 is kept in the strings). */
  version: string;
  /** OriginalFilename and InternalName. */
  fileName: string;
  company?: string;
  copyright?: string;
  comments?: string;
  kind: 'app' | 'dll';
}

/** The four 16-bit numbers of a version string ("1.2.3-beta" → [1, 2, 3, 0]). */
export function versionNumbers(v: string): [number, number, number, number] {
  const nums = (/^\d+(\.\d+){0,3}/.exec(v)?.[0] ?? '0').split('.').map((n) => Math.min(65535, Number(n)));
  while (nums.length < 4) nums.push(0);
  return nums as [number, number, number, number];
}

/** A VS_VERSIONINFO block (the RT_VERSION resource), US English, Unicode (040904b0). */
export function versionResource(info: VersionInfo): Buffer {
  const pad = (b: Buffer) => (b.length % 4 ? Buffer.concat([b, Buffer.alloc(4 - (b.length % 4))]) : b);
  // A version block: header, key, padding, value, padding, children; wLength excludes the final padding.
  const block = (key: string, type: 0 | 1, value: Buffer, valueLength: number, children: Buffer[] = []): Buffer => {
    const keyBytes = Buffer.from(key + '\0', 'utf16le');
    const head = pad(Buffer.concat([Buffer.alloc(6), keyBytes]));
    const body = Buffer.concat([head, pad(value), ...children.map(pad)]);
    const unpadded = children.length ? body.length - ((4 - (children[children.length - 1]!.length % 4)) % 4) : head.length + value.length;
    body.writeUInt16LE(unpadded, 0);
    body.writeUInt16LE(valueLength, 2);
    body.writeUInt16LE(type, 4);
    return body.subarray(0, unpadded);
  };
  const [a, b, c, d] = versionNumbers(info.version);
  const fixed = Buffer.alloc(52);
  fixed.writeUInt32LE(0xfeef04bd, 0);
  fixed.writeUInt32LE(0x00010000, 4);
  fixed.writeUInt32LE(((a << 16) | b) >>> 0, 8);
  fixed.writeUInt32LE(((c << 16) | d) >>> 0, 12);
  fixed.writeUInt32LE(((a << 16) | b) >>> 0, 16);
  fixed.writeUInt32LE(((c << 16) | d) >>> 0, 20);
  fixed.writeUInt32LE(0x3f, 24); // VS_FFI_FILEFLAGSMASK
  fixed.writeUInt32LE(0, 28);
  fixed.writeUInt32LE(0x40004, 32); // VOS_NT_WINDOWS32
  fixed.writeUInt32LE(info.kind === 'dll' ? 2 : 1, 36); // VFT_DLL / VFT_APP
  const strings: Array<[string, string | undefined]> = [
    ['CompanyName', info.company],
    ['FileDescription', info.description],
    ['FileVersion', info.version],
    ['InternalName', info.fileName],
    ['LegalCopyright', info.copyright],
    ['OriginalFilename', info.fileName],
    ['ProductName', info.product],
    ['ProductVersion', info.version],
    ['Comments', info.comments],
  ];
  const entries = strings
    .filter((e): e is [string, string] => !!e[1])
    .map(([k, v]) => block(k, 1, Buffer.from(v + '\0', 'utf16le'), v.length + 1));
  const table = block('040904b0', 1, Buffer.alloc(0), 0, entries);
  const stringInfo = block('StringFileInfo', 1, Buffer.alloc(0), 0, [table]);
  const translation = Buffer.alloc(4);
  translation.writeUInt16LE(0x0409, 0);
  translation.writeUInt16LE(1200, 2);
  const varInfo = block('VarFileInfo', 1, Buffer.alloc(0), 0, [block('Translation', 0, translation, 4)]);
  return block('VS_VERSION_INFO', 0, fixed, 52, [stringInfo, varInfo]);
}

/**
 * Replaces every RT_VERSION resource with one for `info` (node.exe's says "Node.js"; a packed
 * worker or installer should name the application). Undefined: a layout this code leaves alone.
 */
export function setPeVersion(exe: Buffer, info: VersionInfo): PeInjectResult | undefined {
  return rewritePeResources(exe, (tree) => {
    tree.entries = tree.entries.filter((e) => e.id !== RT_VERSION);
    tree.entries.push({
      id: RT_VERSION,
      node: {
        kind: 'dir', characteristics: 0, timestamp: 0, major: 0, minor: 0,
        entries: [{ id: 1, node: { kind: 'dir', characteristics: 0, timestamp: 0, major: 0, minor: 0, entries: [{ id: 0x409, node: { kind: 'leaf', data: versionResource(info), codepage: 0 } }] } }],
      },
    });
    return true;
  });
}

/** RT_VERSION's StringFileInfo values of a PE image (for checks and `isapi` diagnostics). */
export function readPeVersionStrings(exe: Buffer): Record<string, string> {
  const img = new PeImage(exe);
  const tree = readResourceTree(img, img.dir(DIR_RESOURCE).rva);
  const type = tree.entries.find((e) => e.id === RT_VERSION)?.node;
  const first = (n: ResourceDir | ResourceLeaf | undefined): ResourceLeaf | undefined =>
    !n ? undefined : n.kind === 'leaf' ? n : first(n.entries[0]?.node);
  const data = first(type)?.data;
  const out: Record<string, string> = {};
  if (!data) return out;
  // Each block: wLength, wValueLength, wType (1: text, length in characters), key, value, children.
  const walk = (pos: number, end: number) => {
    while (pos + 6 <= end) {
      const len = data.readUInt16LE(pos);
      if (len < 6) return;
      const valueLen = data.readUInt16LE(pos + 2);
      const type = data.readUInt16LE(pos + 4);
      let k = pos + 6;
      while (k + 1 < pos + len && data.readUInt16LE(k) !== 0) k += 2;
      const key = data.toString('utf16le', pos + 6, k);
      const value = align(k + 2, 4);
      const valueBytes = type === 1 ? valueLen * 2 : valueLen;
      if (type === 1 && valueLen > 0) out[key] = data.toString('utf16le', value, value + valueBytes).replace(/\0+$/, '');
      walk(align(value + valueBytes, 4), pos + len);
      pos = align(pos + len, 4);
    }
  };
  walk(0, data.length);
  return out;
}

/** Rebuilds the resource section with `mutate`'s changes; undefined for a layout not handled. */
function rewritePeResources(exe: Buffer, mutate: (tree: ResourceDir) => boolean): PeInjectResult | undefined {
  let img: PeImage;
  try {
    img = new PeImage(exe);
  } catch {
    return undefined;
  }
  const res = img.dir(DIR_RESOURCE);
  if (!res.rva) return undefined;
  const ri = img.sectionOf(res.rva);
  const rsrc = img.sections[ri];
  if (!rsrc || rsrc.va !== res.rva) return undefined;
  // Every section after the resource section moves: allow only those the loader finds through
  // a data directory that we rewrite (the base relocations), and no debug data in them.
  for (let i = ri + 1; i < img.sections.length; i++) {
    const reloc = img.dir(DIR_BASERELOC);
    if (img.sectionOf(reloc.rva) !== i || img.sections[i]!.name !== '.reloc') return undefined;
  }
  for (let d = 0; d < img.dirCount; d++) {
    if (d === DIR_RESOURCE || d === DIR_SECURITY || d === DIR_BASERELOC) continue;
    const { rva, size } = img.dir(d);
    if (size && img.sectionOf(rva) >= ri) return undefined;
  }
  const debug = img.dir(DIR_DEBUG);
  for (let p = 0; debug.size && p + 28 <= debug.size; p += 28) {
    const entry = img.bytesAt(debug.rva + p, 28);
    const rawPtr = entry.readUInt32LE(24);
    if (rawPtr >= rsrc.rawPtr) return undefined;
  }
  // The file must end with the last section's data, optionally followed by the signature.
  const last = img.sections[img.sections.length - 1]!;
  const sectionsEnd = last.rawPtr + last.rawSize;
  const sec = img.dir(DIR_SECURITY);
  const fileEnd = sec.size ? sec.rva : exe.length;
  if (fileEnd !== sectionsEnd || (sec.size && sec.rva + sec.size !== exe.length)) return undefined;
  // File order must follow section order; sections without file data (.bss) do not count.
  const backed = img.sections.filter((x) => x.rawSize > 0);
  for (let i = 1; i < backed.length; i++) {
    if (backed[i]!.rawPtr < backed[i - 1]!.rawPtr) return undefined;
  }

  let tree: ResourceDir;
  try {
    tree = readResourceTree(img, res.rva);
  } catch {
    return undefined;
  }
  if (!mutate(tree)) return undefined;
  sortEntries(tree);

  const section = writeResourceTree(tree, rsrc.va);
  const rawSize = align(section.length, img.fileAlignment);
  const out = Buffer.alloc(rsrc.rawPtr + rawSize + (sectionsEnd - (rsrc.rawPtr + rsrc.rawSize)));
  exe.copy(out, 0, 0, rsrc.rawPtr);
  section.copy(out, rsrc.rawPtr);
  out.writeUInt32LE(section.length, rsrc.headerOffset + 8);
  out.writeUInt32LE(rawSize, rsrc.headerOffset + 16);
  // Move the sections after it, keeping their virtual and file order.
  let va = align(rsrc.va + section.length, img.sectionAlignment);
  let ptr = rsrc.rawPtr + rawSize;
  const vaDelta = new Map<number, number>();
  for (let i = ri + 1; i < img.sections.length; i++) {
    const s = img.sections[i]!;
    exe.copy(out, ptr, s.rawPtr, s.rawPtr + s.rawSize);
    out.writeUInt32LE(va, s.headerOffset + 12);
    out.writeUInt32LE(ptr, s.headerOffset + 20);
    vaDelta.set(i, va - s.va);
    va = align(va + Math.max(s.virtualSize, s.rawSize), img.sectionAlignment);
    ptr += s.rawSize;
  }
  const setDir = (i: number, rva: number, size: number) => {
    out.writeUInt32LE(rva, img.dirOffset + i * 8);
    out.writeUInt32LE(size, img.dirOffset + i * 8 + 4);
  };
  setDir(DIR_RESOURCE, rsrc.va, section.length);
  const reloc = img.dir(DIR_BASERELOC);
  if (reloc.size && img.sectionOf(reloc.rva) > ri) setDir(DIR_BASERELOC, reloc.rva + vaDelta.get(img.sectionOf(reloc.rva))!, reloc.size);
  if (img.dirCount > DIR_SECURITY) setDir(DIR_SECURITY, 0, 0);
  const o = img.optOffset;
  out.writeUInt32LE(va, o + 56); // SizeOfImage
  out.writeUInt32LE(Math.max(0, out.readUInt32LE(o + 8) + rawSize - rsrc.rawSize) >>> 0, o + 8); // SizeOfInitializedData
  out.writeUInt32LE(peChecksum(out, o + 64), o + 64);
  return { image: out, unsigned: sec.size > 0 };
}

/** Flips the SEA fuse ("…:0" → "…:1") that tells Node to look for the blob. */
export function flipSeaFuse(image: Buffer, fuse: string): void {
  const at = image.indexOf(`${fuse}:0`, 0, 'latin1');
  if (at < 0) {
    if (image.indexOf(`${fuse}:1`, 0, 'latin1') >= 0) throw new Error('the executable is already a single executable application (its SEA fuse is set)');
    throw new Error(`the executable has no SEA fuse ${fuse}: is it a Node binary (≥ 20)?`);
  }
  image[at + fuse.length + 1] = 0x31;
}

/** Resource RT_RCDATA/`name` of a PE image, for checks. */
export function readPeResource(exe: Buffer, name: string): Buffer | undefined {
  const img = new PeImage(exe);
  const res = img.dir(DIR_RESOURCE);
  const tree = readResourceTree(img, res.rva);
  const types = tree.entries.find((e) => e.id === RT_RCDATA)?.node;
  if (types?.kind !== 'dir') return undefined;
  const named = types.entries.find((e) => typeof e.id === 'string' && e.id.toUpperCase() === name.toUpperCase())?.node;
  if (named?.kind !== 'dir') return undefined;
  const leaf = named.entries[0]?.node;
  return leaf?.kind === 'leaf' ? leaf.data : undefined;
}
