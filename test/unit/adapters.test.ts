// The adapters against an in-memory ECB: what reaches SendResponseHeaders and WriteClient.
// (The end-to-end suite test/e2e/frameworks.test.ts checks the same over real sockets.)
import http from 'node:http';
import express from 'express';
import { describe, expect, it } from 'vitest';
import type { BridgeAddon, RequestBegin } from '../../runtime/channel';
import { ECB, type RequestLink } from '../../runtime/ecb';
import { fetchExtension, httpExtension, stripScriptName } from '../../runtime/index';

interface Sent {
  status?: string;
  headers?: string;
  keepAlive?: boolean;
  body: Buffer[];
  done?: number;
}

function fakeEcb(o: {
  method?: string;
  url?: string;
  vdir?: string;
  headers?: Array<[string, string]>;
  body?: Buffer;
  chunks?: Buffer[];
  protocol?: string;
  https?: boolean;
  writeRoom?: number;
}): { ecb: ECB; sent: Sent; drain: () => void; abort: () => void } {
  const sent: Sent = { body: [] };
  let drainWaiters: Array<() => void> = [];
  let queued = 0;
  const addon = {
    headers(_id: number, status: string, headers: string, keepAlive: boolean) {
      sent.status = status;
      sent.headers = headers;
      sent.keepAlive = keepAlive;
    },
    write(_id: number, data: Uint8Array | string) {
      sent.body.push(Buffer.from(data as Uint8Array));
      queued += typeof data === 'string' ? data.length : data.byteLength;
      return o.writeRoom === undefined || queued < o.writeRoom;
    },
    done(_id: number, status: number) {
      sent.done = status;
    },
    credit() {},
  } as unknown as BridgeAddon;
  const url = o.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const body = o.body ?? Buffer.alloc(0);
  const chunked = o.chunks !== undefined;
  const allRaw = (o.headers ?? [['Host', 'example.test']]).map(([n, v]) => `${n}: ${v}\r\n`).join('');
  const begin: RequestBegin = {
    method: o.method ?? 'GET',
    query: q < 0 ? '' : url.slice(q + 1),
    pathInfo: decodeURIComponent(path),
    pathTranslated: '',
    contentType: '',
    totalBytes: chunked ? 0xffffffff : body.length,
    connId: 1,
    vars: {
      URL: decodeURIComponent(path),
      SCRIPT_NAME: o.vdir ?? '/app',
      SERVER_PROTOCOL: o.protocol ?? 'HTTP/1.1',
      REMOTE_ADDR: '10.1.2.3',
      REMOTE_PORT: '5555',
      SERVER_NAME: 'example.test',
      SERVER_PORT: '80',
      HTTPS: o.https ? 'on' : 'off',
      ALL_RAW: allRaw,
      UNENCODED_URL: url,
    },
    // The web server preloads what it has read (for a chunked upload, at least its first piece).
    body: chunked ? (o.chunks![0] ?? Buffer.alloc(0)) : body,
  };
  const link = {
    id: 1,
    addon,
    askVariable: async () => ({ err: 1413, value: Buffer.alloc(0) }),
    serverSupport: async () => ({ ok: false, error: 1 }),
    waitDrain: () => new Promise<void>((r) => drainWaiters.push(r)),
    finished() {},
  } as unknown as RequestLink;
  const ecb = new ECB(link, begin);
  if (chunked) {
    setTimeout(() => {
      for (const c of o.chunks!.slice(1)) ecb._body(c);
      ecb._body(Buffer.alloc(0));
    }, 5);
  }
  return {
    ecb,
    sent,
    drain: () => {
      queued = 0;
      const w = drainWaiters;
      drainWaiters = [];
      for (const f of w) f();
    },
    abort: () => ecb._abort(),
  };
}

async function run(factory: () => any, f: ReturnType<typeof fakeEcb>): Promise<number> {
  const ext = await factory();
  await ext.GetExtensionVersion?.({ ExtensionDesc: 'test' });
  const status = await ext.HttpExtensionProc(f.ecb);
  return status;
}

const headerLines = (s: Sent) => (s.headers ?? '').split('\r\n').filter(Boolean);
const bodyOf = (s: Sent) => Buffer.concat(s.body).toString('latin1');

describe('stripScriptName', () => {
  it('drops the virtual directory, matching case-insensitively and decoded', () => {
    expect(stripScriptName('/shop/cart', '/shop')).toBe('/cart');
    expect(stripScriptName('/SHOP/cart/x%2Fy', '/shop')).toBe('/cart/x%2Fy');
    expect(stripScriptName('/shop', '/shop')).toBe('/');
    expect(stripScriptName('/my%20shop/a', '/my shop')).toBe('/a');
    expect(stripScriptName('/other/a', '/shop')).toBeNull();
    expect(stripScriptName('/a/b', '')).toBe('/a/b');
  });
});

describe('httpExtension', () => {
  it('gives the app Node request objects and sends its response', async () => {
    let seen: any;
    const f = fakeEcb({ url: '/app/items/a%2Fb?x=1', headers: [['Host', 'h'], ['X-Multi', 'a'], ['x-multi', 'b'], ['Cookie', 'c=1']] });
    const status = await run(
      httpExtension((req, res) => {
        seen = {
          url: req.url,
          method: req.method,
          httpVersion: req.httpVersion,
          multi: req.headers['x-multi'],
          raw: req.rawHeaders,
          remote: req.socket.remoteAddress,
          encrypted: (req.socket as any).encrypted,
        };
        res.statusMessage = 'Fine';
        res.setHeader('Set-Cookie', ['a=1', 'b=2']);
        res.setHeader('Content-Type', 'text/plain');
        res.end('hello');
      }),
      f,
    );
    expect(status).toBe(0 + 1); // HSE_STATUS_SUCCESS
    expect(seen).toEqual({
      url: '/items/a%2Fb?x=1',
      method: 'GET',
      httpVersion: '1.1',
      multi: 'a, b',
      raw: ['Host', 'h', 'X-Multi', 'a', 'x-multi', 'b', 'Cookie', 'c=1'],
      remote: '10.1.2.3',
      encrypted: undefined,
    });
    expect(f.sent.status).toBe('200 Fine');
    expect(headerLines(f.sent)).toEqual(expect.arrayContaining(['Set-Cookie: a=1', 'Set-Cookie: b=2', 'Content-Length: 5']));
    expect(bodyOf(f.sent)).toBe('hello');
  });

  it('encodes the decoded path again when the raw URL is not at hand, or asks for it (exactUrl)', async () => {
    const urls: string[] = [];
    const handler = httpExtension((req, res) => (urls.push(req.url!), res.end()));
    const f = fakeEcb({ url: '/app/a%20b%2Fc?x=%41' });
    delete (f.ecb as any).begin.vars.UNENCODED_URL;
    await run(handler, f);
    expect(urls).toEqual(['/a%20b/c?x=%41']);
    const g = fakeEcb({ url: '/app/a%20b%2Fc?x=%41' });
    delete (g.ecb as any).begin.vars.UNENCODED_URL;
    (g.ecb as any).link.askVariable = async (name: string) =>
      name === 'UNENCODED_URL' ? { err: 0, value: Buffer.from('/app/a%20b%2Fc?x=%41') } : { err: 1413, value: Buffer.alloc(0) };
    await run(httpExtension((req, res) => (urls.push(req.url!), res.end()), { exactUrl: true }), g);
    expect(urls[1]).toBe('/a%20b%2Fc?x=%41');
  });

  it('shows the full URL when asked', async () => {
    let url = '';
    const f = fakeEcb({ url: '/app/x?y' });
    await run(httpExtension((req, res) => ((url = req.url!), res.end()), { fullUrl: true }), f);
    expect(url).toBe('/app/x?y');
  });

  it('frames writes without a length with chunked encoding on HTTP/1.1', async () => {
    const f = fakeEcb({});
    await run(
      httpExtension((_req, res) => {
        res.write('ab');
        res.write('cde');
        res.end();
      }),
      f,
    );
    expect(headerLines(f.sent)).toContain('Transfer-Encoding: chunked');
    expect(bodyOf(f.sent)).toBe('2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n');
  });

  it('ends the body with the connection on HTTP/1.0', async () => {
    const f = fakeEcb({ protocol: 'HTTP/1.0' });
    await run(httpExtension((_req, res) => (res.write('ab'), res.end('c'))), f);
    expect(headerLines(f.sent)).toContain('Connection: close');
    expect(f.sent.keepAlive).toBe(false);
    expect(bodyOf(f.sent)).toBe('abc');
  });

  it('sends no body for HEAD and swallows 100 Continue', async () => {
    const f = fakeEcb({ method: 'HEAD' });
    await run(
      httpExtension((_req, res) => {
        res.writeContinue();
        res.setHeader('Content-Length', 5);
        res.end('hello');
      }),
      f,
    );
    expect(f.sent.status).toBe('200 OK');
    expect(bodyOf(f.sent)).toBe('');
  });

  it('streams the request body on demand', async () => {
    const parts = [Buffer.from('abc'), Buffer.from('defg')];
    const f = fakeEcb({ method: 'POST', chunks: parts, headers: [['Host', 'h'], ['Transfer-Encoding', 'chunked']] });
    await run(
      httpExtension(async (req, res) => {
        const got: Buffer[] = [];
        for await (const c of req) got.push(c as Buffer);
        res.end(Buffer.concat(got).toString().toUpperCase());
      }),
      f,
    );
    expect(bodyOf(f.sent)).toBe('ABCDEFG');
  });

  it('waits for the channel before asking for more (backpressure) and emits drain', async () => {
    const f = fakeEcb({ writeRoom: 1 });
    const piece = Buffer.alloc(64 * 1024, 1);
    let falses = 0;
    const done = run(
      httpExtension(async (_req, res) => {
        res.setHeader('Content-Length', piece.length * 4);
        for (let i = 0; i < 4; i++) {
          if (!res.write(piece)) {
            falses++;
            await new Promise((r) => res.once('drain', r));
          }
        }
        res.end();
      }),
      f,
    );
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => setTimeout(r, 5));
      f.drain();
    }
    expect(await done).toBe(1);
    expect(falses).toBeGreaterThan(0);
    expect(Buffer.concat(f.sent.body).length).toBe(piece.length * 4);
  });

  it("emits 'aborted' and 'close' when the request is dropped", async () => {
    const f = fakeEcb({ method: 'POST', chunks: [Buffer.from('x')], headers: [['Host', 'h'], ['Transfer-Encoding', 'chunked']] });
    const events: string[] = [];
    const p = run(
      httpExtension((req, res) => {
        req.on('aborted', () => events.push('req aborted'));
        req.on('close', () => events.push('req close'));
        res.on('close', () => events.push('res close'));
      }),
      f,
    );
    await new Promise((r) => setTimeout(r, 1));
    f.abort();
    await p;
    await new Promise((r) => setTimeout(r, 5));
    expect(events).toEqual(expect.arrayContaining(['req aborted', 'req close', 'res close']));
  });

  it('runs an Express app that parses a JSON body (the body keeps flowing after its first piece)', async () => {
    const body = Buffer.from(JSON.stringify({ a: 1, s: 'x'.repeat(200_000) }));
    const f = fakeEcb({
      method: 'POST',
      url: '/app/json',
      chunks: [body.subarray(0, 70_000), body.subarray(70_000, 150_000), body.subarray(150_000)],
      headers: [['Host', 'h'], ['Content-Type', 'application/json'], ['Transfer-Encoding', 'chunked']],
    });
    const app = express();
    app.use(express.json({ limit: '1mb' }));
    app.post('/json', (req, res) => res.json({ a: req.body.a, n: req.body.s.length }));
    await run(httpExtension(app), f);
    expect(f.sent.status).toBe('200 OK');
    expect(JSON.parse(bodyOf(f.sent))).toEqual({ a: 1, n: 200_000 });
  });

  it('runs an http.Server that never listens', async () => {
    const server = http.createServer((_req, res) => res.end('from server'));
    const f = fakeEcb({});
    await run(httpExtension(server), f);
    expect(bodyOf(f.sent)).toBe('from server');
  });

  it('encrypted is true for HTTPS', async () => {
    let enc: unknown;
    const f = fakeEcb({ https: true });
    await run(httpExtension((req, res) => ((enc = (req.socket as any).encrypted), res.end())), f);
    expect(enc).toBe(true);
  });
});

describe('fetchExtension', () => {
  it('builds a Request and sends the Response with a length', async () => {
    let seen: any;
    const f = fakeEcb({ method: 'POST', url: '/app/p?q=1', body: Buffer.from('{"a":1}'), headers: [['Host', 'example.test:8080'], ['Content-Type', 'application/json']] });
    await run(
      fetchExtension(async (request) => {
        seen = { url: request.url, method: request.method, body: await request.json() };
        const h = new Headers({ 'content-type': 'text/plain' });
        h.append('set-cookie', 'a=1');
        h.append('set-cookie', 'b=2');
        return new Response('ok!', { status: 201, headers: h });
      }),
      f,
    );
    expect(seen).toEqual({ url: 'http://example.test:8080/p?q=1', method: 'POST', body: { a: 1 } });
    expect(f.sent.status).toBe('201 Created');
    expect(headerLines(f.sent)).toEqual(expect.arrayContaining(['set-cookie: a=1', 'set-cookie: b=2', 'content-length: 3']));
    expect(bodyOf(f.sent)).toBe('ok!');
  });

  it('streams a body that is still being produced with chunked framing', async () => {
    const f = fakeEcb({});
    await run(
      fetchExtension(() => {
        const enc = new TextEncoder();
        let i = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            await new Promise((r) => setTimeout(r, 2));
            if (i < 3) c.enqueue(enc.encode(`p${i++}`));
            else c.close();
          },
        });
        return new Response(body);
      }),
      f,
    );
    expect(headerLines(f.sent)).toContain('transfer-encoding: chunked');
    expect(bodyOf(f.sent)).toBe('2\r\np0\r\n2\r\np1\r\n2\r\np2\r\n0\r\n\r\n');
  });
});
