// Bitness of a Windows DLL, from its PE header (the IMAGE_FILE_HEADER Machine field): the
// check behind IIS's 0x800700c1 / HTTP 404.4 trap (a 64-bit DLL in a 32-bit pool or back).
import { closeSync, openSync, readSync } from 'node:fs';

export type Machine = 'x64' | 'x86' | 'arm64' | 'unknown';

export function peMachine(file: string): Machine | undefined {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(64);
    if (readSync(fd, head, 0, 64, 0) < 64 || head.toString('latin1', 0, 2) !== 'MZ') return undefined;
    const peOffset = head.readUInt32LE(0x3c);
    const pe = Buffer.alloc(6);
    if (readSync(fd, pe, 0, 6, peOffset) < 6 || pe.toString('latin1', 0, 4) !== 'PE\0\0') return undefined;
    switch (pe.readUInt16LE(4)) {
      case 0x8664:
        return 'x64';
      case 0x014c:
        return 'x86';
      case 0xaa64:
        return 'arm64';
      default:
        return 'unknown';
    }
  } finally {
    closeSync(fd);
  }
}

export function bitnessOf(machine: Machine | undefined): 32 | 64 | undefined {
  if (machine === 'x64' || machine === 'arm64') return 64;
  if (machine === 'x86') return 32;
  return undefined;
}
