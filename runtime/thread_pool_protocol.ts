// The messages between the main thread and a pool thread of a ThreadPoolExtension, and how
// values cross (errors as plain objects, byte arrays transferred rather than cloned).

import type { ECBFields } from './request_state';
import type { DispatchECB } from './thread_ecb';
import { ExtensionError } from './errors';
import type { RawHeaders } from './server_variables';

/** Marks a thread's workerData as a pool thread's (and carries where its code comes from). */
export const POOL_MARK = 'node-isapi.pool-thread';

/** ECB calls a ThreadECB forwards (the names of ECB methods, made on the real ECB). */
export const CALLS = [
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
] as const satisfies ReadonlyArray<keyof DispatchECB>;
export type CallName = (typeof CALLS)[number];
export const CALL_NAMES = new Set<string>(CALLS);

/** The request as copied to a pool thread: its body bytes travel as a plain Uint8Array. */
export interface RequestFields extends Omit<ECBFields, 'AvailableData'> {
  AvailableData: Uint8Array;
  keepAlive: boolean;
  headers: RawHeaders;
  /** Server variables the main thread knew without a round trip. */
  vars: Record<string, string>;
}

export interface WireError {
  name: string;
  message: string;
  stack?: string;
  errno?: number;
  strerror?: string;
  funcname?: string;
}

export type ToThread =
  | { t: 'dispatch'; rid: number; fields: RequestFields }
  | { t: 'reply'; cid: number; ok: true; value: unknown }
  | { t: 'reply'; cid: number; ok: false; error: WireError }
  | { t: 'abort'; rid: number };

export type FromThread =
  | { t: 'ready' }
  | { t: 'call'; rid: number; cid: number; name: CallName; args: unknown[]; httpStatus: number; logData: string }
  | { t: 'end'; rid: number; status?: number; reload?: string; error?: WireError; httpStatus: number; logData: string };

export function toWire(err: unknown): WireError {
  const e = err as Partial<ExtensionError> & Error;
  if (!(e instanceof Error)) return { name: 'Error', message: String(err) };
  return { name: e.name, message: e.message, stack: e.stack, errno: e.errno, strerror: e.strerror, funcname: e.funcname };
}

export function fromWire(w: WireError): Error {
  if (w.name === 'ExtensionError' && w.errno !== undefined) return new ExtensionError(w.errno, w.strerror ?? w.message, w.funcname ?? '');
  const e = new Error(w.message);
  e.name = w.name;
  if (w.stack) e.stack = w.stack;
  return e;
}

/** A Uint8Array in a buffer of its own (copied), so it can be transferred without cloning a larger pool. */
export function ownBytes(data: Uint8Array): Uint8Array {
  return new Uint8Array(data);
}

export function transferable(value: unknown): { value: unknown; transfer: ArrayBuffer[] } {
  if (value instanceof Uint8Array) {
    const own = ownBytes(value);
    return { value: own, transfer: [own.buffer as ArrayBuffer] };
  }
  return { value, transfer: [] };
}
