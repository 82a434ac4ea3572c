#!/usr/bin/env node
// The isapi command. The CLI is TypeScript (packer/cli.ts), bundled to build/isapi.cjs: shipped
// in the npm package (scripts/release.ts), built by `npm run build` in a source checkout.
const { existsSync } = require('node:fs');
const path = require('node:path');
const root = path.join(__dirname, '..');
// package.json "engines" only warns at install time; an older Node would fail later, obscurely.
const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 3)) {
  console.error(`isapi: node-isapi needs Node 20.3 or later; this is Node ${process.versions.node}`);
  process.exit(1);
}
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
