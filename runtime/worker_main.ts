// The worker's main loop: open the channel, build the user's extension, announce Ready, then
// turn each Request message into an ECB and a call to HttpExtensionProc.

import { In, loadBridgeAddon, type BridgeAddon, type RequestBegin, type ServerSupportReply } from './channel';
import { HSE_STATUS_PENDING, HSE_STATUS_SUCCESS, HSE_TERM_ADVISORY_UNLOAD } from './constants';
import { ECB, type RequestLink } from './ecb';
import { InternalReloadException } from './errors';
import type { Extension, UserModule } from './extension';

// After a Shutdown, the worker exits once it has been idle this long: a request the bridge
// routed just before deciding to drain still arrives and is answered.
const DRAIN_GRACE_MS = 250;

interface WorkerOptions {
  /** The script's name, for messages. */
  name: string;
  /** Show exception details in 500 responses (development only; never on by default). */
  detailedErrors?: boolean;
}

export function runWorker(user: UserModule, options: WorkerOptions): void {
  let addon: BridgeAddon;
  try {
    addon = loadBridgeAddon();
  } catch (err) {
    process.stderr.write(`${options.name}: ${(err as Error).message}\n`);
    process.exit(2);
  }
  start(addon, user, options).catch((err) => {
    process.stderr.write(`${options.name}: the extension failed to start: ${(err as Error)?.stack ?? err}\n`);
    process.exit(1);
  });
}

async function start(addon: BridgeAddon, user: UserModule, options: WorkerOptions): Promise<void> {
  const factory = user.__ExtensionFactory__;
  if (typeof factory !== 'function') {
    throw new Error(`${options.name} exports no __ExtensionFactory__ function`);
  }
  const extension: Extension = await factory();
  if (typeof extension?.HttpExtensionProc !== 'function') {
    throw new Error(`${options.name}: __ExtensionFactory__() returned an object without HttpExtensionProc`);
  }
  await extension.GetExtensionVersion?.({ ExtensionDesc: options.name });

  const detailed = options.detailedErrors ?? process.env.ISAPI_DETAILED_ERRORS === '1';
  const requests = new Map<number, ECB>();
  const varCalls = new Map<number, (r: { err: number; value: Buffer }) => void>();
  const supportCalls = new Map<number, (r: ServerSupportReply) => void>();
  let nextCallId = 1;
  let drainWaiters: Array<() => void> = [];
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
        await extension.TerminateExtension?.(HSE_TERM_ADVISORY_UNLOAD);
      } finally {
        process.exit(0);
      }
    }, DRAIN_GRACE_MS);
  };

  // A stray rejection or exception outside any request must not take every in-flight request
  // down with the process: log it (with the source-mapped stack) and keep serving.
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`${options.name}: unhandled rejection: ${(err as Error)?.stack ?? err}\n`);
  });

  const begin = (id: number, req: RequestBegin) => {
    const link: RequestLink = {
      id,
      addon,
      askVariable(name) {
        const callId = nextCallId++;
        return new Promise((resolve) => {
          varCalls.set(callId, resolve);
          addon.getVar(id, callId, name);
        });
      },
      serverSupport(request, ints, strs) {
        const callId = nextCallId++;
        return new Promise((resolve) => {
          supportCalls.set(callId, resolve);
          addon.serverSupport(id, callId, request, ints, strs);
        });
      },
      waitDrain: () => new Promise<void>((resolve) => drainWaiters.push(resolve)),
      finished() {
        requests.delete(id);
        if (shuttingDown) stopWhenIdle();
      },
    };
    const ecb = new ECB(link, req);
    requests.set(id, ecb);
    lastActivity = Date.now();
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

  addon.open((type, id, a, b, c) => {
    switch (type) {
      case In.Request:
        begin(id, a as RequestBegin);
        return;
      case In.Body:
        requests.get(id)?._body(a as Buffer);
        return;
      case In.ServerSupportReply: {
        const resolve = supportCalls.get(a as number);
        supportCalls.delete(a as number);
        resolve?.(b as ServerSupportReply);
        return;
      }
      case In.VarReply: {
        const resolve = varCalls.get(a as number);
        varCalls.delete(a as number);
        resolve?.({ err: b as number, value: c as Buffer });
        return;
      }
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
        process.exit(0);
    }
  });
  addon.ready();
}
