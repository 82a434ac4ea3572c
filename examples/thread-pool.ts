// pywin32's ThreadPoolExtension, for CPU-bound handlers: Dispatch runs on a pool of threads
// inside the worker process, so two heavy requests run at the same time on two cores while the
// worker's event loop stays free. Serve it with ISAPI_WORKERS=1 to see the threads at work:
//   isapi pack examples/thread-pool.ts && ISAPI_WORKERS=1 isapi serve dist/thread-pool
//   curl 'http://127.0.0.1:8080/thread-pool/primes?below=2000000' & curl 'http://127.0.0.1:8080/thread-pool/primes?below=2000000'
import { createHash } from 'node:crypto';
import { isMainThread, threadId } from 'node:worker_threads';
import { InternalReloadException, ThreadPoolExtension, type DispatchECB, type ECB } from 'node-isapi';

/** Counts the primes below n with a sieve: honest CPU work. */
function countPrimes(below: number): number {
  const composite = new Uint8Array(below);
  let count = 0;
  for (let i = 2; i < below; i++) {
    if (composite[i]) continue;
    count++;
    for (let j = i * i; j < below; j += i) composite[j] = 1;
  }
  return count;
}

/** Keeps this thread's core busy for `ms` milliseconds (hashing), returns how many rounds it did. */
function spin(ms: number): number {
  const end = performance.timeOrigin + performance.now() + ms;
  let rounds = 0;
  let digest = Buffer.alloc(32);
  while (performance.timeOrigin + performance.now() < end) {
    for (let i = 0; i < 1000; i++) digest = createHash('sha256').update(digest).digest();
    rounds++;
  }
  return rounds;
}

class ThreadPool extends ThreadPoolExtension {
  // HttpExtensionProc still runs on the main thread: answer cheap requests there, queue the rest.
  HttpExtensionProc(ecb: ECB) {
    if (ecb.PathInfo.endsWith('/main')) {
      const body = JSON.stringify({ isMainThread, threadId, pid: process.pid, poolThreads: this.threadCount });
      ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      ecb.WriteClient(body);
      return Promise.resolve(undefined);
    }
    return super.HttpExtensionProc(ecb);
  }

  async Dispatch(ecb: DispatchECB) {
    const action = ecb.PathInfo.split('/').pop();
    const params = new URLSearchParams(ecb.QueryString);
    const start = Date.now();
    let result: Record<string, unknown>;
    switch (action) {
      case 'primes':
        result = { primes: countPrimes(Number(params.get('below') ?? 1_000_000)) };
        break;
      case 'spin':
        result = { rounds: spin(Number(params.get('ms') ?? 500)) };
        break;
      case 'sha256': {
        // The body is read through the main thread, piece by piece; the hashing happens here.
        const hash = createHash('sha256');
        let bytes = 0;
        for (let piece = await ecb.ReadClient(); piece.length > 0; piece = await ecb.ReadClient()) {
          hash.update(piece);
          bytes += piece.length;
        }
        result = { bytes, sha256: hash.digest('hex') };
        break;
      }
      case 'vars':
        result = {
          url: await ecb.GetServerVariable('URL'),
          userAgent: await ecb.GetServerVariable('HTTP_USER_AGENT', ''),
          serverSoftware: await ecb.GetServerVariable('SERVER_SOFTWARE'),
          keepConn: await ecb.IsKeepConn(),
        };
        break;
      case 'stream': {
        // WriteClient from a thread keeps its backpressure: each await waits for the channel.
        const mib = Number(params.get('mib') ?? 1);
        ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'application/octet-stream', 'Content-Length': mib << 20 });
        const piece = Buffer.alloc(1 << 16, 0x62);
        for (let i = 0; i < mib * 16; i++) await ecb.WriteClient(piece);
        return;
      }
      case 'throw':
        throw new Error('Dispatch failed on purpose');
      case 'reload':
        throw new InternalReloadException('asked for by /thread-pool/reload');
      default:
        ecb.SendResponseHeaders('404 Not Found', { 'Content-Length': 0 });
        return;
    }
    const body = JSON.stringify({ ...result, isMainThread, threadId, pid: process.pid, start, end: Date.now() });
    ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    await ecb.WriteClient(body);
  }
}

export function __ExtensionFactory__() {
  // Threads are started on demand, at most `threads` (default: ISAPI_THREADS, else one per core).
  return new ThreadPool({ threads: 4 });
}
