// isapi-host with a native C extension compiled here: the ECB basics every ISAPI host owes an
// extension, asserted on the wire and by what the extension observed.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isapiCli, rawExchange, root, runCli, startHost, type Host } from '../helpers';

let host: Host;
let dir: string;
let ext: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-ecb-'));
  ext = path.join(dir, 'ecb_basics_ext.so');
  execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-I', path.join(root, 'native', 'include'), '-o', ext,
    path.join(root, 'native', 'host', 'test', 'ecb_basics_ext.c'), '-lpthread']);
  host = await startHost(['--vdir', `/x=${ext}`, '--access-log', path.join(dir, 'access.log')]);
});
afterAll(async () => {
  await host?.stop();
});

const get = async (p: string, init?: RequestInit) => {
  const res = await fetch(`${host.url}${p}`, init);
  return { status: res.status, headers: res.headers, text: await res.text() };
};

describe('GetServerVariable buffer protocol', () => {
  it('NULL buffer and small buffer: FALSE, ERROR_INSUFFICIENT_BUFFER and the required size', async () => {
    const { text } = await get('/x/vars?name=REQUEST_METHOD');
    // "GET" + NUL = 4 bytes.
    expect(text).toContain('null-buffer: FALSE err=122 size=4');
    expect(text).toContain('small-buffer: FALSE err=122 size=4');
    expect(text).toContain('ok: GET');
  });

  it('an unknown variable: FALSE and ERROR_INVALID_INDEX', async () => {
    const { text } = await get('/x/vars?name=URL');
    expect(text).toContain('ok: /x/vars');
    expect(text).toMatch(/unknown: FALSE err=1413/);
  });

  it('values over 8 KiB come back whole', async () => {
    const long = 'v'.repeat(9000);
    const { text } = await get('/x/vars?name=HTTP_X_LONG', { headers: { 'X-Long': long } });
    expect(text).toContain(`null-buffer: FALSE err=122 size=${long.length + 1}`);
    expect(text).toContain(`ok: ${long}`);
  });
});

describe('ECB fields and common variables', () => {
  it('fills the ECB and the common server variables for a vdir', async () => {
    const { text } = await get('/x/info?q=1', { headers: { 'X-Test': 'abc' } });
    const lines = Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(lines).toMatchObject({
      REQUEST_METHOD: 'GET',
      QUERY_STRING: 'q=1',
      URL: '/x/info',
      SCRIPT_NAME: '/x',
      REMOTE_ADDR: '127.0.0.1',
      SERVER_PORT: String(host.port),
    });
    expect(text).toMatch(/ALL_HTTP=.*HTTP_X_TEST:abc/s);
  });
});

describe('request bodies', () => {
  it('preloaded data plus ReadClient until 0 gives the whole Content-Length body', async () => {
    const body = Buffer.alloc(200_000, 7);
    const res = await fetch(`${host.url}/x/post`, { method: 'POST', body });
    expect(res.headers.get('x-body-total')).toBe('200000');
    expect(Buffer.from(await res.arrayBuffer()).equals(body)).toBe(true);
  });

  it('a chunked body arrives de-chunked with cbTotalBytes = 0xFFFFFFFF', async () => {
    const { responses } = await rawExchange(host.port, 'POST /x/post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    expect(responses[0]!.headers['x-body-total']).toBe(String(0xffffffff));
    expect(responses[0]!.body.toString()).toBe('hello world');
  });
});

describe('completion', () => {
  it('HSE_STATUS_PENDING completed later from another thread', async () => {
    const { status, text } = await get('/x/pending');
    expect(status).toBe(200);
    expect(text.length).toBeGreaterThan(0);
  });

  it('DONE_WITH_SESSION before HttpExtensionProc returns PENDING', async () => {
    const { responses, closed } = await rawExchange(host.port, ['GET /x/pending-early HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /x/pending-early HTTP/1.1\r\nHost: x\r\n\r\n'], 2);
    expect(responses.map((r) => r.status)).toEqual([200, 200]);
    expect(closed).toBe(false);
  });

  it('HSE_STATUS_ERROR with nothing sent gives 500 and closes', async () => {
    const { responses, closed } = await rawExchange(host.port, 'GET /x/error HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(responses[0]!.status).toBe(500);
    expect(closed).toBe(true);
  });

  it('a response without Content-Length is close-delimited', async () => {
    const { responses, closed } = await rawExchange(host.port, 'GET /x/close-delimited HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(responses[0]!.status).toBe(200);
    expect(responses[0]!.headers.connection).toBe('close');
    expect(closed).toBe(true);
  });

  it("an extension's own chunked framing is not chunked twice and keeps the connection", async () => {
    const req = 'GET /x/chunked HTTP/1.1\r\nHost: x\r\n\r\n';
    const { responses, closed } = await rawExchange(host.port, [req, req], 2);
    expect(responses[0]!.headers['transfer-encoding']).toBe('chunked');
    expect(responses[1]!.status).toBe(200);
    expect(closed).toBe(false);
  });

  it('IS_KEEP_CONN-style keep-alive across many requests on one connection', async () => {
    const req = 'GET /x/info HTTP/1.1\r\nHost: x\r\n\r\n';
    const { responses, closed } = await rawExchange(host.port, Array(10).fill(req), 10);
    expect(responses).toHaveLength(10);
    expect(closed).toBe(false);
  });
});

describe('access log', () => {
  it('records the status and the extension log data', async () => {
    await get('/x/log');
    await get('/x/status?code=418');
    const log = readFileSync(path.join(dir, 'access.log'), 'utf8');
    expect(log).toMatch(/^#Fields: /m);
    expect(log).toMatch(/GET \/x\/log .*200/);
    expect(log).toMatch(/GET \/x\/status code=418.* 418 /);
  });
});

describe('malformed requests', () => {
  const bad: Array<[string, string, number]> = [
    ['a garbage request line', 'NOT A REQUEST\r\n\r\n', 400],
    ['both Content-Length and Transfer-Encoding', 'POST /x/post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['two different Content-Lengths', 'POST /x/post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', 400],
    ['a folded header', 'GET /x/info HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n', 400],
    ['space before the colon', 'GET /x/info HTTP/1.1\r\nHost : x\r\n\r\n', 400],
    ['bad chunk framing', 'POST /x/post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n', 400],
    ['oversized headers', `GET /x/info HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 431],
  ];
  for (const [what, request, status] of bad) {
    it(`${what} → ${status}, and the server keeps serving`, async () => {
      const { responses, closed } = await rawExchange(host.port, request);
      expect(responses[0]!.status).toBe(status);
      expect(closed).toBe(true);
      expect((await get('/x/info')).status).toBe(200);
    });
  }
});

describe('isapi serve --dll', () => {
  it('serves a plain native ISAPI library at the given virtual directory', async () => {
    const child = spawn(process.execPath, [isapiCli, 'serve', '--dll', ext, '--vdir', '/native', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout!.on('data', (d) => {
          out += d;
          const m = /listening on http:\/\/[\d.]+:(\d+)\//.exec(out);
          if (m) resolve(Number(m[1]));
        });
        child.on('exit', (code) => reject(new Error(`isapi serve exited with ${code}: ${out}`)));
      });
      const res = await fetch(`http://127.0.0.1:${port}/native/vars?name=SCRIPT_NAME`);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('ok: /native');
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('refuses a missing library with one line', () => {
    const r = runCli(['serve', '--dll', 'nope.so']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('isapi: nope.so: no such file\n');
  });
});
