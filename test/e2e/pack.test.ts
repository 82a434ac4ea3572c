// The packer: what a good pack writes, and the one-line errors for bad input.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
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
