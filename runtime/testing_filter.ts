// node-isapi/testing: testFilter, a filter run in-process through every notification in IIS's
// order, with the changes it made.
import path from 'node:path';
import { In, type FilterNotification } from './channel';
import {
  ERROR_INVALID_INDEX,
  SF_NOTIFY_ACCESS_DENIED,
  SF_NOTIFY_AUTH_COMPLETE,
  SF_NOTIFY_AUTHENTICATION,
  SF_NOTIFY_END_OF_NET_SESSION,
  SF_NOTIFY_END_OF_REQUEST,
  SF_NOTIFY_LOG,
  SF_NOTIFY_PREPROC_HEADERS,
  SF_NOTIFY_READ_RAW_DATA,
  SF_NOTIFY_SEND_RAW_DATA,
  SF_NOTIFY_SEND_RESPONSE,
  SF_NOTIFY_URL_MAP,
  SF_STATUS_REQ_ERROR,
  SF_STATUS_REQ_FINISHED,
  SF_STATUS_REQ_FINISHED_KEEP_CONN,
} from './constants';
import type { UserModule } from './extension';
import type { Filter } from './filter';
import type { ExecResult, TestExtension, TestExtensionOptions, TestHeaders } from './testing';
import { type Factory, headerLines, headerRecord, parseHeaderText, statusText, toBuffer } from './testing_exchange';
import { type FilterReply, Host, hostOptions, moduleOf } from './testing_host';

// ---------------------------------------------------------------------------------------------
// Filters

const NOTIFICATION_NAMES: Record<number, string> = {
  [SF_NOTIFY_READ_RAW_DATA]: 'READ_RAW_DATA',
  [SF_NOTIFY_PREPROC_HEADERS]: 'PREPROC_HEADERS',
  [SF_NOTIFY_URL_MAP]: 'URL_MAP',
  [SF_NOTIFY_AUTHENTICATION]: 'AUTHENTICATION',
  [SF_NOTIFY_AUTH_COMPLETE]: 'AUTH_COMPLETE',
  [SF_NOTIFY_ACCESS_DENIED]: 'ACCESS_DENIED',
  [SF_NOTIFY_SEND_RESPONSE]: 'SEND_RESPONSE',
  [SF_NOTIFY_SEND_RAW_DATA]: 'SEND_RAW_DATA',
  [SF_NOTIFY_END_OF_REQUEST]: 'END_OF_REQUEST',
  [SF_NOTIFY_LOG]: 'LOG',
  [SF_NOTIFY_END_OF_NET_SESSION]: 'END_OF_NET_SESSION',
};

/** IIS's order of the notifications of one request (ACCESS_DENIED only for a 401). */
export const NOTIFICATION_ORDER: readonly number[] = [
  SF_NOTIFY_READ_RAW_DATA,
  SF_NOTIFY_PREPROC_HEADERS,
  SF_NOTIFY_URL_MAP,
  SF_NOTIFY_AUTHENTICATION,
  SF_NOTIFY_AUTH_COMPLETE,
  SF_NOTIFY_ACCESS_DENIED,
  SF_NOTIFY_SEND_RESPONSE,
  SF_NOTIFY_SEND_RAW_DATA,
  SF_NOTIFY_END_OF_REQUEST,
  SF_NOTIFY_LOG,
];

const CHANGE_NAMES = [
  '',
  'SetHeader',
  'AddHeader',
  'AddResponseHeaders',
  'WriteClient',
  'SendResponseHeader',
  'DisableNotifications',
  'SetPhysicalPath',
  'SetLogField',
  'SetUser',
  'SetPassword',
  'AddHeadersOnDenial',
  'SetRawData',
  'SetNextReadSize',
  'SetHttpStatus',
] as const;
const LOG_FIELD_NAMES = ['ClientHostName', 'ClientUserName', 'ServerName', 'Operation', 'Target', 'Parameters', 'HttpStatus', 'Win32Status'];

/** One change a filter made, decoded: { op: 'SetHeader', a: 'X-Frame-Options:', b: 'DENY' }. */
export interface FilterChange {
  op: (typeof CHANGE_NAMES)[number];
  a: string;
  b: string;
}

export interface NotificationResult {
  notification: number;
  /** "PREPROC_HEADERS", … */
  name: string;
  /** The SF_STATUS_REQ_* the filter returned. */
  status: number;
  changes: FilterChange[];
}

export interface FilterRequestOptions {
  headers?: TestHeaders;
  body?: string | Uint8Array;
  /** What the handler behind the filter answers (default 200 "OK"); or a TestExtension to ask. */
  response?: ExecResult | TestExtension | ((req: FilteredRequest) => ExecResult | Promise<ExecResult>);
  /** Server variables over the defaults (REMOTE_ADDR, SERVER_PORT…). */
  serverVariables?: Record<string, string>;
  /** Fire only these notifications, in this order (default: IIS's order, those the filter asked for). */
  order?: readonly number[];
}

/** The request as the filter left it (what the handler saw). */
export interface FilteredRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  physicalPath: string;
  user: string;
  password: string;
}

export interface FilterResult {
  /** Every notification fired, in order, with its verdict and changes. */
  notifications: NotificationResult[];
  /** A notification answered FINISHED (the filter answered the request itself). */
  finished: boolean;
  request: FilteredRequest;
  /** The response the client got. */
  status: number;
  headers: Record<string, string>;
  rawHeaders: Array<[string, string]>;
  body: Buffer;
  text: string;
  /** The access log fields after LOG. */
  log: Record<string, string | number>;
}

export interface TestFilter {
  /** One request through every notification the filter subscribed to, in IIS's order. */
  request(method: string, url: string, options?: FilterRequestOptions): Promise<FilterResult>;
  /** One notification with the data you give (fields in native/bridge/filter_entry.cc order). */
  notify(notification: number, fields: Array<string | Uint8Array>, vars?: Record<string, string>): Promise<NotificationResult>;
  /** The connection closes: END_OF_NET_SESSION (FilterContext is released). A new one starts. */
  endConnection(): Promise<void>;
  /** The filter's flags, as the packer records them. */
  readonly filterFlags: number;
  close(): Promise<void>;
}

/** Runs a filter in-process: `factory` is the script's `__FilterFactory__` (or its module). */
export async function testFilter(factory: Factory<Filter> | UserModule, options: TestExtensionOptions = {}): Promise<TestFilter> {
  const user = moduleOf(factory as UserModule | Factory<unknown>, '__FilterFactory__');
  if (typeof user.__FilterFactory__ !== 'function') throw new TypeError('testFilter wants __FilterFactory__ (or a module exporting it)');
  // Its flags, read as the packer's describe step reads them (a separate instance).
  const probe = (await user.__FilterFactory__()) as Filter;
  const flags = probe?.filterFlags >>> 0;
  if (!flags) throw new Error('__FilterFactory__() returned a filter without filterFlags (SF_NOTIFY_* bits)');
  const host = new Host({ __FilterFactory__: user.__FilterFactory__ }, hostOptions(options));
  await host.startGeneration();
  let connection = 1;
  let disabled = 0;
  let nextId = 1 << 30;
  let current: { responseHeaders: Array<[string, string]>; vars: Record<string, string> } | null = null;
  host.filterQuery = (_id, op, name) => {
    if (!current) return { ok: false, error: ERROR_INVALID_INDEX, out: '' };
    if (op === 1) {
      const want = name.replace(/:$/, '').toLowerCase();
      const v = current.responseHeaders.filter(([n]) => n.toLowerCase() === want).map(([, v]) => v);
      return v.length ? { ok: true, error: 0, out: v.join(', ') } : { ok: false, error: ERROR_INVALID_INDEX, out: '' };
    }
    const v = current.vars[name.toUpperCase()];
    return v === undefined ? { ok: false, error: ERROR_INVALID_INDEX, out: '' } : { ok: true, error: 0, out: v };
  };

  const fire = (notification: number, fields: Array<string | Uint8Array>, vars: Record<string, string>): Promise<NotificationResult> => {
    const gen = host.current;
    const id = nextId++;
    const n: FilterNotification = { connection, notification, wantsReply: true, fields: fields.map(toBuffer), vars };
    return new Promise<FilterReply>((resolve) => {
      gen.filterCalls.set(id, resolve);
      gen.send(In.FilterNotify, id, n);
    }).then((r) => ({
      notification,
      name: NOTIFICATION_NAMES[notification] ?? `0x${notification.toString(16)}`,
      status: r.status,
      changes: r.changes.map(([op, a, b]) => ({
        op: CHANGE_NAMES[op] ?? ('' as const),
        a: typeof a === 'string' ? a : Buffer.from(a).toString('latin1'),
        b: typeof b === 'string' ? b : Buffer.from(b).toString('latin1'),
      })),
    }));
  };

  const wants = (n: number) => !!(flags & n) && !(disabled & n);

  const request = async (method: string, url: string, o: FilterRequestOptions = {}): Promise<FilterResult> => {
    const order = o.order ?? NOTIFICATION_ORDER;
    const reqHeaders = headerLines(o.headers);
    if (!reqHeaders.some(([n]) => n.toLowerCase() === 'host')) reqHeaders.unshift(['Host', 'localhost']);
    const req: FilteredRequest = { method, url, headers: {}, physicalPath: '', user: '', password: '' };
    let version = 'HTTP/1.1';
    const notifications: NotificationResult[] = [];
    let finished = false;
    let status = 0;
    let statusLine = '';
    let respHeaders: Array<[string, string]> = [];
    const pendingResponseHeaders: Array<[string, string]> = [];
    const denialHeaders: Array<[string, string]> = [];
    const written: Buffer[] = [];
    let body: Buffer = Buffer.alloc(0);
    const vars = (): Record<string, string> => ({
      REMOTE_ADDR: '127.0.0.1',
      SERVER_PORT: '80',
      URL: req.url.split('?')[0]!,
      ALL_RAW: reqHeaders.map(([n, v]) => `${n}: ${v}\r\n`).join(''),
      ...options.serverVariables,
      ...o.serverVariables,
    });
    const setReqHeader = (name: string, value: string, add: boolean) => {
      const key = name.replace(/:$/, '').toLowerCase();
      if (key === 'url') req.url = value;
      else if (key === 'method') req.method = value;
      else if (key === 'version') version = value;
      else {
        const i = reqHeaders.findIndex(([n]) => n.toLowerCase() === key);
        if (add && i >= 0) reqHeaders[i] = [reqHeaders[i]![0], `${reqHeaders[i]![1]}, ${value}`];
        else if (i >= 0 && value === '') reqHeaders.splice(i, 1);
        else if (i >= 0) reqHeaders[i] = [reqHeaders[i]![0], value];
        else if (value !== '') reqHeaders.push([name.replace(/:$/, ''), value]);
      }
    };
    const setRespHeader = (name: string, value: string, add: boolean) => {
      const key = name.replace(/:$/, '').toLowerCase();
      const i = respHeaders.findIndex(([n]) => n.toLowerCase() === key);
      if (add || i < 0) {
        if (value !== '') respHeaders.push([name.replace(/:$/, ''), value]);
      } else if (value === '') {
        respHeaders = respHeaders.filter(([n]) => n.toLowerCase() !== key);
      } else {
        respHeaders[i] = [respHeaders[i]![0], value];
      }
    };
    const log: Record<string, string | number> = {};
    let rawData: Buffer = Buffer.alloc(0);

    const step = async (n: number, fields: Array<string | Uint8Array>): Promise<NotificationResult | null> => {
      if (!wants(n) || !order.includes(n)) return null;
      current = { responseHeaders: respHeaders, vars: vars() };
      const r = await fire(n, fields, current.vars);
      current = null;
      notifications.push(r);
      for (const c of r.changes) {
        switch (c.op) {
          case 'SetHeader':
          case 'AddHeader':
            if (n === SF_NOTIFY_SEND_RESPONSE) setRespHeader(c.a, c.b, c.op === 'AddHeader');
            else setReqHeader(c.a, c.b, c.op === 'AddHeader');
            break;
          case 'AddResponseHeaders':
            pendingResponseHeaders.push(...parseHeaderText(c.a).pairs);
            break;
          case 'AddHeadersOnDenial':
            denialHeaders.push(...parseHeaderText(c.a).pairs);
            break;
          case 'WriteClient':
            written.push(Buffer.from(c.a, 'latin1'));
            break;
          case 'SendResponseHeader': {
            statusLine = c.a || '200 OK';
            status = parseInt(statusLine, 10) || 200;
            respHeaders = parseHeaderText(c.b).pairs;
            break;
          }
          case 'DisableNotifications':
            disabled |= Number(c.a);
            break;
          case 'SetPhysicalPath':
            req.physicalPath = c.a;
            break;
          case 'SetUser':
            req.user = c.a;
            break;
          case 'SetPassword':
            req.password = c.a;
            break;
          case 'SetLogField':
            log[LOG_FIELD_NAMES[Number(c.a)] ?? c.a] = Number(c.a) >= 6 ? Number(c.b) : c.b;
            break;
          case 'SetRawData':
            rawData = Buffer.from(c.a, 'latin1');
            break;
          case 'SetHttpStatus':
            status = Number(c.a);
            break;
        }
      }
      if (r.status === SF_STATUS_REQ_FINISHED || r.status === SF_STATUS_REQ_FINISHED_KEEP_CONN) finished = true;
      if (r.status === SF_STATUS_REQ_ERROR && !finished && !statusLine) {
        finished = true;
        status = 500;
        statusLine = '500 Internal Server Error';
      }
      return r;
    };

    const bodyBytes = o.body === undefined ? Buffer.alloc(0) : toBuffer(o.body);
    const rawRequest = Buffer.concat([
      Buffer.from(`${method} ${url} ${version}\r\n${reqHeaders.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`, 'latin1'),
      bodyBytes,
    ]);
    rawData = rawRequest;
    const phases: Array<() => Promise<unknown>> = [
      () => step(SF_NOTIFY_READ_RAW_DATA, [rawData]),
      () => step(SF_NOTIFY_PREPROC_HEADERS, [req.method, req.url, version, '0']),
      () => {
        req.physicalPath = options.root ? path.join(path.resolve(options.root), ...req.url.split('?')[0]!.split('/').filter(Boolean)) : req.url;
        return step(SF_NOTIFY_URL_MAP, [req.url.split('?')[0]!, req.physicalPath]);
      },
      () => {
        const authz = reqHeaders.find(([n]) => n.toLowerCase() === 'authorization')?.[1] ?? '';
        const m = /^Basic\s+(.*)$/i.exec(authz);
        if (m) {
          const decoded = Buffer.from(m[1]!, 'base64').toString('latin1');
          const colon = decoded.indexOf(':');
          req.user = colon < 0 ? decoded : decoded.slice(0, colon);
          req.password = colon < 0 ? '' : decoded.slice(colon + 1);
        }
        return step(SF_NOTIFY_AUTHENTICATION, [req.user, req.password]);
      },
      () => step(SF_NOTIFY_AUTH_COMPLETE, [req.method, req.url, version, '0']),
    ];
    for (const phase of phases) {
      await phase();
      if (finished) break;
    }
    req.headers = headerRecord(reqHeaders);

    if (!finished) {
      const answer = o.response;
      let r: ExecResult;
      if (answer && typeof answer === 'object' && 'request' in answer) {
        const t = await answer.request(req.method, req.url, {
          headers: Object.fromEntries(reqHeaders.map(([n, v]) => [n, v])),
          body: bodyBytes.length ? bodyBytes : undefined,
          serverVariables: req.user ? { REMOTE_USER: req.user, AUTH_USER: req.user, LOGON_USER: req.user, AUTH_TYPE: 'Basic' } : undefined,
        });
        r = { status: t.status, headers: Object.fromEntries(t.rawHeaders.map(([n, v]) => [n, v])), body: t.body };
        statusLine = `${t.status} ${t.statusText}`;
      } else if (typeof answer === 'function') {
        r = await answer(req);
      } else {
        r = answer ?? { status: 200, headers: { 'Content-Type': 'text/plain' }, body: 'OK\n' };
      }
      status = r.status;
      statusLine ||= `${r.status}`;
      body = r.body === undefined ? Buffer.alloc(0) : toBuffer(r.body);
      respHeaders = headerLines({ ...(r.headers ?? {}) });
      if (!respHeaders.some(([n]) => n.toLowerCase() === 'content-length')) respHeaders.push(['Content-Length', String(body.length)]);
      if (status === 401) {
        await step(SF_NOTIFY_ACCESS_DENIED, [req.url.split('?')[0]!, req.physicalPath, '0']);
        respHeaders.push(...denialHeaders);
      }
      // AddResponseHeaders of any notification so far (ACCESS_DENIED's too) go out with it.
      respHeaders.push(...pendingResponseHeaders.splice(0));
      if (!finished) await step(SF_NOTIFY_SEND_RESPONSE, [String(status)]);
    } else {
      // The filter answered: what it sent (SendResponseHeader + WriteClient) is the response.
      const raw = Buffer.concat(written);
      if (!statusLine && raw.subarray(0, 5).toString('latin1') === 'HTTP/') {
        const end = raw.indexOf('\r\n\r\n');
        const head = raw.subarray(0, end < 0 ? raw.length : end).toString('latin1');
        const [first, ...rest] = head.split('\r\n');
        statusLine = first!.replace(/^HTTP\/\d\.\d\s+/, '');
        status = parseInt(statusLine, 10);
        respHeaders = parseHeaderText(rest.join('\r\n') + '\r\n\r\n').pairs;
        body = end < 0 ? Buffer.alloc(0) : raw.subarray(end + 4);
      } else {
        body = raw;
      }
      written.length = 0;
      if (status === 401) respHeaders.push(...denialHeaders);
      respHeaders.push(...pendingResponseHeaders.splice(0));
    }
    const sendRaw = await step(SF_NOTIFY_SEND_RAW_DATA, [body]);
    if (sendRaw?.changes.some((c) => c.op === 'SetRawData')) body = rawData;
    if (written.length) body = Buffer.concat([...written, body]);
    await step(SF_NOTIFY_END_OF_REQUEST, []);
    const logFields = ['127.0.0.1', req.user, 'localhost', req.method, req.url.split('?')[0]!, req.url.split('?')[1] ?? '', String(status), '0', String(body.length), String(rawRequest.length), '0'];
    await step(SF_NOTIFY_LOG, logFields);
    return {
      notifications,
      finished,
      request: req,
      status,
      headers: headerRecord(respHeaders),
      rawHeaders: respHeaders,
      body,
      text: body.toString('utf8'),
      log,
    };
  };

  return {
    request,
    notify: (n, fields, vars = {}) => fire(n, fields, { REMOTE_ADDR: '127.0.0.1', SERVER_PORT: '80', ...vars }),
    async endConnection() {
      await fire(SF_NOTIFY_END_OF_NET_SESSION, [], {});
      connection++;
      disabled = 0;
    },
    filterFlags: flags,
    close: () => host.close(),
  };
}
