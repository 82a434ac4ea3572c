// Express, Fastify, Koa and Hono apps, packed and served through the bridge, over real sockets.
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packed, rawExchange, root, serveFolders, sleep, type Host } from '../helpers';

let host: Host;
const apps = ['express-app', 'fastify-app', 'koa-app', 'hono-app', 'sqlite-app'];

beforeAll(async () => {
  // Static files sit beside the worker, as they would in the deployed folder.
  cpSync(path.join(root, 'examples', 'public'), path.join(packed('express-app'), 'public'), { recursive: true });
  // One worker each, so a pid names the worker that serves a transfer.
  host = await serveFolders(apps, { ISAPI_WORKERS: '1' });
});
afterAll(async () => {
  await host?.stop();
});

const url = (p: string) => `${host.url}${p}`;

async function json(p: string, init?: RequestInit): Promise<{ status: number; body: any; res: Response }> {
  const res = await fetch(url(p), init);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, body, res };
}

/** Sends raw bytes on one connection and collects the text until `done` says it is complete. */
function rawText(data: string, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(host.port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => (sock.destroy(), reject(new Error(`timeout; got: ${text}`))), 10_000);
    sock.on('data', (d) => {
      text += d.toString('latin1');
      if (done(text)) {
        clearTimeout(timer);
        sock.destroy();
        resolve(text);
      }
    });
    sock.on('error', reject);
    sock.write(data);
  });
}

/** Resident memory of a process in MiB: all of it, and the part that is its own (anonymous). */
function memory(pid: number): { rss: number; anon: number } {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? NaN);
  return { rss: kib('Rss') / 1024, anon: kib('Anonymous') / 1024 };
}

/** Samples a process's memory every 10 ms while `work` runs; returns the peak (by RSS). */
async function peakMemory<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; peak: { rss: number; anon: number } }> {
  let peak = memory(pid);
  const sample = () => {
    const m = memory(pid);
    if (m.rss > peak.rss) peak = m;
  };
  const timer = setInterval(sample, 10);
  try {
    const result = await work();
    sample();
    return { result, peak };
  } finally {
    clearInterval(timer);
  }
}

/** The bytes /download makes: 64 KiB pieces of i % 251. */
function downloadPattern(total: number): string {
  const piece = Buffer.alloc(64 * 1024);
  for (let i = 0; i < piece.length; i++) piece[i] = i % 251;
  const hash = createHash('sha256');
  for (let sent = 0; sent < total; sent += piece.length) hash.update(piece.subarray(0, Math.min(piece.length, total - sent)));
  return hash.digest('hex');
}

describe('express-app', () => {
  it('answers its routes', async () => {
    const hello = await fetch(url('/express-app/'));
    expect(hello.status).toBe(200);
    expect(hello.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(hello.headers.get('x-powered-by')).toBe('Express');
    expect(await hello.text()).toBe('Hello from Express\n');

    const user = await json('/express-app/users/42');
    expect(user.status).toBe(200);
    expect(user.body).toEqual({ id: '42', name: 'user 42' });

    const missing = await json('/express-app/no/such/route');
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ error: 'not found' });
  });

  it('sees paths relative to its virtual directory, and the client', async () => {
    const { body } = await json('/express-app/whoami?a=1&b=two');
    expect(body.url).toBe('/whoami?a=1&b=two');
    expect(body.path).toBe('/whoami');
    expect(body.query).toEqual({ a: '1', b: 'two' });
    expect(body.ip).toBe('127.0.0.1');
    expect(body.protocol).toBe('http');
    expect(body.httpVersion).toBe('1.1');
    // Percent-encoded paths reach the app encoded, and decode as they were sent.
    const enc = await json('/express-app/users/a%20b%C3%A9%3F');
    expect(enc.body.id).toBe('a bé?');
  });

  it('parses JSON and form bodies', async () => {
    const j = await json('/express-app/json', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ a: 1, list: ['x', 'y'] }),
    });
    expect(j.status).toBe(201);
    expect(j.body).toEqual({ received: { a: 1, list: ['x', 'y'] } });

    const f = await fetch(url('/express-app/form'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'name=Ada+Lovelace&lang=en',
    });
    expect(await f.text()).toBe('hello Ada Lovelace (en)');
  });

  it('sets several cookies and reads them back', async () => {
    const res = await fetch(url('/express-app/cookies/set'));
    expect(res.headers.getSetCookie()).toEqual(['session=abc123; Path=/; HttpOnly', 'theme=dark; Path=/']);
    const back = await json('/express-app/cookies', { headers: { Cookie: 'session=abc123; theme=dark' } });
    expect(back.body).toEqual({ session: 'abc123', theme: 'dark' });
  });

  it('serves static files', async () => {
    const res = await fetch(url('/express-app/index.html'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(await res.text()).toContain('Express through ISAPI');
    const css = await fetch(url('/express-app/style.css'));
    expect(css.headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect(await css.text()).toBe(readFileSync(path.join(root, 'examples', 'public', 'style.css'), 'utf8'));
  });

  it('runs its error handler', async () => {
    const { status, body } = await json('/express-app/boom');
    expect(status).toBe(500);
    expect(body.error).toBe('something broke');
  });

  it('keeps a custom status message and headers', async () => {
    const { responses } = await rawExchange(host.port, 'GET /express-app/status HTTP/1.1\r\nHost: x\r\n\r\n');
    const raw = responses[0]!.raw.toString('latin1');
    expect(raw).toMatch(/^HTTP\/1\.1 202 Quite Fine\r\n/);
    expect(responses[0]!.headers['x-custom']).toBe('yes');
    expect(responses[0]!.body.toString()).toBe('accepted');
  });

  it('answers HEAD with the headers of GET and no body, keeping the connection', async () => {
    const head = await fetch(url('/express-app/users/7'), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(head.headers.get('content-length')).toBe(String(JSON.stringify({ id: '7', name: 'user 7' }).length));
    expect((await head.arrayBuffer()).byteLength).toBe(0);
    // On one connection: HEAD, then GET; the HEAD response carries no body bytes.
    const text = await rawText(
      'HEAD /express-app/ HTTP/1.1\r\nHost: x\r\n\r\nGET /express-app/ HTTP/1.1\r\nHost: x\r\n\r\n',
      (t) => t.endsWith('Hello from Express\n'),
    );
    const parts = text.split('\r\n\r\n');
    expect(parts.length).toBe(3);
    expect(parts[0]).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(parts[0]).toMatch(/\r\nContent-Length: 19/i);
    expect(parts[1]).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(parts[2]).toBe('Hello from Express\n');
  });

  it('frames writes before the end as chunks on HTTP/1.1, and by closing on HTTP/1.0', async () => {
    const expected = 'part 1\npart 2\npart 3\ndone\n';
    const r11 = await rawExchange(host.port, 'GET /express-app/slow HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(r11.responses[0]!.headers['transfer-encoding']).toBe('chunked');
    expect(r11.responses[0]!.body.toString()).toBe(expected);
    expect(r11.closed).toBe(false);

    const r10 = await rawExchange(host.port, 'GET /express-app/slow HTTP/1.0\r\nHost: x\r\n\r\n');
    expect(r10.responses[0]!.headers['transfer-encoding']).toBeUndefined();
    expect(r10.responses[0]!.headers['content-length']).toBeUndefined();
    expect(r10.closed).toBe(true);
    expect(r10.responses[0]!.body.toString()).toBe(expected);
  });

  it('handles Expect: 100-continue', async () => {
    const body = JSON.stringify({ waited: true });
    const head =
      `POST /express-app/json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`;
    const { responses } = await rawExchange(host.port, [head, body]);
    expect(responses[0]!.status).toBe(201);
    expect(JSON.parse(responses[0]!.body.toString())).toEqual({ received: { waited: true } });
  });

  it('names the TypeScript file and line in a stack trace', async () => {
    const source = readFileSync(path.join(root, 'examples', 'express-app.ts'), 'utf8').split('\n');
    const line = source.findIndex((l) => l.includes("throw new Error('stack marker')")) + 1;
    const { status, body } = await json('/express-app/stack');
    expect(status).toBe(500);
    expect(body.stack).toMatch(new RegExp(`express-app\\.ts:${line}:\\d+`));
  });

  // The bar: a 50 MiB upload and a 50 MiB streamed download keep the worker under
  // 100 MiB. Measured as RSS (everything resident, the executable's shared pages included), at
  // its peak sampled every 10 ms; the worker's own (anonymous) part is printed beside it. This
  // runs after the stack-trace test above, so the source map has been read.
  it('takes a 50 MiB upload and streams a 50 MiB download under 100 MiB of worker memory', async () => {
    const { body: who } = await json('/express-app/whoami');
    const pid = who.pid as number;
    expect(pid).toBeGreaterThan(0);
    const idle = memory(pid);

    const upload = randomBytes(50 << 20);
    const up = await peakMemory(pid, async () => {
      const res = await fetch(url('/express-app/upload'), { method: 'POST', body: upload, headers: { 'Content-Type': 'application/octet-stream' } });
      return res.json();
    });
    expect(up.result).toEqual({ bytes: upload.length, sha256: createHash('sha256').update(upload).digest('hex') });

    const down = await peakMemory(pid, async () => {
      const res = await fetch(url('/express-app/download?mib=50'));
      expect(res.headers.get('transfer-encoding')).toBe('chunked');
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        bytes += chunk.byteLength;
        hash.update(chunk);
      }
      return { bytes, sha256: hash.digest('hex') };
    });
    expect(down.result).toEqual({ bytes: 50 << 20, sha256: downloadPattern(50 << 20) });
    const mib = (m: { rss: number; anon: number }) => `${m.rss.toFixed(1)} MiB (own ${m.anon.toFixed(1)})`;
    console.log(`express-app worker memory: idle ${mib(idle)}, peak during 50 MiB upload ${mib(up.peak)}, during 50 MiB download ${mib(down.peak)}`);
    expect(up.peak.rss).toBeLessThan(100);
    expect(down.peak.rss).toBeLessThan(100);
    // Neither body is held: the worker grows by well under their 50 MiB.
    expect(up.peak.rss - idle.rss).toBeLessThan(35);
    expect(down.peak.rss - idle.rss).toBeLessThan(35);
    // Same worker throughout.
    expect((await json('/express-app/whoami')).body.pid).toBe(pid);
  });
});

describe('fastify-app', () => {
  it('answers its routes, with hooks', async () => {
    const hello = await fetch(url('/fastify-app/'));
    expect(hello.status).toBe(200);
    expect(hello.headers.get('x-framework')).toBe('fastify');
    expect(await hello.text()).toBe('Hello from Fastify\n');
    expect((await json('/fastify-app/users/9')).body).toEqual({ id: '9' });
    const who = await json('/fastify-app/whoami?x=1');
    expect(who.body).toMatchObject({ url: '/whoami?x=1', query: { x: '1' }, ip: '127.0.0.1', protocol: 'http' });
  });

  it('parses JSON, sets cookies, streams, and reports errors and 404s', async () => {
    const j = await json('/fastify-app/json', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"n":5}' });
    expect(j.status).toBe(201);
    expect(j.body).toEqual({ received: { n: 5 } });
    const c = await fetch(url('/fastify-app/cookies/set'));
    expect(c.headers.getSetCookie()).toEqual(['session=abc123; Path=/; HttpOnly', 'theme=dark; Path=/']);
    const s = await rawExchange(host.port, 'GET /fastify-app/stream HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(s.responses[0]!.body.toString()).toBe('part 1\npart 2\npart 3\n');
    const boom = await json('/fastify-app/boom');
    expect(boom.status).toBe(500);
    expect(boom.body.message).toBe('fastify broke');
    expect((await json('/fastify-app/nothing')).status).toBe(404);
  });

  it('answers HEAD', async () => {
    const head = await fetch(url('/fastify-app/users/1'), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });
});

describe('koa-app', () => {
  it('answers its routes through its middleware', async () => {
    const hello = await fetch(url('/koa-app/'));
    expect(await hello.text()).toBe('Hello from Koa\n');
    expect(hello.headers.get('x-response-time')).toMatch(/ms$/);
    const who = await json('/koa-app/whoami?k=v');
    expect(who.body).toMatchObject({ url: '/whoami?k=v', path: '/whoami', query: { k: 'v' }, ip: '127.0.0.1', protocol: 'http' });
    expect((await json('/koa-app/users/3')).body).toEqual({ id: '3' });
    expect((await json('/koa-app/none')).status).toBe(404);
  });

  it('reads JSON, sets cookies, streams, redirects and catches errors', async () => {
    const j = await json('/koa-app/json', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"k":true}' });
    expect(j.status).toBe(201);
    expect(j.body).toEqual({ received: { k: true } });
    const c = await fetch(url('/koa-app/cookies/set'));
    expect(c.headers.getSetCookie()).toEqual(['session=abc123; path=/; httponly', 'theme=dark; path=/']);
    const back = await json('/koa-app/cookies', { headers: { Cookie: 'session=abc123; theme=dark' } });
    expect(back.body).toEqual({ session: 'abc123', theme: 'dark' });
    const s = await rawExchange(host.port, 'GET /koa-app/stream HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(s.responses[0]!.headers['transfer-encoding']).toBe('chunked');
    expect(s.responses[0]!.body.toString()).toBe('part 1\npart 2\npart 3\n');
    const r = await fetch(url('/koa-app/redirect'), { redirect: 'manual' });
    expect(r.status).toBe(302);
    expect(r.headers.get('location')).toBe('/whoami');
    const boom = await json('/koa-app/boom');
    expect(boom.status).toBe(500);
    expect(boom.body).toEqual({ error: 'koa broke' });
  });
});

describe('hono-app (fetch adapter)', () => {
  it('answers its routes, with the ISAPI request in c.env', async () => {
    const hello = await fetch(url('/hono-app/'));
    expect(hello.status).toBe(200);
    expect(hello.headers.get('content-length')).toBe('16');
    expect(await hello.text()).toBe('Hello from Hono\n');
    const who = await json('/hono-app/whoami?q=1');
    expect(who.body).toMatchObject({
      url: `http://127.0.0.1:${host.port}/whoami?q=1`,
      path: '/whoami',
      query: { q: '1' },
      scriptName: '/hono-app',
      fullUrl: '/hono-app/whoami?q=1',
      remoteAddr: '127.0.0.1',
    });
    expect((await json('/hono-app/users/5')).body).toEqual({ id: '5' });
    expect((await json('/hono-app/none')).status).toBe(404);
  });

  it('reads JSON and form bodies, sets cookies, streams, and reports errors', async () => {
    const j = await json('/hono-app/json', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"h":1}' });
    expect(j.status).toBe(201);
    expect(j.body).toEqual({ received: { h: 1 } });
    const f = await fetch(url('/hono-app/form'), { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'name=Grace' });
    expect(await f.text()).toBe('hello Grace');
    const c = await fetch(url('/hono-app/cookies/set'));
    expect(c.headers.getSetCookie()).toEqual(['session=abc123; Path=/; HttpOnly', 'theme=dark; Path=/']);
    expect((await json('/hono-app/cookies', { headers: { Cookie: 'session=abc123; theme=dark' } })).body).toEqual({ session: 'abc123', theme: 'dark' });
    const s = await rawExchange(host.port, 'GET /hono-app/stream HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(s.responses[0]!.headers['transfer-encoding']).toBe('chunked');
    expect(s.responses[0]!.body.toString()).toBe('part 1\npart 2\npart 3\n');
    const s10 = await rawExchange(host.port, 'GET /hono-app/stream HTTP/1.0\r\nHost: x\r\n\r\n');
    expect(s10.closed).toBe(true);
    expect(s10.responses[0]!.body.toString()).toBe('part 1\npart 2\npart 3\n');
    const boom = await json('/hono-app/boom');
    expect(boom.status).toBe(500);
    expect(boom.body).toEqual({ error: 'hono broke' });
  });

  it('streams an upload to the app', async () => {
    const body = randomBytes(8 << 20);
    const r = await json('/hono-app/upload', { method: 'POST', body });
    expect(r.body).toEqual({ bytes: body.length });
  });

  it('answers HEAD without a body', async () => {
    const head = await fetch(url('/hono-app/users/1'), { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect((await head.arrayBuffer()).byteLength).toBe(0);
    await sleep(0);
  });
});

describe('sqlite-app (a native addon in a dependency)', () => {
  it('carries better-sqlite3 inside the worker: the folder holds no addon and no node_modules', () => {
    const files = readdirSync(packed('sqlite-app')).filter((f) => f !== 'logs');
    expect(files.sort()).toEqual(['_sqlite-app.so', 'install', 'sqlite-app', 'sqlite-app.manifest.json'].sort());
  });

  it('stores and reads rows through SQLite', async () => {
    const v = await json('/sqlite-app/version');
    expect(v.status).toBe(200);
    expect(v.body.sqlite).toMatch(/^3\.\d+\.\d+$/);
    const created = await json('/sqlite-app/notes', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'text=buy+milk',
    });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ text: 'buy milk' });
    const all = await json('/sqlite-app/notes');
    expect(all.body).toContainEqual({ id: created.body.id, text: 'buy milk' });
  });
});
