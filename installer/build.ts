// Pack-time: bundles the installer program with the user's script (for its `install` export
// and custom verbs) into one CommonJS file, carried as an asset of the worker executable and
// run when install / install.exe starts it (packer/sea_main.ts). The entry only imports the
// script; it never calls __ExtensionFactory__ or __FilterFactory__.
import { build, type BuildFailure } from 'esbuild';
import path from 'node:path';
import { packageRoot } from '../packer/paths';
import { UserError } from '../packer/user_error';

export async function bundleInstaller(script: string, name: string, outFile: string): Promise<{ bytes: number }> {
  const entry = [
    `import * as user from ${JSON.stringify(path.resolve(script))};`,
    `import { installerMain } from ${JSON.stringify(path.join(packageRoot, 'installer', 'main.ts'))};`,
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
      metafile: true,
      legalComments: 'none',
    });
    return { bytes: Object.values(result.metafile!.outputs)[0]!.bytes };
  } catch (err) {
    const e = (err as BuildFailure)?.errors?.[0];
    const where = e?.location ? `${e.location.file}:${e.location.line}:${e.location.column + 1}` : script;
    throw new UserError(`bundling the installer: ${where}: ${e?.text ?? (err as Error).message}`);
  }
}
