// The worker's end of the channel: the bridge binary loaded as a Node-API addon. The bridge
// passes its own path in ISAPI_BRIDGE when it starts the worker.

/** Message types the addon delivers to dispatch() (see native/channel/wire.h). */
export const enum In {
  Closed = 0,
  Drain = 1,
  Request = 100,
  Body = 101,
  VarReply = 102,
  Abort = 103,
  Shutdown = 104,
  ServerSupportReply = 105,
  FilterNotify = 106,
  FilterCallReply = 107,
  /** The web server took this many bytes of the request's writes (per-request flow control). */
  WriteAck = 109,
}

/** A filter notification, decoded by the addon (fields per type: see native/bridge/filter_entry.cc). */
export interface FilterNotification {
  connection: number;
  notification: number;
  wantsReply: boolean;
  fields: Buffer[];
  vars: Record<string, string>;
}

/** The answer to a ServerSupportFunction call made through the bridge. */
export interface ServerSupportReply {
  ok: boolean;
  /** Win32 error when !ok. */
  error: number;
  ints: number[];
  out: string;
}

/** The first message of a request, decoded by the addon. */
export interface RequestBegin {
  method: string;
  query: string;
  pathInfo: string;
  pathTranslated: string;
  contentType: string;
  totalBytes: number;
  connId: number;
  /** Server variables the bridge prefetched (ALL_RAW, URL, REMOTE_ADDR, …). */
  vars: Record<string, string>;
  /** The request body the server had already read (ECB lpbData). */
  body: Buffer;
}

export type Dispatch = (type: number, id: number, a?: unknown, b?: unknown, c?: unknown) => void;

export interface BridgeAddon {
  open(dispatch: Dispatch): void;
  ready(): void;
  headers(id: number, status: string, headers: string, keepConn: boolean): void;
  /** false: the channel's queue is full; wait for a Drain before writing more. */
  write(id: number, data: Uint8Array | string): boolean;
  done(id: number, hseStatus: number, httpStatus: number, logData: string): void;
  getVar(id: number, callId: number, name: string): void;
  credit(id: number, bytes: number): void;
  log(line: string): void;
  /** Drops read-only, unmodified executable pages from the resident set; returns the bytes released. */
  releaseStartupPages(): number;
  serverSupport(id: number, callId: number, request: number, ints: number[], strs: string[]): void;
  reload(reason: string): void;
  filterCall(id: number, callId: number, op: number, name: string): void;
  filterReply(id: number, status: number, changes: Array<[number, string | Uint8Array, string | Uint8Array]>): void;
  protocolVersion: number;
}

/**
 * Where a stand-in for the addon can be registered: a ThreadPoolExtension thread runs the same
 * worker loop, talking to the main thread instead of the bridge.
 */
export const BRIDGE_ADDON_OVERRIDE = Symbol.for('node-isapi.bridge-addon');

export function loadBridgeAddon(path = process.env.ISAPI_BRIDGE): BridgeAddon {
  const override = (globalThis as { [BRIDGE_ADDON_OVERRIDE]?: BridgeAddon })[BRIDGE_ADDON_OVERRIDE];
  if (override) return override;
  if (!path) {
    throw new Error(
      'this program is a node-isapi worker: it is started by its bridge (_<name>.dll/.so) inside a ' +
        'web server, not directly. Run `isapi serve <folder>` to try it.',
    );
  }
  const mod = { exports: {} as BridgeAddon };
  process.dlopen(mod, path);
  return mod.exports;
}
