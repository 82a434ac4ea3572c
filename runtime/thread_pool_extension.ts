// pywin32's ThreadPoolExtension on node:worker_threads: HttpExtensionProc queues the request
// and a pool thread runs Dispatch(ecb), so CPU-bound handlers use every core.
//
// The ECB stays on the main thread: its calls reach the bridge through the addon, which lives
// there. A pool thread gets a ThreadECB: the request fields copied, and every call posted to the
// main thread over the thread's MessagePort, made there on the real ECB, and answered.
//
// How a thread gets the script's code, also inside a single executable (where a file path into
// the bundle cannot be loaded): the thread is started from a few lines of eval'd code that read
// the bundled app the way the SEA's own loader does (the SEA asset `app.js`, or the file beside
// the loader when run by plain node) and compile it. The bundle then runs in the thread as it
// does in the worker, up to runWorker(): there, this module (evaluated earlier in the same
// bundle) has swapped the bridge addon for a stand-in, so the thread builds the extension with
// __ExtensionFactory__ (the instance registers itself with the thread) and never touches the
// channel; its "ready" tells the main thread the thread can take requests.

import os from 'node:os';
import { isMainThread, parentPort, Worker, workerData, type MessagePort } from 'node:worker_threads';
import { BRIDGE_ADDON_OVERRIDE, type BridgeAddon } from './channel';
import { RequestState, type ECBFields } from './request_state';
import { ERROR_INVALID_PARAMETER, HSE_STATUS_ERROR, HSE_STATUS_PENDING, HSE_STATUS_SUCCESS } from './constants';
import {
  headerText,
  type ECB,
  type ExecURLOptions,
  type ExecURLStatus,
  type HeaderInit,
  type TransmitFileOptions,
  type URLMapEx,
} from './ecb';
import { ExtensionError, InternalReloadException } from './errors';
import { checkStatus, checkUrl } from './header_check';
import { SimpleExtension, type ExtensionVersionInfo, type HandlerResult } from './extension';
import { headerVariable, type RawHeaders } from './server_variables';

/**
 * What Dispatch gets: every public member of the ECB. On a pool thread it is a ThreadECB (the
 * request fields copied; each call made on the real ECB by the main thread); with `threads: 0`
 * (or outside a packed worker) it is the ECB itself.
 */
export type DispatchECB = Pick<
  ECB,
  | 'Version'
  | 'Method'
  | 'QueryString'
  | 'PathInfo'
  | 'PathTranslated'
  | 'ContentType'
  | 'TotalBytes'
  | 'AvailableBytes'
  | 'AvailableData'
  | 'ConnID'
  | 'HttpStatusCode'
  | 'LogData'
  | 'isDone'
  | 'headersSent'
  | 'aborted'
  | 'onAbort'
  | 'knownServerVariable'
  | 'headers'
  | 'GetServerVariable'
  | 'ReadClient'
  | 'readBody'
  | 'WriteClient'
  | 'write'
  | 'SendResponseHeaders'
  | 'Redirect'
  | 'IsKeepConn'
  | 'IsConnected'
  | 'MapURLToPath'
  | 'MapURLToPathEx'
  | 'AppendLogParameter'
  | 'ReportUnhealthy'
  | 'SetFlushFlag'
  | 'SendURL'
  | 'SendCustomError'
  | 'TransmitFile'
  | 'ExecURL'
  | 'GetExecURLStatus'
  | 'CloseConnection'
  | 'IsKeepAlive'
  | 'DoneWithSession'
  | 'close'
>;

export interface ThreadPoolOptions {
  /**
   * Most pool threads in this worker process, started on demand (one is started with the
   * extension). Default: ISAPI_THREADS, else os.availableParallelism(). 0 runs Dispatch on the
   * main thread (an in-process queue; handy for debugging).
   */
  threads?: number;
  /** How long TerminateExtension waits for running Dispatch calls before stopping the threads. Default 15000 (pywin32's). */
  terminateTimeoutMs?: number;
  /**
   * A Dispatch still running this long after its request was dropped (the deadline passed, the
   * client went away) has its thread stopped and replaced, so a stuck handler cannot hold a
   * thread for ever. Default 5000.
   */
  abortedDispatchTimeoutMs?: number;
}

// ---------------------------------------------------------------------------------------------
// Messages between the main thread and a pool thread.

/** ECB calls a ThreadECB forwards (the names of ECB methods, made on the real ECB). */
const CALLS = [
  'GetServerVariable',
  'ReadClient',
  'readBody',
  'WriteClient',
  'SendResponseHeaders',
  'Redirect',
  'IsKeepConn',
  'IsConnected',
  'MapURLToPath',
  'MapURLToPathEx',
  'AppendLogParameter',
  'ReportUnhealthy',
  'SetFlushFlag',
  'SendURL',
  'SendCustomError',
  'TransmitFile',
  'ExecURL',
  'GetExecURLStatus',
  'CloseConnection',
  'DoneWithSession',
] as const;
type CallName = (typeof CALLS)[number];
const CALL_NAMES = new Set<string>(CALLS);

/** The request as copied to a pool thread: its body bytes travel as a plain Uint8Array. */
interface RequestFields extends Omit<ECBFields, 'AvailableData'> {
  AvailableData: Uint8Array;
  keepAlive: boolean;
  headers: RawHeaders;
  /** Server variables the main thread knew without a round trip. */
  vars: Record<string, string>;
}

interface WireError {
  name: string;
  message: string;
  stack?: string;
  errno?: number;
  strerror?: string;
  funcname?: string;
}

type ToThread =
  | { t: 'dispatch'; rid: number; fields: RequestFields }
  | { t: 'reply'; cid: number; ok: true; value: unknown }
  | { t: 'reply'; cid: number; ok: false; error: WireError }
  | { t: 'abort'; rid: number };

type FromThread =
  | { t: 'ready' }
  | { t: 'call'; rid: number; cid: number; name: CallName; args: unknown[]; httpStatus: number; logData: string }
  | { t: 'end'; rid: number; status?: number; reload?: string; error?: WireError; httpStatus: number; logData: string };

/** Server variables copied with each request when the main thread knows them locally. */
const COPIED_VARIABLES = [
  'URL', 'SCRIPT_NAME', 'PATH_INFO', 'PATH_TRANSLATED', 'QUERY_STRING', 'REQUEST_METHOD', 'CONTENT_TYPE',
  'CONTENT_LENGTH', 'REMOTE_ADDR', 'REMOTE_HOST', 'REMOTE_PORT', 'REMOTE_USER', 'AUTH_TYPE', 'AUTH_USER',
  'LOGON_USER', 'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL', 'SERVER_SOFTWARE', 'HTTPS', 'SERVER_PORT_SECURE',
  'APPL_MD_PATH', 'APPL_PHYSICAL_PATH', 'INSTANCE_ID', 'ALL_RAW',
];

const POOL_MARK = 'node-isapi.pool-thread';
/** The SEA asset that holds the bundled app (packer/bundle.ts APP_ASSET). */
const APP_ASSET = 'app.js';

interface AppSource {
  /** The SEA asset to compile, or (outside a SEA) none: read `file`. */
  asset?: string;
  /** The app's file name, as the worker's loader gave it (stack traces, require resolution). */
  file: string;
}

/**
 * The code a pool thread starts from: compile the bundled app, as the SEA's loader does. The
 * app's first import (runtime/source_map.ts) maps the thread's stack traces.
 */
const THREAD_BOOT = `'use strict';
const { workerData } = require('node:worker_threads');
const Module = require('node:module');
const src = workerData[${JSON.stringify(POOL_MARK)}];
const code = src.asset ? require('node:sea').getAsset(src.asset, 'utf8') : require('node:fs').readFileSync(src.file, 'utf8');
const app = new Module(src.file, null);
app.filename = src.file;
app.paths = [];
app._compile(code, src.file);
`;

function toWire(err: unknown): WireError {
  const e = err as Partial<ExtensionError> & Error;
  if (!(e instanceof Error)) return { name: 'Error', message: String(err) };
  return { name: e.name, message: e.message, stack: e.stack, errno: e.errno, strerror: e.strerror, funcname: e.funcname };
}

function fromWire(w: WireError): Error {
  if (w.name === 'ExtensionError' && w.errno !== undefined) return new ExtensionError(w.errno, w.strerror ?? w.message, w.funcname ?? '');
  const e = new Error(w.message);
  e.name = w.name;
  if (w.stack) e.stack = w.stack;
  return e;
}

/** A Uint8Array in a buffer of its own (copied), so it can be transferred without cloning a larger pool. */
function ownBytes(data: Uint8Array): Uint8Array {
  return new Uint8Array(data);
}

function transferable(value: unknown): { value: unknown; transfer: ArrayBuffer[] } {
  if (value instanceof Uint8Array) {
    const own = ownBytes(value);
    return { value: own, transfer: [own.buffer as ArrayBuffer] };
  }
  return { value, transfer: [] };
}

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function requireBuiltin<T>(id: string): T | undefined {
  try {
    const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
    return (get ? get(id) : require(id)) as T | undefined;
  } catch {
    return undefined;
  }
}

/** Where pool threads get the script's code; null when not running as a packed worker. */
function appSource(): AppSource | null {
  const file = typeof __filename === 'string' ? __filename : '';
  if (!file.endsWith('.js')) return null;
  if (requireBuiltin<{ isSea(): boolean }>('node:sea')?.isSea()) return { asset: APP_ASSET, file };
  return requireBuiltin<typeof import('node:fs')>('node:fs')?.existsSync(file) ? { file } : null;
}

// ---------------------------------------------------------------------------------------------
// The thread side.

/** The ECB a pool thread's Dispatch gets: copied fields, calls posted to the main thread. */
export class ThreadECB extends RequestState implements DispatchECB {

  constructor(
    private readonly side: PoolThreadSide,
    private readonly rid: number,
    private readonly fields: RequestFields,
  ) {
    super({
      ...fields,
      // Structured clone delivers a Uint8Array: give handlers a Buffer view of it.
      AvailableData: Buffer.from(fields.AvailableData.buffer, fields.AvailableData.byteOffset, fields.AvailableData.byteLength),
    });
  }

  knownServerVariable(name: string): string | undefined {
    const upper = name.toUpperCase();
    if (upper in this.fields.vars) return this.fields.vars[upper];
    return headerVariable(name, this.fields.headers) ?? undefined;
  }

  headers(): RawHeaders {
    return this.fields.headers;
  }

  IsKeepAlive(): boolean {
    return this.fields.keepAlive;
  }

  private call<T>(name: CallName, args: unknown[], transfer: ArrayBuffer[] = []): Promise<T> {
    this.check(name);
    return this.side.call<T>(this.rid, name, args, transfer, this.HttpStatusCode, this.LogData);
  }

  async GetServerVariable(name: string, defaultValue?: string): Promise<string> {
    this.check('GetServerVariable');
    const local = this.knownServerVariable(name);
    if (local !== undefined) return local;
    return this.call('GetServerVariable', defaultValue === undefined ? [name] : [name, defaultValue]);
  }

  async ReadClient(size = 65536): Promise<Buffer> {
    const u8 = await this.call<Uint8Array>('ReadClient', [size]);
    return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  }

  async readBody(): Promise<Buffer> {
    const u8 = await this.call<Uint8Array>('readBody', []);
    return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
  }

  async WriteClient(data: string | Uint8Array, _flags = 0): Promise<number> {
    if (this.beginWrite(data) === 0) return 0;
    if (typeof data === 'string') return this.call('WriteClient', [data]);
    const own = ownBytes(data);
    return this.call('WriteClient', [own], [own.buffer as ArrayBuffer]);
  }

  SendResponseHeaders(status = '200 OK', headers: HeaderInit = '', keepAlive = true): void {
    // Checked on this thread, so the handler gets the ExtensionError where it made the call.
    checkStatus(status, 'SendResponseHeaders');
    const text = headerText(headers);
    this.beginHeaders(status);
    this.side.post(this.rid, 'SendResponseHeaders', [status, text, keepAlive], this.HttpStatusCode, this.LogData);
  }

  async Redirect(url: string): Promise<void> {
    checkUrl(url, 'Redirect');
    if (this.headersWereSent) throw new ExtensionError(ERROR_INVALID_PARAMETER, 'the response headers were already sent', 'Redirect');
    const p = this.call<void>('Redirect', [url]);
    this.headersWereSent = true;
    await p;
  }

  IsKeepConn(): Promise<boolean> {
    return this.call('IsKeepConn', []);
  }
  IsConnected(): Promise<boolean> {
    return this.call('IsConnected', []);
  }
  MapURLToPath(url: string): Promise<string> {
    return this.call('MapURLToPath', [url]);
  }
  MapURLToPathEx(url: string): Promise<URLMapEx> {
    return this.call('MapURLToPathEx', [url]);
  }
  AppendLogParameter(text: string): Promise<void> {
    return this.call('AppendLogParameter', [text]);
  }
  ReportUnhealthy(reason = ''): Promise<void> {
    return this.call('ReportUnhealthy', [reason]);
  }
  SetFlushFlag(flag: boolean): Promise<void> {
    return this.call('SetFlushFlag', [flag]);
  }
  async SendURL(url: string): Promise<void> {
    await this.call('SendURL', [url]);
    this.headersWereSent = true;
  }
  async SendCustomError(status: string, subError = 0): Promise<void> {
    await this.call('SendCustomError', [status, subError]);
    this.headersWereSent = true;
  }
  async TransmitFile(path: string, o: TransmitFileOptions = {}): Promise<void> {
    await this.call('TransmitFile', [path, o]);
    this.headersWereSent = true;
  }
  async ExecURL(url: string, o: ExecURLOptions = {}): Promise<void> {
    await this.call('ExecURL', [url, o]);
    this.headersWereSent = true;
  }
  GetExecURLStatus(): Promise<ExecURLStatus> {
    return this.call('GetExecURLStatus', []);
  }
  CloseConnection(abortive = false): Promise<void> {
    return this.call('CloseConnection', [abortive]);
  }

  DoneWithSession(status = HSE_STATUS_SUCCESS): void {
    this.check('DoneWithSession');
    this.done = true;
    this.side.post(this.rid, 'DoneWithSession', [status], this.HttpStatusCode, this.LogData);
  }

  close(status = HSE_STATUS_SUCCESS): void {
    this.DoneWithSession(status);
  }

  /** @internal the main thread saw the bridge drop the request. */
  _abort(): void {
    this.markAborted();
  }

}

/** A pool thread's end of the port: requests in, ECB calls out. */
class PoolThreadSide {
  extension: ThreadPoolExtension | null = null;
  private readonly replies = new Map<number, { resolve: (v: never) => void; reject: (e: Error) => void }>();
  private readonly requests = new Map<number, ThreadECB>();
  private nextCid = 1;

  constructor(private readonly port: MessagePort) {
    // runWorker() takes the stand-in instead of loading the bridge: the thread builds the
    // extension and never opens the channel.
    (globalThis as { [BRIDGE_ADDON_OVERRIDE]?: BridgeAddon })[BRIDGE_ADDON_OVERRIDE] = this.standInAddon();
    port.on('message', (m: ToThread) => this.receive(m));
  }

  private standInAddon(): BridgeAddon {
    const never = (what: string) => () => {
      throw new Error(`${what} is not available on a pool thread`);
    };
    return {
      open: () => {},
      ready: () => {
        if (!this.extension) throw new Error('__ExtensionFactory__() did not return a ThreadPoolExtension in the pool thread');
        this.port.postMessage({ t: 'ready' } satisfies FromThread);
      },
      headers: never('headers'),
      write: never('write'),
      done: never('done'),
      getVar: never('getVar'),
      credit: never('credit'),
      log: (line: string) => void process.stderr.write(line + '\n'),
      releaseStartupPages: () => 0,  // the process's main thread does it
      serverSupport: never('serverSupport'),
      reload: never('reload'),
      filterCall: never('filterCall'),
      filterReply: never('filterReply'),
      protocolVersion: 0,
    };
  }

  /** Posts a call that needs no answer (its failure is logged by the main thread). */
  post(rid: number, name: CallName, args: unknown[], httpStatus: number, logData: string): void {
    this.port.postMessage({ t: 'call', rid, cid: 0, name, args, httpStatus, logData } satisfies FromThread);
  }

  call<T>(rid: number, name: CallName, args: unknown[], transfer: ArrayBuffer[], httpStatus: number, logData: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const cid = this.nextCid++;
      this.replies.set(cid, { resolve: resolve as (v: never) => void, reject });
      this.port.postMessage({ t: 'call', rid, cid, name, args, httpStatus, logData } satisfies FromThread, transfer);
    });
  }

  private receive(m: ToThread): void {
    switch (m.t) {
      case 'dispatch':
        void this.dispatch(m.rid, m.fields);
        return;
      case 'reply': {
        const r = this.replies.get(m.cid);
        this.replies.delete(m.cid);
        if (!r) return;
        if (m.ok) r.resolve(m.value as never);
        else r.reject(fromWire(m.error));
        return;
      }
      case 'abort':
        this.requests.get(m.rid)?._abort();
        this.requests.delete(m.rid);
        return;
    }
  }

  private async dispatch(rid: number, fields: RequestFields): Promise<void> {
    const ext = this.extension!;
    const ecb = new ThreadECB(this, rid, fields);
    this.requests.set(rid, ecb);
    const end: Extract<FromThread, { t: 'end' }> = { t: 'end', rid, httpStatus: 200, logData: '' };
    try {
      end.status = (await ext.Dispatch(ecb)) ?? undefined;
    } catch (err) {
      if (err instanceof InternalReloadException) {
        end.reload = err.message;
      } else {
        try {
          await ext.HandleDispatchError(ecb, err);
        } catch (again) {
          end.error = toWire(again);
        }
      }
    }
    end.httpStatus = ecb.HttpStatusCode;
    end.logData = ecb.LogData;
    if (end.status !== HSE_STATUS_PENDING || ecb.isDone) this.requests.delete(rid);
    this.port.postMessage(end);
  }
}

const threadSide: PoolThreadSide | null =
  !isMainThread && parentPort && (workerData as Record<string, unknown> | null)?.[POOL_MARK] ? new PoolThreadSide(parentPort) : null;

// ---------------------------------------------------------------------------------------------
// The main-thread side: the pool.

interface MainRequest {
  rid: number;
  ecb: ECB;
  thread: PoolThread | null;
  resolve: (status: HandlerResult) => void;
  reject: (err: Error) => void;
  /** Dispatch returned (or failed): HttpExtensionProc's promise is settled. */
  settled: boolean;
  removeAbort?: () => void;
}

interface PoolThread {
  worker: Worker;
  ready: boolean;
  /** The request whose Dispatch is running there, if any. */
  running: number | null;
  /** Requests still open there (running, or returned HSE_STATUS_PENDING). */
  open: Set<number>;
  error?: Error;
}

class Pool {
  private readonly threads: PoolThread[] = [];
  private readonly queue: MainRequest[] = [];
  private readonly requests = new Map<number, MainRequest>();
  private nextRid = 1;
  private startFailures = 0;
  private stopping = false;

  constructor(
    private readonly ext: ThreadPoolExtension,
    private readonly source: AppSource,
    private readonly max: number,
  ) {}

  get size(): number {
    return this.threads.length;
  }

  /** Starts a thread now, so the first request does not wait for one. */
  warm(): void {
    if (this.threads.length === 0) this.spawn();
  }

  run(ecb: ECB): Promise<HandlerResult> {
    return new Promise<HandlerResult>((resolve, reject) => {
      if (this.stopping) return reject(new Error('the thread pool is stopping'));
      const r: MainRequest = { rid: this.nextRid++, ecb, thread: null, resolve, reject, settled: false };
      this.requests.set(r.rid, r);
      this.queue.push(r);
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const idle = this.threads.find((t) => t.ready && t.running === null);
      if (!idle) {
        const starting = this.threads.filter((t) => !t.ready).length;
        if (!this.stopping && this.threads.length < this.max && starting < this.queue.length) this.spawn();
        return;
      }
      const r = this.queue.shift()!;
      if (r.ecb.aborted || r.ecb.isDone) {
        this.settle(r, HSE_STATUS_SUCCESS);
        continue;
      }
      this.start(idle, r);
    }
  }

  private start(t: PoolThread, r: MainRequest): void {
    const ecb = r.ecb;
    const vars: Record<string, string> = { REQUEST_METHOD: ecb.Method, QUERY_STRING: ecb.QueryString, PATH_INFO: ecb.PathInfo, PATH_TRANSLATED: ecb.PathTranslated, CONTENT_TYPE: ecb.ContentType };
    for (const name of COPIED_VARIABLES) {
      const v = ecb.knownServerVariable(name);
      if (v !== undefined) vars[name] = v;
    }
    const body = ownBytes(ecb.AvailableData);
    const fields: RequestFields = {
      Method: ecb.Method,
      QueryString: ecb.QueryString,
      PathInfo: ecb.PathInfo,
      PathTranslated: ecb.PathTranslated,
      ContentType: ecb.ContentType,
      TotalBytes: ecb.TotalBytes,
      AvailableData: body,
      ConnID: ecb.ConnID,
      keepAlive: ecb.IsKeepAlive(),
      headers: ecb.headers(),
      vars,
    };
    r.thread = t;
    t.running = r.rid;
    t.open.add(r.rid);
    r.removeAbort = ecb.onAbort(() => {
      t.worker.postMessage({ t: 'abort', rid: r.rid } satisfies ToThread);
      if (r.settled) return this.forget(r);
      // A Dispatch that never returns (a busy loop) would hold the thread for ever: stop it.
      setTimeout(() => {
        if (t.running !== r.rid || !this.threads.includes(t)) return;
        t.error = new Error(
          `Dispatch of ${ecb.Method} ${ecb.PathInfo} was still running ${this.ext.abortedDispatchTimeoutMs} ms after its request was dropped; its thread was stopped`,
        );
        void t.worker.terminate();
      }, this.ext.abortedDispatchTimeoutMs).unref();
    });
    t.worker.postMessage({ t: 'dispatch', rid: r.rid, fields } satisfies ToThread, [body.buffer as ArrayBuffer]);
  }

  private spawn(): void {
    const worker = new Worker(THREAD_BOOT, {
      eval: true,
      name: `${this.ext.scriptName} pool thread`,
      workerData: { [POOL_MARK]: this.source },
      env: { ...process.env, ISAPI_DESCRIBE: '' },
    });
    const t: PoolThread = { worker, ready: false, running: null, open: new Set() };
    this.threads.push(t);
    worker.unref();
    worker.on('message', (m: FromThread) => this.receive(t, m));
    // @types/node ≥ 24 types the event's value as unknown; a thread's uncaught throw arrives as an Error.
    worker.on('error', (err) => (t.error = err as Error));
    worker.on('exit', (code) => this.exited(t, t.error ?? new Error(`a pool thread exited (code ${code})`)));
  }

  private exited(t: PoolThread, err: Error): void {
    const i = this.threads.indexOf(t);
    if (i >= 0) this.threads.splice(i, 1);
    if (this.stopping) return;
    process.stderr.write(`${this.ext.scriptName}: a pool thread stopped: ${err.stack ?? err}\n`);
    for (const rid of t.open) {
      const r = this.requests.get(rid);
      if (r) void this.fail(r, err);
    }
    if (!t.ready && ++this.startFailures >= 3) {
      // The script cannot start in a thread: answer what waits instead of retrying forever.
      this.startFailures = 0;
      const waiting = this.queue.splice(0);
      const why = new Error(`the pool threads cannot start: ${err.message}`);
      for (const r of waiting) void this.fail(r, why);
      return;
    }
    this.pump();
  }

  private receive(t: PoolThread, m: FromThread): void {
    switch (m.t) {
      case 'ready':
        t.ready = true;
        this.startFailures = 0;
        this.pump();
        return;
      case 'call':
        this.call(t, m);
        return;
      case 'end': {
        const r = this.requests.get(m.rid);
        t.running = null;
        if (r) {
          r.ecb.HttpStatusCode = m.httpStatus;
          r.ecb.LogData = m.logData;
          if (m.reload !== undefined) this.settle(r, undefined, new InternalReloadException(m.reload));
          else if (m.error) this.settle(r, undefined, fromWire(m.error));
          else this.settle(r, m.status);
          if (m.status !== HSE_STATUS_PENDING || r.ecb.isDone) this.forget(r);
        }
        this.pump();
        return;
      }
    }
  }

  private call(t: PoolThread, m: Extract<FromThread, { t: 'call' }>): void {
    const reply = (msg: ToThread, transfer: ArrayBuffer[] = []) => {
      if (m.cid !== 0) t.worker.postMessage(msg, transfer);
    };
    const failed = (err: unknown) => {
      if (m.cid === 0) process.stderr.write(`${this.ext.scriptName}: ${m.name} (pool thread): ${(err as Error)?.message ?? err}\n`);
      reply({ t: 'reply', cid: m.cid, ok: false, error: toWire(err) });
    };
    const r = this.requests.get(m.rid);
    if (!r || !CALL_NAMES.has(m.name)) {
      failed(new ExtensionError(ERROR_INVALID_PARAMETER, 'the request is no longer active', m.name));
      return;
    }
    const ecb = r.ecb;
    ecb.HttpStatusCode = m.httpStatus;
    ecb.LogData = m.logData;
    let result: unknown;
    try {
      // Made at once, in arrival order: each ECB method does its sending before its first await.
      result = (ecb[m.name] as (...args: unknown[]) => unknown).apply(ecb, m.args);
    } catch (err) {
      failed(err);
      return;
    }
    if (m.name === 'DoneWithSession' && r.settled) this.forget(r);
    Promise.resolve(result).then((value) => {
      const { value: v, transfer } = transferable(value);
      reply({ t: 'reply', cid: m.cid, ok: true, value: v }, transfer);
    }, failed);
  }

  private settle(r: MainRequest, status: HandlerResult, err?: Error): void {
    if (r.settled) return;
    r.settled = true;
    if (err) r.reject(err);
    else r.resolve(status);
  }

  private forget(r: MainRequest): void {
    this.requests.delete(r.rid);
    r.thread?.open.delete(r.rid);
    r.removeAbort?.();
  }

  /** The thread running `r` died (or never started): the extension's error handler answers on the main thread. */
  private async fail(r: MainRequest, err: Error): Promise<void> {
    this.forget(r);
    if (r.thread?.running === r.rid) r.thread.running = null;
    try {
      if (!r.ecb.isDone) await this.ext.HandleDispatchError(r.ecb, err);
    } catch (again) {
      process.stderr.write(`${this.ext.scriptName}: HandleDispatchError failed: ${(again as Error)?.stack ?? again}\n`);
    }
    this.settle(r, HSE_STATUS_SUCCESS);
  }

  /** Waits (at most timeoutMs) for running requests, then stops every thread. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    for (const r of this.queue.splice(0)) void this.fail(r, new Error('the extension is stopping'));
    const deadline = Date.now() + timeoutMs;
    while (this.requests.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const left = this.requests.size;
    const threads = this.threads.splice(0);
    await Promise.all(threads.map((t) => t.worker.terminate()));
    process.stderr.write(
      `${this.ext.scriptName}: thread pool stopped (${threads.length} thread${threads.length === 1 ? '' : 's'}` +
        (left ? `; ${left} request${left === 1 ? '' : 's'} still running after ${timeoutMs} ms were cut off` : '') +
        ')\n',
    );
  }
}

/**
 * pywin32's ThreadPoolExtension: implement `Dispatch(ecb)` instead of HttpExtensionProc. Each
 * request is queued and run by a pool thread (node:worker_threads), one Dispatch per thread at a
 * time, so CPU-bound handlers run in parallel and the worker's event loop stays free.
 *
 * - The process model already runs N worker processes (ISAPI_WORKERS, default one per CPU);
 *   this adds threads inside one process. A CPU-heavy extension usually wants ISAPI_WORKERS=1
 *   (or a few) with a thread per core, rather than N processes × N threads.
 * - Dispatch gets a {@link DispatchECB}: every public ECB member. Fields are copied to the
 *   thread; `IsKeepAlive()`, `headers()` and `knownServerVariable()` answer there; every other
 *   call is posted to the main thread, made on the real ECB, and answered (a thread hop, plus
 *   the bridge round trip where the ECB needs one). WriteClient keeps its backpressure.
 * - As with HttpExtensionProc, the request ends when Dispatch returns (or its promise resolves),
 *   unless it called DoneWithSession or returned HSE_STATUS_PENDING (then it calls
 *   DoneWithSession later, from that thread).
 * - A Dispatch that throws goes to HandleDispatchError (a 500; exception details only with
 *   ISAPI_DETAILED_ERRORS=1); InternalReloadException reloads the workers as usual. A thread
 *   that dies fails its requests the same way, and a new one replaces it.
 * - Each thread evaluates the script again (its own module state) and calls
 *   __ExtensionFactory__() once: keep the script's top level free of side effects that must
 *   happen once per process, or guard them with `isMainThread` from node:worker_threads.
 *   State shared by all requests lives per thread; share across threads with SharedArrayBuffer
 *   or a database, as with any worker_threads program.
 * - TerminateExtension waits up to `terminateTimeoutMs` for running Dispatch calls, then stops
 *   the threads. Subclasses that override it call `super.TerminateExtension(status)`.
 * - Threads are started on demand, up to `threads`; one is started with the extension. A
 *   Dispatch still running `abortedDispatchTimeoutMs` after its request was dropped (deadline,
 *   client gone) has its thread stopped and replaced.
 */
export abstract class ThreadPoolExtension extends SimpleExtension {
  readonly maxThreads: number;
  readonly terminateTimeoutMs: number;
  readonly abortedDispatchTimeoutMs: number;
  /** The script's name (for log lines), as the worker passed it to GetExtensionVersion. */
  scriptName = 'extension';
  private pool: Pool | null = null;
  private readonly source: AppSource | null = null;

  constructor(options: ThreadPoolOptions = {}) {
    super();
    const env = Number.parseInt(process.env.ISAPI_THREADS ?? '', 10);
    this.maxThreads = Math.max(0, options.threads ?? (Number.isFinite(env) ? env : os.availableParallelism()));
    this.terminateTimeoutMs = options.terminateTimeoutMs ?? 15_000;
    this.abortedDispatchTimeoutMs = options.abortedDispatchTimeoutMs ?? 5000;
    if (threadSide) {
      threadSide.extension ??= this;
    } else if (this.maxThreads > 0) {
      this.source = appSource();
    }
  }

  /** Handles one request on a pool thread. Same contract as HttpExtensionProc. */
  abstract Dispatch(ecb: DispatchECB): HandlerResult | Promise<HandlerResult>;

  /**
   * Dispatch threw (or its thread died): log it and answer 500, with the exception only when
   * ISAPI_DETAILED_ERRORS=1 (development). If the response had begun, the request is ended with
   * HSE_STATUS_ERROR instead (the server closes the connection). Called on the pool thread with
   * its ThreadECB, or on the main thread with the ECB when the thread is gone.
   */
  HandleDispatchError(ecb: DispatchECB, err: unknown): void | Promise<void> {
    const text = String((err as Error)?.stack ?? err);
    process.stderr.write(`${this.scriptName}: Dispatch ${ecb.Method} ${ecb.PathInfo}: ${text}\n`);
    if (ecb.isDone) return;
    if (ecb.headersSent || ecb.aborted) {
      ecb.DoneWithSession(HSE_STATUS_ERROR);
      return;
    }
    const detail =
      process.env.ISAPI_DETAILED_ERRORS === '1' ? `<pre>${escapeHtml(text)}</pre>` : '<p>The extension failed; see its log for details.</p>';
    const body = `<!DOCTYPE html>\n<html><head><title>500 Internal Server Error</title></head><body>\n<h1>500 Internal Server Error</h1>\n${detail}\n</body></html>\n`;
    ecb.SendResponseHeaders('500 Internal Server Error', { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    ecb.WriteClient(body).catch(() => {});
    ecb.DoneWithSession(HSE_STATUS_SUCCESS);
  }

  GetExtensionVersion(vi: ExtensionVersionInfo): void {
    if (vi.ExtensionDesc) this.scriptName = vi.ExtensionDesc;
    super.GetExtensionVersion(vi);
    if (!threadSide) this.threads()?.warm();
  }

  /** Queues the request for a pool thread; resolves when its Dispatch is over. */
  HttpExtensionProc(ecb: ECB): Promise<HandlerResult> {
    if (threadSide) return Promise.reject(new Error('HttpExtensionProc of a ThreadPoolExtension runs on the main thread only'));
    const pool = this.threads();
    return pool ? pool.run(ecb) : this.dispatchHere(ecb);
  }

  async TerminateExtension(_status: number): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    await pool?.stop(this.terminateTimeoutMs);
  }

  /** How many pool threads are running now. */
  get threadCount(): number {
    return this.pool?.size ?? 0;
  }

  private threads(): Pool | null {
    if (this.maxThreads === 0) return null;
    if (!this.source) {
      if (!this.pool && !warnedNoThreads) {
        warnedNoThreads = true;
        process.stderr.write(`${this.scriptName}: not running as a packed worker: ThreadPoolExtension runs Dispatch on the main thread\n`);
      }
      return null;
    }
    return (this.pool ??= new Pool(this, this.source, this.maxThreads));
  }

  /** threads: 0 (or not a packed worker): Dispatch on the main thread, with the same error handling. */
  private async dispatchHere(ecb: ECB): Promise<HandlerResult> {
    try {
      return await this.Dispatch(ecb);
    } catch (err) {
      if (err instanceof InternalReloadException) throw err;
      await this.HandleDispatchError(ecb, err);
      return HSE_STATUS_SUCCESS;
    }
  }
}

let warnedNoThreads = false;
