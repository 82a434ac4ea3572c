// The request fields and what every ECB tracks about its request, whichever thread it lives on: whether the session is
// done, whether headers went out, and whether the bridge dropped the request (with listeners).
// The ECB (main thread) and ThreadPoolExtension's ThreadECB (pool threads) both extend it.

import { ERROR_INVALID_PARAMETER } from './constants';
import { ExtensionError } from './errors';

/** The ECB's request fields, as either side receives them. */
export interface ECBFields {
  Method: string;
  QueryString: string;
  PathInfo: string;
  PathTranslated: string;
  ContentType: string;
  TotalBytes: number;
  AvailableData: Buffer;
  ConnID: number;
}

export abstract class RequestState {
  readonly Version = 0x00080000;
  readonly Method: string;
  readonly QueryString: string;
  readonly PathInfo: string;
  readonly PathTranslated: string;
  readonly ContentType: string;
  /** cbTotalBytes: the Content-Length, or 0xFFFFFFFF when unknown (chunked upload). */
  readonly TotalBytes: number;
  /** cbAvailable: how much of the body the server had already read. */
  readonly AvailableBytes: number;
  /** lpbData: those bytes. */
  readonly AvailableData: Buffer;
  readonly ConnID: number;
  /** Written back to the server for its log (dwHttpStatusCode). */
  HttpStatusCode = 200;
  /** Appended to the access log's query field (lpszLogData, at most 79 bytes). */
  LogData = '';

  protected done = false;
  protected headersWereSent = false;
  protected wasAborted = false;
  private abortListeners: Array<() => void> = [];

  constructor(f: ECBFields) {
    this.Method = f.Method;
    this.QueryString = f.QueryString;
    this.PathInfo = f.PathInfo;
    this.PathTranslated = f.PathTranslated;
    this.ContentType = f.ContentType;
    this.TotalBytes = f.TotalBytes;
    this.AvailableData = f.AvailableData;
    this.AvailableBytes = f.AvailableData.length;
    this.ConnID = f.ConnID;
  }

  /** True once DoneWithSession was called: the ECB is no longer usable. */
  get isDone(): boolean {
    return this.done;
  }
  get headersSent(): boolean {
    return this.headersWereSent;
  }
  /** True when the bridge gave up on the request (client gone, deadline passed). */
  get aborted(): boolean {
    return this.wasAborted;
  }

  /**
   * Calls `listener` once when the bridge drops the request (the client went away or the
   * deadline passed); on the next tick if that already happened. Returns a function that
   * removes the listener.
   */
  onAbort(listener: () => void): () => void {
    if (this.wasAborted) {
      process.nextTick(listener);
      return () => {};
    }
    this.abortListeners.push(listener);
    return () => {
      this.abortListeners = this.abortListeners.filter((l) => l !== listener);
    };
  }

  /** Throws (as IIS fails the call) once DoneWithSession was called: nothing is sent then. */
  protected check(funcname: string): void {
    if (this.done) {
      throw new ExtensionError(
        ERROR_INVALID_PARAMETER,
        'the request is already finished (DoneWithSession was called); nothing was sent',
        funcname,
      );
    }
  }

  abstract WriteClient(data: string | Uint8Array, flags?: number): Promise<number>;

  /** pywin32's alias, so `print`-style helpers can target the ECB. */
  write(data: string | Uint8Array): Promise<number> {
    return this.WriteClient(data);
  }

  /**
   * The bookkeeping of WriteClient before the bytes go out: refused after DoneWithSession;
   * returns how many bytes to send, 0 when there is nothing to send (empty, or the request was
   * dropped). Anything sent means the headers went out.
   */
  protected beginWrite(data: string | Uint8Array): number {
    this.check('WriteClient');
    if (this.wasAborted) return 0;
    const n = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    if (n > 0) this.headersWereSent = true;
    return n;
  }

  /**
   * The bookkeeping of SendResponseHeaders before the headers go out: refused after
   * DoneWithSession or a second time; the status code is kept for the log.
   */
  protected beginHeaders(status: string): void {
    this.check('SendResponseHeaders');
    if (this.headersWereSent) {
      throw new ExtensionError(ERROR_INVALID_PARAMETER, 'the response headers were already sent', 'SendResponseHeaders');
    }
    const code = parseInt(status, 10);
    if (code > 0) this.HttpStatusCode = code;
    this.headersWereSent = true;
  }

  /** Marks the request aborted and tells the listeners; false if it already was. */
  protected markAborted(): boolean {
    if (this.wasAborted) return false;
    this.wasAborted = true;
    const listeners = this.abortListeners;
    this.abortListeners = [];
    for (const l of listeners) {
      try {
        l();
      } catch (err) {
        process.stderr.write(`an abort listener failed: ${(err as Error)?.stack ?? err}\n`);
      }
    }
    return true;
  }
}
