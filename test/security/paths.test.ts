// Issue 11, items 3 and 4: one URL→path rule (native/host/url_path.cc) behind MAP_URL_TO_PATH,
// MAP_URL_TO_PATH_EX, EXEC_URL and static files, and request URLs resolved as HTTP.sys does;
// the Host header validated (RFC 9112 §3.2) and an absolute-form authority winning for HTTP_HOST.
// Each case asserts the exact status line and that the server still answers afterwards.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packed, startHost, type Host } from '../helpers';
import { compileSecurityExt, exchange, expectAlive, get, statusLine } from './common';

// dir/            the native extension's folder (the /c vdir's physical directory) + secret.txt
// dir/www/        --root: static files
const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-paths-'));
const www = path.join(dir, 'www');
let host: Host;
let folder: string;

beforeAll(async () => {
  mkdirSync(path.join(www, 'sub'), { recursive: true });
  writeFileSync(path.join(www, 'file.txt'), 'static file\n');
  writeFileSync(path.join(www, 'sub', 'index.html'), 'sub index\n');
  writeFileSync(path.join(dir, 'secret.txt'), 'outside the root\n');
  folder = packed('security');
  mkdirSync(path.join(folder, 'logs'), { recursive: true });
  host = await startHost(['--vdir', `/c=${compileSecurityExt(dir)}`, '--vdir', `/sec=${path.join(folder, '_security.so')}`,
    '--root', www], { ISAPI_WORKERS: '1' });
});
afterAll(async () => {
  // Every case ran against one host: it must still be the same process.
  const died = host && (host.proc.exitCode !== null || host.proc.signalCode !== null);
  const output = host?.output() ?? '';
  await host?.stop();
  expect(died, `isapi-host exited during the suite:\n${output}`).toBe(false);
});

const alive = () => expectAlive(host.port, '/file.txt', 'static file\n');
async function answer(target: string, request = get(target)): Promise<{ line: string; body: string }> {
  const { res } = await exchange(host.port, request);
  return { line: statusLine(res), body: res.body.toString('latin1') };
}

// [what, URL as the extension passes it (raw), expected body with D = the /c folder, W = --root]
const MAP_CASES: Array<[string, string, string]> = [
  ['a file in the vdir', '/c/a.txt', 'path=D/a.txt'],
  ['dot segments inside the vdir', '/c/sub/./x/../a.txt', 'path=D/sub/a.txt'],
  ['".." above the root', '/../../etc/passwd', 'err=87'],
  ['".." out of the vdir and above the root', '/c/../../etc/passwd', 'err=87'],
  ['encoded dots', '/c/%2e%2e/%2e%2e/etc/passwd', 'err=87'],
  ['encoded slashes', '/c/..%2f..%2f..%2fetc%2fpasswd', 'err=87'],
  ['backslashes', '/c/..\\..\\..\\etc\\passwd', 'err=87'],
  ['encoded backslashes', '/c/..%5c..%5c..%5cetc%5cpasswd', 'err=87'],
  ['double-encoded dots stay a name (decoded once)', '/c/%252e%252e/secret.txt', 'path=D/%2e%2e/secret.txt'],
  ['".." out of the vdir into the root', '/c/../file.txt', 'path=W/file.txt'],
  ['a URL outside every vdir', '/sub/index.html', 'path=W/sub/index.html'],
  ['a device name', '/c/CON', 'err=87'],
  ['a device name with an extension', '/c/aux.txt', 'err=87'],
  ['a device name deeper down', '/c/x/nul', 'err=87'],
  ['a numbered device', '/c/com1.log', 'err=87'],
  ['an alternate data stream', '/c/a.txt::$DATA', 'err=87'],
  ['a trailing dot (Windows drops it)', '/c/a.txt.', 'err=87'],
  ['a drive letter', '/C:/Windows/win.ini', 'err=87'],
  ['an encoded NUL', '/c/a.txt%00.html', 'err=87'],
];

const expand = (s: string) => s.replace('path=D', `path=${dir}`).replace('path=W', `path=${www}`);

describe('HSE_REQ_MAP_URL_TO_PATH: decoded once, dot segments and backslashes resolved, nothing leaves the root', () => {
  it.each(MAP_CASES)('%s: %s', async (_what, url, expected) => {
    const r = await answer(`/c/map?u=${url}`);
    expect(r.line).toBe('HTTP/1.1 200 OK');
    expect(r.body).toBe(expand(expected));
    await alive();
  });
});

describe('HSE_REQ_MAP_URL_TO_PATH_EX: the same rule', () => {
  it.each(MAP_CASES)('%s: %s', async (_what, url, expected) => {
    const r = await answer(`/c/mapex?u=${url}`);
    expect(r.line).toBe('HTTP/1.1 200 OK');
    expect(r.body).toBe(expand(expected));
    await alive();
  });
});

describe("ecb.MapURLToPath / MapURLToPathEx (TypeScript) inherit it", () => {
  it.each([
    ['map', '/../../etc/passwd', 'err=ExtensionError MapURLToPath 87: MapURLToPath: the server refused the URL'],
    ['mapex', '/sec/..%5c..%5c..%5cetc%5cpasswd', 'err=ExtensionError MapURLToPathEx 87: MapURLToPathEx: the server refused the URL'],
    ['map', '/sec/NUL.txt', 'err=ExtensionError MapURLToPath 87'],
  ])('%s %s → ExtensionError 87', async (what, url, expected) => {
    const r = await answer(`/sec/${what}?u=${encodeURIComponent(url)}`);
    expect(r.line).toBe('HTTP/1.1 200 OK');
    expect(r.body.startsWith(expected)).toBe(true);
    await alive();
  });

  it('a URL inside the vdir maps into the packed folder', async () => {
    const r = await answer(`/sec/map?u=${encodeURIComponent('/sec/x/../page.txt')}`);
    expect(r.line).toBe('HTTP/1.1 200 OK');
    expect(r.body).toBe(`path=${path.join(folder, 'page.txt')}`);
  });
});

describe('EXEC_URL and SEND_URL child requests', () => {
  it('a child URL that climbs above the root fails with ERROR_INVALID_PARAMETER', async () => {
    expect(await answer('/c/exec?u=/../../etc/passwd')).toEqual({ line: 'HTTP/1.1 200 OK', body: 'err=87' });
    await alive();
  });

  it('encoded and backslash climbs fail the same way', async () => {
    expect(await answer('/c/exec?u=/c/..%5c..%5csecret.txt')).toEqual({ line: 'HTTP/1.1 200 OK', body: 'err=87' });
    await alive();
  });

  it('dot segments inside are resolved before the child is routed', async () => {
    expect(await answer('/c/exec?u=/c/x/../info')).toEqual({ line: 'HTTP/1.1 200 OK', body: 'url=/c/info pathinfo=/c/info' });
  });

  it('a static child: the file, via the same mapping', async () => {
    expect(await answer('/c/exec?u=/sub/../file.txt')).toEqual({ line: 'HTTP/1.1 200 OK', body: 'static file\n' });
  });

  it('ecb.ExecURL (TypeScript) with a climb: ExtensionError 87', async () => {
    const r = await answer(`/sec/exec?u=${encodeURIComponent('/sec/../../secret.txt')}`);
    expect(r.line).toBe('HTTP/1.1 200 OK');
    expect(r.body).toMatch(/^err=ExtensionError ExecURL 87/);
    await alive();
  });
});

describe('static files (--root)', () => {
  it.each([
    ['a file', '/file.txt', 'HTTP/1.1 200 OK', 'static file\n'],
    ['dot segments inside the root', '/sub/../file.txt', 'HTTP/1.1 200 OK', 'static file\n'],
    ['a directory index', '/sub/', 'HTTP/1.1 200 OK', 'sub index\n'],
    ['".." above the root', '/../secret.txt', 'HTTP/1.1 400 Bad Request', null],
    ['encoded dots above the root', '/%2e%2e/secret.txt', 'HTTP/1.1 400 Bad Request', null],
    ['an encoded backslash climb', '/..%5csecret.txt', 'HTTP/1.1 400 Bad Request', null],
    ['a backslash climb', '/sub\\..\\..\\secret.txt', 'HTTP/1.1 400 Bad Request', null],
    ['double-encoded dots: a literal name, not found', '/%252e%252e/secret.txt', 'HTTP/1.1 404 Not Found', null],
    ['a device name', '/con', 'HTTP/1.1 404 Not Found', null],
    ['a device name with an extension', '/sub/lpt1.txt', 'HTTP/1.1 404 Not Found', null],
    ['an alternate data stream', '/file.txt::$DATA', 'HTTP/1.1 404 Not Found', null],
    ['a trailing dot', '/file.txt.', 'HTTP/1.1 404 Not Found', null],
  ])('%s: %s → %s', async (_what, target, line, body) => {
    const r = await answer(target);
    expect(r.line).toBe(line);
    if (body !== null) expect(r.body).toBe(body);
    else expect(r.body).not.toContain('outside the root');
    await alive();
  });
});

describe('request URLs: dot segments resolved as HTTP.sys does (KB 896287), a climb above "/" is 400', () => {
  it.each([
    ['/c/x/../info', '/c/info'],
    ['/c/./info', '/c/info'],
    ['/c/%2e%2e/c/info', '/c/info'],
    ['/c/x/..%2finfo', '/c/info'],
    ['/c/x/..%5cinfo', '/c/info'],
    ['/c/x\\..\\info', '/c/info'],
    ['/c//info', '/c/info'],
  ])('%s is served as %s (URL and PATH_INFO)', async (target, url) => {
    const r = await answer(target);
    expect(r.line).toBe('HTTP/1.1 200 OK');
    expect(r.body).toBe(`url=${url} pathinfo=${url}`);
  });

  it('a TypeScript extension sees the resolved PATH_INFO too', async () => {
    const r = await answer('/sec/a/b/../../info');
    expect(r).toEqual({ line: 'HTTP/1.1 200 OK', body: 'pathinfo=/sec/info host=x' });
  });

  it.each(['/c/../../info', '/..', '/c/%2e%2e/%2e%2e/info', '/c/..%2f..%2finfo', '/c/..%5c..%5cinfo', '/c\\..\\..\\info'])(
    '%s climbs above "/": 400',
    async (target) => {
      expect((await answer(target)).line).toBe('HTTP/1.1 400 Bad Request');
      await alive();
    },
  );
});

describe('the Host header (RFC 9112 §3.2)', () => {
  const withHost = (host: string, target = '/c/var?n=HTTP_HOST') => `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

  it.each(['a b', 'a/b@c', 'a@b', 'x:8a', 'a\tb', '[::1', 'a%zz', 'a"b'])('Host: %s → 400', async (h) => {
    expect((await answer('', withHost(h))).line).toBe('HTTP/1.1 400 Bad Request');
    await alive();
  });

  it.each(['example.com', 'example.com:8080', 'exa_mple-1.com', '127.0.0.1:80', '[::1]:8080', 'xn--bcher-kva.example', 'a%41b'])(
    'Host: %s is accepted and is HTTP_HOST',
    async (h) => {
      expect(await answer('', withHost(h))).toEqual({ line: 'HTTP/1.1 200 OK', body: h });
    },
  );

  it('an empty Host is accepted (RFC 9112: a target without authority)', async () => {
    expect((await answer('', withHost('', '/c/info'))).line).toBe('HTTP/1.1 200 OK');
  });

  it('absolute-form: the authority wins for HTTP_HOST and SERVER_NAME', async () => {
    const req = (n: string) => `GET http://good.example:81/c/var?n=${n} HTTP/1.1\r\nHost: evil.example\r\n\r\n`;
    expect(await answer('', req('HTTP_HOST'))).toEqual({ line: 'HTTP/1.1 200 OK', body: 'good.example:81' });
    expect(await answer('', req('SERVER_NAME'))).toEqual({ line: 'HTTP/1.1 200 OK', body: 'good.example' });
  });

  it.each(['http://user@good.example/c/info', 'http://a%zz/c/info', 'http://a/b@c/c/info'])(
    'absolute-form with a bad authority %s → 400 (or the path as given)',
    async (target) => {
      const r = await answer('', `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`);
      if (target === 'http://a/b@c/c/info') expect(r.line).toBe('HTTP/1.1 404 Not Found');  // authority "a", path "/b@c/c/info"
      else expect(r.line).toBe('HTTP/1.1 400 Bad Request');
      await alive();
    },
  );
});
