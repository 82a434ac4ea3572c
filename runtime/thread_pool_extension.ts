// pywin32's ThreadPoolExtension on node:worker_threads: HttpExtensionProc queues the request
// and a pool thread runs Dispatch(ecb), so CPU-bound handlers use every core.
//
// The ECB stays on the main thread: its calls reach the bridge through the addon, which lives
// there. A pool thread gets a ThreadECB (thread_ecb.ts): the request fields copied, and every
// call posted to the main thread over the thread's MessagePort (thread_pool_protocol.ts), made
// there on the real ECB, and answered (thread_pool.ts).
//
// How a thread gets the script's code, also inside a single executable (where a file path into
// the bundle cannot be loaded): the thread is started from a few lines of eval'd code that read
// the bundled app the way the SEA's own loader does (the SEA asset `app.js`, or the file beside
// the loader when run by plain node) and compile it. The bundle then runs in the thread as it
// does in the worker, up to runWorker(): there, thread_pool_thread.ts (evaluated earlier in the
// same bundle) has swapped the bridge addon for a stand-in, so the thread builds the extension
// with __ExtensionFactory__ (the instance registers itself with the thread) and never touches
// the channel; its "ready" tells the main thread the thread can take requests.

import os from 'node:os';
import { HSE_STATUS_ERROR, HSE_STATUS_SUCCESS } from './constants';
import type { ECB } from './ecb';
import { InternalReloadException } from './errors';
import { SimpleExtension, type ExtensionVersionInfo, type HandlerResult } from './extension';
import type { DispatchECB } from './thread_ecb';
import { appSource, Pool, type AppSource } from './thread_pool';
import { threadSide } from './thread_pool_thread';

export { ThreadECB, type DispatchECB } from './thread_ecb';

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

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

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
