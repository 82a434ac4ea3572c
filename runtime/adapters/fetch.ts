// Runs a fetch-style app — `(request: Request) => Response | Promise<Response>` — as an ISAPI
// extension. Hono, itty-router, and anything written for Workers/Deno/Bun run unchanged:
//
//   import { Hono } from 'hono';
//   import { fetchExtension } from 'node-isapi';
//   const app = new Hono();
//   app.get('/', (c) => c.text('hi'));
//   export const __ExtensionFactory__ = fetchExtension(app.fetch);
//
// The Request's body is a ReadableStream pulled from ReadClient (nothing is read before the app
// asks); the Response's body is streamed to WriteClient, one awaited write per chunk, so both
// directions keep flat memory. A response without Content-Length gets one when its body is
// already complete (a string or a buffer), otherwise chunked framing written here (ISAPI
// servers never frame an extension's output), or, for an HTTP/1.0 client, the end of the
// connection marks the end of the body.

import { HSE_STATUS_ERROR, HSE_STATUS_SUCCESS } from '../constants';
import type { ECB } from '../ecb';
import type { Extension, ExtensionVersionInfo } from '../extension';
import { reasonPhrase, requestFacts, requestTarget, TransferMeter, type AdapterOptions } from './common';

/** The second argument a fetch handler receives (Hono exposes it as `c.env`). */
export interface FetchEnv {
  ecb: ECB;
  /** The virtual directory the app is mounted at (decoded), '' at the root. */
  scriptName: string;
  /** The full raw URL path and query as the client sent it. */
  fullUrl: string;
}

export type FetchHandler = (request: Request, env: FetchEnv) => Response | Promise<Response>;

export interface FetchExtensionOptions extends AdapterOptions {
  /** lpszExtensionDesc. */
  description?: string;
}

/** Makes an extension factory from a fetch handler; export it as `__ExtensionFactory__`. */
export function fetchExtension(handler: FetchHandler, options: FetchExtensionOptions = {}): () => Extension {
  if (typeof handler !== 'function') throw new TypeError('fetchExtension() wants a (request) => Response function, e.g. app.fetch');
  return () => ({
    GetExtensionVersion(vi: ExtensionVersionInfo) {
      vi.ExtensionDesc = options.description ?? `${vi.ExtensionDesc} (fetch handler)`;
    },
    HttpExtensionProc: (ecb: ECB) => serveFetchRequest(ecb, handler, options),
  });
}

const NO_BODY_METHODS = new Set(['GET', 'HEAD']);

/** The request body as a stream that reads from the ECB only when its reader asks. */
function bodyStream(ecb: ECB): ReadableStream<Uint8Array> {
  const meter = new TransferMeter();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const chunk = await ecb.ReadClient(64 * 1024);
        meter.add(chunk.length);
        if (chunk.length === 0) {
          if (ecb.aborted) controller.error(Object.assign(new Error('the client went away'), { name: 'AbortError' }));
          else controller.close();
        } else {
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        }
      },
    },
    { highWaterMark: 0 },
  );
}

export function toRequest(ecb: ECB, url: string, signal?: AbortSignal): Request {
  const headers = new Headers();
  for (const [name, value] of ecb.headers()) {
    try {
      headers.append(name, value);
    } catch {
      // A header the fetch API refuses (invalid bytes) is left out rather than failing the request.
    }
  }
  const method = ecb.Method.toUpperCase();
  const hasBody = !NO_BODY_METHODS.has(method) && ecb.TotalBytes !== 0;
  const init: RequestInit & { duplex?: 'half' } = { method: ecb.Method, headers, signal };
  if (hasBody) {
    init.body = bodyStream(ecb);
    init.duplex = 'half';
  }
  return new Request(url, init);
}

/** Serves one request with a fetch handler; resolves with the HSE status once it is over. */
export async function serveFetchRequest(ecb: ECB, handler: FetchHandler, options: AdapterOptions = {}): Promise<number> {
  const target = await requestTarget(ecb, options);
  const facts = requestFacts(ecb);
  const hostHeader = ecb.headers().find(([n]) => n.toLowerCase() === 'host')?.[1];
  const authority = hostHeader || `${facts.serverName}${facts.serverPort ? `:${facts.serverPort}` : ''}`;
  const controller = new AbortController();
  const offAbort = ecb.onAbort(() => controller.abort());
  try {
    let request: Request;
    try {
      request = toRequest(ecb, `${facts.https ? 'https' : 'http'}://${authority}${target.url}`, controller.signal);
    } catch (err) {
      const body = `400 Bad Request\n${(err as Error).message}\n`;
      ecb.SendResponseHeaders('400 Bad Request', { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) }, false);
      await ecb.WriteClient(body);
      return HSE_STATUS_SUCCESS;
    }
    const response = await handler(request, { ecb, scriptName: target.scriptName, fullUrl: target.fullUrl });
    if (!(response instanceof Response)) {
      throw new TypeError(`the fetch handler returned ${response === null ? 'null' : typeof response}, not a Response`);
    }
    return await sendResponse(ecb, response, facts.minor === 0 && facts.major === 1);
  } finally {
    offAbort();
  }
}

async function sendResponse(ecb: ECB, response: Response, http10: boolean): Promise<number> {
  const status = `${response.status} ${response.statusText || reasonPhrase(response.status)}`;
  let text = '';
  let hasLength = false;
  let hasTe = false;
  // Headers iterates Set-Cookie once per cookie, every other name once (values joined).
  for (const [name, value] of response.headers) {
    if (name === 'content-length') hasLength = true;
    if (name === 'transfer-encoding') {
      hasTe = true;
      continue; // the framing is decided below
    }
    text += `${name}: ${value}\r\n`;
  }
  const head = ecb.Method.toUpperCase() === 'HEAD';
  const bodyless = head || response.status === 204 || response.status === 304 || (response.status >= 100 && response.status < 200);
  const body = response.body;

  if (!body || bodyless) {
    if (body) await body.cancel().catch(() => {});
    if (!hasLength && !bodyless) text += 'content-length: 0\r\n';
    ecb.SendResponseHeaders(status, text);
    return HSE_STATUS_SUCCESS;
  }

  const reader = body.getReader();
  const offAbort = ecb.onAbort(() => void reader.cancel().catch(() => {}));
  try {
    if (hasLength) {
      ecb.SendResponseHeaders(status, text);
      return await pump(ecb, reader, null, false);
    }
    // A body that is complete at once (a string, a buffer) gets a Content-Length; one still
    // being produced is streamed with chunked framing (or, for HTTP/1.0, until the connection closes).
    const first = await reader.read();
    if (first.done) {
      ecb.SendResponseHeaders(status, text + 'content-length: 0\r\n');
      return HSE_STATUS_SUCCESS;
    }
    const tick = Symbol('tick');
    const secondRead = reader.read();
    const second = await Promise.race([secondRead, new Promise<typeof tick>((r) => setImmediate(() => r(tick)))]);
    if (second !== tick && second.done) {
      ecb.SendResponseHeaders(status, text + `content-length: ${first.value.byteLength}\r\n`);
      await ecb.WriteClient(first.value);
      return HSE_STATUS_SUCCESS;
    }
    const chunked = !http10;
    if (chunked) text += 'transfer-encoding: chunked\r\n';
    else if (hasTe) text += 'connection: close\r\n';
    ecb.SendResponseHeaders(status, text, chunked);
    await writePiece(ecb, first.value, chunked);
    // The second read may still be pending: pump() waits for it before reading on.
    return await pump(ecb, reader, secondRead, chunked);
  } finally {
    offAbort();
  }
}

const responseMeters = new WeakMap<ECB, TransferMeter>();

async function writePiece(ecb: ECB, piece: Uint8Array, chunked: boolean): Promise<void> {
  if (piece.byteLength === 0 || ecb.aborted) return;
  let meter = responseMeters.get(ecb);
  if (!meter) responseMeters.set(ecb, (meter = new TransferMeter()));
  meter.add(piece.byteLength);
  if (!chunked) {
    await ecb.WriteClient(piece);
    return;
  }
  // Size line, data, CRLF: queued in order without copying the data.
  await Promise.all([ecb.WriteClient(`${piece.byteLength.toString(16)}\r\n`), ecb.WriteClient(piece), ecb.WriteClient('\r\n')]);
}

async function pump(
  ecb: ECB,
  reader: ReadableStreamDefaultReader<Uint8Array>,
  pending: Promise<ReadableStreamReadResult<Uint8Array>> | null,
  chunked: boolean,
): Promise<number> {
  let next = pending;
  for (;;) {
    const r = await (next ?? reader.read());
    next = null;
    if (r.done) break;
    if (ecb.aborted) {
      await reader.cancel().catch(() => {});
      return HSE_STATUS_ERROR;
    }
    await writePiece(ecb, r.value, chunked);
  }
  if (chunked && !ecb.aborted) await ecb.WriteClient('0\r\n\r\n');
  return ecb.aborted ? HSE_STATUS_ERROR : HSE_STATUS_SUCCESS;
}
