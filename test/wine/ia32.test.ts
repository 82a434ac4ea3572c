// 32-bit IIS application pools (--target win-ia32), end to end under Wine: the 32-bit
// isapi-host.exe (what a 32-bit w3wp is to the bridge) loads the folder's 32-bit bridge, whose
// workers are the same x64 Node SEA as win-x64's, loading the x64 addon packed beside it. The
// folders sit under a path with spaces and non-ASCII characters, and so do the host's static
// root and access log (wide-character paths in the host, issue 13 item 5), for both hosts.
// Needs Wine with wine32 (.ci/run installs it); the prefix is private to this file.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadFolder } from '../../installer/folder';
import { resolveParameters, scriptInstallExports } from '../../installer/params';
import { peMachine } from '../../installer/pe';
import { readPeVersionStrings } from '../../packer/pe_resource';
import { nativeDir } from '../../packer/paths';
import { ensureWinePrefix, findWine, killWine, runWineAsync, spawnWine, temporaryWinePrefix, toWinePath } from '../../packer/wine';
import { isapiCli, root, testDist, waitFor } from '../helpers';

// Wine's 32-bit loader (package wine32:i386); without it Wine cannot start a 32-bit program.
const WINE32 = '/usr/lib/wine/wine';
const ia32Built = existsSync(path.join(nativeDir('win-ia32'), 'isapi-host.exe')) && existsSync(path.join(nativeDir('win-ia32'), 'isapi-bridge.dll'));
const missing = [
  !findWine() && 'Wine (apt-get install -y wine64 wine)',
  !existsSync(WINE32) && 'wine32 (dpkg --add-architecture i386 && apt-get update && apt-get install -y wine32:i386)',
  !ia32Built && 'the win-ia32 build (mingw-w64, then npm run build:native)',
].filter(Boolean);
const skipReason = missing.length ? `not installed: ${missing.join(', ')}` : '';
if (skipReason) console.warn(`test/wine/ia32: skipping the 32-bit suite: ${skipReason}`);

const SCRIPTS: Record<string, string> = {
  hello: 'examples/hello.ts',
  echo: 'examples/echo.ts',
  'security-headers': 'examples/security-headers.ts',
  'transmit-file': 'examples/transmit-file.ts',
  env: 'test/fixtures/env.ts',
};
// Spaces and non-ASCII in every path the host, the bridge and the workers open.
const dist = path.join(testDist, 'win-ia32 fü');
const folder = (name: string) => path.join(dist, name);
const staticRoot = path.join(dist, 'static ü');
const STATIC_NAME = 'grüße 1.txt';
const STATIC_BODY = 'static from a non-ASCII folder\n';
// The access log's cs-uri-stem: decoded, UTF-8, a space written '+' (W3C fields have no spaces).
const LOGGED_STEM = '/grüße+1.txt';
const configFile = path.join(dist, 'host ü.json');
const golden = path.join(root, 'test', 'golden', 'iis');

let prefix = '';
let server: ChildProcess | undefined;
let serverOutput = '';
let base = '';

function packIa32(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [isapiCli, 'pack', script, '--target', 'win-ia32', '--out', dist], { cwd: root });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`packing ${script} for win-ia32 failed:\n${out}`))));
  });
}

function waitForListening(output: () => string, what: string, proc: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${output()}`)), 90_000);
    const check = () => {
      const m = /isapi-host listening on http:\/\/[\d.]+:(\d+)\//.exec(output());
      if (!m) return;
      clearTimeout(timer);
      resolve(`http://127.0.0.1:${m[1]}`);
    };
    proc.stdout!.on('data', () => setImmediate(check));
    proc.stderr!.on('data', () => setImmediate(check));
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}:\n${output()}`));
    });
  });
}

async function stop(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
    setTimeout(() => p.kill('SIGKILL'), 15_000).unref();
  });
}

/** The Linux processes running a Windows program, with the Wine loader that runs each. */
function wineProcesses(exe: string): Array<{ pid: number; loader: string }> {
  const ps = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return ps
    .split('\n')
    .map((l) => /^\s*(\d+)\s+(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m && m[2]!.startsWith(exe))
    .map((m) => {
      let loader = '';
      try {
        loader = execFileSync('readlink', [`/proc/${m[1]}/exe`], { encoding: 'utf8' }).trim();
      } catch {
        // exited meanwhile
      }
      return { pid: Number(m[1]), loader };
    })
    .filter((p) => p.loader);
}

function checkGolden(file: string, actual: string) {
  const p = path.join(golden, file);
  if (process.env.UPDATE_GOLDEN === '1') writeFileSync(p, actual);
  if (!existsSync(p)) throw new Error(`${p} is missing: review the output and write it with UPDATE_GOLDEN=1`);
  expect(actual).toBe(readFileSync(p, 'utf8'));
}

describe.skipIf(!!skipReason)(`32-bit pools: win-ia32 under Wine${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  beforeAll(async () => {
    rmSync(dist, { recursive: true, force: true });
    mkdirSync(staticRoot, { recursive: true });
    writeFileSync(path.join(staticRoot, STATIC_NAME), STATIC_BODY);
    const packs = Promise.all(Object.values(SCRIPTS).map(packIa32));
    // Made after wine32 was installed, so it has the 32-bit half (syswow64) the ia32 host needs.
    prefix = temporaryWinePrefix('wine-ia32');
    ensureWinePrefix(prefix);
    await packs;
    // install.exe (x64 Node) writes the local host's config, as on a server without IIS.
    for (const name of Object.keys(SCRIPTS)) {
      const r = await runWineAsync(path.join(folder(name), 'install.exe'), ['--config', toWinePath(configFile)], { prefix });
      if (r.code !== 0) throw new Error(`wine install.exe --config (${name}) failed with ${r.code}:\n${r.stdout}${r.stderr}`);
    }
    const config = JSON.parse(readFileSync(configFile, 'utf8'));
    writeFileSync(configFile, JSON.stringify({ ...config, root: toWinePath(staticRoot) }, null, 2) + '\n');
    server = spawn(process.execPath, [isapiCli, 'serve', '--wine', '--config', configFile, '--port', '0'], {
      cwd: root,
      env: { ...process.env, ISAPI_WINEPREFIX: prefix, ISAPI_WORKERS: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout!.on('data', (d) => (serverOutput += d));
    server.stderr!.on('data', (d) => (serverOutput += d));
    base = await waitForListening(() => serverOutput, 'isapi serve --wine (win-ia32)', server);
  }, 300_000);

  afterAll(async () => {
    await stop(server);
    if (prefix) {
      killWine(prefix);
      rmSync(prefix, { recursive: true, force: true });
    }
  }, 60_000);

  it('the folder: a 32-bit bridge, the x64 addon beside it, the x64 worker and installer; each carries the app\'s version', () => {
    const f = folder('hello');
    expect(readdirSync(f).filter((n) => n !== 'logs' && !n.includes('install-state')).sort()).toEqual(
      ['_hello.dll', '_hello.x64.node', 'hello.exe', 'hello.manifest.json', 'install.exe'],
    );
    expect(peMachine(path.join(f, '_hello.dll'))).toBe('x86');
    expect(peMachine(path.join(f, '_hello.x64.node'))).toBe('x64');
    expect(peMachine(path.join(f, 'hello.exe'))).toBe('x64');
    expect(peMachine(path.join(f, 'install.exe'))).toBe('x64');
    const manifest = JSON.parse(readFileSync(path.join(f, 'hello.manifest.json'), 'utf8'));
    expect(manifest.target).toBe('win-ia32');
    expect(Object.fromEntries(Object.entries(manifest.files as Record<string, { role: string }>).map(([k, v]) => [k, v.role]))).toEqual({
      '_hello.dll': 'bridge', '_hello.x64.node': 'addon', 'hello.exe': 'worker', 'install.exe': 'installer',
    });
    // IIS looks the entry points up undecorated: no _HttpExtensionProc@4.
    const exports = execFileSync('i686-w64-mingw32-objdump', ['-p', path.join(f, '_hello.dll')], { encoding: 'utf8' });
    for (const name of ['GetExtensionVersion', 'HttpExtensionProc', 'TerminateExtension', 'GetFilterVersion', 'HttpFilterProc', 'TerminateFilter']) {
      expect(exports).toMatch(new RegExp(`^\\s*\\[\\s*\\d+\\] ${name}$`, 'm'));
    }
    expect(readPeVersionStrings(readFileSync(path.join(f, '_hello.x64.node')))).toMatchObject({ OriginalFilename: '_hello.x64.node' });
    const files: Array<[string, string]> = [
      ...readdirSync(f).filter((n) => /\.(dll|node|exe)$/.test(n)).map((n): [string, string] => [n, path.join(f, n)]),
      ['isapi-host.exe (win-ia32)', path.join(nativeDir('win-ia32'), 'isapi-host.exe')],
    ];
    const sizes = Object.fromEntries(files.map(([n, p]) => [n, statSync(p).size]));
    console.log('win-ia32 folder and host sizes:\n' + Object.entries(sizes).map(([k, v]) => `  ${k}: ${(v / 1048576).toFixed(2)} MiB (${v} bytes)`).join('\n'));
  });

  it('GET: the 32-bit host loads the 32-bit bridge, whose x64 worker loads the x64 addon', async () => {
    const res = await fetch(`${base}/hello/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('Hello from TypeScript\n');
    // The host runs under Wine's 32-bit loader, the workers under the 64-bit one.
    const host = wineProcesses(toWinePath(path.join(nativeDir('win-ia32'), 'isapi-host.exe')));
    expect(host.map((p) => p.loader)).toEqual([WINE32]);
    const workers = wineProcesses(`${toWinePath(folder('hello'))}\\hello.exe`);
    expect(workers.length).toBeGreaterThan(0);
    for (const w of workers) expect(w.loader).toBe('/usr/lib/wine/wine64');
    const log = readFileSync(path.join(folder('hello'), 'logs', 'hello.log'), 'utf8');
    expect(log).toContain(`with the addon ${toWinePath(folder('hello'))}\\_hello.x64.node`);
    expect(log).toMatch(/worker 0 ready/);
  });

  // The bridge passes its own environment block on; the worker must still see a 64-bit process's
  // values (WoW64 shows 32-bit ones to the 32-bit bridge). docs/iis-32-bit-pools.md, "Limits".
  it('the x64 worker sees a 64-bit process\'s environment and is told to load the x64 addon', async () => {
    const res = await fetch(`${base}/env/`);
    expect(res.status).toBe(200);
    const vars = Object.fromEntries((await res.text()).trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(vars.arch).toBe('x64');
    expect(vars.PROCESSOR_ARCHITECTURE).toBe('AMD64');
    expect(vars.PROCESSOR_ARCHITEW6432).toBe('(unset)');
    expect(vars.ProgramFiles).toBe('C:\\Program Files');
    expect(vars.CommonProgramFiles).toBe('C:\\Program Files\\Common Files');
    expect(vars.ISAPI_BRIDGE).toBe(`${toWinePath(folder('env'))}\\_env.x64.node`);
  });

  it('POST: a request body crosses from the 32-bit bridge to the x64 worker and back byte for byte', async () => {
    const body = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff));
    const res = await fetch(`${base}/echo/body`, { method: 'POST', body, headers: { 'Content-Type': 'application/octet-stream' } });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
    const vars = await (await fetch(`${base}/echo/x?q=1`, { method: 'POST', body: 'ping' })).text();
    expect(vars).toContain('POST /echo/x?q=1');
    expect(vars).toContain('body-length=4');
  });

  it('a filter: the 32-bit bridge answers GetFilterVersion from its manifest; the x64 worker edits every response', async () => {
    const res = await fetch(`${base}/hello/`);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(readFileSync(path.join(folder('security-headers'), 'logs', 'security-headers.log'), 'utf8')).toContain('_security-headers.x64.node');
  });

  it('TransmitFile of a file under a non-ASCII folder: the 32-bit bridge opens the worker\'s UTF-8 path with the wide API', async () => {
    const text = 'sent by the web server itself: ü\n'.repeat(1000);
    writeFileSync(path.join(folder('transmit-file'), 'data ü.txt'), text);
    const res = await fetch(`${base}/transmit-file/${encodeURIComponent('data ü.txt')}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(text);
    const part = await fetch(`${base}/transmit-file/${encodeURIComponent('data ü.txt')}`, { headers: { Range: 'bytes=10-19' } });
    expect(part.status).toBe(206);
    expect(Buffer.from(await part.arrayBuffer()).equals(Buffer.from(text).subarray(10, 20))).toBe(true);
  });

  it('static files and the access log in folders with spaces and non-ASCII (the 32-bit host)', async () => {
    const res = await fetch(`${base}/${encodeURIComponent(STATIC_NAME)}`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(STATIC_BODY);
    // The config file's folder has a space and a 'ü': its logs/access.log is where the host writes.
    const access = path.join(dist, 'logs', 'access.log');
    const logged = () => (existsSync(access) ? readFileSync(access, 'utf8') : '');
    await waitFor(() => logged().includes(` GET ${LOGGED_STEM} - `), 'the static request in the access log');
    expect(logged()).toMatch(/ POST \/echo\/body - \d+ - 127\.0\.0\.1 \S+ 200 /);
  });

  it('static files and the access log in folders with spaces and non-ASCII (the x64 host)', async () => {
    const logDir = path.join(dist, 'x64 logs ü');
    mkdirSync(logDir, { recursive: true });
    const host = spawnWine(path.join(nativeDir('win-x64'), 'isapi-host.exe'), ['--port', '0', '--stop-on-stdin-close', '--root', toWinePath(staticRoot), '--access-log', toWinePath(path.join(logDir, 'access.log'))], { prefix });
    let out = '';
    host.stdout!.on('data', (d) => (out += d));
    host.stderr!.on('data', (d) => (out += d));
    try {
      const url = await waitForListening(() => out, 'the x64 isapi-host.exe', host);
      const res = await fetch(`${url}/${encodeURIComponent(STATIC_NAME)}`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(STATIC_BODY);
      expect((await fetch(`${url}/missing.txt`)).status).toBe(404);
      const access = path.join(logDir, 'access.log');
      await waitFor(() => existsSync(access) && readFileSync(access, 'utf8').includes(` GET ${LOGGED_STEM} - `) && readFileSync(access, 'utf8').includes(' GET /missing.txt - '), 'the x64 host\'s access log lines');
    } finally {
      host.stdin?.end();
      await stop(host);
    }
  });

  // install.exe against the recording appcmd/icacls stand-in (test/wine/iis_standin.cc, as in
  // windows.test.ts): the plan as Windows parses each line, and what a fresh IIS 10 would hold.
  it('install.exe into IIS: a 32-bit pool (enable32BitAppOnWin64), bitness32 handler and filter, the addon hidden like the bridge; remove restores the server', async () => {
    const driveC = path.join(prefix, 'drive_c');
    const standin = path.join(driveC, 'iis-standin');
    const exe = path.join(dist, 'iis-standin.exe');
    execFileSync('x86_64-w64-mingw32-g++-posix', ['-std=c++17', '-O1', '-municode', '-static', '-o', exe, path.join(root, 'test', 'wine', 'iis_standin.cc'), '-lshell32']);
    mkdirSync(path.join(driveC, 'windows', 'system32', 'inetsrv'), { recursive: true });
    copyFileSync(exe, path.join(driveC, 'windows', 'system32', 'inetsrv', 'appcmd.exe'));
    copyFileSync(exe, path.join(driveC, 'windows', 'system32', 'icacls.exe'));
    const iis = (dir: string, args: string[]) => runWineAsync(path.join(dir, 'install.exe'), args, { prefix, env: { WINEDLLOVERRIDES: 'icacls.exe=n' } });
    const state = () => readFileSync(path.join(standin, 'state.txt'), 'utf8');
    const calls = (): Array<{ exe: string; argv: string[]; exitCode: number }> =>
      readFileSync(path.join(standin, 'log.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
    let fresh = '';
    for (const name of ['hello', 'security-headers']) {
      // On the server's C: drive, so that the plan's paths are the folder's own.
      const dir = path.join(driveC, 'inetpub', 'node-isapi', name);
      mkdirSync(path.dirname(dir), { recursive: true });
      rmSync(dir, { recursive: true, force: true });
      execFileSync('cp', ['-al', folder(name), dir]);
      for (const f of readdirSync(dir)) if (f.includes('install-state')) rmSync(path.join(dir, f));
      rmSync(path.join(dir, 'logs'), { recursive: true, force: true });

      const dry = await iis(dir, ['--dry-run']);
      expect(dry.stderr).toBe('');
      expect(dry.code).toBe(0);
      checkGolden(`${name}-ia32.install.txt`, dry.stdout);
      fresh ||= state();

      rmSync(path.join(standin, 'log.jsonl'), { force: true });
      const inst = await iis(dir, []);
      expect(inst.stderr).toBe('');
      expect(inst.code, inst.stdout).toBe(0);
      const made = calls().filter((c) => c.exe === 'appcmd' && c.argv[0] !== 'list');
      expect(made.map((c) => c.exitCode)).toEqual(made.map(() => 0));
      const line = (needle: string) => made.find((c) => c.argv.some((a) => a.includes(needle)))?.argv.join(' ') ?? '';
      if (name === 'hello') {
        expect(line('/enable32BitAppOnWin64:')).toContain('/enable32BitAppOnWin64:true');
        expect(line('/section:system.webServer/handlers')).toContain("preCondition='bitness32'");
        expect(line("segment='_hello.x64.node'")).toContain('hiddenSegments');
      } else {
        // A filter-only script: the site's filter, for 32-bit pools only.
        expect(line('/section:system.webServer/isapiFilters')).toContain("preCondition='bitness32'");
      }
      const removed = await iis(dir, ['remove']);
      expect(removed.stderr).toBe('');
      expect(removed.code).toBe(0);
      expect(state()).toBe(fresh);
    }
    // A 64-bit pool cannot load the folder's bridge: refused before any change.
    expect(() => resolveParameters(scriptInstallExports({ install: { appPool: { bitness: 64 } } }, 'hello'), loadFolder(folder('hello')))).toThrow(/_hello\.dll is a 32-bit DLL/);
  }, 180_000);

  it('a folder without its x64 addon: the bridge says which file is missing and why, and answers 503', async () => {
    // A copy served on its own by the 32-bit host, with the addon removed.
    const copy = path.join(dist, 'no addon', 'hello');
    mkdirSync(path.dirname(copy), { recursive: true });
    execFileSync('cp', ['-a', folder('hello'), copy]);
    rmSync(path.join(copy, '_hello.x64.node'));
    rmSync(path.join(copy, 'logs'), { recursive: true, force: true });
    const host = spawnWine(path.join(nativeDir('win-ia32'), 'isapi-host.exe'), ['--port', '0', '--stop-on-stdin-close', '--vdir', `/hello=${toWinePath(path.join(copy, '_hello.dll'))}`], {
      prefix,
      env: { ISAPI_WORKERS: '1', ISAPI_STARTUP_TIMEOUT_MS: '2000' },
    });
    let out = '';
    host.stdout!.on('data', (d) => (out += d));
    host.stderr!.on('data', (d) => (out += d));
    try {
      const url = await waitForListening(() => out, 'the ia32 host without the addon', host);
      expect((await fetch(`${url}/hello/`)).status).toBe(503);
      const log = readFileSync(path.join(copy, 'logs', 'hello.log'), 'utf8');
      expect(log).toContain(`the worker's x64 addon ${toWinePath(copy)}\\_hello.x64.node is missing`);
    } finally {
      host.stdin?.end();
      await stop(host);
    }
  });
});
