// TypeScript filters packed and loaded by isapi-host with --filter: every example end to end.
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridgeLog, packed, rawExchange, startHost, type Host } from '../helpers';

const lib = (name: string) => path.join(packed(name), `_${name}.so`);
let upstream: Server;
let upstreamPort: number;

beforeAll(async () => {
  // The site the redirector proxies to.
  upstream = createServer((req, res) => {
    const body = `upstream saw ${req.method} ${req.url}`;
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as { port: number }).port;
});
afterAll(() => upstream?.close());

describe('security-headers (SEND_RESPONSE)', () => {
  let host: Host;
  beforeAll(async () => {
    host = await startHost(['--filter', lib('security-headers'), '--vdir', `/hello=${lib('hello')}`]);
  });
  afterAll(() => host?.stop());

  it('adds the headers to an extension response', async () => {
    const res = await fetch(`${host.url}/hello/`);
    expect(await res.text()).toBe('Hello from TypeScript\n');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('content-security-policy')).toBe("default-src 'self'");
  });

  it("adds them to the server's own 404 too", async () => {
    const res = await fetch(`${host.url}/missing`);
    expect(res.status).toBe(404);
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  });
});

describe('basic-auth (PREPROC_HEADERS, AUTHENTICATION, ACCESS_DENIED)', () => {
  let host: Host;
  beforeAll(async () => {
    host = await startHost(['--filter', lib('basic-auth'), '--vdir', `/echo=${lib('echo')}`], {
      ISAPI_BASIC_AUTH_USERS: 'alice:secret,bob:hunter2',
    });
  });
  afterAll(() => host?.stop());
  const basic = (user: string, pass: string) => ({ Authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}` });

  it('answers 401 with a challenge when no credentials are sent', async () => {
    const res = await fetch(`${host.url}/echo/`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Basic realm="node-isapi example"');
  });

  it('answers 401 for a wrong password', async () => {
    const res = await fetch(`${host.url}/echo/`, { headers: basic('alice', 'wrong') });
    expect(res.status).toBe(401);
  });

  it('lets a valid user through, mapped to the name the filter chose', async () => {
    const res = await fetch(`${host.url}/echo/vars`, { headers: basic('bob', 'hunter2') });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('GET /echo/vars');
    expect(text).toContain('REMOTE_USER=bob@example\n');
  });
});

describe('audit-log (LOG)', () => {
  let host: Host;
  const auditFile = () => path.join(packed('audit-log'), 'logs', 'audit.log');
  const accessLog = () => path.join(packed('audit-log'), 'logs', 'access.log');
  beforeAll(async () => {
    mkdirSync(path.dirname(accessLog()), { recursive: true });
    host = await startHost(['--filter', lib('audit-log'), '--vdir', `/hello=${lib('hello')}`, '--access-log', accessLog()]);
  });
  afterAll(() => host?.stop());

  it('writes an audit line per request and masks secrets in the access log', async () => {
    await (await fetch(`${host.url}/hello/x?user=a&password=hunter2`)).text();
    for (let i = 0; i < 50 && !existsSync(auditFile()); i++) await new Promise((r) => setTimeout(r, 50));
    const audit = readFileSync(auditFile(), 'utf8');
    expect(audit).toMatch(/ GET \/hello\/x user=a&password=\*\*\* 200\n/);
    const access = readFileSync(accessLog(), 'utf8');
    expect(access).toContain('password=***');
    expect(access).not.toContain('hunter2');
  });
});

describe('redirector-with-filter (one DLL: extension + PREPROC_HEADERS filter)', () => {
  let host: Host;
  beforeAll(async () => {
    const dll = lib('redirector-with-filter');
    host = await startHost(['--filter', dll, '--vdir', `/redirector=${dll}`], {
      ISAPI_REDIRECT_TARGET: `http://127.0.0.1:${upstreamPort}`,
    });
  });
  afterAll(() => host?.stop());

  it('rewrites any URL into the extension, which proxies it upstream', async () => {
    const res = await fetch(`${host.url}/some/page?q=1`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('upstream saw GET /some/page?q=1');
  });

  it('counts requests per connection in FilterContext', async () => {
    const req = (p: string) => `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const { responses } = await rawExchange(host.port, [req('/a'), req('/b'), req('/c')], 3);
    expect(responses.map((r) => r.headers['x-redirector-connection-request'])).toEqual(['1', '2', '3']);
    const again = await rawExchange(host.port, req('/d'), 1);
    expect(again.responses[0]!.headers['x-redirector-connection-request']).toBe('1');
    expect(bridgeLog(packed('redirector-with-filter'), 'redirector-with-filter')).toContain('ready');
  });
});
