// Issue 11, item 3 under Wine: the Windows build of the host (isapi-host.exe) maps URLs with the
// same rule as on Linux, where Windows itself would read more into a path: backslashes, device
// names (CON, NUL, COM1…), alternate data streams, drive letters, trailing dots. The extension
// is native/host/test/security_ext.c built as a DLL with mingw-w64.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureWinePrefix, findWine, killWine, temporaryWinePrefix, toWinePath } from '../../packer/wine';
import { isapiCli, root } from '../helpers';
import { exchange, expectAlive, get, statusLine } from './common';

const CC = 'x86_64-w64-mingw32-gcc';
const hasMingw = spawnSync(CC, ['--version']).status === 0;
const missing = [!findWine() && 'Wine (apt-get install -y wine64 wine)', !hasMingw && 'mingw-w64 (apt-get install -y mingw-w64)'].filter(Boolean);
const skipReason = missing.length ? `not installed: ${missing.join(', ')}` : '';

const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-wine-paths-'));
const www = path.join(dir, 'www');
let prefix = '';
let server: ChildProcess | undefined;
let output = '';
let port = 0;

describe.skipIf(!!skipReason)(`URL → path under Wine (the Windows host)${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  beforeAll(async () => {
    mkdirSync(www, { recursive: true });
    writeFileSync(path.join(www, 'file.txt'), 'static file\n');
    writeFileSync(path.join(dir, 'secret.txt'), 'outside the root\n');
    const dll = path.join(dir, 'security_ext.dll');
    execFileSync(CC, ['-shared', '-O2', '-Wall', '-Werror', '-I', path.join(root, 'native', 'include'), '-o', dll,
      path.join(root, 'native', 'host', 'test', 'security_ext.c')]);
    prefix = temporaryWinePrefix('wine-security');
    ensureWinePrefix(prefix);
    server = spawn(process.execPath, [isapiCli, 'serve', '--wine', '--dll', dll, '--vdir', '/s', '--root', www, '--port', '0'], {
      cwd: root,
      env: { ...process.env, ISAPI_WINEPREFIX: prefix },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout!.on('data', (d) => (output += d));
    server.stderr!.on('data', (d) => (output += d));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`isapi serve --wine did not start:\n${output}`)), 120_000);
      const check = () => {
        const m = /isapi-host listening on http:\/\/[\d.]+:(\d+)\//.exec(output);
        if (!m) return;
        clearTimeout(timer);
        port = Number(m[1]);
        resolve();
      };
      server!.stdout!.on('data', check);
      server!.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`isapi serve --wine exited with ${code}:\n${output}`));
      });
    });
  }, 240_000);

  afterAll(async () => {
    const s = server;
    if (s && s.exitCode === null && s.signalCode === null) {
      await new Promise<void>((resolve) => {
        s.once('exit', () => resolve());
        s.kill('SIGTERM');
        setTimeout(() => s.kill('SIGKILL'), 15_000).unref();
      });
    }
    if (prefix) {
      killWine(prefix);
      rmSync(prefix, { recursive: true, force: true });
    }
  }, 60_000);

  const D = () => toWinePath(dir);
  const W = () => toWinePath(www);
  const alive = () => expectAlive(port, '/s/info', 'url=/s/info pathinfo=/s/info');

  it.each([
    ['a file in the vdir', 'map', '/s/a.txt', () => `path=${D()}\\a.txt`],
    ['dot segments inside', 'map', '/s/sub/./x/../a.txt', () => `path=${D()}\\sub\\a.txt`],
    ['".." above the root', 'map', '/../../windows/win.ini', () => 'err=87'],
    ['backslashes above the root', 'map', '/s/..\\..\\..\\windows\\win.ini', () => 'err=87'],
    ['encoded backslashes', 'map', '/s/%2e%2e%5c%2e%2e%5cwindows%5cwin.ini', () => 'err=87'],
    ['double-encoded dots stay a name', 'map', '/s/%252e%252e/secret.txt', () => `path=${D()}\\%2e%2e\\secret.txt`],
    ['".." from the vdir into the root', 'map', '/s/../file.txt', () => `path=${W()}\\file.txt`],
    ['CON', 'map', '/s/CON', () => 'err=87'],
    ['aux.txt', 'map', '/s/aux.txt', () => 'err=87'],
    ['nul deeper down', 'map', '/s/x/nul', () => 'err=87'],
    ['LPT1', 'map', '/s/LPT1', () => 'err=87'],
    ['an alternate data stream', 'map', '/s/a.txt::$DATA', () => 'err=87'],
    ['a trailing dot', 'map', '/s/a.txt.', () => 'err=87'],
    ['a drive letter', 'map', '/C:/windows/win.ini', () => 'err=87'],
    ['MAP_URL_TO_PATH_EX, backslashes above the root', 'mapex', '/s/..\\..\\windows', () => 'err=87'],
    ['MAP_URL_TO_PATH_EX, a device', 'mapex', '/s/com1', () => 'err=87'],
    ['MAP_URL_TO_PATH_EX, a file', 'mapex', '/s/b/../a.txt', () => `path=${D()}\\a.txt`],
  ])('%s: %s %s', async (_what, call, url, expected) => {
    const { res } = await exchange(port, get(`/s/${call}?u=${url}`));
    expect(statusLine(res)).toBe('HTTP/1.1 200 OK');
    expect(res.body.toString('latin1')).toBe(expected());
    await alive();
  });

  it.each([
    ['/file.txt', 'HTTP/1.1 200 OK'],
    ['/sub/../file.txt', 'HTTP/1.1 200 OK'],
    ['/..%5csecret.txt', 'HTTP/1.1 400 Bad Request'],
    ['/%2e%2e/secret.txt', 'HTTP/1.1 400 Bad Request'],
    ['/con', 'HTTP/1.1 404 Not Found'],
    ['/nul.txt', 'HTTP/1.1 404 Not Found'],
    ['/file.txt::$DATA', 'HTTP/1.1 404 Not Found'],
    ['/file.txt.', 'HTTP/1.1 404 Not Found'],
  ])('static %s → %s', async (target, line) => {
    const { res } = await exchange(port, get(target));
    expect(statusLine(res)).toBe(line);
    expect(res.body.toString('latin1')).not.toContain('outside the root');
    await alive();
  });

  it('a request URL with dot segments is served resolved; a climb is 400', async () => {
    const { res } = await exchange(port, get('/s/x/..%5cinfo'));
    expect(statusLine(res)).toBe('HTTP/1.1 200 OK');
    expect(res.body.toString()).toBe('url=/s/info pathinfo=/s/info');
    expect(statusLine((await exchange(port, get('/s/../../info'))).res)).toBe('HTTP/1.1 400 Bad Request');
    await alive();
  });
});
