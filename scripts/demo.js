#!/usr/bin/env node
// `npm run demo`: pack examples/hello.ts, serve it with isapi-host, show it answering, stop.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'bin', 'isapi.cjs');

console.log('$ npx isapi pack examples/hello.ts');
const packed = spawnSync(process.execPath, [cli, 'pack', 'examples/hello.ts'], { cwd: root, stdio: 'inherit' });
if (packed.status !== 0) process.exit(packed.status ?? 1);

console.log('\n$ npx isapi serve dist/hello --port 0');
const server = spawn(process.execPath, [cli, 'serve', 'dist/hello', '--port', '0'], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
let answered = false;
const fail = (msg) => {
  console.error(`demo: ${msg}`);
  server.kill('SIGTERM');
  process.exit(1);
};
const timer = setTimeout(() => fail('the server did not start within 60 s'), 60_000);
server.on('exit', (code) => code && fail(`the server exited with code ${code}`));
server.stdout.on('data', async (d) => {
  process.stdout.write(d);
  out += d;
  const m = /listening on (http:\/\/[\d.]+:\d+)\//.exec(out);
  if (!m || answered) return;
  answered = true;
  clearTimeout(timer);
  const url = `${m[1]}/hello/`;
  console.log(`\n$ curl ${url}`);
  try {
    const res = await fetch(url);
    const text = await res.text();
    console.log(`HTTP ${res.status} ${res.statusText}\n${text}`);
    if (res.status !== 200 || text !== 'Hello from TypeScript\n') fail('unexpected answer');
  } catch (err) {
    fail(`request failed: ${err.message}`);
  }
  server.removeAllListeners('exit');
  server.kill('SIGTERM');
  server.on('exit', () => {
    console.log('demo: done. Serve it yourself with `npx isapi serve dist/hello` and open http://127.0.0.1:8080/hello/');
    process.exit(0);
  });
});
