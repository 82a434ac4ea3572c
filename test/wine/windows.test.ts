// The Windows build, end to end under Wine: examples packed with --target win-x64, installed
// with `wine install.exe --config`, served by `isapi serve --wine` (the Windows isapi-host.exe
// loading the bridge DLL, which starts the Node SEA workers), and asked by Linux clients over
// loopback. The Wine prefix is private to this file (under /tmp) and has no Node installed.
// Skipped only when Wine or mingw-w64 is not installed (CI installs both: .ci/run).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitCommandLine } from '../../installer/iis';
import { addPeResource, readPeResource, readPeVersionStrings } from '../../packer/pe_resource';
import { ensureNodeBinary, DEFAULT_NODE_VERSION } from '../../packer/node_binary';
import { nativeDir } from '../../packer/paths';
import { ensureWinePrefix, findWine, killWine, runWine, runWineAsync, temporaryWinePrefix, toWinePath } from '../../packer/wine';
import { isapiCli, leaveMidUpload, rawExchange, root, sleep, testDist, waitFor } from '../helpers';

const OBJDUMP = 'x86_64-w64-mingw32-objdump';
const hasObjdump = spawnSync(OBJDUMP, ['--version']).status === 0;
const missing = [!findWine() && 'Wine (apt-get install -y wine64 wine)', !hasObjdump && 'mingw-w64 (apt-get install -y mingw-w64)'].filter(Boolean);
const skipReason = missing.length ? `not installed: ${missing.join(', ')}` : '';
if (skipReason) console.warn(`test/wine: skipping the Windows suite: ${skipReason}`);

// Examples served under Wine (name → script); each is installed into one host config.
const SCRIPTS: Record<string, string> = {
  hello: 'examples/hello.ts',
  echo: 'examples/echo.ts',
  control: 'test/fixtures/control.ts',
  'hono-app': 'examples/hono-app.ts',
  // issue 16: a script that cannot start, and a client that leaves mid-upload
  'broken-start': 'test/fixtures/broken-start.ts',
  faults: 'test/fixtures/faults.ts',
};
// Packed for the IIS tests only (not served by the host).
const IIS_ONLY: Record<string, string> = {
  'redirector-with-filter': 'examples/redirector-with-filter.ts',
  'script-maps': 'test/fixtures/script-maps.ts',
  'security-headers': 'examples/security-headers.ts',
};
const dist = path.join(testDist, 'win-x64');
const configFile = path.join(dist, 'host.json');
const folder = (name: string) => path.join(dist, name);

let prefix = '';
let server: ChildProcess | undefined;
let serverOutput = '';
let base = '';
let port = 0;

function packWin(script: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [isapiCli, 'pack', script, '--target', 'win-x64', '--out', dist], { cwd: root });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`packing ${script} for win-x64 failed:\n${out}`))));
  });
}

/** `isapi serve --wine --config <file> --port 0`, resolved once the Windows host listens. */
function serveUnderWine(): Promise<void> {
  server = spawn(process.execPath, [isapiCli, 'serve', '--wine', '--config', configFile, '--port', '0'], {
    cwd: root,
    // The memory limit is far above what these workers use, except /control/hold's.
    env: { ...process.env, ISAPI_WINEPREFIX: prefix, ISAPI_WORKERS: '2', ISAPI_WORKER_MEMORY_LIMIT_MB: '600' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout!.on('data', (d) => (serverOutput += d));
  server.stderr!.on('data', (d) => (serverOutput += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`isapi serve --wine did not start:\n${serverOutput}`)), 90_000);
    const check = () => {
      const m = /isapi-host listening on http:\/\/([\d.]+):(\d+)\//.exec(serverOutput);
      if (!m) return;
      clearTimeout(timer);
      port = Number(m[2]);
      base = `http://127.0.0.1:${port}`;
      resolve();
    };
    server!.stdout!.on('data', check);
    server!.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`isapi serve --wine exited with ${code}:\n${serverOutput}`));
    });
  });
}

async function stopServer(): Promise<void> {
  const s = server;
  server = undefined;
  if (!s || s.exitCode !== null || s.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    s.once('exit', () => resolve());
    s.kill('SIGTERM');
    setTimeout(() => s.kill('SIGKILL'), 15_000).unref();
    setTimeout(resolve, 20_000).unref();
  });
}

/** Linux pids of the Wine processes running a folder's worker executable. */
function workerProcesses(name: string): number[] {
  const exe = `${toWinePath(folder(name))}\\${name}.exe`;
  const ps = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return ps
    .split('\n')
    .map((l) => /^\s*(\d+)\s+(.*)$/.exec(l))
    .filter((m): m is RegExpExecArray => !!m && m[2]!.startsWith(exe))
    .map((m) => Number(m[1]));
}

function objdump(file: string): { imports: string[]; exports: string[]; text: string } {
  const text = execFileSync(OBJDUMP, ['-p', file], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const imports = [...text.matchAll(/^\s*DLL Name: (\S+)/gm)].map((m) => m[1]!.toLowerCase());
  const table = text.split(/\[Ordinal\/Name Pointer\] Table/)[1] ?? '';
  const exports = [...table.matchAll(/^\s*\[\s*\d+\]\s+(\S+)/gm)].map((m) => m[1]!);
  return { imports, exports, text };
}

// DLLs present on every supported Windows (Server 2012 / Windows 8 and later).
const SYSTEM_DLL = /^(kernel32|advapi32|user32|ws2_32|bcrypt|ntdll|msvcrt|ucrtbase|shell32|ole32|secur32|crypt32|userenv|iphlpapi|winmm|dbghelp|api-ms-win-[a-z0-9-]+)\.dll$/;

describe.skipIf(!!skipReason)(`Windows x64 build under Wine${skipReason ? ` (skipped: ${skipReason})` : ''}`, () => {
  beforeAll(async () => {
    rmSync(dist, { recursive: true, force: true });
    mkdirSync(dist, { recursive: true });
    // The packs run as child processes while this process prepares the prefix.
    const packs = Promise.all([...Object.values(SCRIPTS), ...Object.values(IIS_ONLY)].map(packWin));
    prefix = temporaryWinePrefix('wine-test');
    ensureWinePrefix(prefix);
    await packs;
    for (const name of Object.keys(SCRIPTS)) {
      const r = runWine(path.join(folder(name), 'install.exe'), ['--config', toWinePath(configFile)], { prefix });
      if (r.code !== 0) throw new Error(`wine install.exe --config (${name}) failed with ${r.code}:\n${r.stdout}${r.stderr}`);
    }
    await serveUnderWine();
  }, 240_000);

  afterAll(async () => {
    await stopServer();
    if (prefix) {
      killWine(prefix);
      rmSync(prefix, { recursive: true, force: true });
    }
  }, 60_000);

  describe('artifacts', () => {
    it('the bridge DLL imports system DLLs only and exports the ISAPI and Node-API entry points', () => {
      const dll = path.join(nativeDir('win-x64'), 'isapi-bridge.dll');
      const { imports, exports } = objdump(dll);
      expect(imports.filter((d) => !SYSTEM_DLL.test(d))).toEqual([]);
      expect(imports).not.toContain('node.exe');
      // Every name the module definition file promises (extension, filter, Node-API entry).
      const def = readFileSync(path.join(root, 'native', 'bridge', 'bridge.def'), 'utf8');
      const promised = def.split('\n').map((l) => l.replace(/;.*/, '').trim()).filter((l) => l && l !== 'EXPORTS' && !/^(LIBRARY|NAME)\b/.test(l));
      expect(promised).toEqual(expect.arrayContaining(['GetExtensionVersion', 'HttpExtensionProc', 'TerminateExtension', 'napi_register_module_v1']));
      for (const name of promised) expect(exports).toContain(name);
    });

    it('the Windows isapi-host.exe imports system DLLs only', () => {
      const { imports } = objdump(path.join(nativeDir('win-x64'), 'isapi-host.exe'));
      expect(imports.filter((d) => !SYSTEM_DLL.test(d))).toEqual([]);
    });

    it('install.exe is the small launcher: system DLLs only, runs as the invoker (as node.exe did), arguments reach the installer as typed', () => {
      const file = path.join(folder('hello'), 'install.exe');
      expect(statSync(file).size).toBeLessThan(1 << 20);
      expect(objdump(file).imports.filter((d) => !SYSTEM_DLL.test(d))).toEqual([]);
      expect(readFileSync(file).toString('latin1')).toContain('<requestedExecutionLevel level="asInvoker" uiAccess="false"/>');
      const site = `a "quoted" \\ site\\ ü  two spaces`;
      const r = runWine(file, ['--iis', '--dry-run', '--site', site], { prefix });
      expect(r.stderr).toContain(`install: --site '${site}' contains a quote, '%' or a line break`);
      expect(r.code).toBe(1);
    });

    it('the packed folder holds _<name>.dll, <name>.exe, install.exe and the manifest; the worker carries the blob', () => {
      const f = folder('hello');
      for (const file of ['_hello.dll', 'hello.exe', 'install.exe', 'hello.manifest.json']) expect(existsSync(path.join(f, file))).toBe(true);
      const manifest = JSON.parse(readFileSync(path.join(f, 'hello.manifest.json'), 'utf8'));
      expect(manifest.target).toBe('win-x64');
      expect(manifest.node).toBe(DEFAULT_NODE_VERSION);
      const worker = readFileSync(path.join(f, 'hello.exe'));
      expect(readPeResource(worker, 'NODE_SEA_BLOB')?.length).toBeGreaterThan(1000);
      // The SEA fuse is set; the stale Authenticode signature is gone.
      expect(worker.indexOf('NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2:1')).toBeGreaterThan(0);
      const { text } = objdump(path.join(f, 'hello.exe'));
      expect(text).toMatch(/Entry 4 0+ 0+ Security Directory/);
      expect(text).toContain('NODE_SEA_BLOB');
      const sizes = {
        'isapi-bridge.dll (_<name>.dll)': statSync(path.join(f, '_hello.dll')).size,
        'hello.exe (worker)': statSync(path.join(f, 'hello.exe')).size,
        'install.exe': statSync(path.join(f, 'install.exe')).size,
        'isapi-host.exe': statSync(path.join(nativeDir('win-x64'), 'isapi-host.exe')).size,
      };
      console.log('Windows artifact sizes:\n' + Object.entries(sizes).map(([k, v]) => `  ${k}: ${(v / 1048576).toFixed(2)} MiB (${v} bytes)`).join('\n'));
    });

    it('the bridge DLL, the worker and the installer carry the application\'s name and version, not node.exe\'s', () => {
      const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string; version: string };
      const f = folder('hello');
      for (const [file, description] of [
        ['_hello.dll', 'hello (node-isapi) ISAPI bridge (node-isapi)'],
        ['hello.exe', 'hello (node-isapi) (node-isapi worker)'],
        ['install.exe', 'hello (node-isapi) installer (node-isapi)'],
      ]) {
        const v = readPeVersionStrings(readFileSync(path.join(f, file!)));
        expect(v).toMatchObject({ OriginalFilename: file, InternalName: file, ProductName: `hello (${pkg.name})`, ProductVersion: pkg.version, FileVersion: pkg.version, FileDescription: description });
        expect(v.CompanyName).toBeUndefined();
        expect(JSON.stringify(v)).not.toContain('Node.js');
      }
      expect(JSON.parse(readFileSync(path.join(f, 'hello.manifest.json'), 'utf8')).appVersion).toBe(pkg.version);
    });

    it('the PE injection refuses a second blob and leaves non-PE files to postject', () => {
      const nodeExe = readFileSync(ensureNodeBinary('win-x64', DEFAULT_NODE_VERSION));
      const once = addPeResource(nodeExe, 'NODE_SEA_BLOB', Buffer.from('blob'))!;
      expect(once.unsigned).toBe(true);
      expect(readPeResource(once.image, 'NODE_SEA_BLOB')?.toString()).toBe('blob');
      expect(() => addPeResource(once.image, 'NODE_SEA_BLOB', Buffer.from('again'))).toThrow(/already has a NODE_SEA_BLOB resource/);
      expect(addPeResource(Buffer.from('\x7fELF not a PE file at all, padded out to more than sixty-four bytes'), 'X', Buffer.alloc(1))).toBeUndefined();
    });

    it('--node other than the default warns that it is untested on win-x64', () => {
      // no-extension.ts stops the pack right after the warning, before anything is fetched.
      const r = spawnSync(process.execPath, [isapiCli, 'pack', 'test/fixtures/no-extension.ts', '--target', 'win-x64', '--node', '24.11.0', '--out', dist], { cwd: root, encoding: 'utf8' });
      expect(r.stdout + r.stderr).toMatch(/warning: Node 24\.11\.0 is untested on win-x64 .*Node 24 and later do not start under Wine/);
    });
  });

  describe('served by isapi-host.exe under Wine', () => {
    it('prints the listening line and the installer wrote Windows paths into the config', () => {
      expect(serverOutput).toMatch(/serving .*host\.json at http:\/\/127\.0\.0\.1:0\/hello\/ under Wine/);
      const config = JSON.parse(readFileSync(configFile, 'utf8'));
      expect(config.applications.map((a: { path: string }) => a.path)).toEqual(Object.keys(SCRIPTS).map((n) => `/${n}`));
      expect(config.applications[0].extension).toBe(`${toWinePath(folder('hello'))}\\_hello.dll`);
    });

    it('hello answers GET (fetch and curl)', async () => {
      const res = await fetch(`${base}/hello/`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
      expect(await res.text()).toBe('Hello from TypeScript\n');
      const out = execFileSync('curl', ['-s', '-i', `${base}/hello/`], { encoding: 'utf8' });
      expect(out).toMatch(/^HTTP\/1\.1 200 /);
      expect(out).toMatch(/\r\n\r\nHello from TypeScript\n$/);
    });

    it('keeps a connection alive across requests', async () => {
      const req = `GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n`;
      const { responses, closed } = await rawExchange(port, [req, req, req], 3);
      expect(responses.map((r) => r.status)).toEqual([200, 200, 200]);
      expect(responses.every((r) => r.body.toString() === 'Hello from TypeScript\n')).toBe(true);
      expect(closed).toBe(false);
    });

    it('echo returns the server variables', async () => {
      const res = await fetch(`${base}/echo/some/path?a=1&b=two`, { headers: { 'User-Agent': 'wine-agent' } });
      const text = await res.text();
      expect(res.status).toBe(200);
      expect(text).toContain('GET /echo/some/path?a=1&b=two\n');
      expect(text).toContain('QUERY_STRING=a=1&b=two\n');
      expect(text).toContain('SCRIPT_NAME=/echo\n');
      expect(text).toContain('HTTP_USER_AGENT=wine-agent\n');
      expect(text).toContain(`SERVER_PORT=${port}\n`);
      expect(text).toContain('REMOTE_ADDR=127.0.0.1\n');
    });

    it('echoes a 1 MiB POST byte for byte (Content-Length and chunked)', async () => {
      const body = randomBytes(1 << 20);
      const res = await fetch(`${base}/echo/body`, { method: 'POST', body });
      expect(res.status).toBe(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);

      const pieces: Buffer[] = [];
      for (let i = 0; i < body.length; i += 100_000) pieces.push(body.subarray(i, i + 100_000));
      const chunked = Buffer.concat([
        ...pieces.flatMap((p) => [Buffer.from(p.length.toString(16) + '\r\n'), p, Buffer.from('\r\n')]),
        Buffer.from('0\r\n\r\n'),
      ]);
      const head = `POST /echo/body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n`;
      const { responses } = await rawExchange(port, [head, chunked], 1);
      expect(responses[0]!.status).toBe(200);
      expect(responses[0]!.body.equals(body)).toBe(true);
    });

    it('answers 50 concurrent requests, each correctly', async () => {
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => fetch(`${base}/echo/n${i}?i=${i}`).then(async (r) => [r.status, await r.text()] as const)),
      );
      results.forEach(([status, text], i) => {
        expect(status).toBe(200);
        expect(text).toContain(`QUERY_STRING=i=${i}\n`);
      });
    });

    it('runs a Hono app (framework adapter)', async () => {
      const res = await fetch(`${base}/hono-app/`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('Hello from Hono\n');
      const user = await fetch(`${base}/hono-app/users/42`);
      expect(await user.json()).toEqual({ id: '42' });
      const posted = await fetch(`${base}/hono-app/json`, { method: 'POST', body: JSON.stringify({ a: 1 }), headers: { 'Content-Type': 'application/json' } });
      expect(posted.status).toBe(201);
      expect(await posted.json()).toEqual({ received: { a: 1 } });
    });

    it('a worker killed mid-request gives 502, and the next request succeeds', async () => {
      const before = new Set<number>();
      for (let i = 0; i < 20 && before.size < 2; i++) {
        const r = await Promise.all([fetch(`${base}/control/pid`), fetch(`${base}/control/pid`)]);
        for (const x of r) before.add(Number(await x.text()));
      }
      const linuxPids = workerProcesses('control');
      expect(linuxPids.length).toBe(2);
      const inflight = fetch(`${base}/control/sleep?ms=20000`);
      await sleep(500);
      for (const pid of linuxPids) process.kill(pid, 'SIGKILL');
      const res = await inflight;
      expect(res.status).toBe(502);
      expect(await res.text()).toContain('502 Bad Gateway');
      // Wine reports each killed process on its own: a request sent before the second death is
      // noticed gets a 502 too. Recovery: within seconds, requests succeed on fresh workers.
      const statuses: number[] = [];
      let pid = 0;
      for (let i = 0; i < 50 && !pid; i++) {
        const next = await fetch(`${base}/control/pid`);
        statuses.push(next.status);
        if (next.status === 200) pid = Number(await next.text());
        else await sleep(200);
      }
      expect(statuses.filter((s) => s !== 502 && s !== 200)).toEqual([]);
      expect(pid).toBeGreaterThan(0);
      expect(before.has(pid)).toBe(false);
      const after = await Promise.all(Array.from({ length: 6 }, () => fetch(`${base}/control/pid`).then((r) => r.status)));
      expect(after).toEqual([200, 200, 200, 200, 200, 200]);
      const log = readFileSync(path.join(folder('control'), 'logs', 'control.log'), 'utf8');
      expect(log).toMatch(/worker \d+ \(pid \d+\) exited: /);
    });

    it('a worker over ISAPI_WORKER_MEMORY_LIMIT_MB (private bytes) is replaced while requests keep succeeding', async () => {
      const logFile = path.join(folder('control'), 'logs', 'control.log');
      expect(await (await fetch(`${base}/control/hold?mib=700`)).text()).toBe('holding 700 MiB');
      const statuses: number[] = [];
      let replaced: RegExpExecArray | null = null;
      for (let i = 0; i < 100 && !replaced; i++) {
        statuses.push((await fetch(`${base}/control/pid`)).status);
        replaced = /worker \d+ \(pid (\d+)\) uses \d+ MiB, over the limit of 600 MiB/.exec(readFileSync(logFile, 'utf8'));
        await sleep(200);
      }
      expect(replaced).not.toBeNull();
      await sleep(1000);
      const pids = await Promise.all(Array.from({ length: 8 }, () => fetch(`${base}/control/pid`).then((r) => r.text())));
      expect(pids).not.toContain(replaced![1]);
      expect(statuses.filter((s) => s !== 200)).toEqual([]);
    });
  });

  describe('supervision under Wine', () => {
    it('a script that fails at startup leaves the server up and gets 503 at once, with the reason', async () => {
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const r = await fetch(`${base}/broken-start/`, { signal: AbortSignal.timeout(20_000) });
        const body = await r.text();
        const ms = performance.now() - t0;
        console.log(`wine: broken-start answered ${r.status} in ${ms.toFixed(1)} ms`);
        expect(r.status).toBe(503);
        expect(r.headers.get('retry-after')).toMatch(/^\d+$/);
        expect(body).toContain("The application 'broken-start' is not available");
        expect(ms).toBeLessThan(5000);
      }
      const log = readFileSync(path.join(folder('broken-start'), 'logs', 'broken-start.log'), 'utf8');
      expect(log).toContain('cannot reach the database');
      expect(log).toMatch(/failed to start: it exited \(exit code 1\) before it was ready/);
      // The other applications of the same server are unaffected.
      expect((await fetch(`${base}/hello/`)).status).toBe(200);
    });

    it('a client gone mid-body fails ReadClient with error 64 (never a short body that looks complete)', async () => {
      const logFile = path.join(folder('faults'), 'logs', 'faults.log');
      const log = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
      await leaveMidUpload(port, 'POST /faults/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n',
        Buffer.alloc(1 << 20, 1), () => log().includes('ecb-upload: receiving'));
      const line = await waitFor(() => log().split('\n').find((l) => l.includes('ecb-upload') && !l.includes(': receiving')), 'the ecb-upload line', 15_000);
      expect(line).toMatch(/ecb-upload ExtensionError errno=64 aborted=true onAbort=true/);
    });

    it('SIGTERM to `isapi serve --wine` stops gracefully: the workers drain and exit on their own', async () => {
      expect((await fetch(`${base}/hello/`)).status).toBe(200);
      await stopServer();
      const log = readFileSync(path.join(folder('hello'), 'logs', 'hello.log'), 'utf8');
      // The bridge's TerminateExtension ran: each worker was asked to stop and exited with 0.
      expect(log).toMatch(/worker \d+ \(pid \d+\) stopped: exit code 0/);
    });
  });

  // IIS cannot run here: install.exe talks to a recording stand-in for appcmd.exe and icacls.exe
  // (test/wine/iis_standin.cc) that takes its arguments through CommandLineToArgvW, the way
  // Windows hands them over, and answers like a fresh IIS 10. Each plan line is thereby checked
  // as Windows parses it, and the stand-in's state says what a real server would now hold.
  describe('IIS (install.exe against the recording appcmd/icacls stand-in)', () => {
    const standin = () => path.join(prefix, 'drive_c', 'iis-standin');
    const driveC = () => path.join(prefix, 'drive_c');
    let fresh = '';
    // A folder whose path has spaces, '&', non-ASCII and a name IIS must not expand.
    const oddDir = 'inetpub\\my apps & fü';
    let hello = '';

    const iis = (dir: string, name: string, args: string[]) =>
      runWineAsync(path.join(dir, name === 'install' ? 'install.exe' : name), args, { prefix, env: { WINEDLLOVERRIDES: 'icacls.exe=n' } });
    const appcmd = (args: string[]) => iis(path.join(driveC(), 'windows', 'system32', 'inetsrv'), 'appcmd.exe', args);
    const log = (): Array<{ exe: string; commandLine: string; argv: string[]; exitCode: number; output: string }> => {
      const f = path.join(standin(), 'log.jsonl');
      return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
    };
    const serverState = () => readFileSync(path.join(standin(), 'state.txt'), 'utf8');
    const reset = () => {
      for (const f of ['state.txt', 'log.jsonl', 'kill-after', 'fail-on', 'not-elevated']) rmSync(path.join(standin(), f), { force: true });
      for (const f of readdirSync(hello)) if (f.includes('install-state')) rmSync(path.join(hello, f), { force: true });
      rmSync(path.join(hello, 'logs'), { recursive: true, force: true });
    };
    const changing = () => log().filter((e) => !(e.exe === 'appcmd' && e.argv[0] === 'list') && !(e.exe === 'icacls' && e.argv.length === 1));
    const stateFile = () => path.join(hello, 'hello.install-state.json');

    beforeAll(async () => {
      const exe = path.join(dist, 'iis-standin.exe');
      execFileSync('x86_64-w64-mingw32-g++-posix', ['-std=c++17', '-O1', '-municode', '-static', '-o', exe, path.join(root, 'test', 'wine', 'iis_standin.cc'), '-lshell32']);
      const inetsrv = path.join(driveC(), 'windows', 'system32', 'inetsrv');
      mkdirSync(inetsrv, { recursive: true });
      copyFileSync(exe, path.join(inetsrv, 'appcmd.exe'));
      copyFileSync(exe, path.join(driveC(), 'windows', 'system32', 'icacls.exe'));
      hello = path.join(driveC(), ...oddDir.split('\\'), 'hello');
      mkdirSync(path.dirname(hello), { recursive: true });
      rmSync(hello, { recursive: true, force: true });
      execFileSync('cp', ['-al', folder('hello'), hello]);
      reset();
      // The state of a fresh IIS 10, as the stand-in writes it on its first call.
      expect((await appcmd(['list', 'site'])).code).toBe(0);
      fresh = serverState();
      reset();
    }, 120_000);

    it('installs from a path with spaces, "&" and non-ASCII: every line arrives as Windows parses it; remove restores the server exactly', async () => {
      const r = await iis(hello, 'install', []);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const calls = changing();
      expect(calls.map((c) => c.exitCode)).toEqual(calls.map(() => 0));
      const winDir = `C:\\${oddDir}\\hello`;
      // Our reading of each command line is CommandLineToArgvW's (Wine's, here).
      for (const c of log()) expect(splitCommandLine(c.commandLine).slice(1)).toEqual(c.argv);
      expect(calls.find((c) => c.argv[1] === 'app')!.argv).toEqual([
        'add', 'app', '/site.name:Default Web Site', '/path:/hello', `/physicalPath:${winDir}`, '/applicationPool:node-isapi-hello',
      ]);
      expect(calls.find((c) => c.exe === 'icacls')!.argv).toEqual([winDir, '/grant', 'IIS AppPool\\node-isapi-hello:(OI)(CI)RX']);
      const handler = calls.find((c) => c.argv.includes('/section:system.webServer/handlers'))!;
      expect(handler.argv[4]).toContain(`scriptProcessor='${winDir}\\_hello.dll'`);
      expect(existsSync(path.join(hello, 'logs'))).toBe(true);
      const record = JSON.parse(readFileSync(stateFile(), 'utf8')).installs[0];
      expect(record).toMatchObject({ backend: 'iis', complete: true });

      // The folder's own files are hidden from StaticFile, logs/ included.
      const hidden = (await appcmd(['list', 'config', 'Default Web Site/hello', '/section:system.webServer/security/requestFiltering'])).stdout;
      for (const f of ['hello.exe', 'install.exe', '_hello.dll', 'hello.manifest.json', 'hello.install-state.json']) expect(hidden).toContain(`segment="${f}"`);
      expect((await appcmd(['list', 'config', 'Default Web Site/hello/logs', '/section:system.webServer/security/requestFiltering'])).stdout).toContain('segment="logs"');

      rmSync(path.join(standin(), 'log.jsonl'));
      const again = await iis(hello, 'install', []);
      expect(again.code).toBe(0);
      expect(again.stdout).toContain('nothing to change');
      expect(changing()).toEqual([]);

      const status = await iis(hello, 'install', ['status', '--json']);
      expect(JSON.parse(status.stdout)).toMatchObject({ installed: true, complete: true, exitCode: 0 });

      const removed = await iis(hello, 'install', ['remove']);
      expect(removed.stderr).toBe('');
      expect(removed.code).toBe(0);
      expect(serverState()).toBe(fresh);
      expect(existsSync(stateFile())).toBe(false);
    });

    it('a filter-only script: the filter for the site with the bitness precondition, rights for the site\'s pool, no pool or application; removed exactly', async () => {
      reset();
      const dir = path.join(driveC(), 'apps', 'security-headers');
      mkdirSync(path.dirname(dir), { recursive: true });
      rmSync(dir, { recursive: true, force: true });
      execFileSync('cp', ['-al', folder('security-headers'), dir]);
      for (const f of readdirSync(dir)) if (f.includes('install-state')) rmSync(path.join(dir, f));
      const r = await iis(dir, 'install', []);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const calls = changing();
      expect(calls.some((c) => c.argv[0] === 'add')).toBe(false);
      const filter = calls.find((c) => c.argv.includes('/section:system.webServer/isapiFilters'))!;
      expect(filter.argv).toEqual([
        'set', 'config', 'Default Web Site', '/section:system.webServer/isapiFilters',
        "/+[name='node-isapi-security-headers',path='C:\\apps\\security-headers\\_security-headers.dll',enabled='true',preCondition='bitness64']", '/commit:apphost',
      ]);
      expect(calls.filter((c) => c.exe === 'icacls').map((c) => c.argv)).toEqual([
        ['C:\\apps\\security-headers', '/grant', 'IIS AppPool\\DefaultAppPool:(OI)(CI)RX'],
        ['C:\\apps\\security-headers\\logs', '/grant', 'IIS AppPool\\DefaultAppPool:(OI)(CI)M'],
      ]);
      const status = JSON.parse((await iis(dir, 'install', ['status', '--json'])).stdout);
      expect(status.steps.map((x: { what: string }) => x.what)).toContainEqual(expect.stringMatching(/^ISAPI filter node-isapi-security-headers for the whole site/));
      expect((await iis(dir, 'install', ['remove'])).code).toBe(0);
      expect(serverState()).toBe(fresh);
    });

    it('refuses an apostrophe in the path before changing anything', async () => {
      reset();
      const r = await iis(hello, 'install', ['--physical-path', "C:\\inetpub\\o'brien\\hello"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^install: the physical path 'C:\\inetpub\\o'brien\\hello' contains an apostrophe \('\): appcmd writes these paths inside/m);
      expect(changing()).toEqual([]);
      expect(existsSync(stateFile())).toBe(false);
    });

    it('a trailing backslash in --physical-path stays one argument', async () => {
      reset();
      const r = await iis(hello, 'install', ['--physical-path', `C:\\${oddDir}\\hello\\`, '--dry-run']);
      expect(r.code).toBe(0);
      const line = r.stdout.split('\n').find((l) => l.includes(' add app '))!.trim();
      expect(splitCommandLine(line).slice(1)).toEqual(['add', 'app', '/site.name:Default Web Site', '/path:/hello', `/physicalPath:C:\\${oddDir}\\hello`, '/applicationPool:node-isapi-hello']);
    });

    it('an install killed half-way is resumed by the next install, and removed exactly', async () => {
      for (const then of ['install', 'remove'] as const) {
        reset();
        // The stand-in completes this command, then terminates install.exe before it can journal it.
        writeFileSync(path.join(standin(), 'kill-after'), "segment='install.exe'");
        const killed = await iis(hello, 'install', []);
        // Wine does not pass the exit code of a terminated process on; the output and the journal show it.
        expect(killed.stdout).not.toContain('installed into');
        const journal = JSON.parse(readFileSync(stateFile(), 'utf8')).installs[0];
        expect(journal.complete).toBe(false);
        expect(journal.pending.command).toContain("segment='install.exe'");
        const status = await iis(hello, 'install', ['status']);
        expect(status.stdout).toContain('incomplete: an install stopped after');
        if (then === 'install') {
          const resumed = await iis(hello, 'install', []);
          expect(resumed.stderr).toBe('');
          expect(resumed.code).toBe(0);
          expect(resumed.stdout).toContain('this one resumes it');
          expect(JSON.parse(readFileSync(stateFile(), 'utf8')).installs[0].complete).toBe(true);
          expect((await iis(hello, 'install', [])).stdout).toContain('nothing to change');
        }
        const removed = await iis(hello, 'install', ['remove']);
        expect(removed.stderr).toBe('');
        expect(removed.code).toBe(0);
        expect(serverState()).toBe(fresh);
        expect(existsSync(stateFile())).toBe(false);
      }
    });

    it('a failing step is rolled back and appcmd\'s own error text is shown (exit code 4)', async () => {
      reset();
      writeFileSync(path.join(standin(), 'fail-on'), 'isapiCgiRestriction');
      const r = await iis(hello, 'install', []);
      expect(r.code).toBe(4);
      expect(r.stderr).toContain('ERROR ( message:Failed to commit configuration changes.');
      expect(r.stderr).toContain('rolled back: the ');
      expect(serverState()).toBe(fresh);
      expect(existsSync(stateFile())).toBe(false);
    });

    it('without administrator rights: one line saying so, with appcmd\'s text (exit code 2); --quiet --json gives one JSON document', async () => {
      reset();
      writeFileSync(path.join(standin(), 'not-elevated'), '');
      const r = await iis(hello, 'install', []);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^install: run install\.exe as administrator .*appcmd said: ERROR \( message:Configuration error/);
      expect(r.stderr).toContain('Cannot read configuration file due to insufficient permissions');
      const j = await iis(hello, 'install', ['--quiet', '--json']);
      expect(j.code).toBe(2);
      expect(JSON.parse(j.stdout)).toMatchObject({ exitCode: 2, error: expect.stringContaining('run install.exe as administrator') });
      rmSync(path.join(standin(), 'not-elevated'));
      const ok = await iis(hello, 'install', ['--quiet', '--json']);
      expect(ok.code).toBe(0);
      expect(JSON.parse(ok.stdout)).toMatchObject({ verb: 'install', exitCode: 0, result: 'installed into IIS site "Default Web Site"' });
      const rm = await iis(hello, 'install', ['remove', '--quiet', '--json']);
      expect(JSON.parse(rm.stdout)).toMatchObject({ verb: 'remove', exitCode: 0 });
      expect(serverState()).toBe(fresh);
    });
  });

  // doctor on the server: each finding is produced by the change that causes it in IIS, made
  // with appcmd/icacls as an administrator would, then the server is put back.
  describe('IIS doctor (one test per finding, against the stand-in)', () => {
    const standin = () => path.join(prefix, 'drive_c', 'iis-standin');
    const inetsrv = () => path.join(prefix, 'drive_c', 'windows', 'system32', 'inetsrv');
    const env = { WINEDLLOVERRIDES: 'icacls.exe=n' };
    const copies: Record<string, string> = {};
    const snapshots: Record<string, string> = {};
    const tool = (exe: string, args: string[]) => runWineAsync(exe, args, { prefix, env });
    const appcmd = async (...args: string[]) => expect((await tool(path.join(inetsrv(), 'appcmd.exe'), args)).code).toBe(0);
    const doctor = async (name: string) => {
      const r = await tool(path.join(copies[name]!, 'install.exe'), ['doctor', '--json']);
      const parsed = JSON.parse(r.stdout) as { checks: Array<{ name: string; status: string; detail: string; fix?: string }>; exitCode: number };
      expect(parsed.exitCode).toBe(r.code);
      return parsed;
    };
    const failing = async (name: string) => (await doctor(name)).checks.filter((c) => c.status === 'fail');

    beforeAll(async () => {
      // A fresh stand-in state, then one install of each folder; every test starts from that.
      for (const f of ['state.txt', 'log.jsonl', 'kill-after', 'fail-on', 'not-elevated']) rmSync(path.join(standin(), f), { force: true });
      await appcmd('list', 'site');
      snapshots.fresh = readFileSync(path.join(standin(), 'state.txt'), 'utf8');
      // The filter's folder last: a site filter loads in every pool of the site, so its install
      // grants rights to the pools that exist then (a pool added later is a doctor finding).
      for (const name of ['script-maps', 'hello', 'redirector-with-filter']) {
        const dest = path.join(prefix, 'drive_c', 'apps', name);
        mkdirSync(path.dirname(dest), { recursive: true });
        rmSync(dest, { recursive: true, force: true });
        execFileSync('cp', ['-al', folder(name), dest]);
        for (const f of readdirSync(dest)) if (f.includes('install-state')) rmSync(path.join(dest, f));
        rmSync(path.join(dest, 'logs'), { recursive: true, force: true });
        copies[name] = dest;
        const r = await tool(path.join(dest, 'install.exe'), []);
        if (r.code !== 0) throw new Error(`install ${name} failed:\n${r.stdout}${r.stderr}`);
      }
      snapshots.installed = readFileSync(path.join(standin(), 'state.txt'), 'utf8');
    }, 120_000);

    const restore = () => writeFileSync(path.join(standin(), 'state.txt'), snapshots.installed!);

    it('a fresh install passes every IIS check', async () => {
      for (const name of Object.keys(copies)) {
        const d = await doctor(name);
        expect(d.checks.filter((c) => c.status === 'fail')).toEqual([]);
        expect(d.exitCode).toBe(0);
      }
      expect((await doctor('redirector-with-filter')).checks.find((c) => c.name === 'filter node-isapi-redirector-with-filter')).toMatchObject({ status: 'ok' });
      const status = JSON.parse((await tool(path.join(copies['redirector-with-filter']!, 'install.exe'), ['status', '--json'])).stdout);
      expect(status).toMatchObject({ installed: true, complete: true });
      expect(status.steps).toContainEqual({ what: expect.stringMatching(/^ISAPI filter node-isapi-redirector-with-filter for the whole site Default Web Site \(64-bit pools\)/), present: true });
    });

    const cases: Array<{ finding: string; subject: string; cause: () => unknown; check: string; detail: RegExp; fix: RegExp }> = [
      {
        finding: 'the filter is not registered',
        subject: 'redirector-with-filter',
        cause: () => appcmd('set', 'config', 'Default Web Site', '/section:system.webServer/isapiFilters', "/-[name='node-isapi-redirector-with-filter']", '/commit:apphost'),
        check: 'filter node-isapi-redirector-with-filter',
        detail: /has no ISAPI filter node-isapi-redirector-with-filter: it never runs/,
        fix: /run install\.exe/,
      },
      {
        finding: 'IsapiFilterModule is not installed',
        subject: 'redirector-with-filter',
        cause: () => appcmd('set', 'config', '/section:system.webServer/globalModules', "/-[name='IsapiFilterModule']"),
        check: 'ISAPI features',
        detail: /IIS lacks IsapiFilterModule: the filter never loads/,
        fix: /Web-ISAPI-Filter/,
      },
      {
        finding: 'a stopped pool (rapid-fail protection): 503',
        subject: 'hello',
        cause: () => appcmd('stop', 'apppool', '/apppool.name:node-isapi-hello'),
        check: 'pool state',
        detail: /node-isapi-hello is Stopped: every request gets 503 Service Unavailable\. IIS stops a pool itself after rapid failures/,
        fix: /appcmd\.exe start apppool \/apppool\.name:node-isapi-hello/,
      },
      {
        finding: 'accessPolicy without Script for a script map: 403.1',
        subject: 'script-maps',
        cause: () => appcmd('set', 'config', 'Default Web Site/maps', '/section:system.webServer/handlers', '/accessPolicy:Read', '/commit:apphost'),
        check: 'access policy /maps',
        detail: /accessPolicy at Default Web Site\/maps is "Read", without Script: script-mapped requests get 403\.1/,
        fix: /\/accessPolicy:"Read, Script"/,
      },
      {
        finding: 'a locked section: 500.19',
        subject: 'hello',
        cause: () => appcmd('lock', 'config', 'Default Web Site', '/section:system.webServer/handlers'),
        check: 'config /hello',
        detail: /cannot read the handlers section at Default Web Site\/hello: requests get 500\.19\. appcmd said: ERROR \( message:Configuration error/,
        fix: /unlock config "Default Web Site\/hello" \/section:system\.webServer\/handlers/,
      },
      {
        finding: 'a disabled module: 500.21',
        subject: 'hello',
        cause: () => appcmd('set', 'config', '/section:system.webServer/modules', "/-[name='IsapiModule']"),
        check: 'module /hello',
        detail: /IsapiModule is not enabled at Default Web Site\/hello .*500\.21/,
        fix: /\/section:system\.webServer\/modules \/\+"\[name='IsapiModule'\]"/,
      },
      {
        finding: 'the pool identity cannot read the folder',
        subject: 'hello',
        cause: async () => expect((await tool('C:\\windows\\system32\\icacls.exe', ['C:\\apps\\hello', '/remove:g', 'IIS AppPool\\node-isapi-hello'])).code).toBe(0),
        check: 'rights IIS AppPool\\node-isapi-hello',
        detail: /IIS AppPool\\node-isapi-hello cannot read and execute C:\\apps\\hello: the pool cannot load the DLL/,
        fix: /icacls\.exe C:\\apps\\hello \/grant "IIS AppPool\\node-isapi-hello:\(OI\)\(CI\)RX"/,
      },
      {
        finding: 'the pools that load a site filter need rights too',
        subject: 'redirector-with-filter',
        cause: async () => expect((await tool('C:\\windows\\system32\\icacls.exe', ['C:\\apps\\redirector-with-filter\\logs', '/remove:g', 'IIS AppPool\\DefaultAppPool'])).code).toBe(0),
        check: 'rights IIS AppPool\\DefaultAppPool',
        detail: /IIS AppPool\\DefaultAppPool cannot write to C:\\apps\\redirector-with-filter\\logs/,
        fix: /\/grant "IIS AppPool\\DefaultAppPool:\(OI\)\(CI\)M"/,
      },
      {
        finding: 'a stopped site (a port already in use)',
        subject: 'hello',
        cause: () => appcmd('stop', 'site', 'Default Web Site'),
        check: 'site',
        detail: /site "Default Web Site" \(http\/\*:80:\) is Stopped: requests are refused\. When IIS cannot start a site, another program holds one of its ports/,
        fix: /netstat -ano \| findstr ":80 "/,
      },
      {
        finding: 'the pool bitness does not match the DLL: 0x800700c1',
        subject: 'hello',
        cause: () => appcmd('set', 'apppool', 'node-isapi-hello', '/enable32BitAppOnWin64:true'),
        check: 'pool bitness',
        detail: /node-isapi-hello is 32-bit but _hello\.dll is 64-bit: IIS fails with 0x800700c1/,
        fix: /\/enable32BitAppOnWin64:false/,
      },
      {
        finding: 'the DLL is not in the restriction list: 404.2',
        subject: 'hello',
        cause: () => appcmd('set', 'config', '/section:system.webServer/security/isapiCgiRestriction', "/-[path='C:\\apps\\hello\\_hello.dll']", '/commit:apphost'),
        check: 'restriction list',
        detail: /is not allowed in ISAPI and CGI Restrictions: requests get 404\.2/,
        fix: /isapiCgiRestriction/,
      },
    ];
    for (const c of cases) {
      it(`finds ${c.finding}`, async () => {
        restore();
        try {
          await c.cause();
          const d = await doctor(c.subject);
          expect(d.exitCode).toBe(6);
          const found = d.checks.find((x) => x.name === c.check);
          expect(found, JSON.stringify(d.checks, null, 2)).toBeDefined();
          expect(found!.status).toBe('fail');
          expect(found!.detail).toMatch(c.detail);
          expect(found!.fix).toMatch(c.fix);
        } finally {
          restore();
        }
      });
    }

    it('an interrupted install is a finding too', async () => {
      restore();
      const state = path.join(copies.hello!, 'hello.install-state.json');
      const saved = readFileSync(state, 'utf8');
      try {
        const s = JSON.parse(saved);
        s.installs[0].complete = false;
        writeFileSync(state, JSON.stringify(s));
        expect((await failing('hello')).map((c) => c.name)).toEqual(['install']);
      } finally {
        writeFileSync(state, saved);
      }
    });

    afterAll(async () => {
      restore();
      for (const name of Object.keys(copies).reverse()) {
        const r = await tool(path.join(copies[name]!, 'install.exe'), ['remove']);
        expect(r.code, r.stderr).toBe(0);
      }
      // Removed exactly: the filter, the grants to the site's other pools and all the rest.
      expect(readFileSync(path.join(standin(), 'state.txt'), 'utf8')).toBe(snapshots.fresh);
    });
  });

  describe('a folder whose path has spaces and non-ASCII characters', () => {
    it('from C:\\inetpub\\my apps & fü\\…: the filter reads its manifest (GetFilterVersion succeeds) and the extension starts workers', async () => {
      const base = path.join(prefix, 'drive_c', 'inetpub', 'my apps & fü');
      const config = path.join(dist, 'odd-host.json');
      rmSync(config, { force: true });
      const copies = ['hello', 'security-headers'].map((name) => {
        const dest = path.join(base, `${name} ü`);
        mkdirSync(base, { recursive: true });
        rmSync(dest, { recursive: true, force: true });
        execFileSync('cp', ['-al', folder(name), dest]);
        for (const f of readdirSync(dest)) if (f.includes('install-state')) rmSync(path.join(dest, f));
        rmSync(path.join(dest, 'logs'), { recursive: true, force: true });
        return dest;
      });
      for (const dest of copies) {
        const inst = await runWineAsync(path.join(dest, 'install.exe'), ['--config', toWinePath(config)], { prefix });
        expect(inst.code, inst.stdout + inst.stderr).toBe(0);
      }
      expect(JSON.parse(readFileSync(config, 'utf8')).filters[0].library).toContain('my apps & fü\\security-headers ü\\');
      const proc = spawn(process.execPath, [isapiCli, 'serve', '--wine', '--config', config, '--port', '0'], {
        cwd: root,
        env: { ...process.env, ISAPI_WINEPREFIX: prefix, ISAPI_WORKERS: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      try {
        const url = await new Promise<string>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no listening line:\n${output}`)), 90_000);
          const onData = (d: Buffer) => {
            output += d;
            const m = /isapi-host listening on http:\/\/[\d.]+:(\d+)\//.exec(output);
            if (m) {
              clearTimeout(timer);
              resolve(`http://127.0.0.1:${m[1]}`);
            }
          };
          proc.stdout!.on('data', onData);
          proc.stderr!.on('data', onData);
          proc.once('exit', (code) => reject(new Error(`isapi serve exited with ${code}:\n${output}`)));
        });
        const res = await fetch(`${url}/hello/`);
        expect(res.status, output).toBe(200);
        expect(await res.text()).toBe('Hello from TypeScript\n');
        // SEND_RESPONSE from the filter: its flags come from the manifest beside the DLL.
        expect(res.headers.get('x-content-type-options')).toBe('nosniff');
        expect(res.headers.get('x-frame-options')).toBe('DENY');
      } finally {
        await new Promise<void>((r) => {
          if (proc.exitCode !== null) return r();
          proc.once('exit', () => r());
          proc.kill('SIGTERM');
        });
      }
      for (const dest of [...copies].reverse()) {
        const rm = await runWineAsync(path.join(dest, 'install.exe'), ['remove', '--config', toWinePath(config)], { prefix });
        expect(rm.code, rm.stderr).toBe(0);
      }
    });
  });

  describe('installer', () => {
    it('`wine install.exe remove` restores the config (deleted: install created it)', async () => {
      await stopServer();
      for (const name of Object.keys(SCRIPTS).reverse()) {
        const r = runWine(path.join(folder(name), 'install.exe'), ['remove', '--config', toWinePath(configFile)], { prefix });
        expect(r.code, r.stdout + r.stderr).toBe(0);
      }
      expect(existsSync(configFile)).toBe(false);
    });
  });
});
