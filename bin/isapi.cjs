#!/usr/bin/env node
// The isapi command. The CLI is TypeScript (packer/cli.ts), bundled to build/isapi.cjs by
// `npm run build` (run automatically by npm install).
const { existsSync } = require('node:fs');
const path = require('node:path');
const cli = path.join(__dirname, '..', 'build', 'isapi.cjs');
if (!existsSync(cli)) {
  console.error('isapi: the CLI is not built yet: run `npm run build` in the node-isapi folder');
  process.exit(1);
}
require(cli);
