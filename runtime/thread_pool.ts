// The main thread's side of a ThreadPoolExtension: the pool of threads (started on demand),
// the queue of requests, and each call a thread's ThreadECB posts, made on the real ECB.

import { Worker } from 'node:worker_threads';
import { ERROR_INVALID_PARAMETER, HSE_STATUS_PENDING, HSE_STATUS_SUCCESS } from './constants';
import type { ECB } from './ecb';
import { ExtensionError, InternalReloadException } from './errors';
import type { HandlerResult } from './extension';
import type { ThreadPoolExtension } from './thread_pool_extension';
import {
  CALL_NAMES,
  fromWire,
  ownBytes,
  POOL_MARK,
  toWire,
  transferable,
  type FromThread,
  type RequestFields,
  type ToThread,
} from './thread_pool_protocol';

/** The SEA asset that holds the bundled app (packer/bundle.ts APP_ASSET). */
const APP_ASSET = 'app.js';

export interface AppSource {
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

function requireBuiltin<T>(id: string): T | undefined {
  try {
    const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
    return (get ? get(id) : require(id)) as T | undefined;
  } catch {
    return undefined;
  }
}

/** Where pool threads get the script's code; null when not running as a packed worker. */
export function appSource(): AppSource | null {
  const file = typeof __filename === 'string' ? __filename : '';
  if (!file.endsWith('.js')) return null;
  if (requireBuiltin<{ isSea(): boolean }>('node:sea')?.isSea()) return { asset: APP_ASSET, file };
  return requireBuiltin<typeof import('node:fs')>('node:fs')?.existsSync(file) ? { file } : null;
}

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

export class Pool {
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
    const vars = ecb._knownVariables();
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
