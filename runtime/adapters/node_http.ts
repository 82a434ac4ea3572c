// Runs an ordinary Node `(req, res)` app (Express, Koa's app.callback(), Fastify, a plain
// http.createServer handler) as an ISAPI extension, unchanged:
//
//   import express from 'express';
//   import { httpExtension } from 'node-isapi';
//   const app = express();
//   app.get('/', (req, res) => res.send('hi'));
//   export const __ExtensionFactory__ = httpExtension(app);
//
// How: `req` and `res` are Node's own http.IncomingMessage and http.ServerResponse, attached to
// an IsapiSocket (a Duplex standing in for the TCP socket). Frameworks reach deep into these
// classes (header bookkeeping, writeHead/setHeader rules, chunked framing, HEAD and 204/304
// handling, 'finish'/'close' order, prototype swaps in Express): reusing the real classes keeps
// every one of those behaviours exactly Node's, where a look-alike subclass or a re-implementation
// would drift with each Node release. The price is that ServerResponse serializes a raw HTTP/1.1
// response to its socket; IsapiSocket parses the one part that ISAPI wants separately — the
// status line and header block, which Node has already validated (no CR/LF inside values, so
// the first blank line ends it) — and hands it to SendResponseHeaders; every later byte goes to
// WriteClient as it is, including the chunked framing Node chose (ISAPI servers never frame an
// extension's output themselves and pass `Transfer-Encoding: chunked` through). Each write's
// callback waits for WriteClient, so `res.write()` returns false and 'drain' comes back exactly
// when the channel is full: streaming responses keep flat memory. The request body is a
// Readable fed by ReadClient on demand (nothing is read before the app asks for it).

// A namespace import: its declaration then needs no esModuleInterop in users' projects.
import * as http from 'node:http';
import { Duplex } from 'node:stream';
import { HSE_STATUS_ERROR, HSE_STATUS_SUCCESS } from '../constants';
import type { ECB } from '../ecb';
import type { Extension, ExtensionVersionInfo } from '../extension';
import { requestFacts, requestTarget, TransferMeter, type AdapterOptions, type RequestFacts, type RequestTarget } from './common';

export type NodeRequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => unknown;

/** Anything `httpExtension` can run. */
export type NodeApp =
  /** a `(req, res)` handler: an Express app, `koaApp.callback()`, a plain function */
  | NodeRequestHandler
  /** an http.Server that was never started: its 'request' listeners handle each request */
  | http.Server
  /** a Koa app */
  | { callback(): NodeRequestHandler }
  /** a Fastify instance (anything with ready() and an http.Server in .server) */
  | { ready(): PromiseLike<unknown>; server: http.Server; close?(): unknown };

export interface HttpExtensionOptions extends AdapterOptions {
  /** lpszExtensionDesc; defaults to the app's kind. */
  description?: string;
}

const requestInfo = new WeakMap<http.IncomingMessage, { ecb: ECB; target: RequestTarget }>();

/**
 * The ISAPI request behind a `req`: its ECB (for server variables, LogData…), the virtual
 * directory the app is mounted at, and the full URL.
 */
export function isapiRequest(req: http.IncomingMessage): { ecb: ECB; scriptName: string; fullUrl: string } | undefined {
  const info = requestInfo.get(req);
  return info && { ecb: info.ecb, scriptName: info.target.scriptName, fullUrl: info.target.fullUrl };
}

function isServer(app: unknown): app is http.Server {
  return app instanceof http.Server || (typeof (app as http.Server)?.listeners === 'function' && typeof (app as http.Server)?.listen === 'function' && !('callback' in (app as object)));
}

async function resolveHandler(app: NodeApp): Promise<{ handler: NodeRequestHandler; kind: string; close?: () => unknown }> {
  const a = app as any;
  if (typeof a === 'function') return { handler: a, kind: typeof a.handle === 'function' && typeof a.use === 'function' ? 'express app' : 'http handler' };
  if (a && typeof a.ready === 'function' && a.server) {
    // Fastify: ready() loads plugins and routes without listening; the server's 'request'
    // listener is Fastify's router.
    await a.ready();
    return { handler: serverHandler(a.server), kind: 'fastify app', close: () => a.close?.() };
  }
  if (a && typeof a.callback === 'function') return { handler: a.callback(), kind: 'koa app' };
  if (isServer(a)) return { handler: serverHandler(a), kind: 'http server' };
  throw new TypeError('httpExtension() wants a (req, res) function, an http.Server, a Koa app or a Fastify instance');
}

function serverHandler(server: http.Server): NodeRequestHandler {
  return (req, res) => {
    if (server.listenerCount('request') === 0) throw new Error('the http.Server has no request listener');
    server.emit('request', req, res);
  };
}

/**
 * Makes an extension factory from a Node `http` app; export it as `__ExtensionFactory__`.
 * `app` may be a function, a Koa app, a Fastify instance, an http.Server, or a function
 * returning (a promise of) one of these.
 */
export function httpExtension(app: NodeApp | (() => NodeApp | Promise<NodeApp>), options: HttpExtensionOptions = {}): () => Extension {
  return () => new NodeHttpExtension(app, options);
}

class NodeHttpExtension implements Extension {
  private handler: NodeRequestHandler | null = null;
  private close?: () => unknown;

  constructor(
    private readonly app: NodeApp | (() => NodeApp | Promise<NodeApp>),
    private readonly options: HttpExtensionOptions,
  ) {}

  async GetExtensionVersion(vi: ExtensionVersionInfo): Promise<void> {
    let app: NodeApp = this.app as NodeApp;
    // A zero-argument function that is not an Express-style handler is a factory.
    const a = this.app as any;
    if (typeof a === 'function' && a.length === 0 && typeof a.handle !== 'function') app = await a();
    const r = await resolveHandler(app);
    this.handler = r.handler;
    this.close = r.close;
    vi.ExtensionDesc = this.options.description ?? `${vi.ExtensionDesc} (${r.kind})`;
  }

  HttpExtensionProc(ecb: ECB): Promise<number> {
    if (!this.handler) throw new Error('httpExtension: GetExtensionVersion was not called');
    return serveNodeRequest(ecb, this.handler, this.options);
  }

  async TerminateExtension(): Promise<void> {
    await this.close?.();
  }
}

/** Stands in for the TCP socket under one request's IncomingMessage and ServerResponse. */
export class IsapiSocket extends Duplex {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly remoteFamily: string;
  readonly localAddress: string | undefined = undefined;
  readonly localPort: number;
  /** Set (true) only for HTTPS, like a TLSSocket; frameworks read it for req.protocol. */
  readonly encrypted?: boolean;
  readonly connecting = false;
  /** The bytes of a status line and header block not complete yet; null once they were sent. */
  private head: Buffer | null = Buffer.alloc(0);
  private readonly meter = new TransferMeter();

  constructor(
    private readonly ecb: ECB,
    facts: RequestFacts,
  ) {
    super({ allowHalfOpen: true, decodeStrings: true, emitClose: true });
    this.remoteAddress = facts.remoteAddress;
    this.remotePort = facts.remotePort;
    this.remoteFamily = facts.remoteAddress.includes(':') ? 'IPv6' : 'IPv4';
    this.localPort = facts.serverPort;
    if (facts.https) this.encrypted = true;
    // Errors surface on the request and response; an unlistened socket error must not crash.
    this.on('error', () => {});
  }

  // The request body comes through IncomingMessage._read (see below): nothing arrives here.
  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.forward(chunk).then(() => cb(), cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    // Node corks a chunked write into size line, data and CRLF: pass them on one by one rather
    // than copying them together (a copy per write is garbage that streams up memory).
    if (this.head !== null) {
      this.forward(Buffer.concat(chunks.map((c) => c.chunk))).then(() => cb(), cb);
      return;
    }
    Promise.all(chunks.filter((c) => c.chunk.length).map((c) => this.send(c.chunk))).then(() => cb(), cb);
  }

  /** Body bytes: WriteClient queues them synchronously, so calls in a row keep their order. */
  private send(data: Buffer): Promise<number> {
    this.meter.add(data.length);
    return this.ecb.WriteClient(data);
  }

  override _final(cb: (err?: Error | null) => void): void {
    cb();
  }

  private async forward(data: Buffer): Promise<void> {
    while (this.head !== null) {
      const buf = this.head.length ? Buffer.concat([this.head, data]) : data;
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        this.head = buf;
        return;
      }
      data = buf.subarray(end + 4);
      const block = buf.subarray(0, end + 4).toString('latin1');
      const lineEnd = block.indexOf('\r\n');
      const status = block.slice(0, lineEnd).replace(/^HTTP\/\d\.\d /, '');
      const code = parseInt(status, 10);
      if (code >= 100 && code < 200 && code !== 101) {
        // 100 Continue (res.writeContinue) was already sent by the web server when the client
        // asked for it; other interim responses (103 Early Hints) cannot pass through ISAPI.
        this.head = Buffer.alloc(0);
        continue;
      }
      this.head = null;
      const headers = block.slice(lineEnd + 2);
      const close = /^connection:[^\r]*\bclose\b/im.test(headers);
      this.ecb.SendResponseHeaders(status, headers, !close);
    }
    if (data.length) await this.send(data);
  }

  setTimeout(_ms: number, cb?: () => void): this {
    if (cb) this.once('timeout', cb);
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  address(): { address: string; family: string; port: number } {
    return { address: this.localAddress ?? '', family: this.remoteFamily, port: this.localPort };
  }
}

/** Serves one request with a `(req, res)` handler; resolves with the HSE status once it is over. */
export async function serveNodeRequest(ecb: ECB, handler: NodeRequestHandler, options: AdapterOptions = {}): Promise<number> {
  const target = await requestTarget(ecb, options);
  const facts = requestFacts(ecb);
  const socket = new IsapiSocket(ecb, facts);
  const req = new http.IncomingMessage(socket as any);
  requestInfo.set(req, { ecb, target });
  req.method = ecb.Method;
  req.url = target.url;
  req.httpVersionMajor = facts.major;
  req.httpVersionMinor = facts.minor;
  req.httpVersion = facts.httpVersion;
  const raw = ecb.headers();
  const rawHeaders: string[] = [];
  const headers: http.IncomingHttpHeaders = {};
  const distinct: Record<string, string[]> = {};
  const add = (req as any)._addHeaderLine as ((name: string, value: string, dest: object) => void) | undefined;
  for (const [name, value] of raw) {
    rawHeaders.push(name, value);
    if (add) add.call(req, name, value, headers);
    else {
      const k = name.toLowerCase();
      headers[k] = headers[k] === undefined ? value : `${headers[k]}, ${value}`;
    }
    (distinct[name.toLowerCase()] ??= []).push(value);
  }
  req.rawHeaders = rawHeaders;
  req.headers = headers;
  (req as any).headersDistinct = distinct;

  // The body: ReadClient on demand. Set on the instance, not a subclass: Express swaps the
  // prototype of req (Object.setPrototypeOf), which would drop an overridden method.
  const hasBody = ecb.TotalBytes !== 0;
  const meter = new TransferMeter();
  let reading = false;
  req._read = function read() {
    // As IncomingMessage's own _read does: the stream may now ask for more by itself.
    const self = this as any;
    if (!self._consuming) {
      self._readableState.readingMore = false;
      self._consuming = true;
    }
    if (reading || this.destroyed) return;
    if (!hasBody || (this as any)._dumped || ecb.isDone) {
      this.complete = true;
      this.push(null);
      return;
    }
    reading = true;
    ecb.ReadClient(64 * 1024).then(
      (chunk) => {
        reading = false;
        if (this.destroyed || this.readableEnded) return;
        if (chunk.length === 0) {
          // An aborted request never ends normally: its body fails instead (see onAbort below).
          if (ecb.aborted) return;
          this.complete = true;
          this.push(null);
        } else {
          meter.add(chunk.length);
          this.push(chunk);
        }
      },
      (err: Error) => {
        reading = false;
        this.destroy(err);
      },
    );
  };
  if (!hasBody) {
    req.complete = true;
    req.push(null);
  }

  const res = new http.ServerResponse(req);
  // What Node's server does after parsing a request: keep-alive from the request, HEAD has no body.
  res.shouldKeepAlive = ecb.IsKeepAlive();
  res.assignSocket(socket as any);
  // Node's server forwards the socket's 'drain' to the response (it owns the flag that says
  // whether one is awaited; an extra 'drain' is harmless to writers and pipes).
  socket.on('drain', () => {
    if (!res.writableFinished) res.emit('drain');
  });

  return new Promise<number>((resolve, reject) => {
    let settled = false;
    const settle = (status: number) => {
      if (settled) return;
      settled = true;
      offAbort();
      resolve(status);
    };
    const offAbort = ecb.onAbort(() => {
      // The web server dropped the request (client gone, deadline passed): what Node does
      // when the connection closes — 'aborted' on an unfinished request, then 'close' on both.
      // IncomingMessage's own destroy() emits 'aborted', then 'error' (ECONNRESET) to a listener.
      if (!req.complete && !req.destroyed) req.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
      socket.destroy();
      settle(HSE_STATUS_ERROR);
    });
    res.on('finish', () => {
      // Everything was handed to WriteClient. An unread request body is dropped, as Node's
      // server drops it (the web server drains it off the connection).
      if (!req.readableEnded && !req.destroyed) {
        (req as any)._dumped = true;
        req.removeAllListeners('data');
        if (!reading) {
          req.complete = true;
          req.push(null);
        }
        req.resume();
      }
      socket.destroy();
      settle(HSE_STATUS_SUCCESS);
    });
    socket.on('close', () => {
      // res.destroy() or an abort before the response finished: the framing is lost, so the
      // connection must be cut (HSE_STATUS_ERROR).
      if (!res.writableFinished) settle(HSE_STATUS_ERROR);
      if (req.readableEnded && !req.destroyed) req.destroy();
    });
    req.on('end', () => {
      if (res.writableFinished) req.destroy();
    });

    const fail = (err: unknown) => {
      if (settled) {
        process.stderr.write(`${ecb.Method} ${ecb.PathInfo}: the handler failed after its response: ${(err as Error)?.stack ?? err}\n`);
        return;
      }
      settled = true;
      offAbort();
      socket.destroy();
      reject(err);
    };
    try {
      const r = handler(req, res) as any;
      if (r && typeof r.then === 'function') r.then(undefined, fail);
    } catch (err) {
      fail(err);
    }
  });
}
