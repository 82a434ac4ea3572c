// runtime/source_map.ts: the lazy source-map consumer answers as Node's own SourceMap does, and
// a bundle made by bundleWorker, run by plain node, writes stack traces naming the .ts file.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundleWorker, MAP_ASSET } from '../../packer/bundle';
import { LineIndexedSourceMap } from '../../runtime/source_map';
import { root } from '../helpers';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-source-map-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every position of every generated line (and a few past the end) looked up in both maps. */
function compareWithNode(js: string, mapText: string): { positions: number; mapped: number } {
  const node = new SourceMap(JSON.parse(mapText));
  const ours = LineIndexedSourceMap.fromJSON(mapText);
  const lines = js.split('\n');
  let positions = 0;
  let mapped = 0;
  for (let line = 0; line < lines.length + 3; line++) {
    const length = lines[line]?.length ?? 5;
    for (let column = 0; column <= length + 1; column++) {
      const want = node.findEntry(line, column) as Partial<{ originalSource: string; originalLine: number; originalColumn: number }>;
      const got = ours.lookup(line, column);
      const expected = want.originalSource === undefined ? null : { source: want.originalSource, line: want.originalLine, column: want.originalColumn };
      if (JSON.stringify(got) !== JSON.stringify(expected)) {
        expect(got, `generated ${line}:${column}`).toEqual(expected);
      }
      positions++;
      if (got) mapped++;
    }
  }
  return { positions, mapped };
}

describe('LineIndexedSourceMap', () => {
  it('finds what Node’s SourceMap finds, at every position of a bundle with node_modules', async () => {
    const entry = path.join(dir, 'big.ts');
    writeFileSync(
      entry,
      [
        `import express from ${JSON.stringify(path.join(root, 'node_modules', 'express'))};`,
        `export function add(a: number, b: number): number {`,
        `  const sum = a + b; return sum;`,
        `}`,
        `export const app = express();`,
        `app.get('/', (_req, res) => { res.send(String(add(1, 2))); });`,
      ].join('\n'),
    );
    const result = await build({
      entryPoints: [entry],
      bundle: true,
      write: false,
      outfile: path.join(dir, 'big.js'),
      format: 'cjs',
      platform: 'node',
      sourcemap: 'external',
      sourcesContent: false,
      logLevel: 'silent',
    });
    const js = result.outputFiles.find((f) => f.path.endsWith('.js'))!.text;
    const map = result.outputFiles.find((f) => f.path.endsWith('.js.map'))!.text;
    expect(js.split('\n').length).toBeGreaterThan(10_000);
    const { positions, mapped } = compareWithNode(js, map);
    expect(positions).toBeGreaterThan(300_000);
    expect(mapped / positions).toBeGreaterThan(0.9);
  });

  it('handles empty lines, segments without an original position, a source root and an empty map', () => {
    // Line 0 empty; line 1: columns 0 and 2 mapped, 6 not; line 2: column 4; line 3 empty;
    // line 4: column 0 in the second source, 1 not mapped.
    const map = JSON.stringify({ version: 3, sources: ['a.ts', 'b.ts'], sourceRoot: 'src/', names: ['x'], mappings: ';AAAA,EAAEA,I;IACE;;ACAA,C' });
    const ours = LineIndexedSourceMap.fromJSON(map);
    const at = (source: string, line: number, column: number) => ({ source: `src/${source}`, line, column });
    expect(ours.lookup(0, 5)).toBeNull();
    expect(ours.lookup(1, 0)).toEqual(at('a.ts', 0, 0));
    expect(ours.lookup(1, 3)).toEqual(at('a.ts', 0, 2));
    expect(ours.lookup(1, 6)).toBeNull();
    expect(ours.lookup(2, 3)).toBeNull(); // what precedes it, line 1's last segment, maps nowhere
    expect(ours.lookup(2, 4)).toEqual(at('a.ts', 1, 4));
    expect(ours.lookup(3, 0)).toEqual(at('a.ts', 1, 4));
    expect(ours.lookup(4, 0)).toEqual(at('b.ts', 1, 4));
    expect(ours.lookup(4, 1)).toBeNull();
    expect(ours.lookup(9, 9)).toBeNull();
    const empty = LineIndexedSourceMap.fromJSON(JSON.stringify({ version: 3, sources: [], mappings: '' }));
    expect(empty.lookup(0, 0)).toBeNull();
  });
});

describe('stack traces of a worker bundle', () => {
  // Each case makes the same error twice at one call site: once formatted by the installed
  // mapper, once by Node's default.
  const fixture = (sourceMapModule: string) => `import { renameSync } from 'node:fs';
import { SimpleExtension } from 'node-isapi';

class Thrower {
  constructor(readonly why: string) {
    if (why === 'new') throw new Error('thrown by new'); // @new
  }
  fail(): never {
    throw new TypeError(this.why); // @method
  }
}

async function inner(): Promise<void> {
  await null;
  throw new Error('async marker'); // @inner
}
async function outer(): Promise<void> {
  await inner(); // @outer
}

const cases: Record<string, () => unknown> = {
  plain: () => new Thrower('plain').fail(),
  alias: () => ({ alias: Thrower.prototype.fail, why: 'aliased' }).alias(),
  ctor: () => new Thrower('new'),
  node: () => Buffer.alloc(-1),
  noName: () => { const e = new Error(''); e.name = ''; throw e; },
  async: () => outer(),
};

async function both(make: () => unknown): Promise<{ ours: string; node: string }> {
  const errors: Error[] = [];
  for (let i = 0; i < 2; i++) {
    try {
      await make();
    } catch (err) {
      errors.push(err as Error);
    }
  }
  const ours = errors[0]!.stack!;
  const saved = Error.prepareStackTrace;
  Error.prepareStackTrace = undefined;
  const node = errors[1]!.stack!;
  Error.prepareStackTrace = saved;
  return { ours, node };
}

async function main() {
  const out: Record<string, unknown> = { app: __filename };
  if (process.env.FX_HIDE_MAP) {
    renameSync(__filename + '.map', __filename + '.hidden');
    out.hidden = await both(cases.plain!);
    renameSync(__filename + '.hidden', __filename + '.map');
  }
  out.topLevel = new Error('top level').stack; // @top
  // What depd does: swap prepareStackTrace for one returning the call sites, then put it back.
  const saved = Error.prepareStackTrace;
  Error.prepareStackTrace = (_err, callsites) => callsites;
  const holder: { stack?: NodeJS.CallSite[] } = {};
  Error.captureStackTrace(holder);
  const callsites = holder.stack!;
  Error.prepareStackTrace = saved;
  out.depd = callsites[0]!.getFileName();
  // Imported late, so that only the bundle's entry can have installed the mapper this early.
  const { installSourceMaps } = await import(${JSON.stringify(sourceMapModule)});
  out.installedAgain = installSourceMaps(__filename, () => '');
  for (const [name, make] of Object.entries(cases)) out[name] = await both(make);
  process.stdout.write(JSON.stringify(out) + '\\n');
}
// Started by the module's top-level code; runWorker's describe step (ISAPI_DESCRIBE=1) awaits
// the filter factory, so the process outlives it.
const report = main();

export function __ExtensionFactory__() {
  return new SimpleExtension();
}
export async function __FilterFactory__() {
  await report;
  return { filterFlags: 1, HttpFilterProc: () => 0 };
}
`;

  let loader: string;
  let source: string[];
  let assets: Record<string, string>;
  beforeAll(async () => {
    const script = path.join(dir, 'fx.ts');
    writeFileSync(script, fixture(path.join(root, 'runtime', 'source_map.ts')));
    source = readFileSync(script, 'utf8').split('\n');
    loader = path.join(dir, 'out', 'fx.bundle.cjs');
    mkdirSync(path.dirname(loader));
    ({ assets } = await bundleWorker(script, 'fx', loader));
  });

  function run(env: Record<string, string> = {}): Record<string, any> {
    const r = spawnSync(process.execPath, [loader], { encoding: 'utf8', env: { ...process.env, ISAPI_DESCRIBE: '1', ...env } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    return JSON.parse(r.stdout.split('\n')[0]!);
  }
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const lineOf = (marker: string) => source.findIndex((l) => l.includes(`// @${marker}`)) + 1;

  /** Node's default stack with each location in the app replaced as Node's own SourceMap maps it. */
  function mappedByNode(stack: string, app: string): string {
    const node = new SourceMap(JSON.parse(readFileSync(`${app}.map`, 'utf8')));
    return stack.replace(new RegExp(`${escape(app)}:(\\d+):(\\d+)`, 'g'), (whole, line: string, column: string) => {
      const e = node.findEntry(Number(line) - 1, Number(column) - 1) as Partial<{ originalSource: string; originalLine: number; originalColumn: number }>;
      return e.originalSource ? `${e.originalSource}:${e.originalLine! + 1}:${e.originalColumn! + 1}` : whole;
    });
  }

  it('carries the map (sources as absolute paths) as a SEA asset and a file beside the app, with no sourceMappingURL and no setSourceMapsEnabled', () => {
    expect(Object.keys(assets)).toContain(MAP_ASSET);
    expect(assets[MAP_ASSET]).toBe(path.join(dir, 'out', 'fx.app.js.map'));
    const map = JSON.parse(readFileSync(assets[MAP_ASSET]!, 'utf8'));
    expect(map.sources).toContain(path.join(dir, 'fx.ts'));
    expect(map.sourcesContent).toBeUndefined();
    expect(readFileSync(path.join(dir, 'out', 'fx.app.js'), 'utf8')).not.toContain('sourceMappingURL');
    expect(readFileSync(loader, 'utf8')).not.toContain('setSourceMapsEnabled');
  });

  it('writes V8’s stack trace with each frame in the app at its TypeScript file and line', () => {
    const out = run();
    const ts = path.join(dir, 'fx.ts');
    const tsRe = escape(ts);
    expect(out.app).toBe(path.join(dir, 'out', 'fx.app.js'));
    for (const name of ['plain', 'alias', 'ctor', 'node', 'noName', 'async']) {
      const { ours, node } = out[name] as { ours: string; node: string };
      expect(node, name).toContain(`${out.app}:`);
      expect(ours, name).toBe(mappedByNode(node, out.app));
      expect(ours, name).not.toContain(`${out.app}:`);
    }
    expect(out.topLevel).toContain(`${ts}:${lineOf('top')}:`);
    expect(out.plain.ours).toMatch(new RegExp(`^TypeError: plain\\n    at Thrower\\.fail \\(${tsRe}:${lineOf('method')}:\\d+\\)\\n`));
    expect(out.alias.ours).toContain(`at Object.fail [as alias] (${ts}:${lineOf('method')}:`);
    expect(out.ctor.ours).toContain(`at new Thrower (${ts}:${lineOf('new')}:`);
    expect(out.node.ours).toMatch(/^RangeError \[ERR_OUT_OF_RANGE\]: /);
    expect(out.noName.ours).toMatch(/^\n    at /);
    expect(out.async.ours).toMatch(new RegExp(`^Error: async marker\\n    at inner \\(${tsRe}:${lineOf('inner')}:\\d+\\)\\n`));
    expect(out.async.ours).toContain(`\n    at async outer (${ts}:${lineOf('outer')}:`);
  });

  it('leaves a prepareStackTrace swapped and restored (depd) working, and installs once', () => {
    const out = run();
    expect(out.depd).toBe(out.app);
    expect(out.installedAgain).toBe(false);
  });

  it('reads the map only when a stack trace needs it, and without one leaves frames as they are', () => {
    const out = run({ FX_HIDE_MAP: '1' });
    expect(out.hidden.ours).toBe(out.hidden.node);
    expect(out.hidden.ours).toContain(`${out.app}:`);
  });
});
