// The examples' handlers and filters, run in-process with node-isapi/testing: the worker's own
// loop and ECB/filter code, no packing and no web server (issue 15).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testExtension, testFilter, type TestExtension } from 'node-isapi/testing';
import { SF_NOTIFY_ACCESS_DENIED, SF_NOTIFY_AUTHENTICATION, SF_NOTIFY_LOG, SF_NOTIFY_PREPROC_HEADERS, SF_NOTIFY_SEND_RESPONSE, SF_STATUS_REQ_FINISHED } from 'node-isapi';
import * as hello from '../../examples/hello';
import * as echo from '../../examples/echo';
import * as advanced from '../../examples/advanced';
import * as transmitFile from '../../examples/transmit-file';
import * as express from '../../examples/express-app';
import * as hono from '../../examples/hono-app';
import * as fastify from '../../examples/fastify-app';
import * as koa from '../../examples/koa-app';
import * as securityHeaders from '../../examples/security-headers';
import * as basicAuth from '../../examples/basic-auth';

describe('hello', () => {
  it('answers', async () => {
    const t = await testExtension(hello.__ExtensionFactory__);
    const r = await t.request('GET', '/hello/');
    expect(r.status).toBe(200);
    expect(r.statusText).toBe('OK');
    expect(r.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(r.text).toBe('Hello from TypeScript\n');
    await t.close();
  });
});

describe('echo', () => {
  let t: TestExtension;
  beforeAll(async () => {
    t = await testExtension(echo, { vdir: '/echo', serverVariables: { REMOTE_USER: 'alice' } });
  });
  afterAll(() => t.close());

  it('shows server variables (with overrides) and the body length', async () => {
    const r = await t.request('POST', '/echo/x?y=1', {
      headers: { 'User-Agent': 'vitest', 'Content-Type': 'text/plain' },
      body: 'hello',
      serverVariables: { REMOTE_ADDR: '10.1.2.3' },
    });
    expect(r.status).toBe(200);
    expect(r.text).toContain('POST /echo/x?y=1\n');
    expect(r.text).toContain('SCRIPT_NAME=/echo\n');
    expect(r.text).toContain('QUERY_STRING=y=1\n');
    expect(r.text).toContain('REMOTE_ADDR=10.1.2.3\n');
    expect(r.text).toContain('REMOTE_USER=alice\n');
    expect(r.text).toContain('HTTP_USER_AGENT=vitest\n');
    expect(r.text).toContain('body-length=5\n');
  });

  it('streams a 5 MiB body back byte for byte (preloaded part, credited pieces, acknowledged writes)', async () => {
    const body = Buffer.alloc(5 << 20);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const r = await t.request('PUT', '/echo/body', { body, headers: { 'Content-Type': 'application/octet-stream' } });
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(body.length));
    expect(r.body.equals(body)).toBe(true);
    expect(r.writes.length).toBeGreaterThan(1);
  });

  it('reads a chunked upload in pieces', async () => {
    async function* pieces() {
      for (let i = 0; i < 5; i++) yield `piece ${i};`;
    }
    const r = await t.request('POST', '/echo/body', { body: pieces() });
    // echo frames an unknown length itself: decode its chunks
    expect(r.headers['transfer-encoding']).toBe('chunked');
    const decoded = r.text.replace(/[0-9a-f]+\r\n([^\r]*)\r\n/g, '$1');
    expect(decoded).toBe('piece 0;piece 1;piece 2;piece 3;piece 4;');
  });

  it('holds WriteClient back while the client does not read, and resumes', async () => {
    const body = Buffer.alloc(4 << 20, 1);
    const x = t.open('PUT', '/echo/body', { body });
    x.pause();
    await x.headersSent;
    // The handler may run ahead by the 1 MiB response window (plus what is in flight), no more.
    let last = -1;
    for (let i = 0; i < 50 && x.received !== last; i++) {
      last = x.received;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(x.received).toBeLessThan(body.length);
    x.resume();
    const r = await x.response;
    expect(r.body.length).toBe(body.length);
  });

  it('tells the handler when the client leaves mid-upload', async () => {
    const ac = new AbortController();
    async function* slow() {
      yield 'first';
      ac.abort();
      await new Promise(() => {});
    }
    const r = await t.request('POST', '/echo/body', { body: slow(), signal: ac.signal });
    expect(r.aborted).toBe(true);
  });
});

describe('advanced', () => {
  it('dumps server variables as JSON and records log data', async () => {
    const t = await testExtension(advanced, { vdir: '/advanced' });
    const r = await t.request('GET', '/advanced/?format=json');
    expect(r.status).toBe(200);
    const dump = JSON.parse(r.text);
    expect(JSON.stringify(dump)).toContain('/advanced');
    const log = await t.request('GET', '/advanced/log?note=n1');
    expect(log.status).toBe(202);
    expect(log.logData).toBe('logdata-from-advanced&advanced=n1');
    const unhealthy = await t.request('GET', '/advanced/unhealthy?reason=because');
    expect(unhealthy.status).toBe(200);
    expect(t.log).toContain('ReportUnhealthy: because');
    await t.close();
  });

  it('InternalReloadException: 503 + Retry-After, a fresh generation, and no failed request', async () => {
    let built = 0;
    const t = await testExtension(() => (built++, advanced.__ExtensionFactory__()), { vdir: '/advanced' });
    const r = await t.request('GET', '/advanced/reload');
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    await t.settled();
    expect(t.reloads).toEqual(['asked for by /advanced/reload']);
    expect(t.generation).toBe(2);
    expect(built).toBe(2);
    expect((await t.request('GET', '/advanced/pid')).status).toBe(200);
    await t.close();
  });

  it('a handler that throws gets a 500 with the exception (detailed errors are on in tests)', async () => {
    const t = await testExtension(advanced, { vdir: '/advanced' });
    const r = await t.request('GET', '/advanced/crash');
    expect(r.status).toBe(500);
    expect(r.text).toContain('an uncaught exception, on purpose');
    await t.close();
  });
});

describe('transmit-file', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-tf-'));
  const content = 'abcdefghijklmnopqrstuvwxyz'.repeat(1000);
  writeFileSync(path.join(dir, 'letters.txt'), content);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('sends a real file, a range of it, and one wrapped in head and tail', async () => {
    const t = await testExtension(transmitFile, { vdir: '/transmit-file', root: dir });
    const whole = await t.request('GET', '/transmit-file/letters.txt');
    expect(whole.status).toBe(200);
    expect(whole.headers['content-type']).toContain('text/plain');
    expect(whole.text).toBe(content);
    const part = await t.request('GET', '/transmit-file/letters.txt', { headers: { Range: 'bytes=2-5' } });
    expect(part.status).toBe(206);
    expect(part.text).toBe('cdef');
    const wrapped = await t.request('GET', '/transmit-file/letters.txt?wrap=html');
    expect(wrapped.text.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(wrapped.text.endsWith('</pre></body></html>\n')).toBe(true);
    expect(Buffer.byteLength(wrapped.text)).toBe(Number(wrapped.headers['content-length']));
    expect((await t.request('GET', '/transmit-file/missing.txt')).status).toBe(404);
    await t.close();
  });
});

describe('Express through httpExtension', () => {
  it('routes, parses JSON and sets several cookies', async () => {
    const t = await testExtension(express, { vdir: '/express-app' });
    const root = await t.request('GET', '/express-app/');
    expect(root.status).toBe(200);
    const user = await t.request('GET', '/express-app/users/42');
    expect(user.status).toBe(200);
    expect(user.text).toContain('42');
    const json = await t.request('POST', '/express-app/json', { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ a: 1 }) });
    expect(json.status).toBe(201);
    expect(json.text).toContain('"a":1');
    const cookies = await t.request('GET', '/express-app/cookies/set');
    expect(cookies.rawHeaders.filter(([n]) => n.toLowerCase() === 'set-cookie').length).toBeGreaterThan(1);
    await t.close();
  });
});

describe('Hono through fetchExtension', () => {
  it('answers JSON with 201', async () => {
    const t = await testExtension(hono, { vdir: '/hono-app' });
    const r = await t.request('POST', '/hono-app/json', { headers: { 'Content-Type': 'application/json' }, body: '{"x":[1,2]}' });
    expect(r.status).toBe(201);
    expect(JSON.parse(r.text)).toEqual({ received: { x: [1, 2] } });
    await t.close();
  });
});

describe('Fastify and Koa through httpExtension', () => {
  it('Fastify routes and answers JSON', async () => {
    const t = await testExtension(fastify, { vdir: '/fastify-app' });
    const root = await t.request('GET', '/fastify-app/');
    expect(root.text).toBe('Hello from Fastify\n');
    const who = await t.request('GET', '/fastify-app/whoami?a=b', { serverVariables: { REMOTE_ADDR: '10.9.8.7' } });
    expect(JSON.parse(who.text)).toMatchObject({ url: '/whoami?a=b', query: { a: 'b' }, ip: '10.9.8.7' });
    await t.close();
  });

  it('Koa runs its middleware', async () => {
    const t = await testExtension(koa, { vdir: '/koa-app' });
    const r = await t.request('GET', '/koa-app/');
    expect(r.status).toBe(200);
    await t.close();
  });
});

describe('redirector-async: HSE_STATUS_PENDING, then DoneWithSession', () => {
  it('proxies both ways, streaming, and ends the request when the handler says so', async () => {
    const http = await import('node:http');
    const upstream = http.createServer(async (req, res) => {
      let n = 0;
      for await (const chunk of req) n += (chunk as Buffer).length;
      res.writeHead(200, { 'Content-Type': 'text/plain' }); // no length: the extension chunks it
      res.write(`${req.method} ${req.url} got ${n} bytes\n`);
      res.end('end\n');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    process.env.ISAPI_REDIRECT_TARGET = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
    try {
      const script = await import('../../examples/redirector-async');
      const t = await testExtension(script, { vdir: '/redirector-async' });
      const r = await t.request('POST', '/redirector-async/up?x=1', { body: Buffer.alloc(300_000, 7) });
      expect(r.status).toBe(200);
      expect(r.headers['transfer-encoding']).toBe('chunked');
      expect(r.text.replace(/[0-9a-f]+\r\n([^\r]*)\r\n/g, '$1')).toBe('POST /up?x=1 got 300000 bytes\nend\n');
      await t.close();
    } finally {
      delete process.env.ISAPI_REDIRECT_TARGET;
      upstream.close();
    }
  });
});

describe('filters', () => {
  it('security-headers sets its headers at SEND_RESPONSE', async () => {
    const f = await testFilter(securityHeaders);
    expect(f.filterFlags & SF_NOTIFY_SEND_RESPONSE).toBeTruthy();
    const r = await f.request('GET', '/anything');
    expect(r.notifications.map((n) => n.name)).toEqual(['SEND_RESPONSE']);
    for (const [name, value] of Object.entries(securityHeaders.SECURITY_HEADERS)) expect(r.headers[name.toLowerCase()]).toBe(value);
    await f.close();
  });

  it('basic-auth refuses without credentials, maps the user with them, and challenges on 401', async () => {
    process.env.ISAPI_BASIC_AUTH_USERS = 'alice:secret';
    const f = await testFilter(basicAuth);
    const denied = await f.request('GET', '/private');
    expect(denied.finished).toBe(true);
    expect(denied.notifications[0]).toMatchObject({ notification: SF_NOTIFY_PREPROC_HEADERS, status: SF_STATUS_REQ_FINISHED });
    expect(denied.status).toBe(401);
    expect(denied.headers['www-authenticate']).toContain('Basic');

    const ok = await f.request('GET', '/private', {
      headers: { Authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` },
      response: (req) => ({ status: 200, body: `hi ${req.user}` }),
    });
    expect(ok.finished).toBe(false);
    expect(ok.notifications.map((n) => n.notification)).toEqual([SF_NOTIFY_PREPROC_HEADERS, SF_NOTIFY_AUTHENTICATION]);
    expect(ok.text).toBe('hi alice@example');

    const wrong = await f.request('GET', '/private', { headers: { Authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}` } });
    expect(wrong.status).toBe(401);

    const appDenied = await f.request('GET', '/private', {
      headers: { Authorization: `Basic ${Buffer.from('alice:secret').toString('base64')}` },
      response: { status: 401, body: 'no' },
    });
    expect(appDenied.notifications.map((n) => n.notification)).toContain(SF_NOTIFY_ACCESS_DENIED);
    expect(appDenied.headers['www-authenticate']).toContain('Basic realm');
    await f.close();
  });

  it('audit-log masks secrets in the log fields and writes its audit line', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-audit-'));
    process.env.ISAPI_AUDIT_LOG = path.join(dir, 'audit.log');
    try {
      // Imported now: the script reads ISAPI_AUDIT_LOG when it loads.
      const f = await testFilter(await import('../../examples/audit-log'));
      const r = await f.request('GET', '/app/login?user=bob&password=hunter2');
      expect(r.notifications.map((n) => n.notification)).toEqual([SF_NOTIFY_LOG]);
      expect(r.log.Parameters).toBe('user=bob&password=***');
      const { readFileSync } = await import('node:fs');
      expect(readFileSync(process.env.ISAPI_AUDIT_LOG, 'utf8')).toContain('GET /app/login user=bob&password=*** 200');
      await f.close();
    } finally {
      delete process.env.ISAPI_AUDIT_LOG;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('redirector-with-filter: the filter rewrites into its own extension, which proxies upstream', async () => {
    const http = await import('node:http');
    const upstream = http.createServer((req, res) => res.end(`upstream saw ${req.url}`));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    process.env.ISAPI_REDIRECT_TARGET = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
    try {
      // Imported now: the script reads ISAPI_REDIRECT_TARGET when it loads.
      const script = await import('../../examples/redirector-with-filter');
      const t = await testExtension(script, { vdir: '/redirector' });
      const f = await testFilter(script);
      const first = await f.request('GET', '/a/b?c=1', { response: t });
      expect(first.request.url).toBe('/redirector/a/b?c=1');
      expect(first.request.headers['x-connection-request']).toBe('1');
      expect(first.text).toBe('upstream saw /a/b?c=1');
      // FilterContext lives for the connection: the count goes on, then starts again.
      const second = await f.request('GET', '/d', { response: t });
      expect(second.request.headers['x-connection-request']).toBe('2');
      expect(second.text).toBe('upstream saw /d');
      await f.endConnection();
      expect((await f.request('GET', '/e', { response: t })).request.headers['x-connection-request']).toBe('1');
      await f.close();
      await t.close();
    } finally {
      delete process.env.ISAPI_REDIRECT_TARGET;
      upstream.close();
    }
  });
});
