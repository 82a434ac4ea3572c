// The EXTENSION_CONTROL_BLOCK of one request, with pywin32's names so Microsoft's ISAPI
// documentation applies one to one. Fields the bridge sent with the request are plain
// properties; calls that reach the web server return promises.

import type { BridgeAddon, RequestBegin } from './channel';
import {
  ERROR_INVALID_INDEX,
  ERROR_INVALID_PARAMETER,
  ERROR_NO_DATA,
  HSE_STATUS_ERROR,
  HSE_STATUS_SUCCESS,
} from './constants';
import { ExtensionError } from './errors';
import { RequestBody } from './request_body';
import { localServerVariable, parseAllRaw, type RawHeaders } from './server_variables';

/** What an ECB needs from the worker loop; one per request. */
export interface RequestLink {
  readonly id: number;
  readonly addon: BridgeAddon;
  /** Round trip to the bridge's GetServerVariable: the Win32 error (0 = ok) and the bytes. */
  askVariable(name: string): Promise<{ err: number; value: Buffer }>;
  /** Resolves when the channel's outgoing queue has room again. */
  waitDrain(): Promise<void>;
  /** The request is over (DoneWithSession sent). */
  finished(): void;
}

const ERROR_MESSAGES: Record<number, string> = {
  [ERROR_INVALID_INDEX]: 'the server variable does not exist',
  [ERROR_NO_DATA]: 'the server variable has no value for this request',
  [ERROR_INVALID_PARAMETER]: 'the request is no longer active',
};

export type HeaderInit = string | Record<string, string | number | readonly string[]>;

/** Turns a headers object into ISAPI's "Name: value\r\n…\r\n" text. */
export function headerText(headers: HeaderInit): string {
  let text: string;
  if (typeof headers === 'string') {
    text = headers;
  } else {
    text = '';
    for (const [name, value] of Object.entries(headers)) {
      for (const v of Array.isArray(value) ? value : [value]) text += `${name}: ${v}\r\n`;
    }
  }
  if (text === '' ) return '\r\n';
  if (text.endsWith('\r\n\r\n')) return text;
  return text.endsWith('\r\n') ? text + '\r\n' : text + '\r\n\r\n';
}

export class ECB {
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

  private done = false;
  private headersWereSent = false;
  private wasAborted = false;
  private readonly body: RequestBody;
  private rawHeaders: RawHeaders | null = null;

  constructor(
    private readonly link: RequestLink,
    private readonly begin: RequestBegin,
  ) {
    this.Method = begin.method;
    this.QueryString = begin.query;
    this.PathInfo = begin.pathInfo;
    this.PathTranslated = begin.pathTranslated;
    this.ContentType = begin.contentType;
    this.TotalBytes = begin.totalBytes;
    this.AvailableBytes = begin.body.length;
    this.AvailableData = begin.body;
    this.ConnID = begin.connId;
    this.body = new RequestBody(begin.body, begin.totalBytes, (n) => link.addon.credit(link.id, n));
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

  private check(funcname: string): void {
    if (this.done) {
      throw new ExtensionError(
        ERROR_INVALID_PARAMETER,
        'the request is already finished (DoneWithSession was called); nothing was sent',
        funcname,
      );
    }
  }

  /** The request headers as sent, in order, names in their original case. */
  headers(): RawHeaders {
    if (!this.rawHeaders) this.rawHeaders = parseAllRaw(this.begin.vars.ALL_RAW ?? '');
    return this.rawHeaders;
  }

  /**
   * GetServerVariable(name): the value as a string. A missing variable throws ExtensionError
   * (ERROR_INVALID_INDEX) unless a default is given. Prefetched names and every header-derived
   * name are answered without a round trip to the server.
   */
  async GetServerVariable(name: string, defaultValue?: string): Promise<string> {
    this.check('GetServerVariable');
    const local = localServerVariable(name, this.begin, 'ALL_RAW' in this.begin.vars ? this.headers() : null);
    if (local !== null) {
      if (local !== undefined) return local;
      if (defaultValue !== undefined) return defaultValue;
      throw new ExtensionError(ERROR_INVALID_INDEX, ERROR_MESSAGES[ERROR_INVALID_INDEX]!, `GetServerVariable(${name})`);
    }
    const { err, value } = await this.link.askVariable(name);
    if (err === 0) return name.toUpperCase().startsWith('UNICODE_') ? value.toString('utf16le') : value.toString('latin1');
    if (defaultValue !== undefined && (err === ERROR_INVALID_INDEX || err === ERROR_NO_DATA)) return defaultValue;
    throw new ExtensionError(err, ERROR_MESSAGES[err] ?? 'GetServerVariable failed', `GetServerVariable(${name})`);
  }

  /** ReadClient(size): the next body bytes after AvailableData; an empty buffer at the end. */
  ReadClient(size = 65536): Promise<Buffer> {
    this.check('ReadClient');
    return this.body.read(size);
  }

  /** The whole request body (AvailableData and the rest). */
  readBody(): Promise<Buffer> {
    this.check('readBody');
    return this.body.readAll();
  }

  /**
   * WriteClient(data): sends body bytes. Resolves with the byte count once the channel has
   * room, so a handler that awaits it streams with flat memory.
   */
  async WriteClient(data: string | Uint8Array, _flags = 0): Promise<number> {
    this.check('WriteClient');
    if (this.wasAborted) return 0;
    const n = typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    if (n === 0) return 0;
    this.headersWereSent = true;
    if (!this.link.addon.write(this.link.id, data)) await this.link.waitDrain();
    return n;
  }

  /** pywin32's alias, so `print`-style helpers can target the ECB. */
  write(data: string | Uint8Array): Promise<number> {
    return this.WriteClient(data);
  }

  /**
   * SendResponseHeaders(status, headers, keepAlive): HSE_REQ_SEND_RESPONSE_HEADER_EX.
   * `headers` is ISAPI's header text ("Name: value\r\n…") or an object; the closing blank
   * line is added when missing.
   */
  SendResponseHeaders(status = '200 OK', headers: HeaderInit = '', keepAlive = true): void {
    this.check('SendResponseHeaders');
    if (this.headersWereSent) {
      throw new ExtensionError(ERROR_INVALID_PARAMETER, 'the response headers were already sent', 'SendResponseHeaders');
    }
    const code = parseInt(status, 10);
    if (code > 0) this.HttpStatusCode = code;
    this.headersWereSent = true;
    if (!this.wasAborted) this.link.addon.headers(this.link.id, status, headerText(headers), keepAlive);
  }

  /** Redirect(url): a 302 to `url` (HSE_REQ_SEND_URL_REDIRECT_RESP). */
  Redirect(url: string): void {
    if (/[\r\n]/.test(url)) throw new ExtensionError(ERROR_INVALID_PARAMETER, 'a redirect URL cannot contain CR or LF', 'Redirect');
    this.SendResponseHeaders('302 Object Moved', { Location: url, 'Content-Length': 0 });
  }

  /** IsKeepAlive(): whether the client asked to keep the connection (Connection header). */
  IsKeepAlive(): boolean {
    const connection = (localServerVariable('HTTP_CONNECTION', this.begin, this.headers()) ?? '').toLowerCase();
    const http10 = (this.begin.vars.SERVER_PROTOCOL ?? 'HTTP/1.1') === 'HTTP/1.0';
    return http10 ? connection.includes('keep-alive') : !connection.includes('close');
  }

  /** DoneWithSession(status): the request is complete; the ECB is unusable afterwards. */
  DoneWithSession(status = HSE_STATUS_SUCCESS): void {
    this.check('DoneWithSession');
    this.done = true;
    this.link.addon.done(this.link.id, status, this.HttpStatusCode, this.LogData);
    this.link.finished();
  }

  /** pywin32's alias of DoneWithSession. */
  close(status = HSE_STATUS_SUCCESS): void {
    this.DoneWithSession(status);
  }

  /** @internal the bridge dropped the request. */
  _abort(): void {
    this.wasAborted = true;
    this.body.abort();
  }

  /** @internal a Body message arrived. */
  _body(chunk: Buffer): void {
    this.body.push(chunk);
  }

  /** @internal ends the request after a handler failure. */
  _fail(detail: string): void {
    if (this.done) return;
    if (!this.headersWereSent && !this.wasAborted) {
      const body = `500 Internal Server Error\n${detail}\n`;
      this.SendResponseHeaders('500 Internal Server Error', {
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
      });
      this.link.addon.write(this.link.id, body);
      this.DoneWithSession(HSE_STATUS_SUCCESS);
    } else {
      this.DoneWithSession(HSE_STATUS_ERROR);
    }
  }
}
