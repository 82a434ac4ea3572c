// An extension with a native dependency: SQLite through better-sqlite3, a C++ addon. `isapi pack`
// carries the addon inside the worker (rebuilt for the worker's Node version if needed); the
// packed folder needs nothing installed on the server.
//   isapi pack examples/sqlite-app.ts && isapi serve dist/sqlite-app
//   curl -d 'text=buy milk' http://127.0.0.1:8080/sqlite-app/notes   →   curl http://127.0.0.1:8080/sqlite-app/notes
import Database from 'better-sqlite3';
import { httpExtension } from 'node-isapi';
import type { IncomingMessage, ServerResponse } from 'node:http';

// An in-memory database per worker process (a file path works the same way: new Database('notes.db')).
let db: Database.Database | null = null;
function database(): Database.Database {
  if (!db) {
    db = new Database(':memory:');
    db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)');
  }
  return db;
}

function send(res: ServerResponse, status: number, body: unknown) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

async function form(req: IncomingMessage): Promise<URLSearchParams> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return new URLSearchParams(text);
}

async function handler(req: IncomingMessage, res: ServerResponse) {
  const { pathname } = new URL(req.url ?? '/', 'http://x');
  if (pathname === '/version') {
    const row = database().prepare('SELECT sqlite_version() AS version').get() as { version: string };
    return send(res, 200, { sqlite: row.version, node: process.versions.node });
  }
  if (pathname === '/notes' && req.method === 'POST') {
    const text = (await form(req)).get('text') ?? '';
    const info = database().prepare('INSERT INTO notes (text) VALUES (?)').run(text);
    return send(res, 201, { id: Number(info.lastInsertRowid), text });
  }
  if (pathname === '/notes') {
    return send(res, 200, database().prepare('SELECT id, text FROM notes ORDER BY id').all());
  }
  send(res, 404, { error: 'not found' });
}

export const __ExtensionFactory__ = httpExtension(handler);
