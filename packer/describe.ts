// What the script is, learned by loading its bundle once at pack time (ISAPI_DESCRIBE=1 makes
// the runtime print it and exit): whether it has an extension and a filter, and the filter's
// notification flags, which the bridge's GetFilterVersion must answer without a worker.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import type { ScriptDescription } from '../runtime/worker_main';
import { UserError } from './user_error';

export type { ScriptDescription };

export function describeScript(node: string, bundleFile: string, script: string): ScriptDescription {
  const r = spawnSync(node, [bundleFile], {
    cwd: path.dirname(bundleFile),
    env: { ...process.env, ISAPI_DESCRIBE: '1' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) {
    const why = (r.stderr || r.stdout || `exit code ${r.status}`).trim().split('\n').slice(0, 6).join('\n  ');
    throw new UserError(`${script} failed while loading it to read its entry points:\n  ${why}`);
  }
  return JSON.parse(line) as ScriptDescription;
}
