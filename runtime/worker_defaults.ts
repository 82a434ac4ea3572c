// Production defaults of a worker, set before the user's module runs: the worker's entry
// (packer/bundle.ts) imports this module right after the source-map hook, so the app's top-level
// code (express(), a framework reading NODE_ENV once) already sees them. The installer's entry
// (installer/build.ts) imports it too, since it runs the same top-level code at install time.
// node-isapi/testing and the user's own tests do not import this file.
//
// - NODE_ENV is 'production' unless the environment sets it: a framework's 500 page then shows
//   no stack with build-machine paths, and libraries pick their production paths, as under a
//   process manager. (`isapi dev` sets 'development'.)
// - listen() opens no port: under IIS the web server owns the port and requests arrive through
//   the bridge, so an unchanged app's `app.listen(3917)` would otherwise make every worker listen
//   on all interfaces. It is logged once, with what was asked; the callback and 'listening'
//   listeners still run, so start-up code that waits for them carries on.
//   ISAPI_ALLOW_LISTEN=1 keeps Node's listen() (a metrics port of one's own, say).
import net from 'node:net';

if (process.env.NODE_ENV === undefined) process.env.NODE_ENV = 'production';

/** What a listen() call asked for, in its own terms: `listen(3917)`, `listen({"port":80,"host":"::"})`. */
function asked(args: unknown[]): string {
  const shown = args.filter((a) => typeof a !== 'function').map((a) => (typeof a === 'object' && a !== null ? JSON.stringify(a, (_k, v) => (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) !== Object.prototype ? '[object]' : v)) : JSON.stringify(a)));
  return `listen(${shown.join(', ')})`;
}

if (process.env.ISAPI_ALLOW_LISTEN !== '1') {
  let logged = false;
  net.Server.prototype.listen = function listen(this: net.Server, ...args: unknown[]): net.Server {
    if (!logged) {
      logged = true;
      process.stderr.write(
        `node-isapi: ${asked(args)} ignored: the web server owns the port and requests arrive through the bridge, so a packed app opens no port of its own (ISAPI_ALLOW_LISTEN=1 keeps listen())\n`,
      );
    }
    const callback = args.find((a): a is () => void => typeof a === 'function');
    if (callback) this.once('listening', callback);
    process.nextTick(() => this.emit('listening'));
    return this;
  } as typeof net.Server.prototype.listen;
}
