// node-isapi as a user gets it (issue 12): `npm pack`, the tarball installed into a fresh project
// under the system temp folder with no compiler reachable (cmake, gcc/g++, mingw-w64 off the
// PATH), a strict TypeScript app compiled against it under module NodeNext (`tsc --init`'s
// defaults) and under moduleResolution Bundler, the runtime imported by plain node, and the app
// and an Express app packed for linux-x64 and win-x64 and served, the Windows folders under Wine.
// Prints the tarball's size and file list, the install time, the pack times and folder sizes.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeFileNames, TARGETS } from '../../packer/paths';
import { findWine, killWine, temporaryWinePrefix } from '../../packer/wine';
import { waitFor } from '../helpers';
import {
  compilerFreePath,
  fileSummary,
  folderBytes,
  freshProject,
  mb,
  mustRun,
  npmCache,
  packPackage,
  projectEnv,
  removeAll,
  run,
  startServing,
  type Tarball,
} from '../package_helpers';

const wine = findWine();
if (!wine) console.warn('test/e2e/npm_package: Wine is not installed: the win-x64 folders are packed but not served (apt-get install -y wine64 wine)');

const HELLO = `import { SimpleExtension, type ECB } from 'node-isapi';

class Hello extends SimpleExtension {
  override HttpExtensionProc(ecb: ECB) {
    const body = \`Hello from the package: \${ecb.Method} \${ecb.PathInfo}\\n\`;
    ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
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
app.get('/items/:id', (req, res) => {
  res.json({ id: req.params.id, from: 'express' });
});
export const __ExtensionFactory__ = httpExtension(app);
`;

// Type-checked, never run: the calls below the function's first line must be type errors, which
// they are not if anything in the package's types is \`any\` (an unused @ts-expect-error fails).
const TYPES_CHECK = `import { testExtension, type TestResponse } from 'node-isapi/testing';
import { ExtensionError, HSE_STATUS_SUCCESS, InternalReloadException, type ECB } from 'node-isapi';
import * as hello from './hello.js';

export async function check(): Promise<number> {
  const ext = await testExtension(hello);
  const res: TestResponse = await ext.request('GET', '/x');
  // @ts-expect-error: status is a number
  const wrong: string = res.status;
  // @ts-expect-error: request wants a method and a URL
  await ext.request('GET');
  // @ts-expect-error: ExtensionError's errno is a number
  void new ExtensionError('1413', 'text', 'fn');
  // @ts-expect-error: testExtension wants a module or a factory
  await testExtension(42);
  const handler = (ecb: ECB) => ecb.SendResponseHeaders('200 OK', { 'X-Id': ecb.QueryString.length });
  void handler;
  void new InternalReloadException();
  await ext.close();
  return res.status + HSE_STATUS_SUCCESS + wrong.length;
}
`;

// The user's own test, with plain node: both entry points by name, the real worker loop.
const PLAIN_NODE_TEST = `import { testExtension } from 'node-isapi/testing';
import { SimpleExtension } from 'node-isapi';
import { createRequire } from 'node:module';

class Echo extends SimpleExtension {
  HttpExtensionProc(ecb) {
    ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'text/plain' });
    ecb.WriteClient('plain node: ' + ecb.QueryString);
  }
}
const ext = await testExtension(() => new Echo());
const res = await ext.request('GET', '/echo?q=1');
await ext.close();
const cjs = createRequire(import.meta.url)('node-isapi');
console.log(JSON.stringify({ status: res.status, text: res.text, sameClass: cjs.SimpleExtension === SimpleExtension }));
`;

const LEGACY_CJS = `import { testExtension } from 'node-isapi/testing';
import { SimpleExtension, type ECB } from 'node-isapi';
class Hi extends SimpleExtension {
  HttpExtensionProc(ecb: ECB) {
    ecb.WriteClient('hi');
  }
}
export const ready = testExtension(() => new Hi());
// @ts-expect-error: not a factory
export const wrong = testExtension('hi');
`;

const BUNDLER_TSCONFIG = {
  compilerOptions: { target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler', strict: true, noEmit: true, skipLibCheck: false, types: ['node'], verbatimModuleSyntax: true },
  files: ['hello.ts', 'express-app.ts', 'types-check.ts'],
};

let work = '';
let project = '';
let pathDir = '';
let prefix = '';
let tarball: Tarball;
let installMs = 0;
const packs: Record<string, { ms: number; bytes: number; folder: string }> = {};
const cli = () => path.join(project, 'node_modules', 'node-isapi', 'bin', 'isapi.cjs');

function env(extra: NodeJS.ProcessEnv = {}) {
  return projectEnv(pathDir, extra);
}

async function packIn(script: string, target: string): Promise<string> {
  const name = path.basename(script, '.ts');
  const out = path.join(project, 'out', target);
  const r = await mustRun('npx', ['isapi', 'pack', script, '--target', target, '--out', out], { cwd: project, env: env() });
  const folder = path.join(out, name);
  packs[`${name} ${target}`] = { ms: r.ms, bytes: folderBytes(folder), folder };
  return folder;
}

async function serve(args: string[], what: string, extra: NodeJS.ProcessEnv = {}) {
  // node on the installed bin, not npx: stopping it must reach the CLI (which stops its host).
  const proc = spawn('node', [cli(), 'serve', ...args, '--port', '0', '--workers', '1'], { cwd: project, env: env(extra), stdio: ['ignore', 'pipe', 'pipe'] });
  return startServing(proc, what, 180_000);
}

/** Serves each packed folder in turn (`isapi serve <flags> <folder>`) and checks its answer. */
async function serveAndAsk(hello: string, expressApp: string, item: string, flags: string[], extra: NodeJS.ProcessEnv = {}) {
  for (const [folder, url, check] of [
    [hello, '/hello/world', (body: string) => expect(body).toBe('Hello from the package: GET /hello/world\n')],
    [expressApp, `/express-app/items/${item}`, (body: string) => expect(JSON.parse(body)).toEqual({ id: item, from: 'express' })],
  ] as const) {
    const served = await serve([...flags, folder], ['isapi serve', ...flags, path.basename(folder)].join(' '), extra);
    try {
      const res = await fetch(`http://127.0.0.1:${served.port}${url}`);
      expect(res.status).toBe(200);
      check(await res.text());
    } finally {
      await served.stop();
    }
  }
}

describe('the npm package, installed into a fresh project without a compiler', () => {
  beforeAll(async () => {
    work = path.join(os.tmpdir(), `isapi-npm-package-${process.pid}`);
    tarball = packPackage(path.join(work, 'tarball'));
    pathDir = compilerFreePath();
    project = freshProject('npm-package-app');
    const install = await mustRun(
      'npm',
      ['install', '--no-audit', '--no-fund', '--save-dev', tarball.file, 'typescript@5', '@types/node@latest', '@types/express@5'],
      { cwd: project, env: env() },
    );
    await mustRun('npm', ['install', '--no-audit', '--no-fund', 'express@5'], { cwd: project, env: env() });
    installMs = install.ms;
    writeFileSync(path.join(project, 'hello.ts'), HELLO);
    writeFileSync(path.join(project, 'express-app.ts'), EXPRESS);
    writeFileSync(path.join(project, 'types-check.ts'), TYPES_CHECK);
    writeFileSync(path.join(project, 'plain-node-test.mjs'), PLAIN_NODE_TEST);
  }, 900_000);

  afterAll(() => {
    if (tarball) {
      console.log(
        [
          `npm package figures (issue 12):`,
          `  tarball      ${tarball.file}: ${mb(tarball.bytes)}, ${tarball.files.length} files (npm pack incl. release build: ${(tarball.packMs / 1000).toFixed(1)} s)`,
          `  files        ${Object.entries(fileSummary(tarball.files)).map(([k, n]) => `${k} ${n}`).join(', ')}`,
          `  install      ${(installMs / 1000).toFixed(1)} s (tarball + typescript + @types/node + @types/express, npm cache ${npmCache})`,
          ...Object.entries(packs).map(([k, p]) => `  pack         ${k.padEnd(20)} ${(p.ms / 1000).toFixed(1)} s → ${mb(p.bytes)}`),
        ].join('\n'),
      );
    }
    if (prefix) killWine(prefix);
    removeAll(work, project, pathDir, prefix);
  });

  it('ships exactly what users need: runtime JavaScript + types, the CLI, prebuilt binaries for every target', () => {
    const files = new Set(tarball.files);
    for (const f of ['bin/isapi.cjs', 'build/isapi.cjs', 'lib/index.mjs', 'lib/index.cjs', 'lib/testing.mjs', 'lib/testing.cjs', 'lib/types/esm/index.d.ts', 'lib/types/cjs/testing.d.ts', 'README.md', 'package.json']) {
      expect(files.has(f), f).toBe(true);
    }
    for (const target of TARGETS) for (const name of nativeFileNames(target)) expect(files.has(`prebuilt/${target}/${name}`), `prebuilt/${target}/${name}`).toBe(true);
    const unwanted = tarball.files.filter((f) => /^(test|bench|\.ci|native|examples|scripts\/(?!prepare\.js)|build\/native)\//.test(f) || f.endsWith('.tgz'));
    expect(unwanted).toEqual([]);
    // The installed package keeps the executable bit of the Linux host (npm normalises modes).
    const host = path.join(project, 'node_modules', 'node-isapi', 'prebuilt', 'linux-x64', 'isapi-host');
    expect(existsSync(host)).toBe(true);
    const pkg = JSON.parse(readFileSync(path.join(project, 'node_modules', 'node-isapi', 'package.json'), 'utf8'));
    expect(Object.keys(pkg.dependencies ?? {}).sort()).toEqual(['esbuild', 'postject']);
  });

  it('the installed CLI answers --version and each verb\'s --help', async () => {
    const pkg = JSON.parse(readFileSync(path.join(project, 'node_modules', 'node-isapi', 'package.json'), 'utf8'));
    const version = await mustRun('npx', ['isapi', '--version'], { cwd: project, env: env() });
    expect(version.output.trim()).toBe(pkg.version);
    for (const verb of ['pack', 'serve', 'dev']) {
      const help = await mustRun('npx', ['isapi', verb, '--help'], { cwd: project, env: env() });
      expect(help.output).toContain(`isapi ${verb} <`);
      for (const other of ['pack', 'serve', 'dev'].filter((v) => v !== verb)) expect(help.output).not.toContain(`isapi ${other} <`);
    }
  }, 120_000);

  it('compiles a strict app under tsc --init defaults (module NodeNext) with zero errors and no any', async () => {
    await mustRun('npx', ['tsc', '--init'], { cwd: project, env: env() });
    const config = readFileSync(path.join(project, 'tsconfig.json'), 'utf8');
    expect(config).toMatch(/"module":\s*"nodenext"/);
    expect(config).toMatch(/"strict":\s*true/);
    // tsc --init sets "types": [] (no global @types): Buffer comes from the package's reference to node.
    const r = await run('npx', ['tsc', '--noEmit', '-p', '.'], { cwd: project, env: env() });
    expect(r.output).toBe('');
    expect(r.code).toBe(0);
    // ...and with the declarations themselves checked too.
    const strictLib = await run('npx', ['tsc', '--noEmit', '-p', '.', '--skipLibCheck', 'false'], { cwd: project, env: env() });
    expect(strictLib.output).toBe('');
  }, 120_000);

  it('compiles the same app under moduleResolution Bundler, libraries checked', async () => {
    writeFileSync(path.join(project, 'tsconfig.bundler.json'), JSON.stringify(BUNDLER_TSCONFIG, null, 2));
    const r = await run('npx', ['tsc', '-p', 'tsconfig.bundler.json'], { cwd: project, env: env() });
    expect(r.output).toBe('');
    expect(r.code).toBe(0);
  }, 120_000);

  it('resolves both entry points for older CommonJS projects too (moduleResolution node10, no esModuleInterop)', async () => {
    writeFileSync(path.join(project, 'legacy.cts'), LEGACY_CJS);
    const r = await run('npx', ['tsc', '--noEmit', '--strict', '--module', 'commonjs', '--moduleResolution', 'node10', '--types', 'node', 'legacy.cts'], { cwd: project, env: env() });
    expect(r.output).toBe('');
    expect(r.code).toBe(0);
  }, 120_000);

  it('plain node imports the runtime (import and require give the same classes) and runs a handler through node-isapi/testing', async () => {
    const r = await mustRun('node', ['plain-node-test.mjs'], { cwd: project, env: env() });
    expect(JSON.parse(r.output.trim().split('\n').pop()!)).toEqual({ status: 200, text: 'plain node: q=1', sameClass: true });
  });

  it('packs hello and an Express app for linux-x64 and serves them', async () => {
    const hello = await packIn('hello.ts', 'linux-x64');
    const expressApp = await packIn('express-app.ts', 'linux-x64');
    await serveAndAsk(hello, expressApp, '7', []);
  }, 600_000);

  it('isapi dev serves the script from the installed package (the runtime sources it bundles ship)', async () => {
    const proc = spawn('node', [cli(), 'dev', 'hello.ts', '--port', '0'], { cwd: project, env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (out += d));
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    try {
      const url = await waitFor(() => /^serving +\S+ at (http:\/\/\S+)/m.exec(out)?.[1], `isapi dev to serve:\n${out}`, 120_000);
      const res = await fetch(`${url}dev`);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('Hello from the package: GET /hello/dev\n');
    } finally {
      proc.kill('SIGINT');
      await exited;
    }
  }, 300_000);

  it('packs them for win-x64 with the prebuilt DLL and host (no mingw) and serves them under Wine', async () => {
    const hello = await packIn('hello.ts', 'win-x64');
    const expressApp = await packIn('express-app.ts', 'win-x64');
    for (const folder of [hello, expressApp]) {
      const name = path.basename(folder);
      for (const f of [`_${name}.dll`, `${name}.exe`, 'install.exe']) expect(existsSync(path.join(folder, f)), f).toBe(true);
    }
    if (!wine) return;
    prefix = temporaryWinePrefix('npm-package');
    mkdirSync(prefix, { recursive: true });
    await serveAndAsk(hello, expressApp, '9', ['--wine'], { ISAPI_WINEPREFIX: prefix });
  }, 900_000);
});
