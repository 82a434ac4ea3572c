// The worker executable's SEA main script. One executable carries two programs, kept as SEA
// assets: the worker (the loader bundle.ts writes, which runs the app) and the installer
// (installer/build.ts). This script picks one and compiles it as a CommonJS module.
//
// The installer runs only when the first argument is INSTALLER_FLAG, which install /
// install.exe (native/launcher) always passes. The bridge starts workers with no argument at
// all (native/bridge/platform/process_posix.cc: argv is the path alone; process_win.cc: the
// command line is the quoted path alone), so no worker it spawns can become an installer,
// whatever the web server's environment holds.

/** Must match kInstallerFlag in native/launcher/launcher.h. */
export const INSTALLER_FLAG = '--isapi-installer';
/** The worker's loader (bundle.ts loaderSource), as an asset. */
export const WORKER_ASSET = 'worker-main.cjs';
/** The installer bundle, as an asset. */
export const INSTALLER_ASSET = 'installer.cjs';

export function seaMainSource(): string {
  return `'use strict';
// node-isapi: the worker, or with ${INSTALLER_FLAG} first (from install / install.exe) the
// installer. process.argv[1] is how the executable was named; the flag is argv[2].
const path = require('node:path');
const Module = require('node:module');
const sea = require('node:sea');
const installer = process.argv[2] === ${JSON.stringify(INSTALLER_FLAG)};
if (installer) process.argv.splice(2, 1);
const asset = installer ? ${JSON.stringify(INSTALLER_ASSET)} : ${JSON.stringify(WORKER_ASSET)};
const filename = path.join(path.dirname(process.execPath), asset);
const program = new Module(filename, null);
program.filename = filename;
program.paths = [];
program._compile(sea.getAsset(asset, 'utf8'), filename);
`;
}
