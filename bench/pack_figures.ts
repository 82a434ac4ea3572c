// The packed folder's figures (issue 12): for examples/hello.ts on linux-x64 and win-x64, the
// folder's size next to the size of the same Node version's own binary (one copy of Node per
// folder), and the warm `isapi pack` time: the whole command as a user runs it, and its steps
// from the pack's own progress lines. Warm: the Node binaries are cached and one pack ran first;
// the figure is the median of BENCH_PACK_RUNS (default 3) packs into the same output folder.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_NODE_VERSION, ensureNodeBinary } from '../packer/node_binary';
import type { Target } from '../packer/paths';

const MB = 1e6;
const MiB = 1 << 20;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** One `isapi pack`: its wall time and the milliseconds of each step it printed. */
function packOnce(root: string, target: Target, out: string): { ms: number; steps: Map<string, number> } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [path.join(root, 'bin', 'isapi.cjs'), 'pack', 'examples/hello.ts', '--target', target, '--out', out], {
    cwd: root,
    encoding: 'utf8',
  });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`bench: isapi pack --target ${target} failed:\n${r.stdout}${r.stderr}`);
  const steps = new Map<string, number>();
  for (const m of r.stdout.matchAll(/^(\w+)\s.*\((\d+) ms\)$/gm)) steps.set(m[1]!, (steps.get(m[1]!) ?? 0) + Number(m[2]));
  return { ms, steps };
}

function folderBytes(dir: string): number {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile())
    .reduce((n, e) => n + statSync(path.join(dir, e.name)).size, 0);
}

export async function packFigures(root: string): Promise<void> {
  const runs = Math.max(1, Number(process.env.BENCH_PACK_RUNS ?? 3));
  const base = path.join(root, 'build', 'bench', 'pack');
  rmSync(base, { recursive: true, force: true });
  console.log(`\nPacked folder of examples/hello.ts (Node ${DEFAULT_NODE_VERSION}); warm pack: median of ${runs} after one unmeasured`);
  console.log(`${'target'.padEnd(10)} ${'folder'.padStart(10)} ${'node alone'.padStart(11)} ${'warm pack'.padStart(10)}  steps (ms)`);
  for (const target of ['linux-x64', 'win-x64'] as const) {
    const node = statSync(ensureNodeBinary(target, DEFAULT_NODE_VERSION)).size;
    const out = path.join(base, target);
    mkdirSync(out, { recursive: true });
    packOnce(root, target, out);
    const measured = Array.from({ length: runs }, () => packOnce(root, target, out));
    const steps = [...measured[0]!.steps.keys()].map((k) => `${k} ${median(measured.map((m) => m.steps.get(k) ?? 0))}`);
    const size = folderBytes(path.join(out, 'hello'));
    console.log(
      `${target.padEnd(10)} ${`${(size / MB).toFixed(1)} MB`.padStart(10)} ${`${(node / MB).toFixed(1)} MB`.padStart(11)} ` +
        `${`${(median(measured.map((m) => m.ms)) / 1000).toFixed(2)} s`.padStart(10)}  ${steps.join(', ')}`,
    );
    console.log(`${''.padEnd(10)} ${`${(size / MiB).toFixed(1)} MiB`.padStart(10)} ${`${(node / MiB).toFixed(1)} MiB`.padStart(11)}   folder − node = ${((size - node) / MB).toFixed(2)} MB`);
  }
  console.log('goal: folder ≤ 130 MB (linux-x64), ≤ 95 MB (win-x64); warm pack ≤ 3 s on both');
}
