// Native addons from the npm registry, packed for the build machine and for win-x64 from Linux
// (issue 12, item 4), in a project of their own installed from the registry with npm:
//   - @node-rs/crc32: napi-rs, one platform package per target in optionalDependencies; npm
//     installs only linux-x64-gnu here, so the packer fetches @node-rs/crc32-win32-x64-msvc.
//     (1.10.0: later builds import bcryptprimitives.dll!ProcessPrng, which Wine 8 lacks;
//     Windows 10 has it.)
//   - utf-8-validate: prebuildify, prebuilds/<os>-<arch>/ inside the package, node-gyp-build.
// Each answers over HTTP from the packed worker, the Windows one under Wine. better-sqlite3,
// whose Windows binary only prebuild-install downloads (from GitHub), gets one line at pack time.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findWine, killWine, temporaryWinePrefix, toWinePath } from '../../packer/wine';
import { isapiCli, root } from '../helpers';
import { startServing } from '../package_helpers';

const project = mkdtempSync(path.join(os.tmpdir(), 'isapi-addons-project-'));
const out = path.join(project, 'dist');

// The app, as a user would write it in their own project.
const APP = `import { crc32 } from '@node-rs/crc32';
import isValidUTF8 from 'utf-8-validate';
import { SimpleExtension, type ECB } from 'node-isapi';

class Addons extends SimpleExtension {
  async HttpExtensionProc(ecb: ECB) {
    const body = JSON.stringify({
      crc32: crc32('hello'),
      utf8: isValidUTF8(Buffer.from('h\\u00e9llo')),
      invalid: isValidUTF8(Buffer.from([0xff, 0xfe])),
      // Native functions, not utf-8-validate's JavaScript fallback (its catch when the addon fails).
      native: [crc32, isValidUTF8].map((f) => String(f).includes('[native code]')),
      platform: process.platform,
      // The production defaults and import.meta hold on Windows too.
      nodeEnv: process.env.NODE_ENV,
      dirname: import.meta.dirname,
    });
    ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'application/json' });
    await ecb.WriteClient(body);
  }
}
export function __ExtensionFactory__() {
  return new Addons();
}
`;
const EXPECTED = { crc32: 0x3610a686, utf8: true, invalid: false, native: [true, true] };

function run(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [isapiCli, ...args], { cwd: project, env: { ...process.env, ...env } });
    let output = '';
    p.stdout.on('data', (d) => (output += d));
    p.stderr.on('data', (d) => (output += d));
    p.on('exit', (code) => resolve({ code, output }));
  });
}

/** `isapi serve [--wine] <folder>`, resolved with the application's URL once the host listens. */
async function serve(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ url: string; proc: ChildProcess; output: () => string }> {
  const inherited = { ...process.env };
  delete inherited.NODE_ENV; // vitest sets 'test'; the workers' default is what is checked
  const proc = spawn(process.execPath, [isapiCli, 'serve', ...args, '--port', '0'], {
    cwd: project,
    env: { ...inherited, ISAPI_WORKERS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const served = await startServing(proc, 'isapi serve', 120_000);
  return { url: `http://127.0.0.1:${served.port}/addons/`, proc, output: served.output };
}

function stop(proc: ChildProcess | undefined): Promise<void> {
  if (!proc || proc.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    proc.once('exit', () => resolve());
    proc.kill('SIGTERM');
  });
}

beforeAll(() => {
  writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'addons-project', version: '1.0.0', private: true }));
  writeFileSync(path.join(project, 'addons.ts'), APP);
  // From the npm registry, as a user installs them; no install scripts: nothing is compiled.
  const npm = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', '@node-rs/crc32@1.10.0', 'utf-8-validate@6.0.6'], {
    cwd: project,
    encoding: 'utf8',
  });
  if (npm.status !== 0) throw new Error(`npm install failed:\n${npm.stderr}`);
}, 120_000);

afterAll(() => {
  rmSync(project, { recursive: true, force: true });
});

describe('native addons from npm', () => {
  it('packs and serves both kinds for linux-x64', async () => {
    const packed = await run(['pack', 'addons.ts', '--out', out]);
    expect(packed.code, packed.output).toBe(0);
    expect(packed.output).toMatch(/native addons: .*@node-rs\/crc32-linux-x64-gnu:crc32\.linux-x64-gnu\.node/);
    expect(packed.output).toMatch(/native addons: .*utf-8-validate:utf-8-validate\.node/);
    const s = await serve([path.join(out, 'addons')]);
    try {
      const r = await fetch(s.url);
      expect(r.status).toBe(200);
      expect(await r.json()).toEqual({ ...EXPECTED, platform: 'linux', nodeEnv: 'production', dirname: path.join(out, 'addons') });
    } finally {
      await stop(s.proc);
    }
  }, 120_000);

  it('names better-sqlite3, whose Windows binary is not on the npm registry, and the way out, in one line', async () => {
    const r = await run(['pack', path.join(root, 'examples', 'sqlite-app.ts'), '--target', 'win-x64', '--out', out]);
    expect(r.code).toBe(1);
    const lines = r.output.trim().split('\n');
    const last = lines[lines.length - 1]!;
    expect(last).toMatch(/^isapi: cannot pack better-sqlite3@[\d.]+ for win-x64: its native addon's win32-x64 binary is not on the npm registry \(prebuild-install downloads it/);
    expect(last).toContain('Way out: pack on win-x64');
    expect(last).toContain(`${path.join('prebuilds', 'win32-x64', 'better_sqlite3.node')} and pack again`);
    expect(existsSync(path.join(out, 'sqlite-app'))).toBe(false);
  });

  describe.skipIf(!findWine())('for win-x64, packed on Linux and served under Wine', () => {
    let prefix = '';
    afterAll(() => {
      if (prefix) {
        killWine(prefix);
        rmSync(prefix, { recursive: true, force: true });
      }
    }, 60_000);

    it("fetches napi-rs' win32-x64-msvc package, takes utf-8-validate's prebuilds/win32-x64, and both answer", async () => {
      const packed = await run(['pack', 'addons.ts', '--target', 'win-x64', '--out', path.join(out, 'win')]);
      expect(packed.code, packed.output).toBe(0);
      expect(packed.output).toMatch(/native addons: .*@node-rs\/crc32-win32-x64-msvc:crc32\.win32-x64-msvc\.node/);
      expect(packed.output).toMatch(/native addons: .*utf-8-validate:utf-8-validate\.node/);
      // Not installed (npm installs only this machine's platform package): fetched from the registry.
      expect(existsSync(path.join(project, 'node_modules', '@node-rs', 'crc32-win32-x64-msvc'))).toBe(false);
      prefix = temporaryWinePrefix('addons');
      const s = await serve(['--wine', path.join(out, 'win', 'addons')], { ISAPI_WINEPREFIX: prefix });
      try {
        const r = await fetch(s.url);
        expect(r.status, s.output()).toBe(200);
        expect(await r.json()).toEqual({ ...EXPECTED, platform: 'win32', nodeEnv: 'production', dirname: toWinePath(path.join(out, 'win', 'addons')) });
      } finally {
        await stop(s.proc);
      }
    }, 240_000);
  });
});
