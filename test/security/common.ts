// Shared by the security suites: compile the native security extension, send one raw request,
// and check that the server still answers afterwards.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { expect } from 'vitest';
import { rawExchange, root, type RawResponse } from '../helpers';

/** native/host/test/security_ext.c as a Linux shared library in `dir`. */
export function compileSecurityExt(dir: string): string {
  const so = path.join(dir, 'security_ext.so');
  execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-I', path.join(root, 'native', 'include'),
    '-o', so, path.join(root, 'native', 'host', 'test', 'security_ext.c')]);
  return so;
}

/** The status line exactly as sent. */
export function statusLine(r: RawResponse): string {
  return r.raw.subarray(0, r.raw.indexOf('\r\n')).toString('latin1');
}

export const get = (target: string, extra = '') => `GET ${target} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`;

/** One request on a fresh connection: its one response and whether the server then closed. */
export async function exchange(port: number, request: string | Buffer): Promise<{ res: RawResponse; closed: boolean }> {
  const { responses, closed } = await rawExchange(port, request, 1);
  expect(responses, `no response to ${JSON.stringify(request.toString().slice(0, 120))}`).toHaveLength(1);
  return { res: responses[0]!, closed };
}

/** The server still serves a plain request on a new connection. */
export async function expectAlive(port: number, target: string, body: string | RegExp): Promise<void> {
  const { res } = await exchange(port, get(target));
  expect(statusLine(res)).toBe('HTTP/1.1 200 OK');
  if (typeof body === 'string') expect(res.body.toString('latin1')).toBe(body);
  else expect(res.body.toString('latin1')).toMatch(body);
}

/** No header of the response came from request data (the injected names used by the suites). */
export function expectNoInjection(r: RawResponse): void {
  const head = r.raw.subarray(0, r.raw.indexOf('\r\n\r\n')).toString('latin1');
  expect(head).not.toMatch(/injected/i);
  expect(r.headers['set-cookie']).toBeUndefined();
}
