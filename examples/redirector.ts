// pywin32's redirector, in TypeScript: proxies every request under /redirector to another site
// (ISAPI_REDIRECT_TARGET, e.g. http://127.0.0.1:9000), except the paths in EXCLUDED, which the
// web server serves itself: ExecURL runs the same URL as a child request with
// HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR, so it skips this (wildcard) extension and reaches the
// static file handler (IIS: the site's files; isapi-host: --root).
//   isapi pack examples/redirector.ts
//   ISAPI_REDIRECT_TARGET=http://127.0.0.1:9000 isapi serve dist/redirector --root ./www
// pywin32 ran this on its thread pool because urlopen blocks; Node's http client does not, so a
// SimpleExtension serves many requests at once. Like pywin32's sample it reads the upstream
// response whole before answering (examples/redirector-async.ts streams it).
import http from 'node:http';
import { HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR, SimpleExtension, type ECB } from 'node-isapi';

const VDIR = '/redirector';
const TARGET = new URL(process.env.ISAPI_REDIRECT_TARGET ?? 'http://127.0.0.1:9000');
/** Paths below VDIR the web server serves itself. */
const EXCLUDED = ['/static/'];
const TIMEOUT_MS = 30_000;
/** Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the proxy sets itself. */
const NOT_FORWARDED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host', 'content-length']);

interface Upstream {
  status: number;
  statusText: string;
  headers: Array<[string, string]>;
  body: Buffer;
}

/** One request to the target, its response read whole. */
function fetchUpstream(ecb: ECB, path: string, body: Buffer): Promise<Upstream> {
  const headers: Array<[string, string]> = ecb.headers().filter(([name]) => !NOT_FORWARDED.has(name.toLowerCase()));
  headers.push(['Host', TARGET.host], ['X-Forwarded-For', ecb.knownServerVariable('REMOTE_ADDR') ?? ''], ['X-Forwarded-Host', ecb.knownServerVariable('HTTP_HOST') ?? '']);
  if (body.length > 0) headers.push(['Content-Length', String(body.length)]);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: TARGET.hostname, port: TARGET.port || 80, method: ecb.Method, path, headers: headers.flat(), timeout: TIMEOUT_MS }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 502, statusText: res.statusMessage ?? '', headers: pairs(res.rawHeaders), body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${TARGET.origin} within ${TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

const pairs = (raw: string[]) => Array.from({ length: raw.length / 2 }, (_, i) => [raw[2 * i]!, raw[2 * i + 1]!] as [string, string]);

/** A redirect to the target itself points back through the proxy. */
function rewriteLocation(location: string): string {
  if (location.startsWith(TARGET.origin + '/')) return VDIR + location.slice(TARGET.origin.length);
  if (location.startsWith('/') && !location.startsWith('//')) return VDIR + location;
  return location;
}

class Redirector extends SimpleExtension {
  async HttpExtensionProc(ecb: ECB) {
    const rest = ecb.PathInfo.slice(VDIR.length) || '/';
    const query = ecb.QueryString ? `?${ecb.QueryString}` : '';
    if (EXCLUDED.some((prefix) => rest.startsWith(prefix))) {
      await ecb.ExecURL(ecb.PathInfo + query, { flags: HSE_EXEC_URL_IGNORE_CURRENT_INTERCEPTOR });
      ecb.HttpStatusCode = (await ecb.GetExecURLStatus()).HttpStatusCode;
      return;
    }
    let upstream: Upstream;
    try {
      upstream = await fetchUpstream(ecb, rest + query, await ecb.readBody());
    } catch (err) {
      const text = `502 Bad Gateway\n${TARGET.origin} did not answer: ${(err as Error).message}\n`;
      ecb.SendResponseHeaders('502 Bad Gateway', { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
      await ecb.WriteClient(text);
      return;
    }
    const headers = upstream.headers
      .filter(([name]) => !NOT_FORWARDED.has(name.toLowerCase()))
      .map(([name, value]) => `${name}: ${name.toLowerCase() === 'location' ? rewriteLocation(value) : value}\r\n`)
      .join('');
    ecb.SendResponseHeaders(`${upstream.status} ${upstream.statusText}`, `${headers}Content-Length: ${upstream.body.length}\r\n`);
    if (ecb.Method !== 'HEAD' && upstream.body.length > 0) await ecb.WriteClient(upstream.body);
  }
}

export function __ExtensionFactory__() {
  return new Redirector();
}
