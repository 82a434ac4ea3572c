// pywin32's redirector_asynch, in TypeScript: proxies /redirector-async to another site
// (ISAPI_REDIRECT_TARGET) and streams both ways, never holding a whole body. HttpExtensionProc
// returns HSE_STATUS_PENDING at once; the proxying goes on asynchronously: each upstream chunk is
// written with an awaited WriteClient (which resolves when the channel has room, so a slow client
// slows the upstream read instead of filling memory), and DoneWithSession ends the request.
//   isapi pack examples/redirector-async.ts
//   ISAPI_REDIRECT_TARGET=http://127.0.0.1:9000 isapi serve dist/redirector-async
import http from 'node:http';
import { HSE_STATUS_ERROR, HSE_STATUS_PENDING, SimpleExtension, type ECB } from 'node-isapi';

const VDIR = '/redirector-async';
const TARGET = new URL(process.env.ISAPI_REDIRECT_TARGET ?? 'http://127.0.0.1:9000');
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

class AsyncRedirector extends SimpleExtension {
  HttpExtensionProc(ecb: ECB) {
    this.proxy(ecb).catch((err) => {
      process.stderr.write(`redirector-async: ${ecb.Method} ${ecb.PathInfo}: ${(err as Error)?.stack ?? err}\n`);
      if (ecb.isDone) return;
      if (ecb.headersSent) return ecb.DoneWithSession(HSE_STATUS_ERROR); // mid-body: the server closes the connection
      const text = `502 Bad Gateway\n${TARGET.origin}: ${(err as Error).message}\n`;
      ecb.SendResponseHeaders('502 Bad Gateway', { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
      ecb.WriteClient(text).finally(() => ecb.DoneWithSession());
    });
    return HSE_STATUS_PENDING;
  }

  private async proxy(ecb: ECB) {
    const path = (ecb.PathInfo.slice(VDIR.length) || '/') + (ecb.QueryString ? `?${ecb.QueryString}` : '');
    const headers = ecb.headers().filter(([name]) => !NOT_FORWARDED.has(name.toLowerCase()));
    headers.push(['Host', TARGET.host], ['X-Forwarded-For', ecb.knownServerVariable('REMOTE_ADDR') ?? '']);
    const req = http.request({ host: TARGET.hostname, port: TARGET.port || 80, method: ecb.Method, path, headers: headers.flat() });
    // The client went away (or the deadline passed): stop reading from the upstream.
    const stopWatching = ecb.onAbort(() => req.destroy(new Error('the client went away')));
    try {
      const response = new Promise<http.IncomingMessage>((resolve, reject) => {
        req.on('response', resolve);
        req.on('error', reject);
      });
      // The request body streams upstream as the client sends it.
      for (let piece = await ecb.ReadClient(); piece.length > 0; piece = await ecb.ReadClient()) {
        if (!req.write(piece)) await new Promise((resolve) => req.once('drain', resolve));
      }
      req.end();
      const res = await response;

      const length = res.headers['content-length'];
      // ISAPI servers never frame extension output: without a length, the extension chunks it
      // itself (HTTP/1.1) or closes the connection after it (HTTP/1.0).
      const chunked = length === undefined && ecb.knownServerVariable('SERVER_PROTOCOL') !== 'HTTP/1.0' && ecb.Method !== 'HEAD';
      const out: string[] = [];
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        if (!NOT_FORWARDED.has(res.rawHeaders[i]!.toLowerCase())) out.push(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`);
      }
      if (chunked) out.push('Transfer-Encoding: chunked\r\n');
      ecb.SendResponseHeaders(`${res.statusCode} ${res.statusMessage ?? ''}`, out.join(''), chunked || length !== undefined);

      for await (const chunk of res as AsyncIterable<Buffer>) {
        if (ecb.Method === 'HEAD' || ecb.aborted) continue;
        await ecb.WriteClient(chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]) : chunk);
      }
      if (chunked) await ecb.WriteClient('0\r\n\r\n');
      ecb.DoneWithSession();
    } finally {
      stopWatching();
    }
  }
}

export function __ExtensionFactory__() {
  return new AsyncRedirector();
}
