// Test helpers: pack examples once, start isapi-host on a free port, talk HTTP over real sockets.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtNativeDir } from '../packer/paths';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
// One folder per vitest run (set by test/global-setup.ts), so concurrent runs never share packs.
export const testDist = process.env.ISAPI_TEST_DIST ?? path.join(root, 'build', 'test-dist', 'default');
export const isapiCli = path.join(root, 'bin', 'isapi.cjs');
// The checkout's own build (never prebuilt/): with ISAPI_SANITIZE=address|thread, the sanitizer
// build (scripts/build-native.js, .ci/sanitizers.sh).
export const nativeOut = builtNativeDir('linux-x64');
export const hostExe = path.join(nativeOut, 'isapi-host');

/**
 * With a sanitizer build, the host's environment preloads the sanitizer runtime: the workers it
 * starts inherit it, and they load the (sanitized) bridge as their Node-API addon.
 */
export function sanitizerEnv(): NodeJS.ProcessEnv {
  const kind = process.env.ISAPI_SANITIZE;
  if (!kind) return {};
  const lib = spawnSync('gcc', [`-print-file-name=${kind === 'thread' ? 'libtsan.so' : 'libasan.so'}`], { encoding: 'utf8' }).stdout.trim();
  return { LD_PRELOAD: lib };
}

export function runCli(args: string[], opts: { cwd?: string } = {}) {
  const r = spawnSync(process.execPath, [isapiCli, ...args], { cwd: opts.cwd ?? root, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The packed folder for a script, packed by the global setup (test/global-setup.ts). */
export function packed(name: string): string {
  const folder = path.join(testDist, name);
  if (!existsSync(folder)) throw new Error(`${folder} is missing: the global setup packs it`);
  return folder;
}

export interface Host {
  url: string;
  port: number;
  proc: ChildProcess;
  output: () => string;
  stop: () => Promise<void>;
}

/** Starts isapi-host with the given arguments plus --port 0, resolving once it listens. */
export function startHost(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Host> {
  const proc = spawn(hostExe, ['--port', '0', ...args], {
    env: { ...process.env, ISAPI_WORKERS: '2', ...sanitizerEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`isapi-host did not start:\n${out}`)), 60_000);
    const check = () => {
      const m = /listening on http:\/\/([\d.]+):(\d+)\//.exec(out);
      if (!m) return;
      clearTimeout(timer);
      proc.stdout!.off('data', check);
      const port = Number(m[2]);
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        proc,
        output: () => out,
        stop: () =>
          new Promise<void>((res) => {
            if (proc.exitCode !== null) return res();
            proc.once('exit', () => res());
            proc.kill('SIGTERM');
            setTimeout(() => proc.kill('SIGKILL'), 15_000).unref();
          }),
      });
    };
    proc.stdout!.on('data', check);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`isapi-host exited with ${code}:\n${out}`));
    });
  });
}

/** Starts the host serving packed folders, each at /<name>. */
export function serveFolders(names: string[], env: NodeJS.ProcessEnv = {}, extra: string[] = []): Promise<Host> {
  const args: string[] = [];
  for (const n of names) {
    const folder = packed(n);
    args.push('--vdir', `/${n}=${path.join(folder, `_${n}.so`)}`);
  }
  mkdirSync(path.join(testDist, 'logs'), { recursive: true });
  return startHost([...args, ...extra], env);
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  raw: Buffer;
}

/** Parses one HTTP/1.1 response from a buffer (Content-Length, chunked or close-delimited). */
export function parseResponse(buf: Buffer, closed: boolean): { res: RawResponse; used: number } | null {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = buf.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(head[0]!.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    const k = line.slice(0, i).trim().toLowerCase();
    const v = line.slice(i + 1).trim();
    headers[k] = headers[k] ? `${headers[k]}, ${v}` : v;
  }
  let pos = end + 4;
  if (status === 100) return { res: { status, headers, body: Buffer.alloc(0), raw: buf.subarray(0, pos) }, used: pos };
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (buf.length < pos + n) return null;
    return { res: { status, headers, body: buf.subarray(pos, pos + n), raw: buf.subarray(0, pos + n) }, used: pos + n };
  }
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const parts: Buffer[] = [];
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', pos);
      if (lineEnd < 0) return null;
      const size = parseInt(buf.subarray(pos, lineEnd).toString('latin1'), 16);
      if (buf.length < lineEnd + 2 + size + 2) return null;
      if (size === 0) {
        const used = lineEnd + 4;
        return { res: { status, headers, body: Buffer.concat(parts), raw: buf.subarray(0, used) }, used };
      }
      parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      pos = lineEnd + 2 + size + 2;
    }
  }
  if (!closed) return null;
  return { res: { status, headers, body: buf.subarray(pos), raw: buf }, used: buf.length };
}

/**
 * Sends raw bytes on one connection and collects `count` responses (or until the server closes).
 * Returns the responses and whether the server closed the connection.
 */
export function rawExchange(
  port: number,
  data: Buffer | string | Array<Buffer | string>,
  count = 1,
  timeoutMs = 30_000,
): Promise<{ responses: RawResponse[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const responses: RawResponse[] = [];
    let closed = false;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`timeout after ${responses.length} response(s); buffered: ${buf.subarray(0, 300).toString('latin1')}`));
    }, timeoutMs);
    const drain = () => {
      for (;;) {
        const r = parseResponse(buf, closed);
        if (!r) break;
        buf = buf.subarray(r.used);
        if (r.res.status !== 100) responses.push(r.res);
        if (responses.length >= count) break;
      }
      if (closed || responses.length >= count) {
        clearTimeout(timer);
        // Wait a moment for the server to close, so callers can tell keep-alive from close.
        const settle = closed ? 0 : 200;
        setTimeout(() => {
          sock.destroy();
          resolve({ responses, closed });
        }, settle);
      }
    };
    let settled = false;
    sock.on('data', (d) => {
      if (settled) return;
      buf = Buffer.concat([buf, d]);
      drain();
      if (responses.length >= count) settled = true;
    });
    sock.on('end', () => {
      closed = true;
      if (!settled) drain();
    });
    sock.on('error', (e) => {
      closed = true;
      if (responses.length) drain();
      else {
        clearTimeout(timer);
        reject(e);
      }
    });
    for (const part of Array.isArray(data) ? data : [data]) sock.write(part);
  });
}

export function bridgeLog(folder: string, name: string): string {
  const f = path.join(folder, 'logs', `${name}.log`);
  return existsSync(f) ? readFileSync(f, 'utf8') : '';
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `cond` until it returns a truthy value (returned) or `timeoutMs` passes (throws, with
 * `what` in the message). The way tests synchronise on an event they can only observe from
 * outside (a log line, a process that exited, a file that appeared), instead of a fixed sleep.
 */
export async function waitFor<T>(cond: () => T | Promise<T>, what: string, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Sends a request head and the first part of its body, waits until `arrived()` says the server
 * is reading it (a log line, say), then leaves: closes the connection mid-body.
 */
export async function leaveMidUpload(port: number, head: string, part: Buffer, arrived: () => boolean): Promise<void> {
  const sock = net.connect(port, '127.0.0.1');
  const failed = new Promise<never>((_, reject) => sock.on('error', reject));
  await Promise.race([new Promise<void>((resolve) => sock.once('connect', () => resolve())), failed]);
  sock.write(head);
  sock.write(part);
  await Promise.race([waitFor(arrived, 'the server to read the body'), failed]);
  sock.destroy();
}

/** Occurrences of `needle` in `text`. */
export const count = (text: string, needle: string) => text.split(needle).length - 1;

/** The pids of a process's direct children (the bridge's workers, for a host). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may contain spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid && fields[0] !== 'Z') out.push(Number(entry));
    } catch {
      // the process exited while we looked
    }
  }
  return out;
}
