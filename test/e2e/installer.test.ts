// The installer (`install` in a packed folder): the local host end to end (install → serve →
// 200 → remove → the config file byte-identical → 404), the IIS plan against golden files
// (test/golden/iis, reviewed against Microsoft's appcmd documentation), idempotence, removal,
// rollback and bad parameters. UPDATE_GOLDEN=1 rewrites the golden files.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInstaller } from '../../installer/main';
import { MemoryServer, planIisInstall, q, splitCommandLine } from '../../installer/iis';
import { loadFolder } from '../../installer/folder';
import { parseHostConfig } from '../../installer/local_config';
import { resolveParameters, scriptInstallExports } from '../../installer/params';
import { formatPlan } from '../../installer/plan';
import { readState } from '../../installer/state';
import { isapiCli, packed, root, testDist } from '../helpers';

const work = path.join(testDist, 'installer-e2e');
const golden = path.join(root, 'test', 'golden', 'iis');
const PHYSICAL = 'C:\\inetpub\\node-isapi';
let hello: string;
const children: ChildProcess[] = [];

/** A copy of a packed folder (hard links: fast, and the installer only adds its state file). */
function copyFolder(name: string): string {
  const dest = path.join(work, name);
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const r = spawnSync('cp', ['-al', packed(name), dest]);
  if (r.status !== 0) throw new Error(`cp -al failed: ${r.stderr}`);
  rmSync(path.join(dest, 'logs'), { recursive: true, force: true });
  return dest;
}

function install(folder: string, args: string[]) {
  const r = spawnSync(path.join(folder, 'install'), args, { cwd: work, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `isapi serve --config <file> --port 0`, resolved once it listens. */
function serveConfig(file: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const proc = spawn(process.execPath, [isapiCli, 'serve', '--config', file, '--port', '0'], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`isapi serve did not start:\n${out}`)), 60_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /listening on http:\/\/[\d.]+:(\d+)\//.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        url: `http://127.0.0.1:${m[1]}`,
        stop: () =>
          new Promise<void>((res) => {
            if (proc.exitCode !== null) return res();
            proc.once('exit', () => res());
            proc.kill('SIGTERM');
          }),
      });
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`isapi serve exited with ${code}:\n${out}`));
    });
  });
}

function checkGolden(file: string, actual: string) {
  const p = path.join(golden, file);
  if (process.env.UPDATE_GOLDEN === '1' || !existsSync(p)) {
    if (process.env.UPDATE_GOLDEN !== '1') throw new Error(`${p} is missing: review the output and write it with UPDATE_GOLDEN=1`);
    mkdirSync(golden, { recursive: true });
    writeFileSync(p, actual);
  }
  expect(actual).toBe(readFileSync(p, 'utf8'));
}

beforeAll(() => {
  rmSync(work, { recursive: true, force: true });
  hello = copyFolder('hello');
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

describe('install into the local host', () => {
  it('install → serve → 200 → remove → the file is byte-identical → 404', async () => {
    const file = path.join(work, 'site.json');
    const echoLib = path.join(packed('echo'), '_echo.so');
    // A file the user wrote: own formatting, key order and an application of their own.
    const before = `{\n\t"applications": [ { "path": "/echo", "extension": ${JSON.stringify(echoLib)} } ],\n\t"port": 8080\n}\n`;
    writeFileSync(file, before);

    const first = install(hello, ['--config', file]);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('+ application /hello');
    const installed = readFileSync(file, 'utf8');
    expect(JSON.parse(installed).applications).toEqual([
      { path: '/echo', extension: echoLib },
      { path: '/hello', extension: path.join(hello, '_hello.so'), installedBy: 'node-isapi:hello' },
    ]);

    // Idempotent: a second install changes nothing.
    const again = install(hello, ['--config', file]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('nothing to change');
    expect(readFileSync(file, 'utf8')).toBe(installed);

    const status = install(hello, ['status', '--config', file, '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ installed: true, recorded: true });

    let host = await serveConfig(file);
    try {
      const res = await fetch(`${host.url}/hello/`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('Hello from TypeScript\n');
      expect((await fetch(`${host.url}/echo/x`)).status).toBe(200);
    } finally {
      await host.stop();
    }

    const removed = install(hello, ['remove', '--config', file]);
    expect(removed.stderr).toBe('');
    expect(removed.code).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(before);
    expect(existsSync(path.join(hello, 'hello.install-state.json'))).toBe(false);

    host = await serveConfig(file);
    try {
      expect((await fetch(`${host.url}/hello/`)).status).toBe(404);
      expect((await fetch(`${host.url}/echo/x`)).status).toBe(200);
    } finally {
      await host.stop();
    }
  });

  it('creates a missing file, and remove deletes it again', () => {
    const file = path.join(work, 'new', 'host.json');
    rmSync(path.dirname(file), { recursive: true, force: true });
    const r = install(hello, ['--config', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('the file does not exist yet');
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ port: 8080, bind: '127.0.0.1', filters: [] });
    expect(install(hello, ['uninstall', '--config', file]).code).toBe(0);
    expect(existsSync(file)).toBe(false);
  });

  it('shares a file with other folders: removes only its own entries', () => {
    const echo = copyFolder('echo');
    const file = path.join(work, 'shared.json');
    const before = '{ "port": 0, "applications": [] }';
    writeFileSync(file, before);
    // Removed in reverse order: each remove finds the file as its install left it → exact bytes.
    expect(install(hello, ['--config', file]).code).toBe(0);
    expect(install(echo, ['--config', file]).code).toBe(0);
    expect(install(echo, ['remove', '--config', file]).code).toBe(0);
    expect(install(hello, ['remove', '--config', file]).code).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(before);
    // In any other order each remove takes out only its entries; the end result means the same.
    expect(install(hello, ['--config', file]).code).toBe(0);
    expect(install(echo, ['--config', file]).code).toBe(0);
    expect(install(hello, ['remove', '--config', file]).code).toBe(0);
    expect(JSON.parse(readFileSync(file, 'utf8')).applications.map((a: { path: string }) => a.path)).toEqual(['/echo']);
    expect(install(echo, ['remove', '--config', file]).code).toBe(0);
    expect(parseHostConfig(readFileSync(file, 'utf8'), file)).toEqual(parseHostConfig(before, file));
  });

  it('--dry-run prints the plan and changes nothing', () => {
    const file = path.join(work, 'dry.json');
    rmSync(file, { force: true });
    const r = install(hello, ['--config', file, '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^plan: install hello into local host config .*dry\.json$/m);
    expect(r.stdout).toContain('dry run: nothing changed');
    expect(existsSync(file)).toBe(false);
  });

  it('refuses to replace an application it did not create, and to remove entries it did not record', () => {
    const file = path.join(work, 'theirs.json');
    const before = JSON.stringify({ applications: [{ path: '/hello', extension: '/opt/other/_hello.so' }] });
    writeFileSync(file, before);
    const r = install(hello, ['--config', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already has an application at \/hello \(added by hand.*does not replace what it did not create/);
    expect(readFileSync(file, 'utf8')).toBe(before);

    const marked = JSON.stringify({ applications: [{ path: '/hello', extension: path.join(hello, '_hello.so'), installedBy: 'node-isapi:hello' }] });
    writeFileSync(file, marked);
    const rm = install(hello, ['remove', '--config', file]);
    expect(rm.code).toBe(1);
    expect(rm.stderr).toContain('records no install into it');
    expect(readFileSync(file, 'utf8')).toBe(marked);
  });

  it('doctor checks the folder, the file and the port', () => {
    const file = path.join(work, 'doctor.json');
    rmSync(file, { force: true });
    const missing = install(hello, ['doctor', '--config', file]);
    expect(missing.code).toBe(6);
    expect(missing.stdout).toMatch(/^FAIL config: .*doctor\.json does not exist\n +fix: run install --config/m);
    expect(install(hello, ['--config', file]).code).toBe(0);
    const ok = install(hello, ['doctor', '--config', file]);
    expect(ok.stdout).toMatch(/^ok +folder: 3 files match hello\.manifest\.json$/m);
    expect(ok.stdout).toMatch(/^ok +config: .* serves \/hello$/m);
    expect(ok.stdout).toMatch(/^(ok|warn) +port: 127\.0\.0\.1:8080/m);
    expect(install(hello, ['remove', '--config', file]).code).toBe(0);
  });

  it('serve refuses applications whose environments conflict', () => {
    const file = path.join(work, 'conflict.json');
    const lib = path.join(hello, '_hello.so');
    writeFileSync(
      file,
      JSON.stringify({
        applications: [
          { path: '/a', extension: lib, environment: { ISAPI_WORKERS: '2' } },
          { path: '/b', extension: lib, environment: { ISAPI_WORKERS: '3' } },
        ],
      }),
    );
    const r = spawnSync(process.execPath, [isapiCli, 'serve', '--config', file], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^isapi: .*\/a sets ISAPI_WORKERS=2 but \/b sets ISAPI_WORKERS=3; isapi-host runs every application in one process/);
  });
});

describe('upgrade: a new folder replaces an installed one', () => {
  it('takes the folder offline, replaces the files that changed, installs, and brings it back', async () => {
    const live = copyFolder('hello');
    const file = path.join(work, 'upgrade.json');
    rmSync(file, { force: true });
    expect(install(live, ['--config', file]).code).toBe(0);
    // Version 2 of the same script, packed for real.
    const src = path.join(work, 'upgrade-src');
    mkdirSync(src, { recursive: true });
    writeFileSync(
      path.join(src, 'hello.ts'),
      readFileSync(path.join(root, 'examples', 'hello.ts'), 'utf8').replace('Hello from TypeScript', 'Hello from version 2'),
    );
    const packedNew = spawnSync(process.execPath, [isapiCli, 'pack', path.join(src, 'hello.ts'), '--out', path.join(src, 'dist')], { cwd: root, encoding: 'utf8' });
    expect(packedNew.status, packedNew.stderr).toBe(0);
    const fresh = path.join(src, 'dist', 'hello');

    const dry = install(fresh, ['upgrade', live, '--config', file, '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain(`~ would replace ${path.join(live, 'hello')}`);
    expect(readFileSync(path.join(live, 'hello')).equals(readFileSync(path.join(fresh, 'hello')))).toBe(false);

    const before = readFileSync(file, 'utf8');
    const r = install(fresh, ['upgrade', live, '--config', file]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`upgraded ${live}: hello`);
    for (const f of ['hello', 'install', 'hello.manifest.json']) expect(readFileSync(path.join(live, f)).equals(readFileSync(path.join(fresh, f)))).toBe(true);
    expect(existsSync(path.join(live, 'app_offline.htm'))).toBe(false);
    expect(readdirSync(live).filter((f) => f.includes('.replaced-'))).toEqual([]);
    // Same parameters: the config and the install record stay as they were.
    expect(readFileSync(file, 'utf8')).toBe(before);
    expect(readState(loadFolder(live)).installs).toHaveLength(1);
    const host = await serveConfig(file);
    try {
      expect(await (await fetch(`${host.url}/hello/`)).text()).toBe('Hello from version 2\n');
    } finally {
      await host.stop();
    }

    // An app_offline.htm someone else put there stays; a folder of another script is refused.
    writeFileSync(path.join(live, 'app_offline.htm'), 'maintenance');
    expect(install(fresh, ['upgrade', live, '--config', file]).code).toBe(0);
    expect(readFileSync(path.join(live, 'app_offline.htm'), 'utf8')).toBe('maintenance');
    rmSync(path.join(live, 'app_offline.htm'));
    const other = install(fresh, ['upgrade', copyFolder('echo'), '--config', file]);
    expect(other.code).toBe(1);
    expect(other.stderr).toContain("holds 'echo', this folder 'hello'");
    expect(install(live, ['remove', '--config', file]).code).toBe(0);
  }, 120_000);
});

describe('bad parameters fail clearly and change nothing', () => {
  const file = () => path.join(work, 'bad.json');
  const before = '{"applications":[]}\n';
  const run = async (user: Record<string, unknown>, argv: string[] = ['--config', file()]) => {
    writeFileSync(file(), before);
    const out: string[] = [];
    const err: string[] = [];
    const code = await runInstaller(user, { folder: hello, argv, out: (t) => out.push(t), err: (t) => err.push(t) });
    expect(readFileSync(file(), 'utf8')).toBe(before);
    expect(existsSync(path.join(hello, 'hello.install-state.json'))).toBe(false);
    return { code, out: out.join('\n'), err: err.join('\n') };
  };

  it('a virtual directory without a name', async () => {
    const r = await run({ install: { virtualDirs: [{ description: 'no name' }] } });
    expect(r.code).toBe(1);
    expect(r.err).toBe("install: install.virtualDirs[0] has no name: give each virtual directory its URL path, e.g. { name: '/hello' } ('/' is the site root)");
  });

  it('a filter without a DLL', async () => {
    const r = await run({ install: { filters: [{ name: 'rewrite' }] } });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^install: install\.filters\[0\] \('rewrite'\) has no DLL: set its path to the filter's DLL, or export __FilterFactory__/);
  });

  it('a site that does not exist (local file, and IIS)', async () => {
    const local = install(hello, ['--config', file(), '--site', 'Intranet']);
    expect(local.code).toBe(1);
    expect(local.stderr).toMatch(/^install: site 'Intranet' does not exist in .*bad\.json: the file describes one site, 'Default Web Site'/);
    expect(readFileSync(file(), 'utf8')).toBe(before);
    const iis = install(hello, ['--iis', '--dry-run', '--site', 'Intranet']);
    expect(iis.code).toBe(3);
    expect(iis.stderr).toMatch(/^install: IIS has no site named 'Intranet' \(dry run on linux.*\): pass --site with an existing site/);
  });

  it('a pool bitness that does not match the bridge', async () => {
    const r = await run({ install: { appPool: { bitness: 32 } } });
    expect(r.code).toBe(1);
    expect(r.err).toContain('0x800700c1');
  });

  it('a postInstall hook that throws rolls the install back', async () => {
    const r = await run({
      install: {
        postInstall() {
          throw new Error('database unreachable');
        },
      },
    });
    expect(r.code).toBe(4);
    expect(r.err).toContain('install failed and was rolled back');
    expect(r.err).toContain('database unreachable');
  });

  it('IIS changes off Windows without --dry-run', () => {
    const r = install(hello, ['--iis']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the IIS backend runs on Windows');
  });
});

describe('custom verbs and hooks', () => {
  it('runs the script\'s own verbs with their arguments, and hooks around install and remove', async () => {
    const calls: string[] = [];
    const user = {
      install: {
        environment: { GREETING: 'hi' },
        workers: 2,
        verbs: {
          'create-db': { description: 'make the database', run: (ctx: { args: string[]; parameters: { environment: object } }) => void calls.push(`create-db ${ctx.args.join(' ')} ${JSON.stringify(ctx.parameters.environment)}`) },
        },
        preInstall: () => void calls.push('preInstall'),
        postInstall: () => void calls.push('postInstall'),
        preRemove: () => void calls.push('preRemove'),
        postRemove: () => void calls.push('postRemove'),
      },
    };
    const file = path.join(work, 'verbs.json');
    rmSync(file, { force: true });
    const out: string[] = [];
    const opts = { folder: hello, out: (t: string) => out.push(t), err: (t: string) => out.push(t) };
    expect(await runInstaller(user, { ...opts, argv: ['create-db', 'main', '--force', '--config', file] })).toBe(0);
    expect(await runInstaller(user, { ...opts, argv: ['--help'] })).toBe(0);
    expect(out.join('\n')).toContain('create-db    make the database');
    expect(await runInstaller(user, { ...opts, argv: ['--config', file] })).toBe(0);
    expect(JSON.parse(readFileSync(file, 'utf8')).applications[0].environment).toEqual({ GREETING: 'hi', ISAPI_WORKERS: '2' });
    expect(await runInstaller(user, { ...opts, argv: ['remove', '--config', file] })).toBe(0);
    expect(existsSync(file)).toBe(false);
    expect(calls).toEqual(['create-db main --force {"GREETING":"hi","ISAPI_WORKERS":"2"}', 'preInstall', 'postInstall', 'preRemove', 'postRemove']);
  });
});

describe('the IIS plan (appcmd), against golden files', () => {
  const examples = readdirSync(path.join(root, 'examples'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.replace(/\.ts$/, ''))
    .filter((n) => existsSync(path.join(testDist, n, 'install')));

  it('covers the examples', () => {
    expect(examples).toEqual(expect.arrayContaining(['hello', 'echo']));
  });

  for (const name of ['hello', 'echo']) {
    it(`${name}: install, a second install (no changes) and remove`, async () => {
      const folder = packed(name);
      const args = ['--iis', '--dry-run', '--physical-path', `${PHYSICAL}\\${name}`];
      const inst = spawnSync(path.join(folder, 'install'), args, { encoding: 'utf8' });
      expect(inst.stderr).toBe('');
      checkGolden(`${name}.install.txt`, inst.stdout);
      const rem = spawnSync(path.join(folder, 'install'), ['remove', ...args], { encoding: 'utf8' });
      expect(rem.stderr).toBe('');
      checkGolden(`${name}.remove.txt`, rem.stdout);

      // Idempotence: apply the plan to a simulated server; planning again finds nothing to do.
      const f = loadFolder(folder);
      const params = resolveParameters(scriptInstallExports({}, name), f);
      const paths = { folder: `${PHYSICAL}\\${name}`, dll: `${PHYSICAL}\\${name}\\_${name}.dll` };
      const server = new MemoryServer('simulated server');
      const state = readState(f);
      const first = planIisInstall(f, params, paths, server, state);
      for (const s of first.steps) server.apply(s);
      const record = { backend: 'iis' as const, site: params.site, installedAt: '', steps: first.steps };
      const second = planIisInstall(f, params, paths, server, { ...state, installs: [record] });
      expect(second.steps).toEqual([]);
      checkGolden(`${name}.reinstall.txt`, formatPlan(second.plan, name) + '\n');
    });
  }

  it('parameters: root and extension maps, verbs, environment, a filter, NetworkService', async () => {
    const user = {
      install: {
        site: 'Intranet',
        virtualDirs: [{ name: '/' }, { name: 'api', scriptMaps: [{ extension: '.api', verbs: ['get', 'POST'] }] }],
        filters: [{ name: 'rewrite', path: 'C:\\filters\\rewrite.dll' }],
        appPool: { name: 'HelloPool', identity: 'NetworkService' },
        environment: { GREETING: 'hi' },
        workers: 4,
        requestTimeoutMs: 30000,
      },
    };
    const f = loadFolder(hello);
    const params = resolveParameters(scriptInstallExports(user, 'hello'), f);
    const server = new MemoryServer('simulated server with sites "Default Web Site" and "Intranet"', ['Default Web Site', 'Intranet']);
    const paths = { folder: `${PHYSICAL}\\hello`, dll: `${PHYSICAL}\\hello\\_hello.dll` };
    // A '/' virtual directory changes the whole site: refused unless --site-root says so.
    expect(() => planIisInstall(f, params, paths, server, readState(f))).toThrow(
      /install\.virtualDirs has '\/', the root of site "Intranet"; installing there changes the whole site:\n  - the root application of "Intranet" moves from DefaultAppPool to HelloPool.*\nRun install --site-root to accept that/s,
    );
    const plan = planIisInstall(f, params, paths, server, readState(f), { siteRoot: true });
    checkGolden('params.install.txt', formatPlan(plan.plan, 'hello') + '\n');

    // A changed parameter on a server that has the rest: only the difference, then a recycle.
    for (const s of plan.steps) server.apply(s);
    const record = { backend: 'iis' as const, site: 'Intranet', installedAt: '', steps: plan.steps };
    const changed = resolveParameters(scriptInstallExports({ install: { ...user.install, workers: 8 } }, 'hello'), f);
    const again = planIisInstall(f, changed, paths, server, { stateVersion: 1, name: 'hello', installs: [record] }, { siteRoot: true });
    checkGolden('params.change.txt', formatPlan(again.plan, 'hello') + '\n');
  });

  it('a script that exports __FilterFactory__ gets its filter; the examples declare what they serve', () => {
    // redirector-with-filter: extension + filter; it serves /redirector (its install export says so).
    for (const [name, file] of [['redirector-with-filter', 'redirector-with-filter'], ['security-headers', 'security-headers']] as const) {
      const folder = packed(name);
      const args = ['--iis', '--dry-run', '--physical-path', `${PHYSICAL}\\${name}`];
      const inst = spawnSync(path.join(folder, 'install'), args, { encoding: 'utf8' });
      expect(inst.stderr).toBe('');
      checkGolden(`${file}.install.txt`, inst.stdout);
      const rem = spawnSync(path.join(folder, 'install'), ['remove', ...args], { encoding: 'utf8' });
      expect(rem.stderr).toBe('');
      checkGolden(`${file}.remove.txt`, rem.stdout);
    }
    const withFilter = spawnSync(path.join(packed('redirector-with-filter'), 'install'), ['--iis', '--dry-run'], { encoding: 'utf8' }).stdout;
    expect(withFilter).toContain("add app /site.name:\"Default Web Site\" /path:/redirector ");
    expect(withFilter).toMatch(/isapiFilters \/\+"\[name='node-isapi-redirector-with-filter',path='[^']*_redirector-with-filter\.dll',enabled='true',preCondition='bitness64'\]"/);
    // A filter-only script: no application, pool or handler; the site's pools get the rights.
    const filterOnly = spawnSync(path.join(packed('security-headers'), 'install'), ['--iis', '--dry-run'], { encoding: 'utf8' }).stdout;
    expect(filterOnly).not.toContain('add apppool');
    expect(filterOnly).not.toContain('add app ');
    expect(filterOnly).toContain('IIS AppPool\\DefaultAppPool:(OI)(CI)RX');
  });

  it('quoting: spaces, a trailing backslash, "&", "(", non-ASCII survive; apostrophes, quotes and "%" are refused before any change', async () => {
    const plan = async (physical: string) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await runInstaller({}, { folder: hello, argv: ['--iis', '--dry-run', '--physical-path', physical], out: (t) => out.push(t), err: (t) => err.push(t) });
      return { code, out: out.join('\n'), err: err.join('\n') };
    };
    const odd = 'C:\\Program Files (x86)\\my app & co\\fü\\';
    const r = await plan(odd);
    expect(r.err).toBe('');
    checkGolden('quoting.install.txt', r.out + '\n');
    // Every line splits, as CommandLineToArgvW would, into the arguments meant.
    const lines = r.out.split('\n').filter((l) => /^ {6}%windir%/.test(l)).map((l) => splitCommandLine(l.trim()));
    const dir = odd.replace(/\\$/, '');
    expect(lines.find((a) => a[1] === 'add' && a[2] === 'app')).toEqual([
      '%windir%\\system32\\inetsrv\\appcmd.exe', 'add', 'app', '/site.name:Default Web Site', '/path:/hello', `/physicalPath:${dir}`, '/applicationPool:node-isapi-hello',
    ]);
    expect(lines.find((a) => a[0]!.endsWith('icacls.exe'))).toEqual(['%windir%\\system32\\icacls.exe', dir, '/grant', 'IIS AppPool\\node-isapi-hello:(OI)(CI)RX']);
    for (const [bad, what] of [
      ["C:\\inetpub\\o'brien", "an apostrophe (')"],
      ['C:\\inetpub\\100%done', "'%'"],
      ['C:\\inetpub\\say "hi"', 'a double quote'],
    ]) {
      const refused = await plan(bad!);
      expect(refused.code).toBe(1);
      expect(refused.err).toContain(`install: the physical path '${bad}' contains ${what}`);
    }
    expect(existsSync(path.join(hello, 'hello.install-state.json'))).toBe(false);
  });

  it('splitCommandLine follows CommandLineToArgvW (backslashes, quotes, doubled quotes)', () => {
    expect(splitCommandLine('a "b c" d')).toEqual(['a', 'b c', 'd']);
    expect(splitCommandLine('"C:\\my app\\\\" /x')).toEqual(['C:\\my app\\', '/x']);
    expect(splitCommandLine('"C:\\my app\\" /x')).toEqual(['C:\\my app" /x']);
    expect(splitCommandLine('a\\\\\\"b "c""d"')).toEqual(['a\\"b', 'c"d']);
    expect(splitCommandLine('/p:"x y"z')).toEqual(['/p:x yz']);
    for (const v of ['', 'plain', 'with space', 'trail\\', 'trail two\\\\', 'q"uote', 'back\\"slash quote', 'a & b', 'fü ñ']) {
      expect(splitCommandLine(`x ${q(v)} y`)).toEqual(['x', v, 'y']);
    }
  });

  it('--quiet --json: one JSON document with the exit code', () => {
    const ok = install(hello, ['--iis', '--dry-run', '--quiet', '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ verb: 'install', backend: 'iis', dryRun: true, exitCode: 0 });
    const bad = install(hello, ['--iis', '--dry-run', '--quiet', '--json', '--site', 'Nope']);
    expect(bad.code).toBe(3);
    expect(JSON.parse(bad.stdout)).toMatchObject({ exitCode: 3, error: expect.stringContaining("IIS has no site named 'Nope'") });
  });

  it('parameters: workerMemoryLimitMB becomes ISAPI_WORKER_MEMORY_LIMIT_MB; a bad value is refused by name', () => {
    const f = loadFolder(hello);
    const params = resolveParameters(scriptInstallExports({ install: { workerMemoryLimitMB: 512 } }, 'hello'), f);
    expect(params.environment.ISAPI_WORKER_MEMORY_LIMIT_MB).toBe('512');
    expect(() => resolveParameters(scriptInstallExports({ install: { workerMemoryLimitMB: -1 } }, 'hello'), f)).toThrow(
      /install\.workerMemoryLimitMB must be a positive whole number, got -1/,
    );
  });
});
