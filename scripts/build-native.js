#!/usr/bin/env node
// Builds the native parts (bridge + isapi-host) with cmake-js, fully offline: Node-API headers
// come from the node-api-headers and node-addon-api packages, never from a download.
// Linux build always; the Windows builds (x64, and ia32 for 32-bit IIS pools) when mingw-w64 is
// installed.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const napiInclude = require('node-api-headers').include_dir;
const addonApiInclude = path.dirname(require.resolve('node-addon-api/napi.h'));
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');

// A build takes minutes from clean (measured: 154 s for both targets on 2 cores): show how far
// it got, from the build tool's own "[ 45%]" (make) or "[12/40]" (ninja) counters. On a terminal
// one line is rewritten; in a log (CI), a line per 10 % and at least one every 15 s.
function run(target, extra) {
  const out = path.join(root, 'build', 'native', target);
  const args = [cmakeJs, 'compile', '-O', out,
    `--CDNAPI_INCLUDE_DIR=${napiInclude}`, `--CDNODE_ADDON_API_DIR=${addonApiInclude}`, ...extra];
  const started = Date.now();
  const tty = process.stdout.isTTY;
  const label = `native: building ${target}`;
  process.stdout.write(`${label} … ${tty ? '' : '\n'}`);
  let percent = -1;
  let lastLine = Date.now();
  let output = '';
  const show = (force) => {
    const secs = ((Date.now() - started) / 1000).toFixed(0);
    const what = percent >= 0 ? `${percent}%` : 'configuring';
    if (tty) process.stdout.write(`\r${label} … ${what} (${secs} s)   `);
    else if (force) {
      process.stdout.write(`${label}: ${what} (${secs} s)\n`);
      lastLine = Date.now();
    }
  };
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    const ticker = setInterval(() => show(Date.now() - lastLine >= 15000), 1000);
    const take = (d) => {
      const text = d.toString();
      output += text;
      for (const m of text.matchAll(/^\[\s*(\d+)%\]|^\[(\d+)\/(\d+)\]/gm)) {
        const p = m[1] !== undefined ? Number(m[1]) : Math.floor((100 * Number(m[2])) / Number(m[3]));
        if (p <= percent) continue;
        const step = Math.floor(p / 10) !== Math.floor(percent / 10);
        percent = p;
        show(step);
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('close', (code) => {
      clearInterval(ticker);
      if (code !== 0) {
        process.stdout.write(`${tty ? '\r' : ''}${label} … failed\n`);
        process.stderr.write(output);
        process.exit(1);
      }
      process.stdout.write(`${tty ? `\r${label} … ` : `${label}: `}done in ${((Date.now() - started) / 1000).toFixed(1)} s → ${path.relative(root, out)}/out\n`);
      resolve();
    });
  });
}

// ISAPI_SANITIZE=address|thread: a sanitizer build of the Linux host and bridge, beside the
// normal one (build/native/linux-x64-<kind>); packer/paths.ts and the tests pick it up.
const sanitize = process.env.ISAPI_SANITIZE ?? '';
if (sanitize) {
  if (!['address', 'thread'].includes(sanitize)) {
    console.error(`native: ISAPI_SANITIZE must be address or thread, not '${sanitize}'`);
    process.exit(1);
  }
  await run(`linux-x64-${sanitize}`, [`--CDISAPI_SANITIZE=${sanitize}`, '--CDCMAKE_BUILD_TYPE=RelWithDebInfo']);
  process.exit(0);
}

await run(process.platform === 'win32' ? 'win-x64' : 'linux-x64', []);

if (process.platform === 'linux') {
  const hasMingw = spawnSync('x86_64-w64-mingw32-g++-posix', ['--version']).status === 0;
  const toolchain = path.join(root, 'native', 'toolchains', 'mingw-w64-x86_64.cmake');
  if (hasMingw && existsSync(toolchain)) {
    await run('win-x64', [`--CDCMAKE_TOOLCHAIN_FILE=${toolchain}`]);
  } else if (!hasMingw) {
    console.log('native: skipping win-x64 (mingw-w64 not installed; `apt-get install -y mingw-w64` to build Windows artifacts)');
  }
  // 32-bit IIS application pools (--target win-ia32): the 32-bit bridge and host, from the
  // i686 half of the same mingw-w64 package. Their workers stay x64 (the win-x64 build).
  const ia32 = path.join(root, 'native', 'toolchains', 'mingw-w64-i686.cmake');
  if (spawnSync('i686-w64-mingw32-g++-posix', ['--version']).status === 0) await run('win-ia32', [`--CDCMAKE_TOOLCHAIN_FILE=${ia32}`]);
  else if (hasMingw) console.log('native: skipping win-ia32 (the i686 mingw-w64 compilers are missing; `apt-get install -y mingw-w64`)');
}

