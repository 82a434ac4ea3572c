// The EXTENSION_CONTROL_BLOCK of one request, with pywin32's names so Microsoft's ISAPI
// documentation applies one to one. Fields the bridge sent with the request are plain
// properties; calls that reach the web server return promises.

import type { BridgeAddon, RequestBegin, ServerSupportReply } from './channel';
import {
  ERROR_INVALID_INDEX,
  ERROR_INVALID_PARAMETER,
  ERROR_NO_DATA,
  HSE_APPEND_LOG_PARAMETER,
  HSE_IO_SEND_HEADERS,
  HSE_REQ_ABORTIVE_CLOSE,
  HSE_REQ_CLOSE_CONNECTION,
  HSE_REQ_EXEC_URL,
  HSE_REQ_GET_EXEC_URL_STATUS,
  HSE_REQ_IS_CONNECTED,
  HSE_REQ_IS_KEEP_CONN,
  HSE_REQ_MAP_URL_TO_PATH,
  HSE_REQ_MAP_URL_TO_PATH_EX,
  HSE_REQ_REPORT_UNHEALTHY,
  HSE_REQ_SEND_CUSTOM_ERROR,
  HSE_REQ_SEND_URL,
  HSE_REQ_SEND_URL_REDIRECT_RESP,
  HSE_REQ_SET_FLUSH_FLAG,
  HSE_REQ_TRANSMIT_FILE,
  HSE_STATUS_ERROR,
  HSE_STATUS_SUCCESS,
} from './constants';
import { ExtensionError } from './errors';
import { checkHeaderLines, checkHeaderName, checkHeaderValue, checkNoNul, checkStatus, checkUrl } from './header_check';
import { RequestBody } from './request_body';
import { RequestState } from './request_state';
import { knownVariables, localServerVariable, parseAllRaw, type RawHeaders } from './server_variables';

/** What an ECB needs from the worker loop; one per request. */
export interface RequestLink {
  readonly id: number;
  readonly addon: BridgeAddon;
  /** Round trip to the bridge's GetServerVariable: the Win32 error (0 = ok) and the bytes. */
  askVariable(name: string): Promise<{ err: number; value: Buffer }>;
  /** A ServerSupportFunction call carried to the bridge. */
  serverSupport(request: number, ints: number[], strs: string[]): Promise<ServerSupportReply>;
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

const URL_REFUSED = 'the server refused the URL: it leaves the mapped directory, names a device, or is not a local URL';

export interface TransmitFileOptions {
  /** Status line to send first ("200 OK"): sets HSE_IO_SEND_HEADERS. */
  status?: string;
  /** Bytes sent before the file (with `status`, the response header text ending in a blank line). */
  head?: string;
  /** Bytes sent after the file. */
  tail?: string;
  offset?: number;
  /** 0 (the default) sends to the end of the file. */
  length?: number;
  /** More HSE_IO_* flags, e.g. HSE_IO_DISCONNECT_AFTER_SEND. */
  flags?: number;
}

export interface ExecURLOptions {
  method?: string;
  /** Child request headers, "Name: value\r\n…". */
  headers?: string;
  body?: string;
  /** HSE_EXEC_URL_* flags. */
  flags?: number;
}

export interface ExecURLStatus {
  HttpStatusCode: number;
  HttpSubStatus: number;
  Win32Error: number;
}

export interface URLMapEx {
  PhysicalPath: string;
  Flags: number;
  MatchingPathLength: number;
  MatchingURLLength: number;
}

export type HeaderInit = string | Record<string, string | number | readonly string[]>;

/**
 * Turns a headers object into ISAPI's "Name: value\r\n…\r\n" text, refusing (ExtensionError)
 * any name that is not a token and any value with CR, LF or NUL. Text after a blank line in the
 * string form is body, as ISAPI defines it, and is sent as it is.
 */
export function headerText(headers: HeaderInit, funcname = 'SendResponseHeaders'): string {
  let text: string;
  if (typeof headers === 'string') {
    checkHeaderLines(headers, funcname, { body: true });
    text = headers;
    if (text.startsWith('\r\n') || text.includes('\r\n\r\n')) return text;
  } else {
    text = '';
    for (const [name, value] of Object.entries(headers)) {
      checkHeaderName(name, funcname);
      for (const v of Array.isArray(value) ? value : [value]) {
        const s = String(v);
        checkHeaderValue(name, s, funcname);
        text += `${name}: ${s}\r\n`;
      }
    }
  }
  if (text === '' ) return '\r\n';
  if (text.endsWith('\r\n\r\n')) return text;
  return text.endsWith('\r\n') ? text + '\r\n' : text + '\r\n\r\n';
}

/**
 * Response bytes of one request the web server has not yet taken. WriteClient waits above it,
 * so a client that stops reading holds back its own handler only (never the other requests on
 * the channel), and memory stays flat on both sides of the channel.
 */
const RESPONSE_WINDOW = 1 << 20;

export class ECB extends RequestState {

  private readonly body: RequestBody;
  private unacked = 0;
  private ackWaiters: Array<() => void> = [];
  private rawHeaders: RawHeaders | null = null;

  constructor(
    private readonly link: RequestLink,
    private readonly begin: RequestBegin,
  ) {
    super({
      Method: begin.method,
      QueryString: begin.query,
      PathInfo: begin.pathInfo,
      PathTranslated: begin.pathTranslated,
      ContentType: begin.contentType,
      TotalBytes: begin.totalBytes,
      AvailableData: begin.body,
      ConnID: begin.connId,
    });
    this.body = new RequestBody(begin.body, begin.totalBytes, (n) => link.addon.credit(link.id, n));
  }

  /**
   * A server variable's value when it is known without a round trip to the server (prefetched
   * with the request, an ECB field, or derived from the headers); undefined otherwise.
   */
  knownServerVariable(name: string): string | undefined {
    const local = localServerVariable(name, this.begin, 'ALL_RAW' in this.begin.vars ? this.headers() : null);
    return local ?? undefined;
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
    // The server reads the name as a C string: "ALL_HTTP\0x" would quietly be ALL_HTTP.
    checkNoNul(name, 'server variable name', 'GetServerVariable');
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
    const n = this.beginWrite(data);
    if (n === 0) return 0;
    this.unacked += n;
    if (!this.link.addon.write(this.link.id, data)) await this.link.waitDrain();
    while (this.unacked > RESPONSE_WINDOW && !this.wasAborted && !this.done) {
      await new Promise<void>((resolve) => this.ackWaiters.push(resolve));
    }
    return n;
  }

  private wakeWriters(): void {
    const waiters = this.ackWaiters;
    this.ackWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * SendResponseHeaders(status, headers, keepAlive): HSE_REQ_SEND_RESPONSE_HEADER_EX.
   * `headers` is ISAPI's header text ("Name: value\r\n…") or an object; the closing blank
   * line is added when missing.
   */
  SendResponseHeaders(status = '200 OK', headers: HeaderInit = '', keepAlive = true): void {
    checkStatus(status, 'SendResponseHeaders');
    const text = headerText(headers);
    this.beginHeaders(status);
    if (!this.wasAborted) this.link.addon.headers(this.link.id, status, text, keepAlive);
  }

  /** Redirect(url): a 302 to `url`, sent by the server (HSE_REQ_SEND_URL_REDIRECT_RESP). */
  async Redirect(url: string): Promise<void> {
    checkUrl(url, 'Redirect');
    if (this.headersWereSent) throw new ExtensionError(ERROR_INVALID_PARAMETER, 'the response headers were already sent', 'Redirect');
    this.headersWereSent = true;
    await this.support('Redirect', HSE_REQ_SEND_URL_REDIRECT_RESP, [], [url]);
  }

  private async support(funcname: string, request: number, ints: number[] = [], strs: string[] = [], refusal?: string): Promise<ServerSupportReply> {
    this.check(funcname);
    const r = await this.link.serverSupport(request, ints, strs);
    if (!r.ok) {
      // ERROR_INVALID_PARAMETER for a live request means the server refused these arguments.
      const message = r.error === ERROR_INVALID_PARAMETER && refusal && !this.done ? refusal : ERROR_MESSAGES[r.error];
      throw new ExtensionError(r.error, message ?? 'the server refused the call', funcname);
    }
    return r;
  }

  /** IsKeepConn(): asks the server whether the connection will be kept (HSE_REQ_IS_KEEP_CONN). */
  async IsKeepConn(): Promise<boolean> {
    return (await this.support('IsKeepConn', HSE_REQ_IS_KEEP_CONN)).ints[0] === 1;
  }

  /** IsConnected(): whether the client is still there (HSE_REQ_IS_CONNECTED). */
  async IsConnected(): Promise<boolean> {
    return (await this.support('IsConnected', HSE_REQ_IS_CONNECTED)).ints[0] === 1;
  }

  /** MapURLToPath(url): the physical path the server maps a URL to (HSE_REQ_MAP_URL_TO_PATH). */
  async MapURLToPath(url: string): Promise<string> {
    checkNoNul(url, 'URL', 'MapURLToPath');
    return (await this.support('MapURLToPath', HSE_REQ_MAP_URL_TO_PATH, [], [url], URL_REFUSED)).out;
  }

  /** MapURLToPathEx(url): path, access flags and match lengths (HSE_REQ_MAP_URL_TO_PATH_EX). */
  async MapURLToPathEx(url: string): Promise<URLMapEx> {
    checkNoNul(url, 'URL', 'MapURLToPathEx');
    const r = await this.support('MapURLToPathEx', HSE_REQ_MAP_URL_TO_PATH_EX, [], [url], URL_REFUSED);
    return { PhysicalPath: r.out, Flags: r.ints[0] ?? 0, MatchingPathLength: r.ints[1] ?? 0, MatchingURLLength: r.ints[2] ?? 0 };
  }

  /** AppendLogParameter(text): appended to the access log's query field (HSE_APPEND_LOG_PARAMETER). */
  async AppendLogParameter(text: string): Promise<void> {
    await this.support('AppendLogParameter', HSE_APPEND_LOG_PARAMETER, [], [text]);
  }

  /** ReportUnhealthy(reason): tells the server this process is unhealthy (HSE_REQ_REPORT_UNHEALTHY). */
  async ReportUnhealthy(reason = ''): Promise<void> {
    await this.support('ReportUnhealthy', HSE_REQ_REPORT_UNHEALTHY, [], [reason]);
  }

  /** SetFlushFlag(flag): whether the server flushes each WriteClient at once (HSE_REQ_SET_FLUSH_FLAG). */
  async SetFlushFlag(flag: boolean): Promise<void> {
    await this.support('SetFlushFlag', HSE_REQ_SET_FLUSH_FLAG, [flag ? 1 : 0]);
  }

  /** SendURL(url): the server answers with another local URL instead (HSE_REQ_SEND_URL). */
  async SendURL(url: string): Promise<void> {
    checkUrl(url, 'SendURL');
    await this.support('SendURL', HSE_REQ_SEND_URL, [], [url], URL_REFUSED);
    this.headersWereSent = true;
  }

  /** SendCustomError(status, subError): the server's error page for that status (HSE_REQ_SEND_CUSTOM_ERROR). */
  async SendCustomError(status: string, subError = 0): Promise<void> {
    await this.support('SendCustomError', HSE_REQ_SEND_CUSTOM_ERROR, [subError], [status]);
    this.headersWereSent = true;
  }

  /**
   * TransmitFile(path, options): the server sends the file itself (HSE_REQ_TRANSMIT_FILE), with
   * optional status line, head and tail. The path is opened by the web server's process.
   */
  async TransmitFile(path: string, o: TransmitFileOptions = {}): Promise<void> {
    const flags = (o.flags ?? 0) | (o.status ? HSE_IO_SEND_HEADERS : 0);
    checkNoNul(path, 'path', 'TransmitFile');
    if (flags & HSE_IO_SEND_HEADERS) {
      checkStatus(o.status || '200 OK', 'TransmitFile');
      checkHeaderLines(o.head ?? '', 'TransmitFile', { body: true });
    }
    await this.support('TransmitFile', HSE_REQ_TRANSMIT_FILE, [flags, o.offset ?? 0, o.length ?? 0], [path, o.status ?? '', o.head ?? '', o.tail ?? '']);
    this.headersWereSent = true;
  }

  /**
   * ExecURL(url, options): runs a child request through the server's pipeline; its response goes
   * to the client. Resolves when the child request is complete (HSE_REQ_EXEC_URL).
   */
  async ExecURL(url: string, o: ExecURLOptions = {}): Promise<void> {
    checkUrl(url, 'ExecURL');
    if (o.method) checkHeaderName(o.method, 'ExecURL');
    if (o.headers) checkHeaderLines(o.headers, 'ExecURL', { body: false });
    await this.support('ExecURL', HSE_REQ_EXEC_URL, [o.flags ?? 0], [url, o.method ?? '', o.headers ?? '', o.body ?? ''], URL_REFUSED);
    this.headersWereSent = true;
  }

  /** GetExecURLStatus(): the child request's status (HSE_REQ_GET_EXEC_URL_STATUS). */
  async GetExecURLStatus(): Promise<ExecURLStatus> {
    const r = await this.support('GetExecURLStatus', HSE_REQ_GET_EXEC_URL_STATUS);
    return { HttpStatusCode: r.ints[0] ?? 0, HttpSubStatus: r.ints[1] ?? 0, Win32Error: r.ints[2] ?? 0 };
  }

  /** CloseConnection(abortive): closes the client connection after this request. */
  async CloseConnection(abortive = false): Promise<void> {
    await this.support('CloseConnection', abortive ? HSE_REQ_ABORTIVE_CLOSE : HSE_REQ_CLOSE_CONNECTION);
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
    this.wakeWriters();
  }

  /** pywin32's alias of DoneWithSession. */
  close(status = HSE_STATUS_SUCCESS): void {
    this.DoneWithSession(status);
  }

  /** @internal the bridge dropped the request. */
  /** @internal every variable known without the bridge but the header-derived ones (for a pool thread). */
  _knownVariables(): Record<string, string> {
    return knownVariables(this.begin);
  }

  _abort(): void {
    if (this.markAborted()) this.body.abort();
    this.wakeWriters();
  }

  /** @internal the web server took `bytes` of this request's writes. */
  _acked(bytes: number): void {
    this.unacked -= bytes;
    if (this.unacked <= RESPONSE_WINDOW) this.wakeWriters();
  }

  /** @internal a Body message arrived. */
  _body(chunk: Buffer): void {
    this.body.push(chunk);
  }

  /** @internal ends the request after a handler failure. */
  _fail(detail: string, status = 500, retryAfter = 0): void {
    if (this.done) return;
    if (!this.headersWereSent && !this.wasAborted) {
      const statusLine = status === 503 ? '503 Service Unavailable' : '500 Internal Server Error';
      const body = `${statusLine}\n${detail}\n`;
      this.SendResponseHeaders(statusLine, {
        'Content-Type': 'text/plain; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        ...(retryAfter ? { 'Retry-After': retryAfter } : {}),
      });
      this.link.addon.write(this.link.id, body);
      this.DoneWithSession(HSE_STATUS_SUCCESS);
    } else {
      this.DoneWithSession(HSE_STATUS_ERROR);
    }
  }
}
