// pywin32's "advanced" sample, in TypeScript:
//   /advanced/            every server variable and ECB field (text; ?format=json for JSON)
//   /advanced/unhealthy   ReportUnhealthy(reason): the server marks the process unhealthy
//                         (isapi-host: GET /__isapi-host/health answers 503 with the reason)
//   /advanced/reload      InternalReloadException: this request gets 503 + Retry-After, fresh
//                         workers replace the old ones, no other request fails
//   /advanced/log         HttpStatusCode, LogData and AppendLogParameter in the access log
//   /advanced/crash       an uncaught exception: 500, and the log names this file and line
// and pywin32's reload on file change: the workers watch advanced.reload beside them; once it
// changes, the next request reloads them. `install reload` (a custom verb of the installer)
// touches it, so an operator can recycle the workers without restarting the web server. The
// install hooks log what they do, as pywin32's PostInstall did.
//   isapi pack examples/advanced.ts && isapi serve dist/advanced  →  curl http://127.0.0.1:8080/advanced/
import { readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { InternalReloadException, SimpleExtension, type ECB, type InstallParameters } from 'node-isapi';

const RELOAD_FILE = 'advanced.reload';

/** Server variables a dump shows (docs/isapi.md §5); missing ones are shown empty. */
const VARIABLES = [
  'ALL_HTTP', 'ALL_RAW', 'APPL_MD_PATH', 'APPL_PHYSICAL_PATH', 'AUTH_PASSWORD', 'AUTH_TYPE', 'AUTH_USER',
  'CONTENT_LENGTH', 'CONTENT_TYPE', 'GATEWAY_INTERFACE', 'HTTPS', 'INSTANCE_ID', 'INSTANCE_META_PATH',
  'LOCAL_ADDR', 'LOGON_USER', 'PATH_INFO', 'PATH_TRANSLATED', 'QUERY_STRING', 'REMOTE_ADDR', 'REMOTE_HOST',
  'REMOTE_PORT', 'REMOTE_USER', 'REQUEST_METHOD', 'SCRIPT_NAME', 'SERVER_NAME', 'SERVER_PORT',
  'SERVER_PORT_SECURE', 'SERVER_PROTOCOL', 'SERVER_SOFTWARE', 'URL', 'HTTP_HOST', 'HTTP_USER_AGENT',
  'UNICODE_URL',
];

/** The reload file's modification time (0 when absent). */
function mtime(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

class Advanced extends SimpleExtension {
  private readonly reloadFile = path.join(path.dirname(process.execPath), RELOAD_FILE);
  private reloadStamp = mtime(this.reloadFile);

  /**
   * pywin32 watched the script's own file; a packed worker is replaced on redeploy by the bridge
   * already, so the file watched here is one an operator touches on purpose. Every worker sees
   * the change; the first to claim it (an exclusive create) asks for the reload, which replaces
   * them all, and the others keep serving until their replacements are ready.
   */
  private checkReloadFile() {
    const stamp = mtime(this.reloadFile);
    if (stamp === this.reloadStamp) return;
    this.reloadStamp = stamp;
    try {
      writeFileSync(`${this.reloadFile}.${stamp}`, String(process.pid), { flag: 'wx' });
    } catch {
      return; // another worker claimed this change
    }
    throw new InternalReloadException(`${RELOAD_FILE} changed`);
  }

  async HttpExtensionProc(ecb: ECB) {
    this.checkReloadFile();

    const action = ecb.PathInfo.split('/')[2] ?? '';
    const params = new URLSearchParams(ecb.QueryString);
    switch (action) {
      case '':
        return this.dump(ecb, params.get('format') === 'json');
      case 'pid':
        return this.text(ecb, String(process.pid));
      case 'unhealthy': {
        const reason = params.get('reason') ?? 'advanced: reported on request';
        await ecb.ReportUnhealthy(reason);
        return this.text(ecb, `reported unhealthy: ${reason}\n`);
      }
      case 'reload':
        throw new InternalReloadException('asked for by /advanced/reload');
      case 'log':
        // What the server's access log records for this request: the status and the extra
        // query text (LogData and AppendLogParameter both reach the query field).
        await ecb.AppendLogParameter(`&advanced=${params.get('note') ?? 'yes'}`);
        ecb.LogData = 'logdata-from-advanced';
        ecb.SendResponseHeaders('202 Accepted', { 'Content-Length': 0 });
        return;
      case 'crash':
        throw new Error('advanced: an uncaught exception, on purpose');
      default:
        ecb.SendResponseHeaders('404 Not Found', { 'Content-Type': 'text/plain', 'Content-Length': 10 });
        await ecb.WriteClient('not found\n');
    }
  }

  private async dump(ecb: ECB, json: boolean) {
    const fields = {
      Version: `0x${ecb.Version.toString(16)}`,
      Method: ecb.Method,
      QueryString: ecb.QueryString,
      PathInfo: ecb.PathInfo,
      PathTranslated: ecb.PathTranslated,
      ContentType: ecb.ContentType,
      TotalBytes: ecb.TotalBytes,
      AvailableBytes: ecb.AvailableBytes,
      ConnID: ecb.ConnID,
      IsKeepAlive: ecb.IsKeepAlive(),
      IsKeepConn: await ecb.IsKeepConn(),
    };
    const variables: Record<string, string> = {};
    for (const name of VARIABLES) variables[name] = await ecb.GetServerVariable(name, '');
    const body = json
      ? JSON.stringify({ fields, variables, pid: process.pid }, null, 2)
      : [
          '# ECB',
          ...Object.entries(fields).map(([k, v]) => `${k}=${v}`),
          '# server variables',
          ...Object.entries(variables).map(([k, v]) => `${k}=${v.replace(/\r\n/g, '\\r\\n')}`),
          '',
        ].join('\n');
    ecb.SendResponseHeaders('200 OK', {
      'Content-Type': json ? 'application/json' : 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
    });
    await ecb.WriteClient(body);
  }

  private text(ecb: ECB, body: string) {
    ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    return ecb.WriteClient(body);
  }
}

export function __ExtensionFactory__() {
  return new Advanced();
}

// pywin32's install hooks and custom verbs (`install --help` lists the verbs).
export const install: InstallParameters = {
  postInstall: (ctx) => ctx.log(`advanced: installed ${ctx.parameters.virtualDirs.map((v) => v.name).join(', ')} (${ctx.backend})`),
  postRemove: (ctx) => ctx.log('advanced: removed'),
  verbs: {
    reload: {
      description: `recycle the running workers (touches ${RELOAD_FILE} beside them)`,
      run: (ctx) => {
        const file = path.join(ctx.folder, RELOAD_FILE);
        if (!ctx.dryRun) {
          // Earlier changes' claims (advanced.reload.<mtime>) are done with.
          for (const f of readdirSync(ctx.folder)) if (f.startsWith(`${RELOAD_FILE}.`)) rmSync(path.join(ctx.folder, f), { force: true });
          writeFileSync(file, `${new Date().toISOString()}\n`);
        }
        ctx.log(`advanced: ${ctx.dryRun ? 'would touch' : 'touched'} ${file}; the next request reloads the workers`);
      },
    },
  },
};
