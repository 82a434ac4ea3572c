// isapi-host with native C filters compiled here (native/host/test/*_filter.c): load order and
// priority, every notification in IIS's order with its data, the callbacks and every
// SF_STATUS_REQ_* verdict, asserted on the wire, in the access log and in what the filters saw.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawExchange, root, sleep, startHost, type Host } from '../helpers';

const dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-filters-'));
const src = (name: string) => path.join(root, 'native', 'host', 'test', `${name}.c`);

/** Compiles a test library; defines are -D flags. */
function compile(source: string, out: string, defines: string[] = []): string {
  const so = path.join(dir, `${out}.so`);
  execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-I', path.join(root, 'native', 'include'),
    ...defines.map((d) => `-D${d}`), '-o', so, src(source), '-lpthread']);
  return so;
}

const req = (p: string, headers: Record<string, string> = {}, method = 'GET') =>
  `${method} ${p} HTTP/1.1\r\nHost: x\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`;

/** Lines of an order_filter log, optionally from a given offset (bytes). */
const logLines = (file: string, from = 0) =>
  existsSync(file) ? readFileSync(file, 'utf8').slice(from).split('\n').filter(Boolean) : [];

async function waitFor(cond: () => boolean, ms = 5000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}

let ext: string;
beforeAll(() => {
  ext = compile('ecb_basics_ext', 'ecb_basics_ext');
});

describe('load order, priority and notification order', () => {
  let host: Host;
  const log = path.join(dir, 'order.log');
  const docroot = path.join(dir, 'www');
  beforeAll(async () => {
    execFileSync('mkdir', ['-p', docroot]);
    writeFileSync(path.join(docroot, 'hello.txt'), 'static hello\n');
    // Loaded A, B, C, D, S: A and D are LOW (A by default), B HIGH, C MEDIUM, S secure-port only.
    const a = compile('order_filter', 'order_a', ['NAME="A"']);
    const b = compile('order_filter', 'order_b', ['NAME="B"', 'ORDER=SF_NOTIFY_ORDER_HIGH']);
    const c = compile('order_filter', 'order_c', ['NAME="C"', 'ORDER=SF_NOTIFY_ORDER_MEDIUM']);
    const d = compile('order_filter', 'order_d', ['NAME="D"', 'ORDER=SF_NOTIFY_ORDER_LOW']);
    const s = compile('order_filter', 'order_s', ['NAME="S"', 'SECURE_ONLY']);
    host = await startHost(['--vdir', `/x=${ext}`, '--root', docroot,
      '--filter', a, '--filter', b, '--filter', c, '--filter', d, '--filter', s], { ORDER_FILTER_LOG: log });
  });
  afterAll(async () => {
    await host?.stop();
  });

  it('GetFilterVersion gets HTTP_FILTER_REVISION, in load order', () => {
    const lines = logLines(log).filter((l) => l.includes('GetFilterVersion'));
    expect(lines).toEqual(['A', 'B', 'C', 'D', 'S'].map((n) => `${n} GetFilterVersion server=0x00060000`));
  });

  it('one request: every notification in IIS order, HIGH → MEDIUM → LOW, SEND_RAW_DATA reversed', async () => {
    const from = readFileSync(log).length;
    const { responses, closed } = await rawExchange(host.port, req('/x/info', { Connection: 'close' }));
    expect(responses[0]!.status).toBe(200);
    expect(closed).toBe(true);
    await waitFor(() => logLines(log, from).filter((l) => l.includes('END_OF_NET_SESSION')).length === 4);
    const lines = logLines(log, from);
    const kinds = (name: string) => lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.split(' ')[1]);
    const iisOrder = ['READ_RAW_DATA', 'PREPROC_HEADERS', 'URL_MAP', 'AUTHENTICATION', 'AUTH_COMPLETE',
      'SEND_RESPONSE', 'SEND_RAW_DATA', 'SEND_RAW_DATA', 'END_OF_REQUEST', 'LOG', 'END_OF_NET_SESSION'];
    for (const n of ['A', 'B', 'C', 'D']) expect(kinds(n)).toEqual(iisOrder);
    expect(kinds('S')).toEqual([]);  // secure-port only: never called on a non-secure port
    const who = (kind: string) => lines.filter((l) => l.split(' ')[1] === kind).map((l) => l[0]);
    expect(who('PREPROC_HEADERS')).toEqual(['B', 'C', 'A', 'D']);
    expect(who('LOG')).toEqual(['B', 'C', 'A', 'D']);
    expect(who('SEND_RAW_DATA')).toEqual(['D', 'A', 'C', 'B', 'D', 'A', 'C', 'B']);
    // The data each notification carried.
    expect(lines).toContain('A PREPROC_HEADERS url=/x/info method=GET');
    expect(lines.find((l) => l.startsWith('A URL_MAP'))).toMatch(/^A URL_MAP url=\/x\/info path=\/.*\/info cb=\d+$/);
    expect(lines).toContain('A AUTHENTICATION user= password= cbUser=257 cbPassword=257');
    expect(lines).toContain('A SEND_RESPONSE status=200');
    expect(lines).toContain('A LOG status=200 target=/x/info op=GET');
    expect(lines).toContain('A END_OF_NET_SESSION requests=1');
    const raw = lines.find((l) => l.startsWith('A READ_RAW_DATA'))!;
    expect(raw).toBe(`A READ_RAW_DATA n=${Buffer.byteLength(req('/x/info', { Connection: 'close' }))}`);
  });

  it('pFilterContext lives per filter per connection (AddResponseHeaders shows the count)', async () => {
    const r1 = await rawExchange(host.port, [req('/x/info'), req('/x/info')], 2);
    expect(r1.responses.map((r) => r.headers['x-order-a'])).toEqual(['1', '2']);
    expect(r1.responses.map((r) => r.headers['x-order-b'])).toEqual(['1', '2']);
    const r2 = await rawExchange(host.port, req('/x/info'));
    expect(r2.responses[0]!.headers['x-order-a']).toBe('1');
  });

  it('AUTHENTICATION: the first request of a connection, then only requests with Authorization', async () => {
    const from = readFileSync(log).length;
    const basic = `Basic ${Buffer.from('u:p').toString('base64')}`;
    await rawExchange(host.port, [req('/x/info'), req('/x/info'), req('/x/info', { Authorization: basic })], 3);
    const auth = logLines(log, from).filter((l) => l.startsWith('A AUTHENTICATION'));
    expect(auth).toEqual(['A AUTHENTICATION user= password= cbUser=257 cbPassword=257',
      'A AUTHENTICATION user=u password=p cbUser=257 cbPassword=257']);
  });

  it('static files get the same notifications (URL_MAP names the file)', async () => {
    const from = readFileSync(log).length;
    const { responses } = await rawExchange(host.port, req('/hello.txt'));
    expect(responses[0]!.body.toString()).toBe('static hello\n');
    expect(responses[0]!.headers['x-order-c']).toBe('1');
    const lines = logLines(log, from).filter((l) => l.startsWith('C ') && !l.includes('END_OF_NET_SESSION'));
    expect(lines.map((l) => l.split(' ')[1])).toEqual(['READ_RAW_DATA', 'PREPROC_HEADERS', 'URL_MAP',
      'AUTHENTICATION', 'AUTH_COMPLETE', 'SEND_RESPONSE', 'SEND_RAW_DATA', 'SEND_RAW_DATA', 'END_OF_REQUEST', 'LOG']);
    expect(lines[2]).toBe(`C URL_MAP url=/hello.txt path=${path.join(docroot, 'hello.txt')} cb=4096`);
  });

  it('a 404 for an unmapped URL goes through SEND_RESPONSE and LOG too', async () => {
    const from = readFileSync(log).length;
    const { responses } = await rawExchange(host.port, req('/missing'));
    expect(responses[0]!.status).toBe(404);
    expect(logLines(log, from)).toContain('A SEND_RESPONSE status=404');
    expect(logLines(log, from)).toContain('A LOG status=404 target=/missing op=GET');
  });
});

describe('filters that change requests and responses', () => {
  let host: Host;
  const log = path.join(dir, 'effects-order.log');
  const logOut = path.join(dir, 'log-filter.txt');
  const accessLog = path.join(dir, 'effects-access.log');
  const docroot = path.join(dir, 'www2');
  const target = path.join(dir, 'remapped.txt');
  beforeAll(async () => {
    execFileSync('mkdir', ['-p', docroot]);
    writeFileSync(target, 'remapped by URL_MAP\n');
    const filters = [
      compile('deny_filter', 'deny_filter'),
      compile('rewrite_filter', 'rewrite_filter'),
      compile('raw_filter', 'raw_filter'),
      compile('log_filter', 'log_filter'),
      compile('order_filter', 'order_e', ['NAME="E"']),
    ];
    host = await startHost(['--vdir', `/x=${ext}`, '--root', docroot, '--access-log', accessLog,
      ...filters.flatMap((f) => ['--filter', f])],
    { ORDER_FILTER_LOG: log, LOG_FILTER_OUT: logOut, REWRITE_TARGET: target });
  });
  afterAll(async () => {
    await host?.stop();
  });

  const info = (text: string) =>
    Object.fromEntries(text.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

  it('PREPROC_HEADERS: SetHeader("url") rewrites before vdir mapping; AddHeader, delete, method', async () => {
    const { responses } = await rawExchange(host.port, req('/old/info?q=1', { 'X-Remove': 'gone', 'X-Method': 'PATCH' }));
    const v = info(responses[0]!.body.toString());
    expect(v.URL).toBe('/x/info');
    expect(v.QUERY_STRING).toBe('q=1');
    expect(v.REQUEST_METHOD).toBe('PATCH');
    const body = responses[0]!.body.toString();
    expect(body).toContain('HTTP_X_ADDED:yes');  // ALL_HTTP
    expect(body).toContain('X-Added: yes');  // ALL_RAW
    expect(body).not.toMatch(/X_REMOVE|X-Remove/);
  });

  it('filter callbacks: NORMALIZE_URL, GET_CONNID, GET_PROPERTY, SET_PROXY_INFO, SET_NEXT_READ_SIZE, SET_CERTIFICATE_INFO, GetHeader buffer protocol, GetServerVariable', async () => {
    const { responses } = await rawExchange(host.port, req('/x/probe'));
    const h = responses[0]!.headers;
    expect(h['x-probe-normalize']).toBe('/a/cA');
    expect(Number(h['x-probe-connid'])).toBeGreaterThan(0);
    expect(h['x-probe-instance']).toBe('1');
    expect(h['x-probe-small']).toBe('122 9');  // "/x/probe" + NUL
    expect(h['x-probe-missing']).toBe('1413');
    expect(h['x-probe-var']).toBe('127.0.0.1');
    expect(h['x-probe-bad']).toBe('87');
    expect(h['x-probe-proxy']).toBe('1');
    expect(h['x-probe-next-read']).toBe('1');
    expect(h['x-probe-cert']).toBe('87');
  });

  it('URL_MAP: the filter edits pszPhysicalPath (PATH_TRANSLATED) and picks the static file', async () => {
    const { responses } = await rawExchange(host.port, req('/x/mapped/info'));
    const v = info(responses[0]!.body.toString());
    expect(v['ecb.lpszPathTranslated']).toBe('/mapped/by/filter');
    expect(v.PATH_TRANSLATED).toBe('/mapped/by/filter');
    const s = await rawExchange(host.port, req('/remap.txt'));
    expect(s.responses[0]!.body.toString()).toBe('remapped by URL_MAP\n');
  });

  it('SEND_RESPONSE: headers added and deleted, the status changed', async () => {
    const post = await rawExchange(host.port, 'POST /x/post HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi');
    expect(post.responses[0]!.headers['x-send-response']).toBe('200');
    expect(post.responses[0]!.headers['x-preloaded']).toBeUndefined();
    expect(post.responses[0]!.headers['x-body-total']).toBe('2');
    const { responses } = await rawExchange(host.port, req('/nothing-here'));
    expect(responses[0]!.status).toBe(404);
    expect(responses[0]!.raw.toString('latin1')).toMatch(/^HTTP\/1\.1 404 Gone Fishing\r\n/);
  });

  it('FINISHED: the filter answered, the extension never runs, the connection closes', async () => {
    const { responses, closed } = await rawExchange(host.port, [req('/x/finished'), req('/x/info')], 2);
    expect(responses).toHaveLength(1);
    expect(responses[0]!.body.toString()).toBe('from the filter');
    expect(closed).toBe(true);
  });

  it('FINISHED_KEEP_CONN: the filter answered and the connection stays open', async () => {
    const { responses, closed } = await rawExchange(host.port, [req('/x/finished-keep'), req('/x/info')], 2);
    expect(responses[0]!.body.toString()).toBe('from the filter');
    expect(responses[1]!.status).toBe(200);
    expect(closed).toBe(false);
  });

  it('ERROR: 500 to the client and the connection closes', async () => {
    const { responses, closed } = await rawExchange(host.port, req('/x/filter-error'));
    expect(responses[0]!.status).toBe(500);
    expect(closed).toBe(true);
  });

  it('HANDLED_NOTIFICATION stops that notification chain only', async () => {
    const from = readFileSync(log).length;
    const { responses } = await rawExchange(host.port, req('/x/handled', { Connection: 'close' }));
    expect(responses[0]!.status).toBe(200);
    await waitFor(() => logLines(log, from).some((l) => l.includes('END_OF_NET_SESSION')));
    const kinds = logLines(log, from).map((l) => l.split(' ')[1]);
    expect(kinds).not.toContain('PREPROC_HEADERS');  // deny_filter (HIGH) handled it
    expect(kinds).toContain('URL_MAP');
    expect(kinds).toContain('LOG');
  });

  it('AUTHENTICATION: Basic credentials pre-filled, rewritten by the filter, seen as server variables', async () => {
    const basic = `Basic ${Buffer.from('alice:pw').toString('base64')}`;
    const { responses } = await rawExchange(host.port, req('/x/info', { Authorization: basic }));
    const v = info(responses[0]!.body.toString());
    expect(v.REMOTE_USER).toBe('alice-checked');
    expect(v.AUTH_TYPE).toBe('Basic');
    const pw = await rawExchange(host.port, req('/x/vars?name=AUTH_PASSWORD', { Authorization: basic }));
    expect(pw.responses[0]!.body.toString()).toContain('ok: pw');
  });

  it('denied by a filter (ERROR_ACCESS_DENIED): 401, ACCESS_DENIED fires, ADD_HEADERS_ON_DENIAL added', async () => {
    const from = readFileSync(log).length;
    const basic = `Basic ${Buffer.from('bad:x').toString('base64')}`;
    const { responses } = await rawExchange(host.port, req('/x/info', { Authorization: basic }));
    expect(responses[0]!.status).toBe(401);
    expect(responses[0]!.headers['www-authenticate']).toBe('Basic realm="test"');
    expect(responses[0]!.headers['x-denied-reason']).toBe(String(0x1 | 0x4));  // LOGON | FILTER
    expect(logLines(log, from).some((l) => l.startsWith('E ACCESS_DENIED url=/x/info reason=0x5'))).toBe(true);
  });

  it('an extension 401 raises ACCESS_DENIED before the response is sent', async () => {
    const { responses } = await rawExchange(host.port, req('/x/status?code=401'));
    expect(responses[0]!.status).toBe(401);
    expect(responses[0]!.headers['x-denied-reason']).toBe('8');  // SF_DENIED_APPLICATION
    expect(responses[0]!.body.toString()).toBe('status\n');
  });

  it('ACCESS_DENIED returning FINISHED replaces the 401 with the filter\'s own response', async () => {
    const { responses, closed } = await rawExchange(host.port, req('/x/takeover/status?code=401'));
    expect(responses[0]!.status).toBe(401);
    expect(responses[0]!.body.toString()).toBe('filtered');
    expect(closed).toBe(true);
  });

  it('READ_RAW_DATA rewrites request bytes (head and body) before parsing', async () => {
    const { responses } = await rawExchange(host.port, req('/x/vars?name=HTTP_X_WORD', { 'X-Word': 'secret' }));
    expect(responses[0]!.body.toString()).toContain('ok: XXXXXX');
    const body = 'a secret and another secret';
    const post = await rawExchange(host.port, `POST /x/post HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    expect(post.responses[0]!.body.toString()).toBe('a XXXXXX and another XXXXXX');
  });

  it('READ_RAW_DATA: READ_NEXT with the bytes swallowed reads on', async () => {
    const res = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(host.port, '127.0.0.1');
      let out = '';
      sock.on('data', (d) => {
        out += d.toString('latin1');
        if (/\r\n\r\n[\s\S]*\n$/.test(out) && out.includes('ecb_basics_ext')) {
          sock.destroy();
          resolve(out);
        }
      });
      sock.on('error', reject);
      sock.write('PING\r\n');
      setTimeout(() => sock.write(req('/x/after-ping')), 200);
      setTimeout(() => reject(new Error(`no response: ${out}`)), 5000);
    });
    expect(res).toMatch(/^HTTP\/1\.1 200 OK/);
  });

  it('SEND_RAW_DATA replaces body bytes with an AllocMem buffer', async () => {
    const { responses } = await rawExchange(host.port, req('/x/upper/q'));
    expect(responses[0]!.body.toString()).toBe('ECB_BASICS_EXT /X/UPPER/Q\n');
  });

  it('SF_REQ_DISABLE_NOTIFICATIONS holds for the rest of the connection', async () => {
    const { responses } = await rawExchange(host.port, [req('/x/disable'), req('/x/upper/q')], 2);
    expect(responses[1]!.body.toString()).toBe('ecb_basics_ext /x/upper/q\n');
    const fresh = await rawExchange(host.port, req('/x/upper/q'));
    expect(fresh.responses[0]!.body.toString()).toBe('ECB_BASICS_EXT /X/UPPER/Q\n');
  });

  it('LOG: the filter sees the log fields and its replacements reach the access log', async () => {
    await rawExchange(host.port, req('/x/log-me?a=b'));
    await waitFor(() => existsSync(logOut) && readFileSync(logOut, 'utf8').includes('/x/log-me'));
    expect(readFileSync(logOut, 'utf8')).toMatch(/^200 \/x\/log-me GET \d+$/m);
    const access = readFileSync(accessLog, 'utf8');
    expect(access).toMatch(/ GET \/filtered\/x\/log-me p=1 \d+ log-user 127\.0\.0\.1 /);
  });
});

describe('loading', () => {
  it('GetFilterVersion returning FALSE: the host refuses to start with one line', async () => {
    const bad = compile('order_filter', 'order_fail', ['NAME="Z"', 'FAIL_VERSION']);
    const err = await startHost(['--filter', bad]).then(() => null, (e: Error) => e.message);
    expect(err).toContain('exited with 1');
    const lines = err!.split('\n').filter(Boolean);
    expect(lines.slice(1)).toEqual([`isapi-host: GetFilterVersion of ${bad} returned FALSE: the filter refused to start (see its own log for why)`]);
  });

  it('a library that is both extension and filter is loaded once and gets both version calls', async () => {
    const both = compile('both_ext_filter', 'both_ext_filter');
    const host = await startHost(['--filter', both, '--vdir', `/both=${both}`]);
    try {
      const { responses } = await rawExchange(host.port, req('/both/'));
      expect(responses[0]!.headers['x-both-filter']).toBe('1');
      expect(responses[0]!.body.toString()).toBe('filter_version_calls=1 extension_version_calls=1 filter_seen=1\n');
    } finally {
      await host.stop();
    }
  });

  it('TerminateFilter is called at shutdown', async () => {
    const log = path.join(dir, 'terminate.log');
    const f = compile('order_filter', 'order_t', ['NAME="T"']);
    const host = await startHost(['--filter', f], { ORDER_FILTER_LOG: log });
    await rawExchange(host.port, req('/nothing'));
    await host.stop();
    expect(logLines(log).at(-1)).toBe('T TerminateFilter flags=2');
  });
});
