// The run-time side of native addons, bundled into the worker as the module 'isapi-native-loader'
// (packer/native_addons.ts): an addon carried as a SEA asset is written once into a private cache
// folder and loaded from there with process.dlopen (a .node file must be a file on disk to be
// loaded). The file is named by its hash and checked before use; the folder must belong to this
// user and be closed to others (POSIX), so no other account can plant a library there.
export const ADDON_LOADER_MODULE = String.raw`'use strict';
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const crypto = require('node:crypto');
const loaded = new Map();

function candidates() {
  const out = [];
  if (process.env.ISAPI_ADDON_CACHE) out.push(process.env.ISAPI_ADDON_CACHE);
  if (process.platform === 'win32') {
    if (process.env.LOCALAPPDATA) out.push(path.join(process.env.LOCALAPPDATA, 'node-isapi', 'addons'));
  } else {
    const home = (() => { try { return os.homedir(); } catch { return ''; } })();
    out.push(process.env.XDG_CACHE_HOME ? path.join(process.env.XDG_CACHE_HOME, 'node-isapi', 'addons') : home ? path.join(home, '.cache', 'node-isapi', 'addons') : '');
  }
  const user = (() => { try { return os.userInfo().username; } catch { return String(process.getuid ? process.getuid() : 'user'); } })();
  out.push(path.join(os.tmpdir(), 'node-isapi-' + user.replace(/[^A-Za-z0-9._-]/g, '_'), 'addons'));
  return out.filter(Boolean);
}

function privateDir(dir) {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (process.platform !== 'win32') {
    const st = fs.statSync(dir);
    if (st.uid !== process.getuid() || (st.mode & 0o022) !== 0) throw new Error(dir + ' is not private to this user');
  }
  return dir;
}

function sha256(file) {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

module.exports = function loadAddon(a) {
  const done = loaded.get(a.asset);
  if (done) return done.exports;
  let sea = null;
  try { sea = require('node:sea'); } catch {}
  if (!sea || !sea.isSea()) {
    // The bundle run by plain node on the build machine (pack time, isapi dev): the addon is
    // still where it was packed from; for another target, this platform's build of it if the
    // package has one.
    const local = a.local[process.platform];
    if (!local) throw new Error('node-isapi: ' + a.asset + ' is packed for another platform; no ' + process.platform + ' build of it was found to load here at pack time');
    const mod = { exports: {} };
    process.dlopen(mod, local);
    loaded.set(a.asset, mod);
    return mod.exports;
  }
  const errors = [];
  for (const base of candidates()) {
    try {
      const dir = privateDir(path.join(base, a.sha256.slice(0, 16)));
      const file = path.join(dir, path.basename(a.asset));
      if (!fs.existsSync(file) || fs.statSync(file).size !== a.size || sha256(file) !== a.sha256) {
        const tmp = file + '.' + process.pid + '.tmp';
        fs.writeFileSync(tmp, new Uint8Array(sea.getAsset(a.asset)), { mode: 0o700 });
        fs.renameSync(tmp, file);
      }
      const mod = { exports: {} };
      process.dlopen(mod, file);
      loaded.set(a.asset, mod);
      return mod.exports;
    } catch (err) {
      errors.push(base + ': ' + (err && err.message));
    }
  }
  throw new Error('node-isapi: could not load the native addon ' + a.asset + ' (set ISAPI_ADDON_CACHE to a writable folder private to this user): ' + errors.join('; '));
};
`;
