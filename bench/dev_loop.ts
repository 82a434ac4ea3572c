// The development loop's figure (issue 15): the time from saving a change to the first response
// of the new code, through `isapi dev` (real host and bridge, plain Node workers), for
// examples/hello.ts and examples/express-app.ts. Each script is copied into build/bench/dev-loop
// (inside the package, so the copy resolves express and node-isapi as the example does) and
// edited there; the response is polled back to back from the moment the file is written.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { findWine } from '../packer/wine';

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function get(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

interface Case {
  example: string;
  /** More `isapi dev` arguments (--target win-x64). */
  args?: string[];
  label?: string;
  /** The text in the response that each save changes. */
  marker: string;
}

async function measure(root: string, c: Case, saves: number): Promise<number[]> {
  const dir = path.join(root, 'build', 'bench', 'dev-loop');
  mkdirSync(dir, { recursive: true });
  const script = path.join(dir, path.basename(c.example));
  copyFileSync(path.join(root, c.example), script);
  const original = readFileSync(script, 'utf8');
  const proc = spawn(process.execPath, [path.join(root, 'bin', 'isapi.cjs'), 'dev', script, '--port', '0', ...(c.args ?? [])], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const check = () => {
        const m = /serving\s+\S+ at (http:\S+)/.exec(out);
        if (m) resolve(m[1]!);
      };
      proc.stdout!.on('data', check);
      proc.once('exit', () => reject(new Error(`isapi dev exited:\n${out}`)));
    });
    const times: number[] = [];
    for (let i = 1; i <= saves; i++) {
      const marker = `${c.marker} (save ${i})`;
      const t0 = performance.now();
      writeFileSync(script, original.replace(c.marker, marker));
      for (;;) {
        const body = await get(url).catch(() => '');
        if (body.includes(marker)) break;
        if (performance.now() - t0 > 30_000) throw new Error(`no response of save ${i} within 30 s:\n${out}`);
      }
      times.push(performance.now() - t0);
    }
    return times;
  } finally {
    await new Promise<void>((resolve) => {
      if (proc.exitCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGINT');
    });
    rmSync(script, { force: true });
  }
}

export async function devLoop(root: string): Promise<void> {
  const saves = Number(process.env.BENCH_DEV_SAVES ?? 5);
  console.log(`\nisapi dev: save → first response of the new code (${saves} saves each, 1 worker, plain Node workers)`);
  console.log(`${'script'.padEnd(26)} ${'median ms'.padStart(10)} ${'min ms'.padStart(8)} ${'max ms'.padStart(8)}`);
  const cases: Case[] = [
    { example: 'examples/hello.ts', marker: 'Hello from TypeScript' },
    { example: 'examples/express-app.ts', marker: 'Hello from Express' },
  ];
  // The Windows build under Wine, when Wine is there (the prefix serve --wine uses).
  if (findWine()) cases.push({ example: 'examples/hello.ts', marker: 'Hello from TypeScript', args: ['--target', 'win-x64'], label: 'hello.ts (win-x64, Wine)' });
  for (const c of cases) {
    const t = (await measure(root, c, saves)).sort((a, b) => a - b);
    const median = t[Math.floor(t.length / 2)]!;
    console.log(`${(c.label ?? c.example).padEnd(26)} ${median.toFixed(0).padStart(10)} ${t[0]!.toFixed(0).padStart(8)} ${t[t.length - 1]!.toFixed(0).padStart(8)}${c.example.includes('hello') && !c.args ? `   (goal < 1000 ms: ${median < 1000 ? 'met' : 'NOT met'})` : ''}`);
  }
}
