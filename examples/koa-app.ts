// A Koa app, run as an ISAPI extension: httpExtension takes the app (it calls app.callback()).
//   isapi pack examples/koa-app.ts && isapi serve dist/koa-app  →  curl http://127.0.0.1:8080/koa-app/
import { Readable } from 'node:stream';
import Koa from 'koa';
import { httpExtension } from 'node-isapi';

const app = new Koa();

async function readJson(req: NodeJS.ReadableStream): Promise<unknown> {
  const parts: Buffer[] = [];
  for await (const chunk of req) parts.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(parts).toString('utf8') || 'null');
}

// Timing middleware: Koa's onion model around every request.
app.use(async (ctx, next) => {
  const t0 = process.hrtime.bigint();
  await next();
  ctx.set('X-Response-Time', `${Number(process.hrtime.bigint() - t0) / 1e6}ms`);
});

// Errors become JSON.
app.use(async (ctx, next) => {
  try {
    await next();
  } catch (err) {
    ctx.status = 500;
    ctx.body = { error: (err as Error).message };
  }
});

app.use(async (ctx) => {
  const { method, path } = ctx;
  if (method === 'GET' && path === '/') {
    ctx.body = 'Hello from Koa\n';
  } else if (method === 'GET' && path === '/whoami') {
    ctx.body = { url: ctx.url, path: ctx.path, query: ctx.query, ip: ctx.ip, protocol: ctx.protocol, pid: process.pid };
  } else if (method === 'GET' && path.startsWith('/users/')) {
    ctx.body = { id: path.slice('/users/'.length) };
  } else if (method === 'POST' && path === '/json') {
    ctx.status = 201;
    ctx.body = { received: await readJson(ctx.req) };
  } else if (method === 'GET' && path === '/cookies/set') {
    ctx.cookies.set('session', 'abc123', { httpOnly: true });
    ctx.cookies.set('theme', 'dark', { httpOnly: false });
    ctx.body = 'cookies set';
  } else if (method === 'GET' && path === '/cookies') {
    ctx.body = { session: ctx.cookies.get('session'), theme: ctx.cookies.get('theme') };
  } else if (method === 'GET' && path === '/stream') {
    ctx.type = 'text/plain';
    ctx.body = Readable.from(['part 1\n', 'part 2\n', 'part 3\n']);
  } else if (method === 'GET' && path === '/redirect') {
    ctx.redirect('/whoami');
  } else if (path === '/boom') {
    throw new Error('koa broke');
  } else {
    ctx.status = 404;
    ctx.body = { error: 'not found' };
  }
});

export const __ExtensionFactory__ = httpExtension(app);
