// What the bench's servers run, built into build/bench once per run: the C extensions and filter
// (gcc), the packed TypeScript applications (isapi pack), and the Express example bundled for
// plain Node http (esbuild, as the packer bundles it).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

export interface Prepared {
  /** native/host/test/hello_ext.c: the C hello extension of (a) and of the filter rows. */
  cExt: string;
  /** native/host/test/preproc_bench_filter.c: the C PREPROC_HEADERS filter of (f). */
  cFilter: string;
  /** native/host/test/ecb_basics_ext.c: shows a server variable, to check that a filter ran. */
  probeExt: string;
  /** The packed extensions' DLLs (their workers beside them): hello, express-app, preproc-filter. */
  helloDll: string;
  expressDll: string;
  tsFilterDll: string;
  /** The Express example on plain Node http, one CommonJS file; prints `express listening on <port>`. */
  expressPlain: string;
}

function gcc(root: string, source: string, out: string, extra: string[] = []): string {
  execFileSync('gcc', ['-O2', '-shared', '-fPIC', ...extra, '-I', path.join(root, 'native', 'include'), '-o', out, path.join(root, 'native', 'host', 'test', source)]);
  return out;
}

function pack(root: string, script: string, out: string): string {
  execFileSync(process.execPath, [path.join(root, 'bin', 'isapi.cjs'), 'pack', script, '--out', out], { cwd: root, stdio: 'inherit' });
  const name = path.basename(script, '.ts');
  return path.join(out, name, `_${name}.so`);
}

export async function prepare(root: string, out: string): Promise<Prepared> {
  mkdirSync(out, { recursive: true });
  const expressPlain = path.join(out, 'express-plain.cjs');
  await build({
    stdin: {
      contents: `import http from 'node:http';
        import { app } from ${JSON.stringify(path.join(root, 'examples', 'express-app.ts'))};
        const s = http.createServer(app);
        s.keepAliveTimeout = 120000;
        s.listen(0, '127.0.0.1', () => console.log('express listening on ' + s.address().port));`,
      resolveDir: root,
      loader: 'ts',
    },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile: expressPlain,
    alias: { 'node-isapi': path.join(root, 'runtime', 'index.ts') },
    logLevel: 'warning',
  });
  return {
    cExt: gcc(root, 'hello_ext.c', path.join(out, 'hello_ext.so')),
    cFilter: gcc(root, 'preproc_bench_filter.c', path.join(out, 'preproc_bench_filter.so')),
    probeExt: gcc(root, 'ecb_basics_ext.c', path.join(out, 'ecb_basics_ext.so'), ['-pthread']),
    helloDll: pack(root, 'examples/hello.ts', out),
    expressDll: pack(root, 'examples/express-app.ts', out),
    tsFilterDll: pack(root, 'bench/fixtures/preproc-filter.ts', out),
    expressPlain,
  };
}
