#!/usr/bin/env node
// npm's `prepare`. In a source checkout (contributors' `npm install`, git installs) it builds from
// source: the native parts need cmake and a compiler. In an installed package it does nothing:
// npm 11 runs `prepare` for tarball installs once their scripts are allowed, and those get the
// prebuilt binaries. `npm pack`/`npm publish` run it after `prepack` (scripts/release.ts), which
// has already built everything: nothing to do then either.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const command = process.env.npm_command ?? '';
if (!existsSync(path.join(root, 'native', 'bridge')) || command === 'pack' || command === 'publish') process.exit(0);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const r = spawnSync(npm, ['run', 'build'], { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
process.exit(r.status ?? 1);
