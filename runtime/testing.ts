// node-isapi/testing: run an extension or a filter in-process, with no packing and no web server.
//
// The worker's own loop (runtime/worker_main.ts startWorker) runs the script, exactly as in a
// packed worker; what it talks to is not the bridge's Node-API addon but `InProcessBridge`
// below, which plays the bridge and the web server behind it with their semantics: the first
// message carries the ECB fields, the preloaded body and the prefetched server variables; the
// rest of the body follows in pieces as the handler credits it (at most 1 MiB ahead); writes are
// acknowledged per request as the "client" reads them (pause() holds them, so WriteClient waits
// above 1 MiB unacknowledged, as it does behind a slow client); the channel's queue answers false
// above 1 MiB and sends a Drain; TransmitFile reads the real file; InternalReloadException starts
// a fresh generation and drains the old one; an abort reaches the handler as the bridge's Abort.

import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { In, type BridgeAddon, type Dispatch, type FilterNotification, type RequestBegin, type ServerSupportReply } from './channel';
import {
  ERROR_INVALID_INDEX,
  ERROR_INVALID_PARAMETER,
  ERROR_NOT_SUPPORTED,
  HSE_APPEND_LOG_PARAMETER,
  HSE_IO_SEND_HEADERS,
  HSE_REQ_ABORTIVE_CLOSE,
  HSE_REQ_CLOSE_CONNECTION,
  HSE_REQ_EXEC_URL,
  HSE_REQ_GET_EXEC_URL_STATUS,
  HSE_REQ_IS_CONNECTED,
  HSE_REQ_IS_KEEP_CONN,
  HSE_REQ_MAP_URL_TO_PATH,
  HSE_REQ_MAP_URL_TO_PATH_EX,
  HSE_REQ_REPORT_UNHEALTHY,
  HSE_REQ_SEND_CUSTOM_ERROR,
  HSE_REQ_SEND_URL,
  HSE_REQ_SEND_URL_REDIRECT_RESP,
  HSE_REQ_SET_FLUSH_FLAG,
  HSE_REQ_TRANSMIT_FILE,
  HSE_STATUS_ERROR,
  HSE_URL_FLAGS_READ,
  HSE_URL_FLAGS_SCRIPT,
  SF_NOTIFY_ACCESS_DENIED,
  SF_NOTIFY_AUTH_COMPLETE,
  SF_NOTIFY_AUTHENTICATION,
  SF_NOTIFY_END_OF_NET_SESSION,
  SF_NOTIFY_END_OF_REQUEST,
  SF_NOTIFY_LOG,
  SF_NOTIFY_PREPROC_HEADERS,
  SF_NOTIFY_READ_RAW_DATA,
  SF_NOTIFY_SEND_RAW_DATA,
  SF_NOTIFY_SEND_RESPONSE,
  SF_NOTIFY_URL_MAP,
  SF_STATUS_REQ_ERROR,
  SF_STATUS_REQ_FINISHED,
  SF_STATUS_REQ_FINISHED_KEEP_CONN,
} from './constants';
import type { Extension, UserModule } from './extension';
import type { Filter } from './filter';
import { startWorker } from './worker_main';
import { PREFETCHED_VARIABLES } from './server_variables';

// The bridge's figures (native/worker_addon/worker_channel.cc, request_io.cc, runtime/ecb.ts).
const CHANNEL_HIGH_WATER = 1 << 20;
const CHANNEL_LOW_WATER = 256 << 10;
const BODY_AHEAD = 1 << 20;
/** IIS reads this much of a body before calling the extension (uploadReadAheadSize). */
const DEFAULT_PRELOAD = 48 * 1024;
const BODY_PIECE = 64 * 1024;
const CHUNKED = 0xffffffff;

type Factory<T> = () => T | Promise<T>;
type Body = string | Uint8Array | Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>;
export type TestHeaders = Record<string, string | number | readonly string[]>;

export interface TestExtensionOptions {
  /** The script's name, as the worker's messages show it (default "test"). */
  name?: string;
  /** The virtual directory the extension is mapped at: SCRIPT_NAME (default "/"). */
  vdir?: string;
  /** The folder URLs map to: PATH_TRANSLATED, MapURLToPath, ExecURL of static files (default: cwd). */
  root?: string;
  /** Server variables for every request, over the host's defaults (e.g. { REMOTE_ADDR: '10.0.0.7', LOGON_USER: 'alice' }). */
  serverVariables?: Record<string, string>;
  /** Exception text in 500 responses (default true here: tests want to see it). */
  detailedErrors?: boolean;
  /** How much of a body IIS reads before calling the extension (default 48 KiB). */
  preloadBytes?: number;
  /** Answers ExecURL child requests; without it, files under `root` are served, else 404. */
  execUrl?: (url: string, o: { method: string; headers: string; body: string; flags: number }) => ExecResult | Promise<ExecResult>;
}

export interface ExecResult {
  status: number;
  headers?: TestHeaders;
  body?: string | Uint8Array;
}

export interface TestRequestOptions {
  headers?: TestHeaders;
  /** A string or bytes (sent with Content-Length), or an (async) iterable of pieces (sent chunked). */
  body?: Body;
  /** Send even a string or bytes body chunked (TotalBytes 0xFFFFFFFF). */
  chunked?: boolean;
  /** Server variables for this request only, over the extension's. */
  serverVariables?: Record<string, string>;
  /** "HTTP/1.1" (default) or "HTTP/1.0". */
  protocol?: string;
  /** Aborting it is the client going away: the handler gets the bridge's Abort. */
  signal?: AbortSignal;
}

export interface TestResponse {
  /** The status code (from the status line, else the ECB's HttpStatusCode). */
  status: number;
  statusText: string;
  /** Response headers, names lower-cased, repeated ones joined with ", " (set-cookie: see rawHeaders). */
  headers: Record<string, string>;
  rawHeaders: Array<[string, string]>;
  body: Buffer;
  /** The body as UTF-8 text. */
  text: string;
  /** Each WriteClient's bytes, in order: how the response was streamed. */
  writes: Buffer[];
  /** lpszLogData plus AppendLogParameter text: what the access log shows. */
  logData: string;
  /** The HSE_STATUS_* the request ended with. */
  hseStatus: number;
  keepConn: boolean;
  /** The request was aborted (signal) before the handler finished. */
  aborted: boolean;
}

/** One request in flight: its response so far, client-side flow control and abort. */
export interface TestExchange {
  readonly id: number;
  /** Resolves when the request ends (DoneWithSession), or at once with what arrived when aborted. */
  readonly response: Promise<TestResponse>;
  /** Resolves when the response headers arrived. */
  readonly headersSent: Promise<void>;
  /** Body bytes received so far. */
  readonly received: number;
  /** The client stops reading: the server stops acknowledging writes (WriteClient waits above 1 MiB). */
  pause(): void;
  resume(): void;
  /** The client goes away. */
  abort(): void;
}

export interface TestExtension {
  request(method: string, url: string, options?: TestRequestOptions): Promise<TestResponse>;
  /** Starts a request and returns at once, to watch it stream, pause the client or abort. */
  open(method: string, url: string, options?: TestRequestOptions): TestExchange;
  /** Lines the worker logged through the bridge (addon.log) and ReportUnhealthy reasons. */
  readonly log: string[];
  /** The reasons of each reload (InternalReloadException) so far. */
  readonly reloads: string[];
  /** Worker generations started (1, then one more per reload). */
  readonly generation: number;
  /** Resolves once the reload in progress (if any) has a ready generation. */
  settled(): Promise<void>;
  /** Drains and stops the workers: TerminateExtension (and TerminateFilter) run. */
  close(): Promise<void>;
}

const statusText = (line: string) => line.replace(/^\d+\s*/, '');

function toBuffer(b: string | Uint8Array): Buffer {
  return typeof b === 'string' ? Buffer.from(b) : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function headerLines(headers: TestHeaders = {}): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) out.push([name, String(v)]);
  }
  return out;
}

/** "Name: value\r\n…\r\n\r\n[body]" → the header pairs and what followed the blank line. */
function parseHeaderText(text: string): { pairs: Array<[string, string]>; rest: string } {
  const end = text.indexOf('\r\n\r\n');
  const head = end < 0 ? text : text.slice(0, end);
  const rest = end < 0 ? '' : text.slice(end + 4);
  const pairs: Array<[string, string]> = [];
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) pairs.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return { pairs, rest };
}

function headerRecord(pairs: Array<[string, string]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [n, v] of pairs) {
    const k = n.toLowerCase();
    out[k] = k in out ? `${out[k]}, ${v}` : v;
  }
  return out;
}

async function* pieces(body: Body | undefined): AsyncGenerator<Buffer> {
  if (body === undefined) return;
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const all = toBuffer(body);
    for (let i = 0; i < all.length; i += BODY_PIECE) yield all.subarray(i, i + BODY_PIECE);
    return;
  }
  for await (const p of body as AsyncIterable<string | Uint8Array>) {
    const b = toBuffer(p);
    if (b.length) yield b;
  }
}

/** One request as the bridge and the web server hold it. */
class Exchange implements TestExchange {
  status = 0;
  statusLine = '';
  pairs: Array<[string, string]> = [];
  writes: Buffer[] = [];
  received = 0;
  logExtra = '';
  keepConn = true;
  done = false;
  aborted = false;
  paused = false;
  private unackedByClient = 0;
  private resolveHeaders!: () => void;
  readonly headersSent = new Promise<void>((r) => (this.resolveHeaders = r));
  private resolveResponse!: (r: TestResponse) => void;
  readonly response = new Promise<TestResponse>((r) => (this.resolveResponse = r));
  execStatus = { status: 0, sub: 0, win32: 0 };
  // Body the worker has not yet been sent: credit-driven, as the bridge's BodyCredit.
  bodyAhead = 0;
  bodySource: AsyncGenerator<Buffer> | null = null;
  bodyPumping = false;
  bodyEnded = false;
  chunked = false;

  constructor(
    readonly id: number,
    readonly gen: Generation,
    readonly begin: RequestBegin,
    readonly vars: Record<string, string>,
  ) {}

  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
    const n = this.unackedByClient;
    this.unackedByClient = 0;
    if (n && !this.done) this.gen.send(In.WriteAck, this.id, { bytes: n });
  }
  abort(): void {
    if (this.done || this.aborted) return;
    this.aborted = true;
    this.gen.send(In.Abort, this.id);
    this.finish(HSE_STATUS_ERROR, this.status || 0, '');
  }

  sendHeaders(statusLine: string, text: string): void {
    this.statusLine = statusLine;
    this.status = parseInt(statusLine, 10) || 200;
    const { pairs, rest } = parseHeaderText(text);
    this.pairs.push(...pairs);
    this.resolveHeaders();
    if (rest) this.take(Buffer.from(rest, 'latin1'), false);
  }

  /** Bytes the "client" receives; acknowledged to the worker unless the client is paused. */
  take(data: Buffer, fromWriteClient = true): void {
    this.writes.push(data);
    this.received += data.length;
    if (!this.statusLine) this.resolveHeaders();
    if (!fromWriteClient) return;
    if (this.paused) this.unackedByClient += data.length;
    else setImmediate(() => !this.done && this.gen.send(In.WriteAck, this.id, { bytes: data.length }));
  }

  finish(hseStatus: number, httpStatus: number, logData: string): void {
    if (this.done) return;
    this.done = true;
    this.gen.requests.delete(this.id);
    void this.bodySource?.return(undefined);
    this.resolveHeaders();
    const body = Buffer.concat(this.writes);
    const status = this.status || (hseStatus === HSE_STATUS_ERROR && !this.received ? 500 : httpStatus || 200);
    this.resolveResponse({
      status,
      statusText: this.statusLine ? statusText(this.statusLine) : status === 500 ? 'Internal Server Error' : 'OK',
      headers: headerRecord(this.pairs),
      rawHeaders: this.pairs,
      body,
      text: body.toString('utf8'),
      writes: this.writes,
      logData: logData + this.logExtra,
      hseStatus,
      keepConn: this.keepConn,
      aborted: this.aborted,
    });
  }

  /** Sends body pieces while the worker is less than BODY_AHEAD bytes behind. */
  async pump(): Promise<void> {
    if (this.bodyPumping || this.bodyEnded || !this.bodySource) return;
    this.bodyPumping = true;
    try {
      while (this.bodyAhead < BODY_AHEAD && !this.done) {
        const next = await this.bodySource.next();
        if (this.done) return;
        if (next.done) {
          this.bodyEnded = true;
          // The bridge marks the end of a chunked body with an empty Body message.
          if (this.chunked) this.gen.send(In.Body, this.id, { data: Buffer.alloc(0) });
          return;
        }
        this.bodyAhead += next.value.length;
        this.gen.send(In.Body, this.id, { data: next.value });
      }
    } finally {
      this.bodyPumping = false;
    }
  }
}

/** One generation of workers (one worker here): the addon stand-in its loop talks to. */
class Generation implements BridgeAddon {
  readonly protocolVersion = 0;
  dispatch: Dispatch | null = null;
  readonly requests = new Map<number, Exchange>();
  readonly filterCalls = new Map<number, (r: FilterReply) => void>();
  readonly exited: Promise<number>;
  resolveExit!: (code: number) => void;
  private queued = 0;
  private drainWanted = false;
  private flushScheduled = false;
  failure: Error | null = null;

  constructor(readonly host: Host) {
    this.exited = new Promise((r) => (this.resolveExit = r));
  }

  send(type: number, id: number, message?: unknown): void {
    // Messages from the bridge arrive on a later turn of the event loop, as the addon's
    // thread-safe function delivers them.
    setImmediate(() => this.dispatch?.(type, id, message));
  }

  // ---- BridgeAddon
  open(dispatch: Dispatch): void {
    this.dispatch = dispatch;
  }
  ready(): void {}
  releaseStartupPages(): number {
    return 0;
  }
  log(line: string): void {
    this.host.log.push(line);
  }
  reload(reason: string): void {
    this.host.reload(reason);
  }
  /** The channel's queue: written bytes leave it on the next turn; false above the high-water mark. */
  private queue(bytes: number): boolean {
    this.queued += bytes;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.queued = 0;
        if (this.drainWanted && this.queued < CHANNEL_LOW_WATER) {
          this.drainWanted = false;
          this.dispatch?.(In.Drain, 0);
        }
      });
    }
    if (this.queued <= CHANNEL_HIGH_WATER) return true;
    this.drainWanted = true;
    return false;
  }
  headers(id: number, status: string, headers: string, keepConn: boolean): void {
    const x = this.requests.get(id);
    if (!x) return;
    x.keepConn = keepConn;
    x.sendHeaders(status, headers);
  }
  write(id: number, data: Uint8Array | string): boolean {
    const b = toBuffer(data);
    const x = this.requests.get(id);
    if (x) setImmediate(() => !x.done && x.take(b));
    return this.queue(b.length);
  }
  done(id: number, hseStatus: number, httpStatus: number, logData: string): void {
    // After the channel has delivered the writes queued before it.
    const x = this.requests.get(id);
    if (x) setImmediate(() => setImmediate(() => x.finish(hseStatus, httpStatus, logData)));
  }
  credit(id: number, bytes: number): void {
    const x = this.requests.get(id);
    if (!x) return;
    x.bodyAhead -= bytes;
    void x.pump();
  }
  getVar(id: number, callId: number, name: string): void {
    const x = this.requests.get(id);
    const upper = name.toUpperCase();
    if (!x) return this.send(In.VarReply, id, { callId, err: ERROR_INVALID_PARAMETER, value: Buffer.alloc(0) });
    const plain = upper.startsWith('UNICODE_') ? upper.slice(8) : upper;
    const v = x.vars[plain];
    if (v === undefined) return this.send(In.VarReply, id, { callId, err: ERROR_INVALID_INDEX, value: Buffer.alloc(0) });
    this.send(In.VarReply, id, { callId, err: 0, value: Buffer.from(v, upper.startsWith('UNICODE_') ? 'utf16le' : 'latin1') });
  }
  serverSupport(id: number, callId: number, request: number, ints: number[], strs: string[]): void {
    const x = this.requests.get(id);
    const reply = (r: Partial<ServerSupportReply>) =>
      this.send(In.ServerSupportReply, id, { ok: true, error: 0, ints: [], out: '', ...r, callId });
    if (!x) return reply({ ok: false, error: ERROR_INVALID_PARAMETER });
    this.host.serverSupport(x, request, ints, strs).then(reply, (err: Error) => {
      this.host.log.push(`ServerSupportFunction(${request}) failed: ${err.message}`);
      reply({ ok: false, error: ERROR_INVALID_PARAMETER });
    });
  }
  filterCall(id: number, callId: number, op: number, name: string): void {
    this.send(In.FilterCallReply, id, { ...this.host.filterQuery(id, op, name), callId });
  }
  filterReply(id: number, status: number, changes: Array<[number, string | Uint8Array, string | Uint8Array]>): void {
    const resolve = this.filterCalls.get(id);
    this.filterCalls.delete(id);
    resolve?.({ status, changes });
  }
}

interface FilterReply {
  status: number;
  changes: Array<[number, string | Uint8Array, string | Uint8Array]>;
}

/** The web server and the bridge's pool: generations, requests, server support. */
class Host {
  readonly log: string[] = [];
  readonly reloads: string[] = [];
  generation = 0;
  current!: Generation;
  private starting: Promise<void> = Promise.resolve();
  private nextId = 1;
  private readonly draining = new Set<Generation>();
  filterQuery: (id: number, op: number, name: string) => { ok: boolean; error: number; out: string } = () => ({
    ok: false,
    error: ERROR_INVALID_INDEX,
    out: '',
  });

  constructor(
    readonly user: UserModule,
    readonly o: Required<Pick<TestExtensionOptions, 'name' | 'vdir' | 'root' | 'preloadBytes' | 'detailedErrors'>> & TestExtensionOptions,
  ) {}

  async startGeneration(): Promise<void> {
    const gen = new Generation(this);
    this.generation++;
    const started = startWorker(gen, this.user, {
      name: this.o.name,
      detailedErrors: this.o.detailedErrors,
      exit: (code) => gen.resolveExit(code),
    });
    // startWorker resolves once the worker said Ready; a factory that throws rejects here, as
    // a worker that cannot start.
    await started;
    this.current = gen;
  }

  reload(reason: string): void {
    this.reloads.push(reason);
    const old = this.current;
    if (this.draining.has(old)) return;  // a reload of this generation is already under way
    this.draining.add(old);
    // Fresh worker first, then the old one drains (worker_pool.cc replace_slot_locked).
    this.starting = this.starting.then(() => this.startGeneration()).then(() => {
      old.send(In.Shutdown, 0);
      void old.exited.then(() => this.draining.delete(old));
    });
  }

  settled(): Promise<void> {
    return this.starting;
  }

  async close(): Promise<void> {
    await this.starting;
    const all = [this.current, ...this.draining];
    for (const g of all) g.send(In.Shutdown, 0);
    await Promise.all(all.map((g) => g.exited));
  }

  nextRequestId(): number {
    return this.nextId++;
  }

  /** The server variables of a request, as isapi-host computes them (native/host/server_variables.cc). */
  variables(method: string, url: string, headers: Array<[string, string]>, o: TestRequestOptions, totalBytes: number): Record<string, string> {
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    let decoded: string;
    try {
      decoded = decodeURIComponent(rawPath);
    } catch {
      decoded = rawPath;
    }
    const host = headers.find(([n]) => n.toLowerCase() === 'host')?.[1] ?? 'localhost';
    const vdir = this.o.vdir.replace(/\/+$/, '') || '/';
    const user = { ...this.o.serverVariables, ...o.serverVariables };
    const vars: Record<string, string> = {
      REQUEST_METHOD: method,
      URL: decoded,
      PATH_INFO: decoded,
      QUERY_STRING: query,
      PATH_TRANSLATED: this.mapPath(decoded),
      SCRIPT_NAME: vdir === '/' ? '' : vdir,
      SCRIPT_TRANSLATED: path.join(this.o.root, `_${this.o.name}.so`),
      CONTENT_TYPE: headers.find(([n]) => n.toLowerCase() === 'content-type')?.[1] ?? '',
      CONTENT_LENGTH: totalBytes === CHUNKED ? '0' : String(totalBytes),
      REMOTE_ADDR: '127.0.0.1',
      REMOTE_HOST: '127.0.0.1',
      REMOTE_PORT: '50000',
      LOCAL_ADDR: '127.0.0.1',
      SERVER_NAME: host.replace(/:\d+$/, ''),
      SERVER_PORT: /:(\d+)$/.exec(host)?.[1] ?? '80',
      SERVER_PORT_SECURE: '0',
      SERVER_PROTOCOL: o.protocol ?? 'HTTP/1.1',
      HTTP_VERSION: o.protocol ?? 'HTTP/1.1',
      SERVER_SOFTWARE: 'node-isapi-testing',
      GATEWAY_INTERFACE: 'CGI/1.1',
      HTTPS: 'off',
      INSTANCE_ID: '1',
      INSTANCE_META_PATH: '/LM/W3SVC/1',
      APPL_MD_PATH: `/LM/W3SVC/1/ROOT${vdir === '/' ? '' : vdir}`,
      APPL_PHYSICAL_PATH: this.o.root,
      APP_POOL_ID: 'node-isapi-testing',
      AUTH_TYPE: '',
      AUTH_USER: '',
      AUTH_PASSWORD: '',
      REMOTE_USER: '',
      LOGON_USER: '',
      UNMAPPED_REMOTE_USER: '',
      ALL_RAW: headers.map(([n, v]) => `${n}: ${v}\r\n`).join(''),
      ALL_HTTP: headers.map(([n, v]) => `HTTP_${n.toUpperCase().replace(/-/g, '_')}:${v}\r\n`).join(''),
      HTTP_URL: url,
      UNENCODED_URL: url,
      ...user,
    };
    for (const [n, v] of headers) {
      const k = `HTTP_${n.toUpperCase().replace(/-/g, '_')}`;
      if (!(k in user)) vars[k] = k in vars && k !== 'HTTP_URL' && k !== 'HTTP_VERSION' ? `${vars[k]}, ${v}` : v;
    }
    return vars;
  }

  mapPath(url: string): string {
    const vdir = this.o.vdir.replace(/\/+$/, '');
    const rel = vdir && url.startsWith(vdir) ? url.slice(vdir.length) : url;
    return path.join(this.o.root, ...rel.split('/').filter(Boolean));
  }

  open(method: string, url: string, o: TestRequestOptions = {}): TestExchange {
    if (!url.startsWith('/')) throw new TypeError(`request URL must start with '/': ${url}`);
    const gen = this.current;
    const id = this.nextRequestId();
    const headers = headerLines(o.headers);
    const known = o.body === undefined || typeof o.body === 'string' || o.body instanceof Uint8Array;
    const chunked = !!o.chunked || !known;
    const whole = known && o.body !== undefined ? toBuffer(o.body as string | Uint8Array) : Buffer.alloc(0);
    const lower = new Set(headers.map(([n]) => n.toLowerCase()));
    if (!lower.has('host')) headers.unshift(['Host', 'localhost']);
    if (chunked && !lower.has('transfer-encoding')) headers.push(['Transfer-Encoding', 'chunked']);
    if (!chunked && whole.length && !lower.has('content-length')) headers.push(['Content-Length', String(whole.length)]);
    const totalBytes = chunked ? CHUNKED : whole.length;
    const vars = this.variables(method, url, headers, o, totalBytes);
    const preload = chunked ? Buffer.alloc(0) : whole.subarray(0, Math.min(whole.length, this.o.preloadBytes));
    // Prefetched with the request, as the bridge does.
    const prefetched: Record<string, string> = {};
    for (const n of PREFETCHED_VARIABLES) {
      if (vars[n] !== undefined) prefetched[n] = vars[n]!;
    }
    const begin: RequestBegin = {
      method,
      query: vars.QUERY_STRING!,
      pathInfo: vars.PATH_INFO!,
      pathTranslated: vars.PATH_TRANSLATED!,
      contentType: vars.CONTENT_TYPE!,
      totalBytes,
      connId: id,
      vars: prefetched,
      body: Buffer.from(preload),
    };
    const x = new Exchange(id, gen, begin, vars);
    x.chunked = chunked;
    gen.requests.set(id, x);
    if (chunked) x.bodySource = pieces(o.body);
    else if (whole.length > preload.length) x.bodySource = pieces(whole.subarray(preload.length));
    else x.bodyEnded = true;
    if (o.signal) {
      if (o.signal.aborted) queueMicrotask(() => x.abort());
      else o.signal.addEventListener('abort', () => x.abort(), { once: true });
    }
    gen.send(In.Request, id, begin);
    // The bridge reads the rest of the body once the worker took the request.
    setImmediate(() => void x.pump());
    return x;
  }

  async serverSupport(x: Exchange, request: number, ints: number[], strs: string[]): Promise<Partial<ServerSupportReply>> {
    switch (request) {
      case HSE_REQ_IS_KEEP_CONN:
        return { ints: [x.keepConn && x.begin.vars.SERVER_PROTOCOL !== 'HTTP/1.0' ? 1 : 0] };
      case HSE_REQ_IS_CONNECTED:
        return { ints: [x.aborted ? 0 : 1] };
      case HSE_REQ_CLOSE_CONNECTION:
      case HSE_REQ_ABORTIVE_CLOSE:
        x.keepConn = false;
        return {};
      case HSE_REQ_SET_FLUSH_FLAG:
        return {};
      case HSE_REQ_MAP_URL_TO_PATH:
        return { out: this.mapPath(strs[0] ?? '') };
      case HSE_REQ_MAP_URL_TO_PATH_EX: {
        const url = strs[0] ?? '';
        const vdir = this.o.vdir.replace(/\/+$/, '');
        return { out: this.mapPath(url), ints: [HSE_URL_FLAGS_READ | HSE_URL_FLAGS_SCRIPT, this.o.root.length, vdir.length] };
      }
      case HSE_APPEND_LOG_PARAMETER:
        x.logExtra += strs[0] ?? '';
        return {};
      case HSE_REQ_REPORT_UNHEALTHY:
        this.log.push(`ReportUnhealthy: ${strs[0] ?? ''}`);
        return {};
      case HSE_REQ_SEND_URL_REDIRECT_RESP: {
        x.sendHeaders('302 Object Moved', `Location: ${strs[0]}\r\nContent-Length: 0\r\n\r\n`);
        return {};
      }
      case HSE_REQ_SEND_URL:
      case HSE_REQ_EXEC_URL: {
        const url = strs[0] ?? '';
        const r = await this.exec(url, { method: strs[1] || 'GET', headers: strs[2] ?? '', body: strs[3] ?? '', flags: ints[0] ?? 0 });
        x.execStatus = { status: r.status, sub: 0, win32: 0 };
        const body = r.body === undefined ? Buffer.alloc(0) : toBuffer(r.body);
        const head = headerLines({ 'Content-Length': body.length, ...r.headers }).map(([n, v]) => `${n}: ${v}\r\n`).join('');
        x.sendHeaders(`${r.status} ${r.status === 200 ? 'OK' : r.status === 404 ? 'Not Found' : ''}`.trim(), head + '\r\n');
        if (body.length) x.take(body, false);
        return {};
      }
      case HSE_REQ_GET_EXEC_URL_STATUS:
        return { ints: [x.execStatus.status, x.execStatus.sub, x.execStatus.win32] };
      case HSE_REQ_SEND_CUSTOM_ERROR: {
        const status = strs[0] ?? '500 Internal Server Error';
        const body = `${status}\n`;
        x.sendHeaders(status, `Content-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n`);
        x.take(Buffer.from(body), false);
        return {};
      }
      case HSE_REQ_TRANSMIT_FILE: {
        const [flags = 0, offset = 0, length = 0] = ints;
        const [file = '', status = '', head = '', tail = ''] = strs;
        let data: Buffer;
        try {
          data = readFileSync(file);
        } catch {
          return { ok: false, error: 2 /* ERROR_FILE_NOT_FOUND */ };
        }
        const end = length ? Math.min(data.length, offset + length) : data.length;
        const part = data.subarray(Math.min(offset, data.length), end);
        if (flags & HSE_IO_SEND_HEADERS) x.sendHeaders(status || '200 OK', head);
        else if (head) x.take(Buffer.from(head, 'latin1'), false);
        x.take(part, false);
        if (tail) x.take(Buffer.from(tail, 'latin1'), false);
        return {};
      }
      default:
        return { ok: false, error: ERROR_NOT_SUPPORTED };
    }
  }

  async exec(url: string, o: { method: string; headers: string; body: string; flags: number }): Promise<ExecResult> {
    if (this.o.execUrl) return this.o.execUrl(url, o);
    const file = path.join(this.o.root, ...url.split('?')[0]!.split('/').filter(Boolean).map(decodeURIComponent));
    if (file.startsWith(this.o.root) && existsSync(file) && statSync(file).isFile()) {
      return { status: 200, body: readFileSync(file) };
    }
    return { status: 404, headers: { 'Content-Type': 'text/plain' }, body: 'Not Found\n' };
  }
}

function moduleOf(x: UserModule | Factory<unknown>, key: '__ExtensionFactory__' | '__FilterFactory__'): UserModule {
  return typeof x === 'function' ? { [key]: x } : x;
}

function hostOptions(o: TestExtensionOptions) {
  return {
    ...o,
    name: o.name ?? 'test',
    vdir: o.vdir ?? '/',
    root: path.resolve(o.root ?? process.cwd()),
    preloadBytes: o.preloadBytes ?? DEFAULT_PRELOAD,
    detailedErrors: o.detailedErrors ?? true,
  };
}

/**
 * Runs an extension in-process: `factory` is the script's `__ExtensionFactory__` (also what
 * `httpExtension(app)` and `fetchExtension(handler)` return), or the script's whole module.
 */
export async function testExtension(
  factory: Factory<Extension> | UserModule,
  options: TestExtensionOptions = {},
): Promise<TestExtension> {
  const user = moduleOf(factory as UserModule | Factory<unknown>, '__ExtensionFactory__');
  if (typeof user.__ExtensionFactory__ !== 'function') throw new TypeError('testExtension wants __ExtensionFactory__ (or a module exporting it)');
  const host = new Host(user, hostOptions(options));
  await host.startGeneration();
  return {
    request: (method, url, o) => host.open(method, url, o).response,
    open: (method, url, o) => host.open(method, url, o),
    log: host.log,
    reloads: host.reloads,
    get generation() {
      return host.generation;
    },
    settled: () => host.settled(),
    close: () => host.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Filters

const NOTIFICATION_NAMES: Record<number, string> = {
  [SF_NOTIFY_READ_RAW_DATA]: 'READ_RAW_DATA',
  [SF_NOTIFY_PREPROC_HEADERS]: 'PREPROC_HEADERS',
  [SF_NOTIFY_URL_MAP]: 'URL_MAP',
  [SF_NOTIFY_AUTHENTICATION]: 'AUTHENTICATION',
  [SF_NOTIFY_AUTH_COMPLETE]: 'AUTH_COMPLETE',
  [SF_NOTIFY_ACCESS_DENIED]: 'ACCESS_DENIED',
  [SF_NOTIFY_SEND_RESPONSE]: 'SEND_RESPONSE',
  [SF_NOTIFY_SEND_RAW_DATA]: 'SEND_RAW_DATA',
  [SF_NOTIFY_END_OF_REQUEST]: 'END_OF_REQUEST',
  [SF_NOTIFY_LOG]: 'LOG',
  [SF_NOTIFY_END_OF_NET_SESSION]: 'END_OF_NET_SESSION',
};

/** IIS's order of the notifications of one request (ACCESS_DENIED only for a 401). */
export const NOTIFICATION_ORDER: readonly number[] = [
  SF_NOTIFY_READ_RAW_DATA,
  SF_NOTIFY_PREPROC_HEADERS,
  SF_NOTIFY_URL_MAP,
  SF_NOTIFY_AUTHENTICATION,
  SF_NOTIFY_AUTH_COMPLETE,
  SF_NOTIFY_ACCESS_DENIED,
  SF_NOTIFY_SEND_RESPONSE,
  SF_NOTIFY_SEND_RAW_DATA,
  SF_NOTIFY_END_OF_REQUEST,
  SF_NOTIFY_LOG,
];

const CHANGE_NAMES = [
  '',
  'SetHeader',
  'AddHeader',
  'AddResponseHeaders',
  'WriteClient',
  'SendResponseHeader',
  'DisableNotifications',
  'SetPhysicalPath',
  'SetLogField',
  'SetUser',
  'SetPassword',
  'AddHeadersOnDenial',
  'SetRawData',
  'SetNextReadSize',
  'SetHttpStatus',
] as const;
const LOG_FIELD_NAMES = ['ClientHostName', 'ClientUserName', 'ServerName', 'Operation', 'Target', 'Parameters', 'HttpStatus', 'Win32Status'];

/** One change a filter made, decoded: { op: 'SetHeader', a: 'X-Frame-Options:', b: 'DENY' }. */
export interface FilterChange {
  op: (typeof CHANGE_NAMES)[number];
  a: string;
  b: string;
}

export interface NotificationResult {
  notification: number;
  /** "PREPROC_HEADERS", … */
  name: string;
  /** The SF_STATUS_REQ_* the filter returned. */
  status: number;
  changes: FilterChange[];
}

export interface FilterRequestOptions {
  headers?: TestHeaders;
  body?: string | Uint8Array;
  /** What the handler behind the filter answers (default 200 "OK"); or a TestExtension to ask. */
  response?: ExecResult | TestExtension | ((req: FilteredRequest) => ExecResult | Promise<ExecResult>);
  /** Server variables over the defaults (REMOTE_ADDR, SERVER_PORT…). */
  serverVariables?: Record<string, string>;
  /** Fire only these notifications, in this order (default: IIS's order, those the filter asked for). */
  order?: readonly number[];
}

/** The request as the filter left it (what the handler saw). */
export interface FilteredRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  physicalPath: string;
  user: string;
  password: string;
}

export interface FilterResult {
  /** Every notification fired, in order, with its verdict and changes. */
  notifications: NotificationResult[];
  /** A notification answered FINISHED (the filter answered the request itself). */
  finished: boolean;
  request: FilteredRequest;
  /** The response the client got. */
  status: number;
  headers: Record<string, string>;
  rawHeaders: Array<[string, string]>;
  body: Buffer;
  text: string;
  /** The access log fields after LOG. */
  log: Record<string, string | number>;
}

export interface TestFilter {
  /** One request through every notification the filter subscribed to, in IIS's order. */
  request(method: string, url: string, options?: FilterRequestOptions): Promise<FilterResult>;
  /** One notification with the data you give (fields in native/bridge/filter_entry.cc order). */
  notify(notification: number, fields: Array<string | Uint8Array>, vars?: Record<string, string>): Promise<NotificationResult>;
  /** The connection closes: END_OF_NET_SESSION (FilterContext is released). A new one starts. */
  endConnection(): Promise<void>;
  /** The filter's flags, as the packer records them. */
  readonly filterFlags: number;
  close(): Promise<void>;
}

/** Runs a filter in-process: `factory` is the script's `__FilterFactory__` (or its module). */
export async function testFilter(factory: Factory<Filter> | UserModule, options: TestExtensionOptions = {}): Promise<TestFilter> {
  const user = moduleOf(factory as UserModule | Factory<unknown>, '__FilterFactory__');
  if (typeof user.__FilterFactory__ !== 'function') throw new TypeError('testFilter wants __FilterFactory__ (or a module exporting it)');
  // Its flags, read as the packer's describe step reads them (a separate instance).
  const probe = (await user.__FilterFactory__()) as Filter;
  const flags = probe?.filterFlags >>> 0;
  if (!flags) throw new Error('__FilterFactory__() returned a filter without filterFlags (SF_NOTIFY_* bits)');
  const host = new Host({ __FilterFactory__: user.__FilterFactory__ }, hostOptions(options));
  await host.startGeneration();
  let connection = 1;
  let disabled = 0;
  let nextId = 1 << 30;
  let current: { responseHeaders: Array<[string, string]>; vars: Record<string, string> } | null = null;
  host.filterQuery = (_id, op, name) => {
    if (!current) return { ok: false, error: ERROR_INVALID_INDEX, out: '' };
    if (op === 1) {
      const want = name.replace(/:$/, '').toLowerCase();
      const v = current.responseHeaders.filter(([n]) => n.toLowerCase() === want).map(([, v]) => v);
      return v.length ? { ok: true, error: 0, out: v.join(', ') } : { ok: false, error: ERROR_INVALID_INDEX, out: '' };
    }
    const v = current.vars[name.toUpperCase()];
    return v === undefined ? { ok: false, error: ERROR_INVALID_INDEX, out: '' } : { ok: true, error: 0, out: v };
  };

  const fire = (notification: number, fields: Array<string | Uint8Array>, vars: Record<string, string>): Promise<NotificationResult> => {
    const gen = host.current;
    const id = nextId++;
    const n: FilterNotification = { connection, notification, wantsReply: true, fields: fields.map(toBuffer), vars };
    return new Promise<FilterReply>((resolve) => {
      gen.filterCalls.set(id, resolve);
      gen.send(In.FilterNotify, id, n);
    }).then((r) => ({
      notification,
      name: NOTIFICATION_NAMES[notification] ?? `0x${notification.toString(16)}`,
      status: r.status,
      changes: r.changes.map(([op, a, b]) => ({
        op: CHANGE_NAMES[op] ?? ('' as const),
        a: typeof a === 'string' ? a : Buffer.from(a).toString('latin1'),
        b: typeof b === 'string' ? b : Buffer.from(b).toString('latin1'),
      })),
    }));
  };

  const wants = (n: number) => !!(flags & n) && !(disabled & n);

  const request = async (method: string, url: string, o: FilterRequestOptions = {}): Promise<FilterResult> => {
    const order = o.order ?? NOTIFICATION_ORDER;
    const reqHeaders = headerLines(o.headers);
    if (!reqHeaders.some(([n]) => n.toLowerCase() === 'host')) reqHeaders.unshift(['Host', 'localhost']);
    const req: FilteredRequest = { method, url, headers: {}, physicalPath: '', user: '', password: '' };
    let version = 'HTTP/1.1';
    const notifications: NotificationResult[] = [];
    let finished = false;
    let status = 0;
    let statusLine = '';
    let respHeaders: Array<[string, string]> = [];
    const pendingResponseHeaders: Array<[string, string]> = [];
    const denialHeaders: Array<[string, string]> = [];
    const written: Buffer[] = [];
    let body: Buffer = Buffer.alloc(0);
    const vars = (): Record<string, string> => ({
      REMOTE_ADDR: '127.0.0.1',
      SERVER_PORT: '80',
      URL: req.url.split('?')[0]!,
      ALL_RAW: reqHeaders.map(([n, v]) => `${n}: ${v}\r\n`).join(''),
      ...options.serverVariables,
      ...o.serverVariables,
    });
    const setReqHeader = (name: string, value: string, add: boolean) => {
      const key = name.replace(/:$/, '').toLowerCase();
      if (key === 'url') req.url = value;
      else if (key === 'method') req.method = value;
      else if (key === 'version') version = value;
      else {
        const i = reqHeaders.findIndex(([n]) => n.toLowerCase() === key);
        if (add && i >= 0) reqHeaders[i] = [reqHeaders[i]![0], `${reqHeaders[i]![1]}, ${value}`];
        else if (i >= 0 && value === '') reqHeaders.splice(i, 1);
        else if (i >= 0) reqHeaders[i] = [reqHeaders[i]![0], value];
        else if (value !== '') reqHeaders.push([name.replace(/:$/, ''), value]);
      }
    };
    const setRespHeader = (name: string, value: string, add: boolean) => {
      const key = name.replace(/:$/, '').toLowerCase();
      const i = respHeaders.findIndex(([n]) => n.toLowerCase() === key);
      if (add || i < 0) {
        if (value !== '') respHeaders.push([name.replace(/:$/, ''), value]);
      } else if (value === '') {
        respHeaders = respHeaders.filter(([n]) => n.toLowerCase() !== key);
      } else {
        respHeaders[i] = [respHeaders[i]![0], value];
      }
    };
    const log: Record<string, string | number> = {};
    let rawData: Buffer = Buffer.alloc(0);

    const step = async (n: number, fields: Array<string | Uint8Array>): Promise<NotificationResult | null> => {
      if (!wants(n) || !order.includes(n)) return null;
      current = { responseHeaders: respHeaders, vars: vars() };
      const r = await fire(n, fields, current.vars);
      current = null;
      notifications.push(r);
      for (const c of r.changes) {
        switch (c.op) {
          case 'SetHeader':
          case 'AddHeader':
            if (n === SF_NOTIFY_SEND_RESPONSE) setRespHeader(c.a, c.b, c.op === 'AddHeader');
            else setReqHeader(c.a, c.b, c.op === 'AddHeader');
            break;
          case 'AddResponseHeaders':
            pendingResponseHeaders.push(...parseHeaderText(c.a).pairs);
            break;
          case 'AddHeadersOnDenial':
            denialHeaders.push(...parseHeaderText(c.a).pairs);
            break;
          case 'WriteClient':
            written.push(Buffer.from(c.a, 'latin1'));
            break;
          case 'SendResponseHeader': {
            statusLine = c.a || '200 OK';
            status = parseInt(statusLine, 10) || 200;
            respHeaders = parseHeaderText(c.b).pairs;
            break;
          }
          case 'DisableNotifications':
            disabled |= Number(c.a);
            break;
          case 'SetPhysicalPath':
            req.physicalPath = c.a;
            break;
          case 'SetUser':
            req.user = c.a;
            break;
          case 'SetPassword':
            req.password = c.a;
            break;
          case 'SetLogField':
            log[LOG_FIELD_NAMES[Number(c.a)] ?? c.a] = Number(c.a) >= 6 ? Number(c.b) : c.b;
            break;
          case 'SetRawData':
            rawData = Buffer.from(c.a, 'latin1');
            break;
          case 'SetHttpStatus':
            status = Number(c.a);
            break;
        }
      }
      if (r.status === SF_STATUS_REQ_FINISHED || r.status === SF_STATUS_REQ_FINISHED_KEEP_CONN) finished = true;
      if (r.status === SF_STATUS_REQ_ERROR && !finished && !statusLine) {
        finished = true;
        status = 500;
        statusLine = '500 Internal Server Error';
      }
      return r;
    };

    const bodyBytes = o.body === undefined ? Buffer.alloc(0) : toBuffer(o.body);
    const rawRequest = Buffer.concat([
      Buffer.from(`${method} ${url} ${version}\r\n${reqHeaders.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`, 'latin1'),
      bodyBytes,
    ]);
    rawData = rawRequest;
    const phases: Array<() => Promise<unknown>> = [
      () => step(SF_NOTIFY_READ_RAW_DATA, [rawData]),
      () => step(SF_NOTIFY_PREPROC_HEADERS, [req.method, req.url, version, '0']),
      () => {
        req.physicalPath = options.root ? path.join(path.resolve(options.root), ...req.url.split('?')[0]!.split('/').filter(Boolean)) : req.url;
        return step(SF_NOTIFY_URL_MAP, [req.url.split('?')[0]!, req.physicalPath]);
      },
      () => {
        const authz = reqHeaders.find(([n]) => n.toLowerCase() === 'authorization')?.[1] ?? '';
        const m = /^Basic\s+(.*)$/i.exec(authz);
        if (m) {
          const decoded = Buffer.from(m[1]!, 'base64').toString('latin1');
          const colon = decoded.indexOf(':');
          req.user = colon < 0 ? decoded : decoded.slice(0, colon);
          req.password = colon < 0 ? '' : decoded.slice(colon + 1);
        }
        return step(SF_NOTIFY_AUTHENTICATION, [req.user, req.password]);
      },
      () => step(SF_NOTIFY_AUTH_COMPLETE, [req.method, req.url, version, '0']),
    ];
    for (const phase of phases) {
      await phase();
      if (finished) break;
    }
    req.headers = headerRecord(reqHeaders);

    if (!finished) {
      const answer = o.response;
      let r: ExecResult;
      if (answer && typeof answer === 'object' && 'request' in answer) {
        const t = await answer.request(req.method, req.url, {
          headers: Object.fromEntries(reqHeaders.map(([n, v]) => [n, v])),
          body: bodyBytes.length ? bodyBytes : undefined,
          serverVariables: req.user ? { REMOTE_USER: req.user, AUTH_USER: req.user, LOGON_USER: req.user, AUTH_TYPE: 'Basic' } : undefined,
        });
        r = { status: t.status, headers: Object.fromEntries(t.rawHeaders.map(([n, v]) => [n, v])), body: t.body };
        statusLine = `${t.status} ${t.statusText}`;
      } else if (typeof answer === 'function') {
        r = await answer(req);
      } else {
        r = answer ?? { status: 200, headers: { 'Content-Type': 'text/plain' }, body: 'OK\n' };
      }
      status = r.status;
      statusLine ||= `${r.status}`;
      body = r.body === undefined ? Buffer.alloc(0) : toBuffer(r.body);
      respHeaders = headerLines({ ...(r.headers ?? {}) });
      if (!respHeaders.some(([n]) => n.toLowerCase() === 'content-length')) respHeaders.push(['Content-Length', String(body.length)]);
      if (status === 401) {
        await step(SF_NOTIFY_ACCESS_DENIED, [req.url.split('?')[0]!, req.physicalPath, '0']);
        respHeaders.push(...denialHeaders);
      }
      // AddResponseHeaders of any notification so far (ACCESS_DENIED's too) go out with it.
      respHeaders.push(...pendingResponseHeaders.splice(0));
      if (!finished) await step(SF_NOTIFY_SEND_RESPONSE, [String(status)]);
    } else {
      // The filter answered: what it sent (SendResponseHeader + WriteClient) is the response.
      const raw = Buffer.concat(written);
      if (!statusLine && raw.subarray(0, 5).toString('latin1') === 'HTTP/') {
        const end = raw.indexOf('\r\n\r\n');
        const head = raw.subarray(0, end < 0 ? raw.length : end).toString('latin1');
        const [first, ...rest] = head.split('\r\n');
        statusLine = first!.replace(/^HTTP\/\d\.\d\s+/, '');
        status = parseInt(statusLine, 10);
        respHeaders = parseHeaderText(rest.join('\r\n') + '\r\n\r\n').pairs;
        body = end < 0 ? Buffer.alloc(0) : raw.subarray(end + 4);
      } else {
        body = raw;
      }
      written.length = 0;
      if (status === 401) respHeaders.push(...denialHeaders);
      respHeaders.push(...pendingResponseHeaders.splice(0));
    }
    const sendRaw = await step(SF_NOTIFY_SEND_RAW_DATA, [body]);
    if (sendRaw?.changes.some((c) => c.op === 'SetRawData')) body = rawData;
    if (written.length) body = Buffer.concat([...written, body]);
    await step(SF_NOTIFY_END_OF_REQUEST, []);
    const logFields = ['127.0.0.1', req.user, 'localhost', req.method, req.url.split('?')[0]!, req.url.split('?')[1] ?? '', String(status), '0', String(body.length), String(rawRequest.length), '0'];
    await step(SF_NOTIFY_LOG, logFields);
    return {
      notifications,
      finished,
      request: req,
      status,
      headers: headerRecord(respHeaders),
      rawHeaders: respHeaders,
      body,
      text: body.toString('utf8'),
      log,
    };
  };

  return {
    request,
    notify: (n, fields, vars = {}) => fire(n, fields, { REMOTE_ADDR: '127.0.0.1', SERVER_PORT: '80', ...vars }),
    async endConnection() {
      await fire(SF_NOTIFY_END_OF_NET_SESSION, [], {});
      connection++;
      disabled = 0;
    },
    filterFlags: flags,
    close: () => host.close(),
  };
}
