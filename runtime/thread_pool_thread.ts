// A pool thread's side of a ThreadPoolExtension: it runs the bundled script again (started by
// thread_pool.ts), swaps the bridge addon for a stand-in so the script builds its extension
// without opening the channel, and runs Dispatch for each request the main thread sends.

import { isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { BRIDGE_ADDON_OVERRIDE, type BridgeAddon } from './channel';
import { HSE_STATUS_PENDING } from './constants';
import { InternalReloadException } from './errors';
import { ThreadECB, type MainThreadLink } from './thread_ecb';
import type { ThreadPoolExtension } from './thread_pool_extension';
import { fromWire, POOL_MARK, toWire, type CallName, type FromThread, type RequestFields, type ToThread } from './thread_pool_protocol';

/** A pool thread's end of the port: requests in, ECB calls out. */
class PoolThreadSide implements MainThreadLink {
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

export const threadSide: PoolThreadSide | null =
  !isMainThread && parentPort && (workerData as Record<string, unknown> | null)?.[POOL_MARK] ? new PoolThreadSide(parentPort) : null;
