// The Windows build, end to end under Wine: examples packed with --target win-x64, installed
// with `wine install.exe --config`, served by `isapi serve --wine` (the Windows isapi-host.exe
// loading the bridge DLL, which starts the Node SEA workers), and asked by Linux clients over
// loopback. The Wine prefix is private to this file (under /tmp) and has no Node installed.
// Skipped only when Wine or mingw-w64 is not installed (CI installs both: .ci/run).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addPeResource, readPeResource } from '../../packer/pe_resource';
import { ensureNodeBinary, DEFAULT_NODE_VERSION } from '../../packer/node_binary';
import { nativeDir } from '../../packer/paths';
import { ensureWinePrefix, findWine, killWine, runWine, temporaryWinePrefix, toWinePath } from '../../packer/wine';
import { isapiCli, rawExchange, root, sleep, testDist } from '../helpers';

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
    const packs = Promise.all(Object.values(SCRIPTS).map(packWin));
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
      await new Promise<void>((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1', () => {
          sock.write('POST /faults/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n');
          sock.write(Buffer.alloc(1 << 20, 1), () => setTimeout(() => (sock.destroy(), resolve()), 200));
        });
        sock.on('error', reject);
      });
      let line: string | undefined;
      for (let i = 0; i < 150 && !line; i++) {
        line = (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '').split('\n').find((l) => l.includes('ecb-upload'));
        if (!line) await sleep(100);
      }
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
