// Starting the bench's servers: isapi-host with its applications, and Node processes; each
// resolves once the server prints the port it listens on, and all are stopped however the bench ends.
import { spawn, type ChildProcess } from 'node:child_process';

export interface Server {
  proc: ChildProcess;
  pid: number;
  port: number;
}

const started: ChildProcess[] = [];
process.on('exit', () => {
  for (const p of started) if (p.exitCode === null) p.kill('SIGTERM');
});

function listen(proc: ChildProcess, pattern: RegExp): Promise<Server> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`bench: no listening line within 60 s:\n${text}`)), 60_000);
    const on = (d: Buffer) => {
      text += d;
      const m = pattern.exec(text);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, pid: proc.pid!, port: Number(m[1]) });
      }
    };
    proc.stdout!.on('data', on);
    proc.stderr!.on('data', on);
    proc.on('exit', (code) => reject(new Error(`bench: ${proc.spawnfile} exited (${code}) before listening:\n${text}`)));
  });
}

function start(exe: string, args: string[], pattern: RegExp): Promise<Server> {
  const proc = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(proc);
  return listen(proc, pattern);
}

/** isapi-host on a free port with `args` (--vdir, --filter). */
export function startHost(hostExe: string, args: string[]): Promise<Server> {
  return start(hostExe, ['--port', '0', ...args], /listening on http:\/\/[\d.]+:(\d+)\//);
}

/** A Node server (a script file, or `-e` code) that prints `listening on <port>`. */
export function startNode(node: string, args: string[]): Promise<Server> {
  return start(node, args, /listening on (\d+)/);
}

/** The plain Node http hello of row (c): the same body and headers as examples/hello.ts sends. */
export const plainHello = `
  const http = require('http');
  const body = 'Hello from TypeScript\\n';
  const s = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
  s.keepAliveTimeout = 120000;
  s.listen(0, '127.0.0.1', () => console.log('plain listening on ' + s.address().port));
`;
