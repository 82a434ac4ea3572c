// What the script is, learned by loading its bundle once at pack time (ISAPI_DESCRIBE=1 makes
// the runtime print it and exit): whether it has an extension and a filter, and the filter's
// notification flags, which the bridge's GetFilterVersion must answer without a worker.
//
// Loading runs the script's top-level code on the build machine, without its production
// environment (a database URL, a secret in an environment variable). Only a filter's settings
// need it: for a script without __FilterFactory__ (known statically, from esbuild's metafile),
// a failure is a warning and the pack goes on; for a filter the message says what to change.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import type { ScriptDescription } from '../runtime/worker_main';
import type { ScriptExports } from './bundle';
import { UserError } from './user_error';

export type { ScriptDescription };

/** The lines of a failed run worth showing: the error and where it was thrown, not Node's code frame. */
function failure(output: string, status: number | null): string {
  const lines = output.trim().split('\n');
  const err = lines.findIndex((l) => /^(Uncaught )?([A-Z]\w*)?(Error|Exception)\b/.test(l));
  if (err < 0) return lines.slice(0, 6).join('\n  ') || `exit code ${status}`;
  const frames = lines.slice(err + 1).filter((l) => /^\s+at /.test(l));
  const user = frames.filter((l) => !/node_modules|\(node:|\.app\.js|\.bundle\.cjs|[\\/]runtime[\\/]/.test(l));
  return [lines[err]!, ...(user.length ? user : frames).slice(0, 3).map((l) => l.trim())].join('\n  ');
}

export function describeScript(
  node: string,
  bundleFile: string,
  script: string,
  known?: { exports: ScriptExports; log: (line: string) => void },
): ScriptDescription {
  const r = spawnSync(node, [bundleFile], {
    cwd: path.dirname(bundleFile),
    env: { ...process.env, ISAPI_DESCRIBE: '1' },
    encoding: 'utf8',
    timeout: 60_000,
  });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  if (r.status === 0 && line.startsWith('{')) return JSON.parse(line) as ScriptDescription;
  const why = r.error ? r.error.message : failure(r.stderr || r.stdout || '', r.status);
  if (known && !known.exports.filter) {
    known.log(
      `warning: ${script} failed when its top-level code ran on this machine (without its production environment?):\n  ${why}\n` +
        `  packed anyway: it exports no filter, so the pack needed nothing from running it. Its workers run it with the environment of the web server ` +
        `(on IIS: install parameters' environment, or the application pool's).`,
    );
    return { extension: known.exports.extension, filter: false, filterFlags: 0, filterFailurePolicy: 'fail-closed', filterTimeoutMs: 5000 };
  }
  throw new UserError(
    (`${script} failed while loading it to read its ${known?.exports.filter ? "filter's settings (filterFlags, filterFailurePolicy, filterTimeoutMs)" : 'entry points'}:\n  ${why}\n` +
      (known?.exports.filter
        ? `The packer runs the script's top-level code and __FilterFactory__() on this machine for them (the web server asks for the flags before any worker runs). ` +
          `Either give the pack the environment that code needs (e.g. \`NAME=value npx isapi pack ${script}\`), or move what needs it out of the top level ` +
          `(into __ExtensionFactory__(), HttpFilterProc or a handler) so that loading the script and calling __FilterFactory__() only set filterFlags.`
        : '')
    ).trimEnd(),
  );
}
