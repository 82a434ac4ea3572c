// The request body as the worker receives it: the bytes the server preloaded, then Body
// messages from the bridge. Every byte handed to the handler is credited back to the bridge,
// which forwards at most a fixed window ahead: a large upload never piles up in memory.

import { ERROR_NETNAME_DELETED } from './constants';
import { ExtensionError } from './errors';

export class RequestBody {
  private chunks: Buffer[] = [];
  private received = 0;
  private ended: boolean;
  private failure: Error | null = null;
  private waiter: (() => void) | null = null;

  /** totalBytes is the ECB's cbTotalBytes: 0xFFFFFFFF means unknown (chunked upload). */
  constructor(
    preloaded: Buffer,
    private readonly totalBytes: number,
    private readonly credit: (bytes: number) => void,
  ) {
    this.ended = totalBytes !== 0xffffffff && preloaded.length >= totalBytes;
    // (An empty push means "end of body": a chunked upload with nothing preloaded has not ended.)
    if (preloaded.length > 0) this.push(preloaded);
  }

  /** An empty chunk is the bridge saying there is no more. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) {
      this.ended = true;
    } else {
      this.chunks.push(chunk);
      this.received += chunk.length;
      if (this.totalBytes !== 0xffffffff && this.received >= this.totalBytes) this.ended = true;
    }
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /**
   * The request was aborted (the client went away, or the bridge gave up on it): what was not
   * read is lost, so every read from now on fails, as ReadClient fails in IIS. Never a short
   * body that looks complete.
   */
  abort(): void {
    if (this.ended && this.chunks.length === 0) return;  // the whole body was already read
    this.failure ??= new ExtensionError(
      ERROR_NETNAME_DELETED,
      'the client went away before the whole request body arrived',
      'ReadClient',
    );
    this.chunks = [];
    this.ended = true;
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Up to `max` bytes; an empty buffer once the body is over (ReadClient's 0-byte read). */
  async read(max = 65536): Promise<Buffer> {
    while (this.chunks.length === 0 && !this.ended) {
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    if (this.failure) throw this.failure;
    if (this.chunks.length === 0) return Buffer.alloc(0);
    let out: Buffer;
    const first = this.chunks[0]!;
    if (first.length <= max) {
      out = first;
      this.chunks.shift();
    } else {
      out = first.subarray(0, max);
      this.chunks[0] = first.subarray(max);
    }
    this.credit(out.length);
    return out;
  }

  /** The whole remaining body in one buffer. */
  async readAll(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const b = await this.read(1 << 20);
      if (b.length === 0) return Buffer.concat(parts);
      parts.push(b);
    }
  }
}
