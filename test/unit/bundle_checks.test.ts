// What a pack reports about module loads the bundle cannot carry (packer/bundle_checks.ts), and
// how the packer tells addon binaries apart (packer/native_addons.ts), on real files: esbuild's
// metafile of a real build, and the .node files of the installed better-sqlite3.
import { build } from 'esbuild';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { codeOnly, unbundledRequires } from '../../packer/bundle_checks';
import { inspectAddon } from '../../packer/native_addons';
import { nativeDir } from '../../packer/paths';
import { root } from '../helpers';

const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-bundle-checks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function warningsFor(source: string): Promise<string[]> {
  const file = path.join(dir, `app-${Math.random().toString(36).slice(2)}.ts`);
  writeFileSync(file, source);
  // The metafile's input paths are relative to esbuild's working directory: make it `dir`, the one
  // unbundledRequires resolves them against (the packer uses the default, process.cwd(), for both).
  const r = await build({ entryPoints: [file], absWorkingDir: dir, bundle: true, write: false, platform: 'node', format: 'cjs', metafile: true, logLevel: 'silent', outdir: dir });
  return unbundledRequires(r.metafile!, dir).map((w) => w.replace(/^.*?app-\w+\.ts/, 'app.ts'));
}

describe('unbundledRequires', () => {
  it('reports computed names at their line and column, and not those in comments, strings or bundled templates', async () => {
    mkdirSync(path.join(dir, 'locale'), { recursive: true });
    writeFileSync(path.join(dir, 'locale', 'en.js'), 'module.exports = "en";');
    const w = await warningsFor(
      [
        `// require(commented) is not code`,
        `const s = "import(inAString)"; const t = \`require(\${'x'})\`;`,
        `export const a = (n: string) => import(n);`,
        `export const b = (n: string) => import(\`./locale/\${n}.js\`);`,
        `export const c = (n: string) => require(\`\${n}/x\`);`,
        `/* import(block) */ export const d = (n: string) => require(n + '.js');`,
      ].join('\n'),
    );
    expect(w).toEqual([
      expect.stringMatching(/^app\.ts:3:33: warning: `import\(n\)` names its module at run time/),
      expect.stringMatching(/^app\.ts:5:33: warning: `require\(`\$\{n\}\/x`\)` names its module at run time/),
      expect.stringMatching(/^app\.ts:6:53: warning: `require\(n \+ '\.js'\)` names its module at run time/),
    ]);
  });

  it('reports createRequire(), whose requires esbuild never bundles', async () => {
    const w = await warningsFor(`import { createRequire } from 'node:module';\nconst req = createRequire(import.meta.url);\nexport const v = req('node:os');\n`);
    expect(w).toEqual([expect.stringMatching(/^app\.ts:2:13: warning: modules loaded through `createRequire\(\)` are not bundled/)]);
  });

  it('reports an unresolvable require kept in a try block, with the package to install', async () => {
    const w = await warningsFor(`let x; try { x = require('@scope/not-installed/sub'); } catch {}\nexport { x };\n`);
    expect(w).toEqual([expect.stringMatching(/^app\.ts:1:26: warning: "@scope\/not-installed\/sub" cannot be resolved.*npm install @scope\/not-installed\) to bundle it$/)]);
  });

  it('keeps line numbers: blanking comments and strings keeps every newline', () => {
    const src = "a /* x\ny */ 'q\\'z' `t${b}\nu` // c\nd";
    const code = codeOnly(src);
    expect(code.length).toBe(src.length);
    expect(code.split('\n').length).toBe(src.split('\n').length);
    expect(code).not.toMatch(/[xyqzc]/);
    expect(code).toContain('${b}');
  });
});

describe('inspectAddon', () => {
  it('tells the OS and architecture from the header: the bridge for linux-x64 and for win-x64', () => {
    expect(inspectAddon(path.join(nativeDir('linux-x64'), 'isapi-bridge.so'))).toMatchObject({ os: 'linux', arch: 'x64', abi: null });
    expect(inspectAddon(path.join(nativeDir('win-x64'), 'isapi-bridge.dll'))).toMatchObject({ os: 'win32', arch: 'x64', abi: null });
  });

  it("reads the Node ABI of an addon that is not Node-API (better-sqlite3's)", () => {
    const release = path.join(root, 'node_modules', 'better-sqlite3', 'build', 'Release');
    const file = readdirSync(release).find((f) => f.endsWith('.node'))!;
    const info = inspectAddon(path.join(release, file));
    expect(info).toMatchObject({ os: 'linux', arch: 'x64' });
    expect(info.abi).toBeGreaterThan(100);
  });
});
