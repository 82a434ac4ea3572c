// A Hono app (fetch style), run as an ISAPI extension through fetchExtension.
//   isapi pack examples/hono-app.ts && isapi serve dist/hono-app  →  curl http://127.0.0.1:8080/hono-app/
import { Hono } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import { stream } from 'hono/streaming';
import { fetchExtension, type FetchEnv } from 'node-isapi';

// c.env is the ISAPI side of the request: the ECB, the virtual directory, the full URL.
const app = new Hono<{ Bindings: FetchEnv }>();

app.get('/', (c) => c.text('Hello from Hono\n'));

app.get('/whoami', (c) =>
  c.json({
    url: c.req.url,
    path: c.req.path,
    query: c.req.query(),
    scriptName: c.env.scriptName,
    fullUrl: c.env.fullUrl,
    remoteAddr: c.env.ecb.knownServerVariable('REMOTE_ADDR'),
    pid: process.pid,
  }),
);

app.get('/users/:id', (c) => c.json({ id: c.req.param('id') }));

app.post('/json', async (c) => c.json({ received: await c.req.json() }, 201));

app.post('/form', async (c) => {
  const form = await c.req.parseBody();
  return c.text(`hello ${form.name}`);
});

app.get('/cookies/set', (c) => {
  setCookie(c, 'session', 'abc123', { httpOnly: true, path: '/' });
  setCookie(c, 'theme', 'dark', { path: '/' });
  return c.text('cookies set');
});

app.get('/cookies', (c) => c.json(getCookie(c)));

// A streamed upload: counted as it arrives.
app.post('/upload', async (c) => {
  let bytes = 0;
  const reader = c.req.raw.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
  }
  return c.json({ bytes });
});

// A body produced over time: chunked on the wire.
app.get('/stream', (c) =>
  stream(c, async (s) => {
    for (let i = 1; i <= 3; i++) {
      await s.write(`part ${i}\n`);
      await s.sleep(20);
    }
  }),
);

app.notFound((c) => c.json({ error: 'not found' }, 404));
app.onError((err, c) => c.json({ error: err.message }, 500));
app.get('/boom', () => {
  throw new Error('hono broke');
});

export const __ExtensionFactory__ = fetchExtension(app.fetch);
