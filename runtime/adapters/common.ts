// What the Node `http` and fetch adapters share: where the app is mounted, the URL it sees,
// and the request facts a web framework reads from a socket.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { ECB } from '../ecb';

export interface AdapterOptions {
  /**
   * false (default): an app mounted at the virtual directory /shop sees /cart for /shop/cart,
   * the paths it would see at the root (SCRIPT_NAME is the virtual directory, the rest is the
   * app's path, the way isapi-wsgi splits them). true: the app sees the full URL path.
   */
  fullUrl?: boolean;
  /**
   * The URL reaches the app as the client sent it (raw, percent-encoded) when the web server
   * gives it with the request (UNENCODED_URL). When it does not, the path is the server's decoded
   * PATH_INFO encoded again, which is exact except for an encoded '/' (%2F), which arrives as '/'.
   * true: ask the server for UNENCODED_URL then, at the cost of one round trip per request.
   */
  exactUrl?: boolean;
}

export interface RequestTarget {
  /** The URL the app sees: raw (still percent-encoded) path and query, e.g. `/cart?id=1`. */
  url: string;
  /** The virtual directory the app is mounted at (decoded), e.g. `/shop`; '' at the root. */
  scriptName: string;
  /** The full raw URL as the client sent it, e.g. `/shop/cart?id=1`. */
  fullUrl: string;
}

/** Characters left as they are when a decoded path must be encoded again. */
const PATH_SAFE = /[A-Za-z0-9\-._~!$&'()*+,;=:@/]/;

function encodePath(path: string): string {
  let out = '';
  for (const ch of path) out += PATH_SAFE.test(ch) ? ch : encodeURIComponent(ch);
  return out;
}

/** Drops the virtual directory's segments from the front of a raw path, if they match it. */
export function stripScriptName(rawPath: string, scriptName: string): string | null {
  const vdir = scriptName.replace(/\/+$/, '');
  if (vdir === '') return rawPath;
  const want = vdir.split('/').slice(1);
  const segs = rawPath.split('/');
  // segs[0] is '' (the path starts with '/').
  if (segs.length < want.length + 1) return null;
  for (let i = 0; i < want.length; i++) {
    let seg = segs[i + 1]!;
    try {
      seg = decodeURIComponent(seg);
    } catch {
      return null;
    }
    // IIS matches virtual directories without regard to case.
    if (seg.toLowerCase() !== want[i]!.toLowerCase()) return null;
  }
  const rest = segs.slice(want.length + 1).join('/');
  return '/' + rest;
}

/**
 * The URL the app sees. The raw URL is UNENCODED_URL when the server sent it with the request
 * (PATH_INFO is percent-decoded, which turns `a%2Fb` into `a/b`); otherwise PATH_INFO encoded
 * again, or, with `exactUrl`, UNENCODED_URL asked for (a round trip).
 */
export async function requestTarget(ecb: ECB, options: AdapterOptions): Promise<RequestTarget> {
  const scriptName = (ecb.knownServerVariable('SCRIPT_NAME') ?? (await ecb.GetServerVariable('SCRIPT_NAME', ''))).replace(/\/+$/, '');
  let raw = ecb.knownServerVariable('UNENCODED_URL') ?? (options.exactUrl ? await ecb.GetServerVariable('UNENCODED_URL', '') : '');
  if (!raw.startsWith('/')) raw = encodePath(ecb.PathInfo || '/') + (ecb.QueryString ? `?${ecb.QueryString}` : '');
  const q = raw.indexOf('?');
  const rawPath = q < 0 ? raw : raw.slice(0, q);
  const query = q < 0 ? '' : raw.slice(q);
  if (options.fullUrl) return { url: raw, scriptName, fullUrl: raw };
  const below = stripScriptName(rawPath, scriptName);
  return { url: below === null ? raw : below + query, scriptName: below === null ? '' : scriptName, fullUrl: raw };
}

export interface RequestFacts {
  httpVersion: string;
  major: number;
  minor: number;
  https: boolean;
  remoteAddress: string;
  remotePort: number;
  serverName: string;
  serverPort: number;
}

export function requestFacts(ecb: ECB): RequestFacts {
  const protocol = ecb.knownServerVariable('SERVER_PROTOCOL') ?? 'HTTP/1.1';
  const m = /^HTTP\/(\d)\.(\d)$/i.exec(protocol);
  const major = m ? Number(m[1]) : 1;
  const minor = m ? Number(m[2]) : 1;
  return {
    httpVersion: `${major}.${minor}`,
    major,
    minor,
    https: (ecb.knownServerVariable('HTTPS') ?? 'off').toLowerCase() === 'on',
    remoteAddress: ecb.knownServerVariable('REMOTE_ADDR') ?? '',
    remotePort: Number(ecb.knownServerVariable('REMOTE_PORT') ?? 0),
    serverName: ecb.knownServerVariable('SERVER_NAME') ?? 'localhost',
    serverPort: Number(ecb.knownServerVariable('SERVER_PORT') ?? 0),
  };
}

/** Reason phrases for status lines when an app gives none. */
export function reasonPhrase(status: number): string {
  return STATUS_TEXT[status] ?? 'Unknown';
}

const STATUS_TEXT: Record<number, string> = {
  100: 'Continue', 101: 'Switching Protocols', 200: 'OK', 201: 'Created', 202: 'Accepted',
  203: 'Non-Authoritative Information', 204: 'No Content', 205: 'Reset Content', 206: 'Partial Content',
  300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Found', 303: 'See Other', 304: 'Not Modified',
  307: 'Temporary Redirect', 308: 'Permanent Redirect', 400: 'Bad Request', 401: 'Unauthorized',
  402: 'Payment Required', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  406: 'Not Acceptable', 407: 'Proxy Authentication Required', 408: 'Request Timeout', 409: 'Conflict',
  410: 'Gone', 411: 'Length Required', 412: 'Precondition Failed', 413: 'Payload Too Large',
  414: 'URI Too Long', 415: 'Unsupported Media Type', 416: 'Range Not Satisfiable', 417: 'Expectation Failed',
  418: "I'm a Teapot", 421: 'Misdirected Request', 422: 'Unprocessable Entity', 423: 'Locked',
  424: 'Failed Dependency', 425: 'Too Early', 426: 'Upgrade Required', 428: 'Precondition Required',
  429: 'Too Many Requests', 431: 'Request Header Fields Too Large', 451: 'Unavailable For Legal Reasons',
  500: 'Internal Server Error', 501: 'Not Implemented', 502: 'Bad Gateway', 503: 'Service Unavailable',
  504: 'Gateway Timeout', 505: 'HTTP Version Not Supported', 507: 'Insufficient Storage',
  508: 'Loop Detected', 511: 'Network Authentication Required',
};

// Streamed bodies and flat memory. Each piece of a body that crosses the channel is a Buffer
// whose bytes live outside V8's heap; the Buffer objects themselves are tiny, so a long transfer
// never fills the young generation and V8 collects them only when their outside bytes pass its
// 64 MiB external-memory threshold: a 50 MiB upload would leave tens of MiB of dead buffers
// resident. A minor collection (a scavenge: about a millisecond with a small young generation)
// after every few MiB moved frees them as they go. The collector comes from V8's own `gc`
// extension, enabled for a fresh context only.
let minorGc: ((o: { type: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void) | null | undefined;

function collector() {
  if (minorGc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      minorGc = runInNewContext('gc') as typeof minorGc;
    } catch {
      minorGc = null;
    }
  }
  return minorGc;
}

const RELEASE_EVERY = 8 << 20;

/** Counts body bytes moved; every few MiB, frees the buffers that carried them. */
export class TransferMeter {
  private since = 0;
  add(bytes: number): void {
    this.since += bytes;
    if (this.since < RELEASE_EVERY) return;
    this.since = 0;
    try {
      collector()?.({ type: 'minor' });
    } catch {
      minorGc = null;
    }
  }
}
