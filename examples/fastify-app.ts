// A Fastify app, run as an ISAPI extension: httpExtension takes the instance, calls ready()
// (plugins and routes load, nothing listens) and hands each request to Fastify's router.
//   isapi pack examples/fastify-app.ts && isapi serve dist/fastify-app  →  curl http://127.0.0.1:8080/fastify-app/
import { Readable } from 'node:stream';
import Fastify from 'fastify';
import { httpExtension } from 'node-isapi';

const app = Fastify({ logger: false });

app.get('/', async () => 'Hello from Fastify\n');

app.get('/whoami', async (req) => ({ url: req.url, query: req.query, ip: req.ip, protocol: req.protocol, pid: process.pid }));

app.get<{ Params: { id: string } }>('/users/:id', async (req) => ({ id: req.params.id }));

app.post('/json', async (req, reply) => {
  reply.code(201);
  return { received: req.body };
});

app.get('/cookies/set', async (_req, reply) => {
  reply.header('Set-Cookie', ['session=abc123; Path=/; HttpOnly', 'theme=dark; Path=/']);
  return 'cookies set';
});

app.get('/stream', async (_req, reply) => {
  reply.type('text/plain');
  return reply.send(Readable.from(['part 1\n', 'part 2\n', 'part 3\n']));
});

app.get('/boom', async () => {
  throw new Error('fastify broke');
});

// A hook, to show the lifecycle runs as usual.
app.addHook('onSend', async (_req, reply) => {
  reply.header('X-Framework', 'fastify');
});

export const __ExtensionFactory__ = httpExtension(app);
