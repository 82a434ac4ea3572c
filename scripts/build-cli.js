#!/usr/bin/env node
// Bundles the `isapi` command (packer/cli.ts and everything it imports) into build/isapi.cjs,
// which bin/isapi.cjs loads. esbuild (native binary per platform) and postject stay outside the
// bundle: they are the package's dependencies, installed beside it.
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export async function buildCli() {
  await build({
    entryPoints: [path.join(root, 'packer', 'cli.ts')],
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outfile: path.join(root, 'build', 'isapi.cjs'),
    external: ['esbuild', 'postject'],
    logLevel: 'warning',
    // packer/paths.ts reads import.meta.url only when __dirname is missing (ESM under tsx).
    logOverride: { 'empty-import-meta': 'silent' },
  });
  return path.join(root, 'build', 'isapi.cjs');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await buildCli();
