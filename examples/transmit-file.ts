// pywin32's TransmitFile sample (test.py), in TypeScript: the web server sends a file itself
// (HSE_REQ_TRANSMIT_FILE); the worker only says which file and what goes around it. The file is
// the one the URL maps to (MapURLToPath): /transmit-file/<name> → <the vdir's folder>/<name>,
// i.e. beside the worker when served with `isapi serve`.
//   GET /transmit-file/<name>             200, the whole file (status + head carry the headers)
//   GET with Range: bytes=a-b (or a-)     206, offset/length pick the part
//   GET /transmit-file/<name>?wrap=html   head and tail wrap the text in an HTML page
//   HEAD                                  the headers only
//   isapi pack examples/transmit-file.ts && cp README.md dist/transmit-file/ && isapi serve dist/transmit-file
//   curl http://127.0.0.1:8080/transmit-file/README.md -r 0-99
import { statSync } from 'node:fs';
import path from 'node:path';
import { SimpleExtension, type ECB } from 'node-isapi';

const TYPES: Record<string, string> = {
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/markdown; charset=utf-8',
  '.json': 'application/json',
  '.html': 'text/html; charset=utf-8',
  '.bin': 'application/octet-stream',
};

/** A single `bytes=a-b` / `bytes=a-` / `bytes=-n` range within size; null if absent; 'bad' if unsatisfiable. */
function parseRange(header: string | undefined, size: number): { offset: number; length: number } | null | 'bad' {
  const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let first: number;
  let last: number;
  if (m[1] === '') {
    first = Math.max(0, size - Number(m[2]));
    last = size - 1;
  } else {
    first = Number(m[1]);
    last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (first >= size || last < first) return 'bad';
  return { offset: first, length: last - first + 1 };
}

const escapeHtml = (s: string) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!);

class TransmitFileSample extends SimpleExtension {
  async HttpExtensionProc(ecb: ECB) {
    if (ecb.PathInfo.split('/').includes('..')) return this.status(ecb, '400 Bad Request');
    const file = await ecb.MapURLToPath(ecb.PathInfo);
    let size: number;
    try {
      const st = statSync(file);
      if (!st.isFile()) return this.status(ecb, '404 Not Found');
      size = st.size;
    } catch {
      return this.status(ecb, '404 Not Found');
    }
    const type = TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
    const name = path.basename(file);

    if (new URLSearchParams(ecb.QueryString).get('wrap') === 'html') {
      // head: the header lines, the blank line, then the start of the body; tail: the end of it.
      const top = `<!DOCTYPE html>\n<html><head><title>${escapeHtml(name)}</title></head><body><pre>\n`;
      const bottom = `</pre></body></html>\n`;
      const length = Buffer.byteLength(top) + size + Buffer.byteLength(bottom);
      return ecb.TransmitFile(file, {
        status: '200 OK',
        head: `Content-Type: text/html; charset=utf-8\r\nContent-Length: ${length}\r\n\r\n${top}`,
        tail: bottom,
      });
    }

    const range = parseRange(await ecb.GetServerVariable('HTTP_RANGE', ''), size);
    if (range === 'bad') {
      ecb.SendResponseHeaders('416 Range Not Satisfiable', { 'Content-Range': `bytes */${size}`, 'Content-Length': 0 });
      return;
    }
    const headers = range
      ? `Content-Type: ${type}\r\nContent-Range: bytes ${range.offset}-${range.offset + range.length - 1}/${size}\r\nContent-Length: ${range.length}\r\nAccept-Ranges: bytes\r\n\r\n`
      : `Content-Type: ${type}\r\nContent-Length: ${size}\r\nAccept-Ranges: bytes\r\n\r\n`;
    const status = range ? '206 Partial Content' : '200 OK';
    if (ecb.Method === 'HEAD') {
      ecb.SendResponseHeaders(status, headers);
      return;
    }
    // offset/length select the bytes; length 0 would mean "to the end", so an empty file sends nothing.
    return ecb.TransmitFile(file, { status, head: headers, offset: range?.offset ?? 0, length: range?.length ?? size });
  }

  private status(ecb: ECB, status: string) {
    const body = `${status}\n`;
    ecb.SendResponseHeaders(status, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
    return ecb.WriteClient(body);
  }
}

export function __ExtensionFactory__() {
  return new TransmitFileSample();
}
