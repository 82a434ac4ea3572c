// Packs the examples and fixtures the end-to-end suites serve, once per run.
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';

import { isapiCli, root, testDist } from './helpers';

const SCRIPTS = ['examples/hello.ts', 'examples/echo.ts', 'test/fixtures/control.ts'];

export default function setup(): void {
  rmSync(testDist, { recursive: true, force: true });
  for (const script of SCRIPTS) {
    const r = spawnSync(process.execPath, [isapiCli, 'pack', script, '--out', testDist], { cwd: root, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`packing ${script} failed:\n${r.stdout}${r.stderr}`);
  }

}
