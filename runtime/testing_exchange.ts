// node-isapi/testing: one request's exchange with the in-process "web server" (what the client
// sent, what came back), and the figures the in-process bridge keeps to the real one's.
import { In, type RequestBegin } from './channel';
import { HSE_STATUS_ERROR } from './constants';
import type { TestExchange, TestHeaders, TestResponse } from './testing';
import type { Generation } from './testing_host';


// The bridge's figures (native/worker_addon/worker_channel.cc, request_io.cc, runtime/ecb.ts).
export const CHANNEL_HIGH_WATER = 1 << 20;
export const CHANNEL_LOW_WATER = 256 << 10;
export const BODY_AHEAD = 1 << 20;
/** IIS reads this much of a body before calling the extension (uploadReadAheadSize). */
export const DEFAULT_PRELOAD = 48 * 1024;
export const BODY_PIECE = 64 * 1024;
export const CHUNKED = 0xffffffff;

export type Factory<T> = () => T | Promise<T>;
export type Body = string | Uint8Array | Iterable<string | Uint8Array> | AsyncIterable<string | Uint8Array>;

export const statusText = (line: string) => line.replace(/^\d+\s*/, '');

export function toBuffer(b: string | Uint8Array): Buffer {
  return typeof b === 'string' ? Buffer.from(b) : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export function headerLines(headers: TestHeaders = {}): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(headers)) {
    for (const v of Array.isArray(value) ? value : [value]) out.push([name, String(v)]);
  }
  return out;
}

/** "Name: value\r\n…\r\n\r\n[body]" → the header pairs and what followed the blank line. */
export function parseHeaderText(text: string): { pairs: Array<[string, string]>; rest: string } {
  const end = text.indexOf('\r\n\r\n');
  const head = end < 0 ? text : text.slice(0, end);
  const rest = end < 0 ? '' : text.slice(end + 4);
  const pairs: Array<[string, string]> = [];
  for (const line of head.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) pairs.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
  }
  return { pairs, rest };
}

export function headerRecord(pairs: Array<[string, string]>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [n, v] of pairs) {
    const k = n.toLowerCase();
    out[k] = k in out ? `${out[k]}, ${v}` : v;
  }
  return out;
}

export async function* pieces(body: Body | undefined): AsyncGenerator<Buffer> {
  if (body === undefined) return;
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const all = toBuffer(body);
    for (let i = 0; i < all.length; i += BODY_PIECE) yield all.subarray(i, i + BODY_PIECE);
    return;
  }
  for await (const p of body as AsyncIterable<string | Uint8Array>) {
    const b = toBuffer(p);
    if (b.length) yield b;
  }
}

/** One request as the bridge and the web server hold it. */
export class Exchange implements TestExchange {
  status = 0;
  statusLine = '';
  pairs: Array<[string, string]> = [];
  writes: Buffer[] = [];
  received = 0;
  logExtra = '';
  keepConn = true;
  done = false;
  aborted = false;
  paused = false;
  private unackedByClient = 0;
  private resolveHeaders!: () => void;
  readonly headersSent = new Promise<void>((r) => (this.resolveHeaders = r));
  private resolveResponse!: (r: TestResponse) => void;
  readonly response = new Promise<TestResponse>((r) => (this.resolveResponse = r));
  execStatus = { status: 0, sub: 0, win32: 0 };
  // Body the worker has not yet been sent: credit-driven, as the bridge's BodyCredit.
  bodyAhead = 0;
  bodySource: AsyncGenerator<Buffer> | null = null;
  bodyPumping = false;
  bodyEnded = false;
  chunked = false;

  constructor(
    readonly id: number,
    readonly gen: Generation,
    readonly begin: RequestBegin,
    readonly vars: Record<string, string>,
  ) {}

  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
    const n = this.unackedByClient;
    this.unackedByClient = 0;
    if (n && !this.done) this.gen.send(In.WriteAck, this.id, { bytes: n });
  }
  abort(): void {
    if (this.done || this.aborted) return;
    this.aborted = true;
    this.gen.send(In.Abort, this.id);
    this.finish(HSE_STATUS_ERROR, this.status || 0, '');
  }

  sendHeaders(statusLine: string, text: string): void {
    this.statusLine = statusLine;
    this.status = parseInt(statusLine, 10) || 200;
    const { pairs, rest } = parseHeaderText(text);
    this.pairs.push(...pairs);
    this.resolveHeaders();
    if (rest) this.take(Buffer.from(rest, 'latin1'), false);
  }

  /** Bytes the "client" receives; acknowledged to the worker unless the client is paused. */
  take(data: Buffer, fromWriteClient = true): void {
    this.writes.push(data);
    this.received += data.length;
    if (!this.statusLine) this.resolveHeaders();
    if (!fromWriteClient) return;
    if (this.paused) this.unackedByClient += data.length;
    else setImmediate(() => !this.done && this.gen.send(In.WriteAck, this.id, { bytes: data.length }));
  }

  finish(hseStatus: number, httpStatus: number, logData: string): void {
    if (this.done) return;
    this.done = true;
    this.gen.requests.delete(this.id);
    void this.bodySource?.return(undefined);
    this.resolveHeaders();
    const body = Buffer.concat(this.writes);
    const status = this.status || (hseStatus === HSE_STATUS_ERROR && !this.received ? 500 : httpStatus || 200);
    this.resolveResponse({
      status,
      statusText: this.statusLine ? statusText(this.statusLine) : status === 500 ? 'Internal Server Error' : 'OK',
      headers: headerRecord(this.pairs),
      rawHeaders: this.pairs,
      body,
      text: body.toString('utf8'),
      writes: this.writes,
      logData: logData + this.logExtra,
      hseStatus,
      keepConn: this.keepConn,
      aborted: this.aborted,
    });
  }

  /** Sends body pieces while the worker is less than BODY_AHEAD bytes behind. */
  async pump(): Promise<void> {
    if (this.bodyPumping || this.bodyEnded || !this.bodySource) return;
    this.bodyPumping = true;
    try {
      while (this.bodyAhead < BODY_AHEAD && !this.done) {
        const next = await this.bodySource.next();
        if (this.done) return;
        if (next.done) {
          this.bodyEnded = true;
          // The bridge marks the end of a chunked body with an empty Body message.
          if (this.chunked) this.gen.send(In.Body, this.id, { data: Buffer.alloc(0) });
          return;
        }
        this.bodyAhead += next.value.length;
        this.gen.send(In.Body, this.id, { data: next.value });
      }
    } finally {
      this.bodyPumping = false;
    }
  }
}

/** One generation of workers (one worker here): the addon stand-in its loop talks to. */
