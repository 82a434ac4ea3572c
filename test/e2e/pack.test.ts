// The packer: what a good pack writes, and the one-line errors for bad input.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addElfNote, readElfNote } from '../../packer/elf_note';
import { DEFAULT_NODE_VERSION, ensureNodeBinary } from '../../packer/node_binary';
import { packed, runCli } from '../helpers';

describe('isapi pack', () => {
  it('writes the bridge, the worker and a manifest that describes them', () => {
    const folder = packed('hello');
    expect(readdirSync(folder).filter((f) => f !== 'logs').sort()).toEqual(['_hello.so', 'hello', 'hello.manifest.json', 'install']);
    const manifest = JSON.parse(readFileSync(path.join(folder, 'hello.manifest.json'), 'utf8'));
    expect(manifest).toMatchObject({ name: 'hello', target: 'linux-x64', node: '22.21.1', entryPoints: { extension: true, filter: false } });
    for (const [file, info] of Object.entries<{ size: number; sha256: string }>(manifest.files)) {
      const bytes = readFileSync(path.join(folder, file));
      expect(bytes.length).toBe(info.size);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(info.sha256);
    }
    expect(statSync(path.join(folder, 'hello')).mode & 0o111).not.toBe(0);
  });

  it('carries one copy of Node: the worker holds the blob, install is a small native launcher (≤ 130 MB in all)', () => {
    const folder = packed('hello');
    const manifest = JSON.parse(readFileSync(path.join(folder, 'hello.manifest.json'), 'utf8'));
    expect(manifest.files).toMatchObject({ '_hello.so': { role: 'bridge' }, hello: { role: 'worker' }, install: { role: 'installer' } });
    const install = readFileSync(path.join(folder, 'install'));
    expect(install.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(install.length).toBeLessThan(1024 * 1024);
    expect(install.indexOf('NODE_SEA_FUSE')).toBe(-1);
    // The blob is an ELF note in a segment of its own (packer/elf_note.ts), found by Node at start.
    const worker = readFileSync(path.join(folder, 'hello'));
    expect(worker.indexOf('NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2:1')).toBeGreaterThan(0);
    expect(readElfNote(worker, 'NODE_SEA_BLOB')?.length).toBeGreaterThan(100_000);
    const total = Object.values<{ size: number }>(manifest.files).reduce((n, f) => n + f.size, 0);
    expect(total).toBeLessThanOrEqual(130e6);
  });

  it('the ELF injection refuses a second blob and leaves other files to postject', () => {
    const once = addElfNote(readFileSync(ensureNodeBinary('linux-x64', DEFAULT_NODE_VERSION)), 'NODE_SEA_BLOB', Buffer.from('blob'))!;
    const image = Buffer.concat([once.head, once.tail]);
    // The program headers moved to the page-aligned tail; nothing before it moved.
    const phoff = Number(image.readBigUInt64LE(0x20));
    expect(phoff % 4096).toBe(0);
    expect(phoff).toBeGreaterThanOrEqual(once.head.length);
    expect(readElfNote(image, 'NODE_SEA_BLOB')?.toString()).toBe('blob');
    expect(() => addElfNote(image, 'NODE_SEA_BLOB', Buffer.from('again'))).toThrow(/already has a NODE_SEA_BLOB note/);
    expect(addElfNote(Buffer.from('MZ not an ELF file at all, padded out to more than sixty-four bytes....'), 'X', Buffer.alloc(1))).toBeUndefined();
  });

  it('install runs the worker as the installer: arguments exactly as given, its output and its exit code', () => {
    const folder = packed('hello');
    const help = spawnSync(path.join(folder, 'install'), ['--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^hello installer \(node-isapi\)\n/);
    const site = `a "quoted" \\ site\\ ü  two spaces`;
    const r = spawnSync(path.join(folder, 'install'), ['--iis', '--dry-run', '--site', site], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toBe(`install: --site '${site}' contains a quote, '%' or a line break, which IIS command lines cannot carry\n`);
    expect(spawnSync(path.join(folder, 'install'), ['doctor', '--config'], { encoding: 'utf8' }).status).toBe(1);
  });

  it('the worker started as the bridge starts it (no arguments) is the worker; only --isapi-installer makes it the installer', () => {
    const folder = packed('hello');
    const plain = spawnSync(path.join(folder, 'hello'), [], { encoding: 'utf8' });
    expect(plain.stdout).toBe('');
    expect(plain.stderr).toContain('this program is a node-isapi worker');
    const asInstaller = spawnSync(path.join(folder, 'hello'), ['--isapi-installer', '--help'], { encoding: 'utf8' });
    expect(asInstaller.status).toBe(0);
    expect(asInstaller.stdout).toMatch(/^hello installer \(node-isapi\)\n/);
  });

  it('install outside its folder says what is missing', () => {
    const folder = packed('hello');
    const alone = mkdtempSync(path.join(os.tmpdir(), 'isapi-install-'));
    copyFileSync(path.join(folder, 'install'), path.join(alone, 'install'));
    const none = spawnSync(path.join(alone, 'install'), [], { encoding: 'utf8' });
    expect(none.status).toBe(1);
    expect(none.stderr).toBe(`install: ${alone} holds no <name>.manifest.json: the installer works from the folder \`isapi pack\` wrote, beside the bridge and the worker\n`);
    copyFileSync(path.join(folder, 'hello.manifest.json'), path.join(alone, 'hello.manifest.json'));
    const noWorker = spawnSync(path.join(alone, 'install'), [], { encoding: 'utf8' });
    expect(noWorker.status).toBe(1);
    expect(noWorker.stderr).toBe(`install: cannot start ${alone}/hello: No such file or directory (the manifest names it: copy the whole folder, or pack it again)\n`);
  });

  it('prints progress lines with timings', () => {
    const out = mkdtempSync(path.join(os.tmpdir(), 'isapi-pack-'));
    const r = runCli(['pack', 'examples/hello.ts', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^check +examples\/hello\.ts exports __ExtensionFactory__ \(\d+ ms\)$/m);
    expect(r.stdout).toMatch(/^bundle +\d+ KiB \(\d+ ms\)$/m);
    expect(r.stdout).toMatch(/^sea +hello \(\d+ ms\)$/m);
    expect(existsSync(path.join(out, 'hello', 'hello'))).toBe(true);
  });

  const failures: Array<[string, string[], RegExp]> = [
    ['a missing script', ['pack', 'examples/nope.ts'], /^isapi: examples\/nope\.ts: no such file\n$/],
    ['a syntax error', ['pack', 'test/fixtures/broken-syntax.ts'], /^isapi: test\/fixtures\/broken-syntax\.ts:4:\d+: .+\n$/],
    ['a script without an extension', ['pack', 'test/fixtures/no-extension.ts'], /^isapi: test\/fixtures\/no-extension\.ts exports no extension: export a function __ExtensionFactory__\(\).*\n$/],
    ['an unknown target', ['pack', 'examples/hello.ts', '--target', 'mac-arm64'], /^isapi: unknown --target 'mac-arm64'.*\n$/],
  ];
  for (const [what, args, message] of failures) {
    it(`rejects ${what} with one line, exit code 1 and no folder`, () => {
      const out = mkdtempSync(path.join(os.tmpdir(), 'isapi-pack-'));
      const r = runCli([...args, '--out', out]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(readdirSync(out)).toEqual([]);
    });
  }

  it('explains itself with --help', () => {
    const r = runCli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('isapi pack <script.ts>');
    expect(r.stdout).toContain('isapi serve <folder>');
  });
});
