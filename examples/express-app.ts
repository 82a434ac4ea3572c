// An ordinary Express app, run as an ISAPI extension. The only ISAPI line is the last one.
//   isapi pack examples/express-app.ts && cp -r examples/public dist/express-app/
//   isapi serve dist/express-app   →   curl http://127.0.0.1:8080/express-app/
// Mounted at /express-app, the app sees root-relative paths (/users/1, not /express-app/users/1).
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import express, { type NextFunction, type Request, type Response } from 'express';
import { httpExtension } from 'node-isapi';

const app = express();

app.get('/', (_req, res) => {
  res.type('text/plain').send('Hello from Express\n');
});

// Static files from public/ beside the worker (copy examples/public into the packed folder).
app.use(express.static(path.join(path.dirname(process.execPath), 'public')));
app.use(express.json());
app.use(express.urlencoded({ extended: false }));

// What the app sees of its request: the URL below the virtual directory, the client, the worker.
app.get('/whoami', (req, res) => {
  res.json({
    url: req.url,
    path: req.path,
    query: req.query,
    ip: req.ip,
    protocol: req.protocol,
    httpVersion: req.httpVersion,
    pid: process.pid,
    memory: process.memoryUsage(),
  });
});

app.get('/users/:id', (req, res) => {
  res.json({ id: req.params.id, name: `user ${req.params.id}` });
});

app.post('/json', (req, res) => {
  res.status(201).json({ received: req.body });
});

app.post('/form', (req, res) => {
  res.type('text/plain').send(`hello ${req.body.name} (${req.body.lang})`);
});

app.get('/cookies/set', (_req, res) => {
  res.cookie('session', 'abc123', { httpOnly: true, path: '/' });
  res.cookie('theme', 'dark');
  res.send('cookies set');
});

app.get('/cookies', (req, res) => {
  const cookies = Object.fromEntries(
    (req.headers.cookie ?? '').split(';').filter(Boolean).map((c) => c.trim().split('=') as [string, string]),
  );
  res.json(cookies);
});

// A streamed upload: counted and hashed as it arrives, never held whole.
app.post('/upload', (req, res, next) => {
  const hash = createHash('sha256');
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    hash.update(chunk);
  });
  req.on('end', () => res.json({ bytes, sha256: hash.digest('hex') }));
  req.on('error', next);
});

// A streamed download of ?mib= MiB (no Content-Length: chunked on the wire), made on the fly.
app.get('/download', (req, res) => {
  const total = Number(req.query.mib ?? 1) << 20;
  const piece = Buffer.alloc(64 * 1024);
  for (let i = 0; i < piece.length; i++) piece[i] = i % 251;
  let sent = 0;
  const body = new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const n = Math.min(piece.length, total - sent);
      sent += n;
      this.push(n === piece.length ? piece : piece.subarray(0, n));
    },
  });
  res.type('application/octet-stream');
  body.pipe(res);
});

// Writes before the end, with pauses between them.
app.get('/slow', async (_req, res) => {
  res.type('text/plain');
  for (let i = 1; i <= 3; i++) {
    res.write(`part ${i}\n`);
    await new Promise((r) => setTimeout(r, 20));
  }
  res.end('done\n');
});

app.get('/status', (_req, res) => {
  res.statusMessage = 'Quite Fine';
  res.status(202).setHeader('X-Custom', 'yes');
  res.send('accepted');
});

// The stack trace of an error thrown here names this file and line (source maps in the worker).
app.get('/stack', () => {
  throw new Error('stack marker');
});

app.get('/boom', (_req, _res, next) => {
  next(new Error('something broke'));
});

app.use((_req: Request, res: Response) => {
  res.status(404).json({ error: 'not found' });
});

// Express's error handler: four arguments.
app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
  res.status(500).json({ error: err.message, stack: err.stack });
});

export const __ExtensionFactory__ = httpExtension(app);

// Exported too so the same app can run on plain Node http (npm run bench compares the two).
export { app };
