// The worker's main loop: open the channel, build the user's extension and/or filter, announce
// Ready, then turn each Request message into an ECB and a call to HttpExtensionProc, and each
// FilterNotify into a FilterContext and a call to HttpFilterProc.

import { In, loadBridgeAddon, type BodyMessage, type BridgeAddon, type FilterNotification, type RequestBegin, type ServerSupportReply, type WriteAckMessage } from './channel';
import {
  HSE_STATUS_PENDING,
  HSE_STATUS_SUCCESS,
  HSE_TERM_ADVISORY_UNLOAD,
  SF_NOTIFY_END_OF_NET_SESSION,
  SF_STATUS_REQ_ERROR,
  SF_STATUS_REQ_NEXT_NOTIFICATION,
} from './constants';
import { ECB, type RequestLink } from './ecb';
import { InternalReloadException } from './errors';
import type { Extension, UserModule } from './extension';
import { FilterContext, type Filter, type FilterLink, type FilterQueryOp } from './filter';

// After a Shutdown, the worker exits once it has been idle this long: a request the bridge
// routed just before deciding to drain still arrives and is answered.
const DRAIN_GRACE_MS = 250;

export interface WorkerOptions {
  /** The script's name, for messages. */
  name: string;
  /** Show exception details in 500 responses (development only; never on by default). */
  detailedErrors?: boolean;
  /**
   * In-process use (node-isapi/testing): called instead of process.exit when the worker would
   * end, and the process-wide unhandledRejection hook is left alone (the test runner owns it).
   */
  exit?: (code: number) => void;
}

/** What the packer records in the manifest (ISAPI_DESCRIBE=1 prints it and exits). */
export interface ScriptDescription {
  extension: boolean;
  filter: boolean;
  filterFlags: number;
  filterFailurePolicy: 'fail-closed' | 'pass-through';
  filterTimeoutMs: number;
}

async function describe(user: UserModule): Promise<ScriptDescription> {
  const filter = typeof user.__FilterFactory__ === 'function' ? ((await user.__FilterFactory__()) as Filter) : undefined;
  if (filter && !(Number.isInteger(filter.filterFlags) && filter.filterFlags > 0)) {
    throw new Error('__FilterFactory__() returned a filter without filterFlags (SF_NOTIFY_* bits)');
  }
  return {
    extension: typeof user.__ExtensionFactory__ === 'function',
    filter: !!filter,
    filterFlags: filter ? filter.filterFlags >>> 0 : 0,
    filterFailurePolicy: filter?.filterFailurePolicy ?? 'fail-closed',
    filterTimeoutMs: filter?.filterTimeoutMs ?? 5000,
  };
}

export function runWorker(user: UserModule, options: WorkerOptions): void {
  if (process.env.ISAPI_DESCRIBE === '1') {
    describe(user).then(
      (d) => {
        process.stdout.write(JSON.stringify(d) + '\n');
        process.exit(0);
      },
      (err) => {
        process.stderr.write(`${options.name}: ${(err as Error)?.stack ?? err}\n`);
        process.exit(1);
      },
    );
    return;
  }
  let addon: BridgeAddon;
  try {
    addon = loadBridgeAddon();
  } catch (err) {
    process.stderr.write(`${options.name}: ${(err as Error).message}\n`);
    process.exit(2);
  }
  startWorker(addon, user, options).catch((err) => {
    process.stderr.write(`${options.name}: the extension failed to start: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  });
}

/**
 * The worker loop on an open addon. runWorker() gives it the bridge; node-isapi/testing gives it
 * an in-process stand-in, so tests run exactly this code.
 */
export async function startWorker(addon: BridgeAddon, user: UserModule, options: WorkerOptions): Promise<void> {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  if (typeof user.__ExtensionFactory__ !== 'function' && typeof user.__FilterFactory__ !== 'function') {
    throw new Error(`${options.name} exports neither __ExtensionFactory__ nor __FilterFactory__`);
  }
  let extension: Extension | undefined;
  if (typeof user.__ExtensionFactory__ === 'function') {
    extension = await user.__ExtensionFactory__();
    if (typeof extension?.HttpExtensionProc !== 'function') {
      throw new Error(`${options.name}: __ExtensionFactory__() returned an object without HttpExtensionProc`);
    }
    await extension.GetExtensionVersion?.({ ExtensionDesc: options.name });
  }
  let filter: Filter | undefined;
  if (typeof user.__FilterFactory__ === 'function') {
    filter = (await user.__FilterFactory__()) as Filter;
    if (typeof filter?.HttpFilterProc !== 'function') {
      throw new Error(`${options.name}: __FilterFactory__() returned an object without HttpFilterProc`);
    }
    await filter.GetFilterVersion?.({ FilterDesc: options.name });
  }

  const detailed = options.detailedErrors ?? process.env.ISAPI_DETAILED_ERRORS === '1';
  const requests = new Map<number, ECB>();
  const replies = new Map<number, (r: never) => void>();
  let nextCallId = 1;
  const call = <T>(send: (callId: number) => void) =>
    new Promise<T>((resolve) => {
      const callId = nextCallId++;
      replies.set(callId, resolve as (r: never) => void);
      send(callId);
    });
  const answer = (callId: number, value: unknown) => {
    const resolve = replies.get(callId);
    replies.delete(callId);
    resolve?.(value as never);
  };
  let drainWaiters: Array<() => void> = [];
  const connections = new Map<number, { value: unknown }>();
  let shuttingDown = false;

  let lastActivity = Date.now();
  let exitTimer: NodeJS.Timeout | null = null;
  const stopWhenIdle = () => {
    if (!shuttingDown || requests.size > 0 || exitTimer) return;
    exitTimer = setTimeout(async () => {
      exitTimer = null;
      if (requests.size > 0) return;
      if (Date.now() - lastActivity < DRAIN_GRACE_MS) return stopWhenIdle();
      try {
        await extension?.TerminateExtension?.(HSE_TERM_ADVISORY_UNLOAD);
        await filter?.TerminateFilter?.(HSE_TERM_ADVISORY_UNLOAD);
      } finally {
        exit(0);
      }
    }, DRAIN_GRACE_MS);
  };

  // A stray rejection outside any request must not take every in-flight request down with
  // the process: log it (with the source-mapped stack) and keep serving.
  if (!options.exit) {
    process.on('unhandledRejection', (err) => {
      process.stderr.write(`${options.name}: unhandled rejection: ${(err as Error)?.stack ?? err}\n`);
    });
  }

  const begin = (id: number, req: RequestBegin) => {
    lastActivity = Date.now();
    const link: RequestLink = {
      id,
      addon,
      askVariable: (name) => call((callId) => addon.getVar(id, callId, name)),
      serverSupport: (request, ints, strs) =>
        call<ServerSupportReply>((callId) => addon.serverSupport(id, callId, request, ints, strs)),
      waitDrain: () => new Promise<void>((resolve) => drainWaiters.push(resolve)),
      finished() {
        requests.delete(id);
        if (shuttingDown) stopWhenIdle();
      },
    };
    const ecb = new ECB(link, req);
    if (!extension) {
      ecb._fail('This script exports no extension (__ExtensionFactory__).');
      return;
    }
    requests.set(id, ecb);
    const fail = (err: unknown) => {
      const e = err as Error;
      if (err instanceof InternalReloadException) {
        // pywin32 reloaded the module in place; here a fresh generation of workers starts and
        // this one drains. The request that asked for it is told to come back.
        process.stderr.write(`${options.name}: ${ecb.Method} ${ecb.PathInfo}: reload requested: ${e.message}\n`);
        addon.reload(e.message);
        ecb._fail('The extension is reloading; retry shortly.', 503, 1);
        return;
      }
      process.stderr.write(`${options.name}: ${ecb.Method} ${ecb.PathInfo}: ${e?.stack ?? e}\n`);
      ecb._fail(detailed ? String(e?.stack ?? e) : 'The extension failed; see its log for details.');
    };
    try {
      const result = extension.HttpExtensionProc(ecb);
      if (result instanceof Promise) {
        result.then((status) => finish(ecb, status), fail);
      } else {
        finish(ecb, result);
      }
    } catch (err) {
      fail(err);
    }
  };

  const finish = (ecb: ECB, status: number | void | undefined) => {
    if (ecb.isDone || status === HSE_STATUS_PENDING) return;
    ecb.DoneWithSession(status ?? HSE_STATUS_SUCCESS);
  };

  const notify = async (id: number, n: FilterNotification) => {
    const endOfSession = n.notification === SF_NOTIFY_END_OF_NET_SESSION;
    const connection = connections.get(n.connection) ?? { value: undefined };
    connections.set(n.connection, connection);
    const link: FilterLink = {
      query: (op: FilterQueryOp, name: string) => call((callId) => addon.filterCall(id, callId, op, name)),
    };
    const fc = new FilterContext(link, n, connection);
    let status: number = SF_STATUS_REQ_NEXT_NOTIFICATION;
    try {
      // END_OF_NET_SESSION is always delivered (to release FilterContext); the script only
      // sees it when it asked for it.
      if (filter && (!endOfSession || filter.filterFlags & SF_NOTIFY_END_OF_NET_SESSION)) {
        status = (await filter.HttpFilterProc(fc)) ?? SF_STATUS_REQ_NEXT_NOTIFICATION;
      }
    } catch (err) {
      process.stderr.write(`${options.name}: HttpFilterProc(0x${n.notification.toString(16)}): ${(err as Error)?.stack ?? err}\n`);
      status = SF_STATUS_REQ_ERROR;
    }
    if (endOfSession) connections.delete(n.connection);
    if (n.wantsReply) addon.filterReply(id, status, fc._changes());
  };

  addon.open((type, id, message) => {
    switch (type) {
      case In.Request:
        begin(id, message as RequestBegin);
        return;
      case In.Body:
        requests.get(id)?._body((message as BodyMessage).data);
        return;
      case In.WriteAck:
        requests.get(id)?._acked((message as WriteAckMessage).bytes);
        return;
      case In.VarReply:
      case In.ServerSupportReply:
      case In.FilterCallReply:
        answer((message as { callId: number }).callId, message);
        return;
      case In.FilterNotify:
        void notify(id, message as FilterNotification);
        return;
      case In.Drain: {
        const waiters = drainWaiters;
        drainWaiters = [];
        for (const w of waiters) w();
        return;
      }
      case In.Abort:
        requests.get(id)?._abort();
        requests.delete(id);
        return;
      case In.Shutdown:
        shuttingDown = true;
        stopWhenIdle();
        return;
      case In.Closed:
        exit(0);
    }
  });
  addon.ready();
  // Starting Node touched ~20 MiB of its executable that serving never reads again (symbol
  // tables, built-in modules' source and code cache): clean file pages, dropped from the
  // worker's resident set so what it reports is what it uses (issue 7).
  const released = addon.releaseStartupPages();
  if (released > 0) addon.log(`ready; released ${(released / 1048576).toFixed(1)} MiB of executable pages read at start-up`);
}
