// node-isapi/testing: the in-process bridge (Generation, one per worker generation, in place of
// the bridge's Node-API addon) and the "web server" behind it (Host): server variables,
// ServerSupportFunction, filters' notifications, reloads.
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { In, type BridgeAddon, type Dispatch, type RequestBegin, type ServerSupportReply } from './channel';
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
  HSE_URL_FLAGS_READ,
  HSE_URL_FLAGS_SCRIPT,
} from './constants';
import type { UserModule } from './extension';
import { startWorker } from './worker_main';
import { PREFETCHED_VARIABLES } from './server_variables';
import type { ExecResult, TestExchange, TestExtensionOptions, TestRequestOptions } from './testing';
import {
  pieces,
  CHANNEL_HIGH_WATER,
  CHANNEL_LOW_WATER,
  CHUNKED,
  DEFAULT_PRELOAD,
  Exchange,
  Factory,
  headerLines,
  toBuffer,
} from './testing_exchange';

export class Generation implements BridgeAddon {
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

export interface FilterReply {
  status: number;
  changes: Array<[number, string | Uint8Array, string | Uint8Array]>;
}

/** The web server and the bridge's pool: generations, requests, server support. */
export class Host {
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

export function moduleOf(x: UserModule | Factory<unknown>, key: '__ExtensionFactory__' | '__FilterFactory__'): UserModule {
  return typeof x === 'function' ? { [key]: x } : x;
}

export function hostOptions(o: TestExtensionOptions) {
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
