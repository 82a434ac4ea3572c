import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Tests and examples import the package by name: the sources, not the release build in lib/
// (package.json "exports"), which exists only after `npm pack`.
const source = (file: string) => fileURLToPath(new URL(file, import.meta.url));

export default defineConfig({
  resolve: {
    alias: [
      { find: /^node-isapi$/, replacement: source('./runtime/index.ts') },
      { find: /^node-isapi\/testing$/, replacement: source('./runtime/testing.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Suites start web servers and worker processes: run files one at a time on small machines.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
