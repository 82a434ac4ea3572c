// ISAPI filters in TypeScript, with pywin32's shape: a filter declares `filterFlags` (the
// SF_NOTIFY_* notifications it wants, plus a priority), and HttpFilterProc(fc) runs for each.
// The web server waits for the verdict: everything the filter changes (headers, URL, log
// fields, raw data…) is recorded on the context and sent back in one reply.

import type { FilterNotification } from './channel';
import {
  ERROR_INVALID_INDEX,
  SF_NOTIFY_ACCESS_DENIED,
  SF_NOTIFY_AUTH_COMPLETE,
  SF_NOTIFY_AUTHENTICATION,
  SF_NOTIFY_LOG,
  SF_NOTIFY_PREPROC_HEADERS,
  SF_NOTIFY_READ_RAW_DATA,
  SF_NOTIFY_SEND_RAW_DATA,
  SF_NOTIFY_SEND_RESPONSE,
  SF_NOTIFY_URL_MAP,
} from './constants';
import { FilterError } from './errors';
import { checkHeaderLines, checkHeaderName, checkHeaderValue, checkStatus } from './header_check';
import { headerVariable, parseAllRaw } from './server_variables';

// "Name:" (ISAPI's colon is optional here) or one of PREPROC's pseudo headers "url", "method",
// "version": the name must be a token and the value free of CR, LF and NUL.
function checkFilterHeader(name: string, value: string, funcname: string): void {
  const bare = name.endsWith(':') ? name.slice(0, -1) : name;
  checkHeaderName(bare, funcname, FilterError);
  checkHeaderValue(bare, value, funcname, FilterError);
}

/** Change codes of the reply (native/channel/wire.h FilterChange). */
const enum Change {
  SetHeader = 1,
  AddHeader = 2,
  AddResponseHeaders = 3,
  WriteClient = 4,
  SendResponseHeader = 5,
  DisableNotifications = 6,
  SetPhysicalPath = 7,
  SetLogField = 8,
  SetUser = 9,
  SetPassword = 10,
  AddHeadersOnDenial = 11,
  SetRawData = 12,
  SetNextReadSize = 13,
  SetHttpStatus = 14,
}

/** Query codes (native/channel/wire.h FilterQuery). */
export const enum FilterQueryOp {
  GetHeader = 1,
  GetServerVariable = 2,
}

export type ChangeList = Array<[number, string | Uint8Array, string | Uint8Array]>;

/** What a context needs from the worker loop. */
export interface FilterLink {
  query(op: FilterQueryOp, name: string): Promise<{ ok: boolean; error: number; out: string }>;
}

export interface FilterVersionInfo {
  FilterDesc: string;
}

export interface Filter {
  /** SF_NOTIFY_* flags (notifications and SF_NOTIFY_ORDER_*), read at pack time. */
  readonly filterFlags: number;
  /** On a timeout or a dead worker: answer 503 ('fail-closed', the default) or let requests pass. */
  readonly filterFailurePolicy?: 'fail-closed' | 'pass-through';
  /** How long the web server waits for each notification's verdict (default 5000 ms). */
  readonly filterTimeoutMs?: number;
  GetFilterVersion?(fv: FilterVersionInfo): void | Promise<void>;
  /** Return an SF_STATUS_REQ_* code; nothing means SF_STATUS_REQ_NEXT_NOTIFICATION. */
  HttpFilterProc(fc: FilterContext): number | void | Promise<number | void>;
  TerminateFilter?(status: number): void | Promise<void>;
}

/** pywin32's SimpleFilter: subclass it, set filterFlags and implement HttpFilterProc. */
export abstract class SimpleFilter implements Filter {
  abstract readonly filterFlags: number;
  GetFilterVersion(fv: FilterVersionInfo): void {
    fv.FilterDesc = this.constructor.name;
  }
  abstract HttpFilterProc(fc: FilterContext): number | void | Promise<number | void>;
  TerminateFilter(_status: number): void {}
}

const text = (b: Buffer | undefined) => (b ? b.toString('utf8') : '');

/** Headers of PREPROC_HEADERS / AUTH_COMPLETE (and response headers in SEND_RESPONSE). */
export class HeaderData {
  private readonly overlay = new Map<string, string>();
  constructor(
    private readonly fc: FilterContext,
    private readonly known: Map<string, string> | null,
    /** HttpStatus of the notification structure. */
    public HttpStatus: number,
  ) {}

  /**
   * GetHeader("Name:") or the pseudo names "method", "url", "version". Request headers come
   * with the notification; response headers (SEND_RESPONSE) are asked of the server.
   */
  async GetHeader(name: string): Promise<string | undefined> {
    const key = name.toLowerCase();
    if (this.overlay.has(key)) return this.overlay.get(key) || undefined;
    if (this.known) return this.known.get(key);
    const r = await this.fc._link.query(FilterQueryOp.GetHeader, name);
    if (r.ok) return r.out;
    if (r.error === ERROR_INVALID_INDEX) return undefined;
    throw new FilterError(r.error, 'GetHeader failed', `GetHeader(${name})`);
  }

  /** SetHeader(name, value): replaces it; an empty value deletes it; "url" rewrites the URL. */
  SetHeader(name: string, value: string): void {
    checkFilterHeader(name, value, 'SetHeader');
    this.overlay.set(name.toLowerCase(), value);
    this.fc._change(Change.SetHeader, name, value);
  }

  AddHeader(name: string, value: string): void {
    checkFilterHeader(name, value, 'AddHeader');
    const key = name.toLowerCase();
    const before = this.overlay.get(key) ?? this.known?.get(key);
    this.overlay.set(key, before ? `${before}, ${value}` : value);
    this.fc._change(Change.AddHeader, name, value);
  }

  /** @internal the status is sent back when changed. */
  setStatus(status: number): void {
    this.HttpStatus = status;
    this.fc._change(Change.SetHttpStatus, String(status), '');
  }
}

export class UrlMapData {
  constructor(
    private readonly fc: FilterContext,
    readonly URL: string,
    private physicalPath: string,
  ) {}
  get PhysicalPath(): string {
    return this.physicalPath;
  }
  set PhysicalPath(p: string) {
    this.physicalPath = p;
    this.fc._change(Change.SetPhysicalPath, p, '');
  }
}

export class AuthentData {
  constructor(
    private readonly fc: FilterContext,
    private user: string,
    private password: string,
  ) {}
  get User(): string {
    return this.user;
  }
  set User(v: string) {
    this.user = v;
    this.fc._change(Change.SetUser, v, '');
  }
  get Password(): string {
    return this.password;
  }
  set Password(v: string) {
    this.password = v;
    this.fc._change(Change.SetPassword, v, '');
  }
}

export interface AccessDeniedData {
  URL: string;
  PhysicalPath: string;
  Reason: number;
}

const LOG_FIELDS = ['ClientHostName', 'ClientUserName', 'ServerName', 'Operation', 'Target', 'Parameters'] as const;

/** LOG: every field settable, as in pywin32. */
export class LogData {
  private readonly values: string[];
  private status: number;
  private win32: number;
  readonly BytesSent: number;
  readonly BytesRecvd: number;
  readonly TimeForProcessing: number;
  constructor(
    private readonly fc: FilterContext,
    fields: Buffer[],
  ) {
    this.values = fields.slice(0, 6).map(text);
    this.status = Number(text(fields[6]));
    this.win32 = Number(text(fields[7]));
    this.BytesSent = Number(text(fields[8]));
    this.BytesRecvd = Number(text(fields[9]));
    this.TimeForProcessing = Number(text(fields[10]));
  }
  private set(i: number, v: string) {
    this.values[i] = v;
    this.fc._change(Change.SetLogField, String(i), v);
  }
  get ClientHostName() { return this.values[0]!; }
  set ClientHostName(v: string) { this.set(0, v); }
  get ClientUserName() { return this.values[1]!; }
  set ClientUserName(v: string) { this.set(1, v); }
  get ServerName() { return this.values[2]!; }
  set ServerName(v: string) { this.set(2, v); }
  get Operation() { return this.values[3]!; }
  set Operation(v: string) { this.set(3, v); }
  get Target() { return this.values[4]!; }
  set Target(v: string) { this.set(4, v); }
  get Parameters() { return this.values[5]!; }
  set Parameters(v: string) { this.set(5, v); }
  get HttpStatus() { return this.status; }
  set HttpStatus(v: number) {
    this.status = v;
    this.fc._change(Change.SetLogField, '6', String(v));
  }
  get Win32Status() { return this.win32; }
  set Win32Status(v: number) {
    this.win32 = v;
    this.fc._change(Change.SetLogField, '7', String(v));
  }
  static readonly fields = LOG_FIELDS;
}

/** READ_RAW_DATA / SEND_RAW_DATA: the bytes, replaceable. */
export class RawData {
  constructor(
    private readonly fc: FilterContext,
    private data: Buffer,
  ) {}
  get InData(): Buffer {
    return this.data;
  }
  set InData(b: Buffer | string) {
    this.data = Buffer.isBuffer(b) ? b : Buffer.from(b);
    this.fc._change(Change.SetRawData, this.data, '');
  }
}

export type NotificationData = HeaderData | UrlMapData | AuthentData | AccessDeniedData | LogData | RawData | null;

/** pywin32's filter context: one per notification; FilterContext lives for the connection. */
export class FilterContext {
  readonly Revision = 0x00060000;
  readonly fIsSecurePort: boolean;
  readonly NotificationType: number;
  private readonly changes: ChangeList = [];
  private data: NotificationData | undefined;

  constructor(
    /** @internal */ readonly _link: FilterLink,
    private readonly n: FilterNotification,
    private readonly connection: { value: unknown },
  ) {
    this.NotificationType = n.notification;
    this.fIsSecurePort = (n.vars.HTTPS ?? 'off') === 'on';
  }

  /** Any value; kept for the connection's lifetime (released at END_OF_NET_SESSION). */
  get FilterContext(): unknown {
    return this.connection.value;
  }
  set FilterContext(v: unknown) {
    this.connection.value = v;
  }

  /** The notification's data: GetHeader/SetHeader for headers, URL/PhysicalPath for URL_MAP, … */
  GetData(): NotificationData {
    if (this.data !== undefined) return this.data;
    const f = this.n.fields;
    switch (this.n.notification) {
      case SF_NOTIFY_PREPROC_HEADERS:
      case SF_NOTIFY_AUTH_COMPLETE: {
        const known = new Map<string, string>();
        known.set('method', text(f[0]));
        known.set('url', text(f[1]));
        known.set('version', text(f[2]));
        for (const [name, value] of parseAllRaw(this.n.vars.ALL_RAW ?? '')) {
          const key = `${name.toLowerCase()}:`;
          known.set(key, known.has(key) ? `${known.get(key)}, ${value}` : value);
        }
        return (this.data = new HeaderData(this, 'ALL_RAW' in this.n.vars ? known : null, Number(text(f[3]))));
      }
      case SF_NOTIFY_SEND_RESPONSE:
        return (this.data = new HeaderData(this, null, Number(text(f[0]))));
      case SF_NOTIFY_URL_MAP:
        return (this.data = new UrlMapData(this, text(f[0]), text(f[1])));
      case SF_NOTIFY_AUTHENTICATION:
        return (this.data = new AuthentData(this, text(f[0]), text(f[1])));
      case SF_NOTIFY_ACCESS_DENIED:
        return (this.data = { URL: text(f[0]), PhysicalPath: text(f[1]), Reason: Number(text(f[2])) });
      case SF_NOTIFY_LOG:
        return (this.data = new LogData(this, f));
      case SF_NOTIFY_READ_RAW_DATA:
      case SF_NOTIFY_SEND_RAW_DATA:
        return (this.data = new RawData(this, f[0] ?? Buffer.alloc(0)));
      default:
        return (this.data = null);
    }
  }

  /** GetServerVariable(name, default?): the common ones arrive with the notification. */
  async GetServerVariable(name: string, defaultValue?: string): Promise<string> {
    const upper = name.toUpperCase();
    if (upper in this.n.vars) return this.n.vars[upper]!;
    const local = 'ALL_RAW' in this.n.vars ? headerVariable(name, parseAllRaw(this.n.vars.ALL_RAW!)) : null;
    if (typeof local === 'string') return local;
    if (local === undefined) {
      if (defaultValue !== undefined) return defaultValue;
      throw new FilterError(ERROR_INVALID_INDEX, 'the server variable does not exist', `GetServerVariable(${name})`);
    }
    const r = await this._link.query(FilterQueryOp.GetServerVariable, name);
    if (r.ok) return r.out;
    if (defaultValue !== undefined) return defaultValue;
    throw new FilterError(r.error, 'the server variable is not available', `GetServerVariable(${name})`);
  }

  /** WriteClient(data): raw bytes to the client (before the response, or with FINISHED). */
  WriteClient(data: string | Uint8Array): void {
    this._change(Change.WriteClient, data, '');
  }

  /** AddResponseHeaders("Name: value\r\n…"): added to the response this request gets. */
  AddResponseHeaders(headers: string): void {
    checkHeaderLines(headers, 'AddResponseHeaders', { body: false }, FilterError);
    this._change(Change.AddResponseHeaders, headers.endsWith('\r\n') ? headers : headers + '\r\n', '');
  }

  /** SendResponseHeader(status, headers): SF_REQ_SEND_RESPONSE_HEADER. */
  SendResponseHeader(status: string, headers = ''): void {
    checkStatus(status, 'SendResponseHeader', FilterError);
    checkHeaderLines(headers, 'SendResponseHeader', { body: true }, FilterError);
    this._change(Change.SendResponseHeader, status, headers);
  }

  /** AddHeadersOnDenial(headers): SF_REQ_ADD_HEADERS_ON_DENIAL. */
  AddHeadersOnDenial(headers: string): void {
    checkHeaderLines(headers, 'AddHeadersOnDenial', { body: false }, FilterError);
    this._change(Change.AddHeadersOnDenial, headers, '');
  }

  /** DisableNotifications(flags): stop these notifications for the rest of the connection. */
  DisableNotifications(flags: number): void {
    this._change(Change.DisableNotifications, String(flags >>> 0), '');
  }

  /** SetNextReadSize(bytes): SF_REQ_SET_NEXT_READ_SIZE (with SF_STATUS_REQ_READ_NEXT). */
  SetNextReadSize(bytes: number): void {
    this._change(Change.SetNextReadSize, String(bytes >>> 0), '');
  }

  /** @internal */
  _change(op: number, a: string | Uint8Array, b: string | Uint8Array): void {
    this.changes.push([op, a, b]);
  }

  /** @internal */
  _changes(): ChangeList {
    return this.changes;
  }
}
