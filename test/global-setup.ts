// Packs the examples and fixtures the end-to-end suites serve, once per run.
import { spawn } from 'node:child_process';
import os from 'node:os';
import { readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { isapiCli, root } from './helpers';

const SCRIPTS = ['examples/hello.ts', 'examples/echo.ts', 'test/fixtures/control.ts',
  // issue 4: filters
  'examples/security-headers.ts', 'examples/basic-auth.ts', 'examples/audit-log.ts', 'examples/redirector-with-filter.ts',
  // issue 7: web frameworks through the adapters
  'examples/express-app.ts', 'examples/fastify-app.ts', 'examples/koa-app.ts', 'examples/hono-app.ts',
  'examples/sqlite-app.ts',
  // issue 3: pywin32's samples and ThreadPoolExtension
  'examples/redirector.ts', 'examples/redirector-async.ts', 'examples/advanced.ts', 'examples/transmit-file.ts',
  'examples/thread-pool.ts',
  // issue 16: supervision under injected faults
  'test/fixtures/faults.ts', 'test/fixtures/broken-start.ts',
  // issue 11: the security suite's extension + filter
  'test/fixtures/security.ts',
];

function pack(script: string, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [isapiCli, 'pack', script, '--out', out], { cwd: root });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`packing ${script} failed:\n${output}`))));
  });
}

// Suites that use no packed folder: in-process unit tests and `isapi dev` (which never packs).
const NEEDS_NO_PACKS = [/^test\/unit\//, /^test\/e2e\/dev\.test\.ts$/, /^test\/wine\/dev\.test\.ts$/,
  // issue 12: the npm package in a fresh project packs its own apps
  /^test\/e2e\/npm_package\.test\.ts$/, /^test\/wine\/cli_windows\.test\.ts$/,
  // bundling, addons from npm and 32-bit pools pack their own fixtures
  /^test\/e2e\/bundling\.test\.ts$/, /^test\/e2e\/native-addons\.test\.ts$/, /^test\/wine\/ia32\.test\.ts$/];

function testFiles(dir: string): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(`${dir}/${e.name}`) : e.name.endsWith('.test.ts') ? [`${dir}/${e.name}`] : [],
  );
}

/**
 * True when the command line selects only files that need no packs (`vitest run
 * test/unit/examples.test.ts`): packing all the scripts would cost minutes for nothing. vitest's
 * file filters are substrings of file paths: the files an argument matches are what it selects
 * (an argument that matches none, such as the value of -t, selects nothing).
 */
function onlyPackFreeSuites(): boolean {
  const files = testFiles('test');
  const selected = new Set<string>();
  for (const arg of process.argv.slice(2)) {
    if (arg.startsWith('-')) continue;
    const rel = path.isAbsolute(arg) ? path.relative(root, arg).split(path.sep).join('/') : arg.replace(/^\.\//, '');
    for (const f of files) if (f.includes(rel)) selected.add(f);
  }
  return selected.size > 0 && [...selected].every((f) => NEEDS_NO_PACKS.some((re) => re.test(f)));
}

export default async function setup(): Promise<() => void> {
  const testDist = path.join(root, 'build', 'test-dist', `run-${process.pid}`);
  process.env.ISAPI_TEST_DIST = testDist;
  rmSync(testDist, { recursive: true, force: true });
  if (onlyPackFreeSuites()) return () => {};
  // Packing is mostly writing a 120 MB executable (and for win-x64 rebuilding its resources): one
  // pack per core. ISAPI_TEST_PACK
  // (names, comma-separated) packs only those, for runs of a few suites (.ci/sanitizers.sh).
  const only = process.env.ISAPI_TEST_PACK?.split(',').map((n) => n.trim());
  const queue = SCRIPTS.filter((s) => !only || only.includes(path.basename(s, '.ts')));
  const lane = async () => {
    for (let script = queue.shift(); script; script = queue.shift()) await pack(script, testDist);
  };
  await Promise.all(Array.from({ length: Math.max(1, os.cpus().length) }, lane));
  return () => {
    if (!process.env.ISAPI_KEEP_TEST_DIST) rmSync(testDist, { recursive: true, force: true });
  };
}
