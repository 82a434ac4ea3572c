// Echoes the request back: method, path, query, selected server variables, then the body.
// The successor of pywin32's server-variable sample. Large bodies stream through: the
// handler reads with ReadClient and writes each piece as it arrives.
import { SimpleExtension, type ECB } from 'node-isapi';

const VARIABLES = [
  'REQUEST_METHOD', 'URL', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING', 'CONTENT_TYPE',
  'REMOTE_ADDR', 'REMOTE_USER', 'SERVER_PORT', 'SERVER_PROTOCOL', 'HTTP_HOST', 'HTTP_USER_AGENT',
];

class Echo extends SimpleExtension {
  async HttpExtensionProc(ecb: ECB) {
    // /echo/body returns exactly the request body (used to check uploads byte for byte).
    if (ecb.PathInfo.endsWith('/body')) return this.echoBody(ecb);

    const lines = [`${ecb.Method} ${ecb.PathInfo}${ecb.QueryString ? '?' + ecb.QueryString : ''}`];
    for (const name of VARIABLES) lines.push(`${name}=${await ecb.GetServerVariable(name, '')}`);
    const body = await ecb.readBody();
    lines.push(`body-length=${body.length}`, '');
    const head = Buffer.from(lines.join('\n'));
    ecb.SendResponseHeaders('200 OK', {
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': head.length + body.length,
    });
    await ecb.WriteClient(head);
    await ecb.WriteClient(body);
  }

  private async echoBody(ecb: ECB) {
    const chunked = ecb.TotalBytes === 0xffffffff;
    // A known length is echoed with Content-Length; an unknown one with chunked framing that
    // the extension writes itself (ISAPI servers never chunk extension output).
    ecb.SendResponseHeaders('200 OK', {
      'Content-Type': ecb.ContentType || 'application/octet-stream',
      ...(chunked ? { 'Transfer-Encoding': 'chunked' } : { 'Content-Length': ecb.TotalBytes }),
    });
    for (;;) {
      const piece = await ecb.ReadClient(256 * 1024);
      if (piece.length === 0) break;
      if (chunked) {
        await ecb.WriteClient(Buffer.concat([Buffer.from(piece.length.toString(16) + '\r\n'), piece, Buffer.from('\r\n')]));
      } else {
        await ecb.WriteClient(piece);
      }
    }
    if (chunked) await ecb.WriteClient('0\r\n\r\n');
  }
}

export function __ExtensionFactory__() {
  return new Echo();
}
