// The worker's main loop: open the channel, build the user's extension, announce Ready, then
// turn each Request message into an ECB and a call to HttpExtensionProc.

import { In, loadBridgeAddon, type BridgeAddon, type RequestBegin } from './channel';
import { HSE_STATUS_PENDING, HSE_STATUS_SUCCESS, HSE_TERM_ADVISORY_UNLOAD } from './constants';
import { ECB, type RequestLink } from './ecb';
import type { Extension, UserModule } from './extension';

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
  let nextCallId = 1;
  let drainWaiters: Array<() => void> = [];
  let shuttingDown = false;

  const stopWhenIdle = async () => {
    if (!shuttingDown || requests.size > 0) return;
    try {
      await extension.TerminateExtension?.(HSE_TERM_ADVISORY_UNLOAD);
    } finally {
      process.exit(0);
    }
  };

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
      waitDrain: () => new Promise<void>((resolve) => drainWaiters.push(resolve)),
      finished() {
        requests.delete(id);
        if (shuttingDown) void stopWhenIdle();
      },
    };
    const ecb = new ECB(link, req);
    requests.set(id, ecb);
    const fail = (err: unknown) => {
      const e = err as Error;
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
        void stopWhenIdle();
        return;
      case In.Closed:
        process.exit(0);
    }
  });
  addon.ready();
}
