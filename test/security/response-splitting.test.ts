// Issue 11, items 1 and 2: nothing a client sends can split a response, whichever API carries
// it into a header. Three layers, each tested on its own: the runtime's APIs (ExtensionError /
// FilterError naming the header), the bridge (a worker that skips the runtime gets a 500), and
// the host (an extension's header text is parsed by length; conflicting framing is refused).
// Every case asserts the exact status line and that the server answers the next request.
import { mkdirSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bridgeLog, packed, rawExchange, startHost, type Host } from '../helpers';
import { compileSecurityExt, exchange, expectAlive, expectNoInjection, get, statusLine } from './common';

const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-security-'));
let host: Host;
let folder: string;

beforeAll(async () => {
  folder = packed('security');
  mkdirSync(path.join(folder, 'logs'), { recursive: true });
  const so = path.join(folder, '_security.so');
  // The packed script is both an extension (/sec) and a global filter (PREPROC_HEADERS).
  host = await startHost(['--vdir', `/sec=${so}`, '--filter', so, '--vdir', `/c=${compileSecurityExt(dir)}`], { ISAPI_WORKERS: '1' });
});
afterAll(async () => {
  await host?.stop();
});

const enc = encodeURIComponent;
const SPLIT = 'a\r\nSet-Cookie: injected=1';
const alive = () => expectAlive(host.port, '/sec/ok', 'security /sec/ok');

async function refusedByRuntime(target: string, call: string, names: string | RegExp) {
  const { res } = await exchange(host.port, get(target));
  expect(statusLine(res)).toBe('HTTP/1.1 500 Internal Server Error');
  const body = res.body.toString('latin1');
  expect(body).toContain(`ExtensionError ${call} 87`);
  if (typeof names === 'string') expect(body).toContain(names);
  else expect(body).toMatch(names);
  expectNoInjection(res);
  await alive();
}

describe('the ECB APIs refuse CR, LF, NUL and non-token names with an ExtensionError naming the header', () => {
  it.each([
    ['CR LF in a value', 'object-value', SPLIT, 'header "X-Echo"'],
    ['CR LF CR LF in a value (a body)', 'object-value', 'a\r\n\r\n<h1>injected</h1>', 'header "X-Echo"'],
    ['a bare CR in a value', 'object-value', 'a\rSet-Cookie: injected=1', 'header "X-Echo"'],
    ['a bare LF in a value', 'object-value', 'a\nSet-Cookie: injected=1', 'header "X-Echo"'],
    ['a NUL in a value', 'object-value', 'a\0b', 'header "X-Echo"'],
    ['CR LF in a name', 'object-name', 'X-A\r\nSet-Cookie: injected=1', 'header name "X-A\\r\\nSet-Cookie: injected=1"'],
    ['a space in a name', 'object-name', 'X A', 'header name "X A"'],
    ['a colon in a name', 'object-name', 'X-A: b', 'header name "X-A: b"'],
    ['CR LF in one value of an array', 'array-value', SPLIT, 'header "Set-Cookie"'],
    ['a bare CR in the string form', 'string', 'a\rSet-Cookie: injected=1', 'header "X-Echo"'],
    ['a bare LF in the string form', 'string', 'a\nSet-Cookie: injected=1', 'bare LF'],
    ['a NUL in the string form', 'string', 'a\0b', 'header "X-Echo"'],
    ['CR LF in the status', 'status', `OK\r\nSet-Cookie: injected=1`, 'status "200 OK\\r\\nSet-Cookie: injected=1"'],
  ])('SendResponseHeaders, %s: 500, the header named', async (_what, mode, v, names) => {
    await refusedByRuntime(`/sec/hdr?m=${mode}&v=${enc(v)}`, 'SendResponseHeaders', names);
  });

  it('Redirect to a URL with CR LF', async () => {
    await refusedByRuntime(`/sec/redirect?v=${enc(`/x${SPLIT}`)}`, 'Redirect', 'URL "/xa\\r\\nSet-Cookie: injected=1"');
  });

  it('SendURL to a URL with CR LF', async () => {
    await refusedByRuntime(`/sec/sendurl?v=${enc(`/sec/ok${SPLIT}`)}`, 'SendURL', 'URL "/sec/oka\\r\\nSet-Cookie');
  });

  it('the fetch adapter: a Response whose header carries CR LF never reaches the wire (500)', async () => {
    const { res } = await exchange(host.port, get(`/sec/fetch?v=${enc(SPLIT)}`));
    expect(statusLine(res)).toBe('HTTP/1.1 500 Internal Server Error');
    expectNoInjection(res);
    await alive();
  });

  it('a plain value still goes through', async () => {
    const { res } = await exchange(host.port, get(`/sec/hdr?m=object-value&v=${enc('plain value; ok')}`));
    expect(statusLine(res)).toBe('HTTP/1.1 200 OK');
    expect(res.headers['x-echo']).toBe('plain value; ok');
    expect(res.body.toString()).toBe('sent');
  });
});

describe('the filter APIs refuse them with a FilterError naming the call', () => {
  it.each([
    ['set-value', 'SetHeader'],
    ['add-name', 'AddHeader'],
    ['set-url', 'SetHeader'],
    ['add-response-headers', 'AddResponseHeaders'],
    ['send-response-header', 'SendResponseHeader'],
    ['headers-on-denial', 'AddHeadersOnDenial'],
  ])('%s → FilterError from %s; the request goes on unchanged', async (f, call) => {
    const { res } = await exchange(host.port, get(`/sec/ok?f=${f}`));
    expect(statusLine(res)).toBe('HTTP/1.1 200 OK');
    expect(res.headers['x-filter-error']).toBe(`FilterError ${call} 87`);
    expect(res.body.toString()).toBe('security /sec/ok');
    expectNoInjection(res);
    await alive();
  });
});

describe('the bridge checks again: a worker that skips the runtime gets a 500, never a split', () => {
  it.each([
    ['a bare LF in a value', 'a\nSet-Cookie: injected=1'],
    ['a bare CR in a value', 'a\rSet-Cookie: injected=1'],
    ['a NUL in a value', 'a\0Set-Cookie: injected=1'],
  ])('headers with %s: 500 and the connection closes', async (_what, v) => {
    const { res, closed } = await exchange(host.port, get(`/sec/bypass?v=${enc(v)}`));
    expect(statusLine(res)).toBe('HTTP/1.1 500 Internal Server Error');
    expect(res.body.toString()).toContain('response header that is not allowed');
    expectNoInjection(res);
    expect(closed).toBe(true);
    await alive();
  });

  it('a status with CR LF: 500', async () => {
    const { res } = await exchange(host.port, get(`/sec/bypass?v=x&status=${enc('200 OK\r\nSet-Cookie: injected=1')}`));
    expect(statusLine(res)).toBe('HTTP/1.1 500 Internal Server Error');
    expectNoInjection(res);
    await alive();
    expect(bridgeLog(folder, 'security')).toMatch(/refused a response \(500 sent instead.*\): status/);
  });

  it("a filter reply with CR LF in a header value: the bridge refuses the reply, the request fails with 500", async () => {
    const { res } = await exchange(host.port, get('/sec/ok?f=bypass'));
    expect(statusLine(res)).toBe('HTTP/1.1 500 Internal Server Error');
    expectNoInjection(res);
    await alive();
    expect(bridgeLog(folder, 'security')).toContain("refused a filter's changes");
  });
});

describe('the host owns the framing and reads header text by length', () => {
  it.each([
    ['nul-in-header', 'HTTP/1.1 500 Internal Server Error'],
    ['two-content-lengths', 'HTTP/1.1 500 Internal Server Error'],
    ['content-length-and-chunked', 'HTTP/1.1 500 Internal Server Error'],
    ['content-length-19-digits', 'HTTP/1.1 500 Internal Server Error'],
    ['content-length-not-a-number', 'HTTP/1.1 500 Internal Server Error'],
    ['bare-cr-in-value', 'HTTP/1.1 500 Internal Server Error'],
    ['space-in-name', 'HTTP/1.1 500 Internal Server Error'],
    ['line-without-colon', 'HTTP/1.1 500 Internal Server Error'],
    ['crlf-in-status', 'HTTP/1.1 500 Internal Server Error'],
    ['nul-in-status', 'HTTP/1.1 500 Internal Server Error'],
  ])('a native extension sends %s: %s, connection closed', async (c, line) => {
    const { res, closed } = await exchange(host.port, get(`/c/hdr?c=${c}`));
    expect(statusLine(res)).toBe(line);
    expectNoInjection(res);
    expect(closed).toBe(true);
    await expectAlive(host.port, '/c/hdr?c=plain', 'ok');
  });

  it('a NUL in the body part of the header text is carried, not cut', async () => {
    const { res, closed } = await exchange(host.port, get('/c/hdr?c=nul-in-body'));
    expect(statusLine(res)).toBe('HTTP/1.1 200 OK');
    expect(res.body).toEqual(Buffer.from('a\0b', 'latin1'));
    expect(closed).toBe(false);
  });

  it('a terminating NUL counted in cchHeader is dropped (extensions do that)', async () => {
    const { res, closed } = await exchange(host.port, get('/c/hdr?c=nul-terminator-counted'));
    expect(statusLine(res)).toBe('HTTP/1.1 200 OK');
    expect(res.body.toString('latin1')).toBe('ok');
    expect(closed).toBe(false);
  });

  it('the same Content-Length twice is one length: 200', async () => {
    const { res } = await exchange(host.port, get('/c/hdr?c=same-content-length-twice'));
    expect(statusLine(res)).toBe('HTTP/1.1 200 OK');
    expect(res.body.toString()).toBe('ok');
  });

  it('two Content-Lengths on a keep-alive connection: one 500, then the connection closes (nothing framed by the last one)', async () => {
    const { responses, closed } = await rawExchange(host.port, [get('/c/hdr?c=two-content-lengths'), get('/c/hdr?c=plain')], 2);
    expect(responses.map(statusLine)).toEqual(['HTTP/1.1 500 Internal Server Error']);
    expect(closed).toBe(true);
    await expectAlive(host.port, '/c/hdr?c=plain', 'ok');
  });

  it.each([
    ['two-cl', 'two different Content-Length headers'],
    ['cl-te', 'both Content-Length and Transfer-Encoding'],
  ])('a TypeScript extension with conflicting framing (%s): 500, connection closed', async (c, why) => {
    const { responses, closed } = await rawExchange(host.port, [get(`/sec/framing?c=${c}`), get('/sec/ok')], 2);
    expect(responses.map(statusLine)).toEqual(['HTTP/1.1 500 Internal Server Error']);
    expect(closed).toBe(true);
    expect(host.output()).toContain(why);
    await alive();
  });

  it('SEND_URL_REDIRECT_RESP to a URL with CR LF fails with ERROR_INVALID_PARAMETER instead of being cut', async () => {
    const { res } = await exchange(host.port, get('/c/redirect-crlf'));
    expect(statusLine(res)).toBe('HTTP/1.1 200 OK');
    expect(res.body.toString()).toBe('err=87');
  });
});
