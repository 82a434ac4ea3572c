// Linux targets: the SEA blob goes into the Node executable as an ELF note, natively in
// TypeScript. postject does the same through LIEF compiled to WebAssembly and takes ~4 s on the
// 118 MiB linux-x64 node (most of a pack); this takes a copy's time.
//
// Node finds the blob with postject's postject_find_resource: it walks the running program's
// program headers (dl_iterate_phdr) and reads every PT_NOTE segment from memory, so the note must
// be mapped. The program header table has no room for more entries in place, so it moves: the
// file gets one page-aligned tail holding a new program header table (the old entries plus a
// PT_LOAD that maps the tail and a PT_NOTE for the note), then the note. PT_PHDR and e_phoff point
// at the new table. The tail's address is the first segment's base plus its file offset, which
// is what every Linux kernel passes as AT_PHDR (old ones compute it that way, newer ones from the
// PT_LOAD holding e_phoff); nothing before the tail moves, so sections and symbols stay valid.

const PT_LOAD = 1;
const PT_NOTE = 4;
const PT_PHDR = 6;
const PF_R = 4;
const PAGE = 0x1000;
const PHENT = 56;

export interface ElfNoteResult {
  /** The executable's bytes up to the tail, with the header patched (the input buffer, changed). */
  head: Buffer;
  /** Appended after `head`: the moved program header table and the note. */
  tail: Buffer;
}

const roundUp = (n: number, a: number) => Math.ceil(n / a) * a;

/**
 * Adds note `name` holding `data` to an x86-64 ELF executable. Returns undefined when the
 * layout is not one this function handles (the caller then uses postject): not ELF64
 * little-endian, no PT_PHDR, or segments where the tail would go.
 * Changes `exe` (its header) in place.
 */
export function addElfNote(exe: Buffer, name: string, data: Buffer): ElfNoteResult | undefined {
  if (exe.length < 64 || exe.readUInt32BE(0) !== 0x7f454c46 || exe[4] !== 2 || exe[5] !== 1) return undefined;
  const type = exe.readUInt16LE(0x10);
  if (type !== 2 && type !== 3) return undefined; // ET_EXEC or ET_DYN
  if (exe.readUInt16LE(0x36) !== PHENT) return undefined;
  const phoff = Number(exe.readBigUInt64LE(0x20));
  const phnum = exe.readUInt16LE(0x38);
  if (phnum === 0 || phnum + 2 >= 0xffff || phoff + phnum * PHENT > exe.length) return undefined;

  const phdrs = Buffer.from(exe.subarray(phoff, phoff + phnum * PHENT));
  const at = (i: number) => i * PHENT;
  const typeOf = (i: number) => phdrs.readUInt32LE(at(i));
  const offsetOf = (i: number) => Number(phdrs.readBigUInt64LE(at(i) + 8));
  const vaddrOf = (i: number) => Number(phdrs.readBigUInt64LE(at(i) + 16));
  const memszOf = (i: number) => Number(phdrs.readBigUInt64LE(at(i) + 40));

  let phdrIndex = -1;
  let firstLoad = -1;
  let lastLoad = -1;
  let end = 0;
  for (let i = 0; i < phnum; i++) {
    const t = typeOf(i);
    if (t === PT_PHDR) phdrIndex = i;
    if (t === PT_NOTE) {
      // A note of this name already there: packing an already packed executable.
      const noteName = exe.toString('latin1', offsetOf(i) + 12, offsetOf(i) + 12 + name.length);
      if (noteName === name) throw new Error(`the executable already has a ${name} note (was it packed already?)`);
    }
    if (t !== PT_LOAD) continue;
    if (firstLoad < 0) firstLoad = i;
    lastLoad = i;
    end = Math.max(end, vaddrOf(i) + memszOf(i));
  }
  if (phdrIndex < 0 || firstLoad < 0) return undefined;
  const base = vaddrOf(firstLoad) - offsetOf(firstLoad);
  const tailOffset = roundUp(exe.length, PAGE);
  const tailAddr = base + tailOffset;
  if (tailAddr < roundUp(end, PAGE)) return undefined;

  // The tail: program header table, then the note (header, name, description; 4-byte aligned).
  const count = phnum + 2;
  const tableSize = count * PHENT;
  const noteOffset = roundUp(tableSize, 8);
  const nameSize = name.length + 1;
  const noteSize = 12 + roundUp(nameSize, 4) + roundUp(data.length, 4);
  const tail = Buffer.alloc(tailOffset - exe.length + noteOffset + noteSize);
  const pad = tailOffset - exe.length;
  const segment = (t: Buffer, o: number, kind: number, off: number, addr: number, size: number, align: number) => {
    t.writeUInt32LE(kind, o);
    t.writeUInt32LE(PF_R, o + 4);
    t.writeBigUInt64LE(BigInt(off), o + 8);
    t.writeBigUInt64LE(BigInt(addr), o + 16);
    t.writeBigUInt64LE(BigInt(addr), o + 24);
    t.writeBigUInt64LE(BigInt(size), o + 32);
    t.writeBigUInt64LE(BigInt(size), o + 40);
    t.writeBigUInt64LE(BigInt(align), o + 48);
  };
  // PT_LOADs stay sorted by address: the new one goes right after the last.
  let o = pad;
  for (let i = 0; i < phnum; i++) {
    phdrs.copy(tail, o, at(i), at(i) + PHENT);
    if (i === phdrIndex) segment(tail, o, PT_PHDR, tailOffset, tailAddr, tableSize, 8);
    o += PHENT;
    if (i === lastLoad) {
      segment(tail, o, PT_LOAD, tailOffset, tailAddr, noteOffset + noteSize, PAGE);
      o += PHENT;
    }
  }
  segment(tail, o, PT_NOTE, tailOffset + noteOffset, tailAddr + noteOffset, noteSize, 4);

  const note = pad + noteOffset;
  tail.writeUInt32LE(nameSize, note);
  tail.writeUInt32LE(data.length, note + 4);
  tail.writeUInt32LE(0, note + 8);
  tail.write(name, note + 12, 'latin1');
  data.copy(tail, note + 12 + roundUp(nameSize, 4));

  exe.writeBigUInt64LE(BigInt(tailOffset), 0x20);
  exe.writeUInt16LE(count, 0x38);
  return { head: exe, tail };
}

/** The description of note `name` in an ELF file (for checks), read through its program headers. */
export function readElfNote(exe: Buffer, name: string): Buffer | undefined {
  const phoff = Number(exe.readBigUInt64LE(0x20));
  const phnum = exe.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * PHENT;
    if (exe.readUInt32LE(p) !== PT_NOTE) continue;
    let pos = Number(exe.readBigUInt64LE(p + 8));
    const stop = pos + Number(exe.readBigUInt64LE(p + 32));
    while (pos + 12 <= stop) {
      const namesz = exe.readUInt32LE(pos);
      const descsz = exe.readUInt32LE(pos + 4);
      const desc = pos + 12 + roundUp(namesz, 4);
      if (exe.toString('latin1', pos + 12, pos + 12 + namesz).replace(/\0$/, '') === name) return exe.subarray(desc, desc + descsz);
      pos = desc + roundUp(descsz, 4);
    }
  }
  return undefined;
}
