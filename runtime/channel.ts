// The worker's end of the channel: the bridge binary loaded as a Node-API addon. The bridge
// passes its own path in ISAPI_BRIDGE when it starts the worker.

/**
 * The channel protocol this worker's script speaks (native/channel/messages.h kProtocolVersion;
 * test/unit/wire_schema.test.ts checks that they agree).
 */
export const CHANNEL_PROTOCOL = 4;

/** Message types the addon delivers to dispatch() (native/channel/messages.h Msg). */
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

// The messages as dispatch() receives them: objects keyed by the field names of
// native/channel/messages.h, built by native/worker_addon/js_codec.h.

/** The first message of a request. */
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

/** Request body bytes; an empty one ends the body. */
export interface BodyMessage {
  data: Buffer;
}

/** The answer to getVar(): err is 0 or GetServerVariable's Win32 error. */
export interface VarReply {
  callId: number;
  err: number;
  value: Buffer;
}

/** The answer to a ServerSupportFunction call made through the bridge. */
export interface ServerSupportReply {
  callId?: number;
  ok: boolean;
  /** Win32 error when !ok. */
  error: number;
  ints: number[];
  out: string;
}

/** A filter notification (fields per type: see native/bridge/filter_entry.cc). */
export interface FilterNotification {
  connection: number;
  notification: number;
  wantsReply: boolean;
  fields: Buffer[];
  vars: Record<string, string>;
}

/** The answer to filterCall(). */
export interface FilterCallReply {
  callId?: number;
  ok: boolean;
  error: number;
  out: string;
}

/** The web server took this many bytes of the request's writes. */
export interface WriteAckMessage {
  bytes: number;
}

/** What dispatch() receives for each type (Closed, Drain, Abort and Shutdown carry nothing). */
export interface InMessages {
  [In.Request]: RequestBegin;
  [In.Body]: BodyMessage;
  [In.VarReply]: VarReply;
  [In.ServerSupportReply]: ServerSupportReply;
  [In.FilterNotify]: FilterNotification;
  [In.FilterCallReply]: FilterCallReply;
  [In.WriteAck]: WriteAckMessage;
}

export type Dispatch = (type: number, id: number, message?: unknown) => void;

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
  /** The channel protocol the addon speaks. */
  protocolVersion: number;
  /** Runs fn and returns the frames its calls produced instead of sending them (tests). */
  _captureFrames?(fn: () => void): Buffer;
  /** Decodes frames and hands each to dispatch as the channel would (tests). */
  _deliverFrames?(frames: Uint8Array, dispatch: Dispatch): void;
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
  checkProtocol(mod.exports.protocolVersion, `its addon (${path})`);
  const bridge = process.env.ISAPI_CHANNEL_PROTOCOL;
  if (bridge !== undefined) checkProtocol(Number(bridge), 'its bridge');
  return mod.exports;
}

// A worker whose script, addon and bridge come from different packs would misread every
// frame: it stops at once with one line that says so (the bridge logs the worker's stderr).
function checkProtocol(theirs: number, who: string): void {
  if (theirs === CHANNEL_PROTOCOL) return;
  throw new Error(
    `this worker speaks channel protocol ${CHANNEL_PROTOCOL} but ${who} speaks ${theirs}: ` +
      'the folder mixes files from different packs (pack it again)',
  );
}
