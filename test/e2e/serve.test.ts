// `isapi serve` of folders by what their script exports (issue 15): a filter-only folder runs as
// a global filter in front of static files, a folder with both is loaded as both; and
// `serve --config` names every application's URL.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isapiCli, packed, waitFor } from '../helpers';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

async function serve(args: string[], env: NodeJS.ProcessEnv = {}) {
  const proc = spawn(process.execPath, [isapiCli, 'serve', ...args, '--port', '0'], { env: { ...process.env, ISAPI_WORKERS: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const port = await waitFor(() => /listening on http:\/\/[\d.]+:(\d+)\//.exec(out)?.[1], `isapi serve to listen:\n${out}`, 60_000);
  return {
    base: `http://127.0.0.1:${port}`,
    output: () => out,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.kill('SIGTERM');
      }),
  };
}

function get(url: string): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
      })
      .on('error', reject);
  });
}

describe('isapi serve by entry points', () => {
  it('a filter-only folder is a global filter in front of --root\'s static files', async () => {
    const www = mkdtempSync(path.join(os.tmpdir(), 'isapi-www-'));
    writeFileSync(path.join(www, 'page.html'), '<p>static</p>\n');
    const s = await serve([packed('security-headers'), '--root', www]);
    try {
      const r = await get(`${s.base}/page.html`);
      expect(r.status).toBe(200);
      expect(r.body).toBe('<p>static</p>\n');
      expect(r.headers['x-frame-options']).toBe('DENY');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      // Not mapped as an extension: no "exports no extension" 500 at /security-headers/.
      expect((await get(`${s.base}/security-headers/`)).status).toBe(404);
      expect(s.output()).toMatch(/as a global filter/);
    } finally {
      await s.stop();
      rmSync(www, { recursive: true, force: true });
    }
  });

  it('a folder that exports both is loaded as both: its filter rewrites into its extension', async () => {
    const upstream = http.createServer((req, res) => res.end(`upstream saw ${req.url}`));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const target = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
    const s = await serve([packed('redirector-with-filter'), '--vdir', '/redirector'], { ISAPI_REDIRECT_TARGET: target });
    try {
      const r = await get(`${s.base}/some/page?x=1`);
      expect(r.status).toBe(200);
      expect(r.body).toBe('upstream saw /some/page?x=1');
    } finally {
      await s.stop();
      upstream.close();
    }
  });

  it('serve --config prints every application\'s URL', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-config-'));
    const file = path.join(dir, 'site.json');
    writeFileSync(
      file,
      JSON.stringify({
        applications: [
          { path: '/hello', extension: path.join(packed('hello'), '_hello.so') },
          { path: '/echo', extension: path.join(packed('echo'), '_echo.so') },
        ],
      }),
    );
    const s = await serve(['--config', file]);
    try {
      expect(s.output()).toMatch(/http:\/\/127\.0\.0\.1:\d+\/hello\//);
      expect(s.output()).toMatch(/http:\/\/127\.0\.0\.1:\d+\/echo\//);
      expect((await get(`${s.base}/echo/`)).status).toBe(200);
    } finally {
      await s.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
