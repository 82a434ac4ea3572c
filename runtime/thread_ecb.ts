// The ECB a ThreadPoolExtension's Dispatch gets on a pool thread: the request's fields copied
// there, every call posted to the main thread and made on the real ECB (thread_pool.ts).

import { ERROR_INVALID_PARAMETER, HSE_STATUS_SUCCESS } from './constants';
import { headerText, type ECB, type ExecURLOptions, type ExecURLStatus, type HeaderInit, type TransmitFileOptions, type URLMapEx } from './ecb';
import { ExtensionError } from './errors';
import { checkStatus, checkUrl } from './header_check';
import { RequestState } from './request_state';
import { headerVariable, type RawHeaders } from './server_variables';
import { ownBytes, type CallName, type RequestFields } from './thread_pool_protocol';

/**
 * What Dispatch gets: every public member of the ECB (the `_` ones are the worker loop's). On a
 * pool thread it is a ThreadECB (the request fields copied; each call made on the real ECB by
 * the main thread); with `threads: 0` (or outside a packed worker) it is the ECB itself.
 */
export type DispatchECB = { [K in keyof ECB as K extends `_${string}` ? never : K]: ECB[K] };

/** How a ThreadECB reaches the main thread (PoolThreadSide, thread_pool_thread.ts). */
export interface MainThreadLink {
  /** Posts a call that needs no answer (its failure is logged by the main thread). */
  post(rid: number, name: CallName, args: unknown[], httpStatus: number, logData: string): void;
  call<T>(rid: number, name: CallName, args: unknown[], transfer: ArrayBuffer[], httpStatus: number, logData: string): Promise<T>;
}

/** The ECB a pool thread's Dispatch gets: copied fields, calls posted to the main thread. */
export class ThreadECB extends RequestState implements DispatchECB {
  constructor(
    private readonly side: MainThreadLink,
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
