// Step 1 of a pack: esbuild bundles the user's script, its dependencies and our runtime into
// one CommonJS file for the SEA (a SEA's main script can only require built-in modules).
import { build, type BuildFailure, type Message } from 'esbuild';
import path from 'node:path';
import { packageRoot } from './paths';
import { UserError } from './user_error';

export interface ScriptExports {
  extension: boolean;
  filter: boolean;
  names: string[];
}

function firstError(err: unknown, script: string): UserError {
  const errors: Message[] = (err as BuildFailure)?.errors ?? [];
  const e = errors[0];
  if (!e) return new UserError(`${script}: ${(err as Error)?.message ?? err}`);
  const where = e.location ? `${e.location.file}:${e.location.line}:${e.location.column + 1}` : script;
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more error${errors.length > 2 ? 's' : ''})` : '';
  return new UserError(`${where}: ${e.text}${more}`);
}

const runtimeAlias = { 'node-isapi': path.join(packageRoot, 'runtime', 'index.ts') };

/** What the script exports, read from esbuild's metafile without running it. */
export async function scriptExports(script: string): Promise<ScriptExports> {
  try {
    const result = await build({
      entryPoints: [script],
      bundle: true,
      write: false,
      metafile: true,
      format: 'esm',
      platform: 'node',
      logLevel: 'silent',
      alias: runtimeAlias,
      outdir: 'out',
      packages: 'external',
    });
    const out = Object.values(result.metafile!.outputs)[0]!;
    const names = out.exports ?? [];
    return {
      names,
      extension: names.includes('__ExtensionFactory__'),
      filter: names.includes('__FilterFactory__'),
    };
  } catch (err) {
    throw firstError(err, script);
  }
}

/** Bundles the worker: our runtime's main loop around the user's module. */
export async function bundleWorker(script: string, name: string, outFile: string): Promise<{ bytes: number }> {
  const entry = [
    `import * as user from ${JSON.stringify(path.resolve(script))};`,
    `import { runWorker } from ${JSON.stringify(path.join(packageRoot, 'runtime', 'worker_main.ts'))};`,
    `runWorker(user, { name: ${JSON.stringify(name)} });`,
  ].join('\n');
  try {
    const result = await build({
      stdin: { contents: entry, resolveDir: path.dirname(path.resolve(script)), sourcefile: `${name}-worker-entry.js`, loader: 'js' },
      bundle: true,
      outfile: outFile,
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      // Stack traces name the TypeScript file and line: the runtime turns source maps on first.
      sourcemap: 'inline',
      banner: { js: 'process.setSourceMapsEnabled && process.setSourceMapsEnabled(true);' },
      alias: runtimeAlias,
      logLevel: 'silent',
      metafile: true,
      legalComments: 'none',
    });
    return { bytes: Object.values(result.metafile!.outputs)[0]!.bytes };
  } catch (err) {
    throw firstError(err, script);
  }
}
