// Pack-time: bundles the installer program with the user's script (for its `install` export
// and custom verbs) into one CommonJS file for the installer's SEA. The entry only loads the
// script (after the workers' production defaults); it never calls __ExtensionFactory__ or
// __FilterFactory__.
import { build, type BuildFailure } from 'esbuild';
import path from 'node:path';
import { importMetaOptions } from '../packer/bundle';
import { NativeAddons } from '../packer/native_addons';
import { hostTarget, packageRoot, type Target } from '../packer/paths';
import { UserError } from '../packer/user_error';

/**
 * The script's native addons are packed into the installer as into the worker (its top-level
 * imports run at install time): pass `assets` to the installer's SEA.
 */
export async function bundleInstaller(
  script: string,
  name: string,
  outFile: string,
  options: { target?: Target; nodeVersion?: string; log?: (line: string) => void } = {},
): Promise<{ bytes: number; assets: Record<string, string> }> {
  const addons = new NativeAddons(options.target ?? hostTarget(), options.nodeVersion ?? process.versions.node, options.log ?? (() => {}));
  // The script is required, not imported, so that a top-level failure (a production variable
  // missing in the administrator's shell) is reported as the installer's refusal, not a crash.
  const before = "the script's top-level code failed: ";
  const after =
    ". The installer runs it to read the script's install export and verbs: set what it needs in this shell too, " +
    'or move that code out of the top level (into __ExtensionFactory__() or a handler)';
  const entry = [
    `import ${JSON.stringify(path.join(packageRoot, 'runtime', 'worker_defaults.ts'))};`,
    `import { installerMain } from ${JSON.stringify(path.join(packageRoot, 'installer', 'main.ts'))};`,
    `let user;`,
    `try { user = require(${JSON.stringify(path.resolve(script))}); } catch (err) {`,
    `  const message = ${JSON.stringify(before)} + ((err && err.message) || err) + ${JSON.stringify(after)};`,
    `  if (process.argv.includes('--json')) process.stdout.write(JSON.stringify({ error: message, exitCode: 1 }, null, 2) + '\\n');`,
    `  process.stderr.write('install: ' + message + '\\n');`,
    `  process.exit(1);`,
    `}`,
    `installerMain(user);`,
  ].join('\n');
  try {
    const result = await build({
      stdin: { contents: entry, resolveDir: path.dirname(path.resolve(script)), sourcefile: `${name}-installer-entry.js`, loader: 'js' },
      bundle: true,
      outfile: outFile,
      format: 'cjs',
      platform: 'node',
      target: 'node20',
      alias: { 'node-isapi': path.join(packageRoot, 'runtime', 'index.ts') },
      logLevel: 'silent',
      plugins: [addons.plugin()],
      // The script's top-level code runs at install time too: import.meta as in the worker.
      ...importMetaOptions(script),
      metafile: true,
      legalComments: 'none',
    });
    return { bytes: Object.values(result.metafile!.outputs)[0]!.bytes, assets: addons.assets };
  } catch (err) {
    const e = (err as BuildFailure)?.errors?.[0];
    const where = e?.location ? `${e.location.file}:${e.location.line}:${e.location.column + 1}` : script;
    throw new UserError(`bundling the installer: ${where}: ${e?.text ?? (err as Error).message}`);
  }
}
