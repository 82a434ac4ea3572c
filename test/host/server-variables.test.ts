// Every server variable isapi-host answers (docs/host-conformance.md), read by a C extension with
// GetServerVariable (native/host/test/ecb_basics_ext.c, GET .../vars?name=X).
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawExchange, root, startHost, type Host } from '../helpers';

let host: Host;
let dir: string;
let ext: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-vars-'));
  ext = path.join(dir, 'ecb_basics_ext.so');
  execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-I', path.join(root, 'native', 'include'), '-o', ext,
    path.join(root, 'native', 'host', 'test', 'ecb_basics_ext.c'), '-lpthread']);
  host = await startHost(['--vdir', `/x=${ext}`]);
});
afterAll(async () => {
  await host?.stop();
});

/** The value of one variable for GET /x/app/vars?name=NAME&q=1 with the given headers. */
async function variable(name: string, headers: Record<string, string> = {}, path_ = '/x/app/vars') {
  const head = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const { responses } = await rawExchange(host.port, `GET ${path_}?name=${name}&q=1 HTTP/1.1\r\nHost: example.test:8080\r\n${head}\r\n`);
  const m = /^ok: (.*)$/m.exec(responses[0]!.body.toString());
  return m ? m[1] : responses[0]!.body.toString();
}

describe('server variables', () => {
  const physical = () => `${path.dirname(ext)}/`;
  const cases: Array<[string, () => string | RegExp]> = [
    ['REQUEST_METHOD', () => 'GET'],
    ['URL', () => '/x/app/vars'],
    ['SCRIPT_NAME', () => '/x'],
    ['PATH_INFO', () => '/x/app/vars'],
    ['PATH_TRANSLATED', () => `${path.dirname(ext)}/app/vars`],
    ['SCRIPT_TRANSLATED', () => ext],
    ['QUERY_STRING', () => /^name=QUERY_STRING&q=1$/],
    ['CONTENT_LENGTH', () => '0'],
    ['CONTENT_TYPE', () => ''],
    ['REMOTE_ADDR', () => '127.0.0.1'],
    ['REMOTE_HOST', () => '127.0.0.1'],
    ['REMOTE_PORT', () => /^\d+$/],
    ['LOCAL_ADDR', () => '127.0.0.1'],
    ['SERVER_NAME', () => 'example.test'],
    ['SERVER_PORT', () => String(host.port)],
    ['SERVER_PORT_SECURE', () => '0'],
    ['SERVER_PROTOCOL', () => 'HTTP/1.1'],
    ['HTTP_VERSION', () => 'HTTP/1.1'],
    ['SERVER_SOFTWARE', () => 'isapi-host/0.1'],
    ['GATEWAY_INTERFACE', () => 'CGI/1.1'],
    ['HTTPS', () => 'off'],
    ['HTTPS_KEYSIZE', () => ''],
    ['HTTPS_SECRETKEYSIZE', () => ''],
    ['HTTPS_SERVER_ISSUER', () => ''],
    ['HTTPS_SERVER_SUBJECT', () => ''],
    ['CERT_COOKIE', () => ''],
    ['CERT_FLAGS', () => ''],
    ['CERT_ISSUER', () => ''],
    ['CERT_KEYSIZE', () => ''],
    ['CERT_SECRETKEYSIZE', () => ''],
    ['CERT_SERIALNUMBER', () => ''],
    ['CERT_SERVER_ISSUER', () => ''],
    ['CERT_SERVER_SUBJECT', () => ''],
    ['CERT_SUBJECT', () => ''],
    ['INSTANCE_ID', () => '1'],
    ['INSTANCE_NAME', () => 'isapi-host'],
    ['INSTANCE_META_PATH', () => '/LM/W3SVC/1'],
    ['APPL_MD_PATH', () => '/LM/W3SVC/1/ROOT/x'],
    ['APPL_PHYSICAL_PATH', physical],
    ['APP_POOL_ID', () => 'isapi-host'],
    ['AUTH_TYPE', () => ''],
    ['AUTH_USER', () => ''],
    ['AUTH_PASSWORD', () => ''],
    ['REMOTE_USER', () => ''],
    ['LOGON_USER', () => ''],
    ['UNMAPPED_REMOTE_USER', () => ''],
    ['HTTP_URL', () => /^\/x\/app\/vars\?name=HTTP_URL&q=1$/],
    ['UNENCODED_URL', () => /^\/x\/app\/vars\?name=UNENCODED_URL&q=1$/],
    ['CACHE_URL', () => /^\/x\/app\/vars\?name=CACHE_URL&q=1$/],
    ['HTTP_HOST', () => 'example.test:8080'],
  ];
  for (const [name, expected] of cases) {
    it(name, async () => {
      const v = await variable(name);
      const e = expected();
      if (e instanceof RegExp) expect(v).toMatch(e);
      else expect(v).toBe(e);
    });
  }

  it('ALL_HTTP: HTTP_NAME:value lines, upper case, - → _', async () => {
    const v = await variable('ALL_HTTP', { 'X-Some-Thing': 'v1' });
    expect(v).toContain('HTTP_HOST:example.test:8080');
  });

  it('ALL_RAW: the header lines as sent', async () => {
    const { responses } = await rawExchange(host.port, 'GET /x/vars?name=ALL_RAW HTTP/1.1\r\nHost: h\r\nX-Raw-Case: Keep\r\n\r\n');
    expect(responses[0]!.body.toString()).toContain('ok: Host: h\r\nX-Raw-Case: Keep\r\n');
  });

  it('HTTP_<NAME>: "_" matches "-" and repeated headers are joined with ", "', async () => {
    const { responses } = await rawExchange(host.port, 'GET /x/vars?name=HTTP_X_MULTI HTTP/1.1\r\nHost: h\r\nX-Multi: a\r\nX-Multi: b\r\n\r\n');
    expect(responses[0]!.body.toString()).toContain('ok: a, b');
  });

  it('HEADER_<Exact-Name>', async () => {
    expect(await variable('HEADER_X-Exact', { 'X-Exact': 'yes' })).toBe('yes');
  });

  it('UNICODE_<var>: UTF-16, sizes in bytes', async () => {
    const { responses } = await rawExchange(host.port, 'GET /x/uvars?name=URL HTTP/1.1\r\nHost: h\r\n\r\n');
    // "/x/uvars" = 8 UTF-16 units + the NUL = 18 bytes.
    expect(responses[0]!.body.toString()).toBe('size=18\n/x/uvars\n');
  });

  it('CONTENT_LENGTH and CONTENT_TYPE of a request with a body (echo sees them)', async () => {
    const { responses } = await rawExchange(host.port,
      'POST /x/post HTTP/1.1\r\nHost: h\r\nContent-Type: text/x-test\r\nContent-Length: 3\r\n\r\nabc');
    expect(responses[0]!.headers['x-body-total']).toBe('3');
  });
});
