#!/usr/bin/env node
// The isapi command. The CLI is TypeScript (packer/cli.ts), bundled to build/isapi.cjs: shipped
// in the npm package (scripts/release.ts), built by `npm run build` in a source checkout.
const { existsSync } = require('node:fs');
const path = require('node:path');
const root = path.join(__dirname, '..');
const cli = path.join(root, 'build', 'isapi.cjs');
if (!existsSync(cli)) {
  const checkout = existsSync(path.join(root, 'packer', 'cli.ts'));
  console.error(
    checkout
      ? 'isapi: the CLI is not built yet: run `npm run build` (or `npm run build:cli`) in the node-isapi folder'
      : `isapi: ${cli} is missing: this node-isapi package is incomplete; reinstall it (npm install -D node-isapi)`,
  );
  process.exit(1);
}
require(cli);
