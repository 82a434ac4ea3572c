// `isapi dev --target win-x64` under Wine (issue 15): the Windows isapi-host.exe and bridge DLL,
// with node.exe as the worker (no SEA); a save is answered by the new code with no failed
// request, a build error is served and recovered from, Ctrl+C stops everything. A private Wine
// prefix (ISAPI_WINEPREFIX). Skipped only when Wine is not installed (CI installs it).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findWine, killWine, temporaryWinePrefix } from '../../packer/wine';
import { isapiCli, waitFor } from '../helpers';

const skip = !findWine();
if (skip) console.warn('test/wine/dev: skipping: Wine is not installed (apt-get install -y wine64 wine)');

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

describe.skipIf(skip)('isapi dev --target win-x64 under Wine', () => {
  let dir = '';
  let prefix = '';
  let proc: ChildProcess;
  let out = '';
  let url = '';
  const save = (text: string) =>
    writeFileSync(
      path.join(dir, 'app.ts'),
      `import { SimpleExtension, type ECB } from 'node-isapi';
class App extends SimpleExtension {
  HttpExtensionProc(ecb: ECB) {
    const body = ${text} + ' on ' + process.platform + '\\n';
    ecb.SendResponseHeaders('200 OK', { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
    return ecb.WriteClient(body);
  }
}
export function __ExtensionFactory__() { return new App(); }
`,
    );

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'isapi-wine-dev-'));
    prefix = temporaryWinePrefix('wine-dev');
    save(`'v1'`);
    proc = spawn(process.execPath, [isapiCli, 'dev', 'app.ts', '--target', 'win-x64', '--port', '0'], {
      cwd: dir,
      env: { ...process.env, ISAPI_WINEPREFIX: prefix },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stdout!.on('data', (d) => (out += d));
    proc.stderr!.on('data', (d) => (out += d));
    url = await waitFor(() => /serving\s+\S+ at (http:\S+)/.exec(out)?.[1], `isapi dev under Wine to serve:\n${out}`, 180_000);
  }, 240_000);

  afterAll(() => {
    if (proc?.exitCode === null) proc.kill('SIGKILL');
    if (prefix) {
      killWine(prefix);
      rmSync(prefix, { recursive: true, force: true });
    }
    rmSync(dir, { recursive: true, force: true });
    const folder = /dev folder (\S+)/.exec(out)?.[1];
    if (folder) rmSync(folder, { recursive: true, force: true });
  });

  it('serves with node.exe workers, swaps on save without a failed request, and shows a build error', async () => {
    expect((await get(url)).body).toBe('v1 on win32\n');
    const failures: string[] = [];
    let v2 = 0;
    let stop = false;
    const client = async () => {
      while (!stop) {
        try {
          const r = await get(url);
          if (r.status !== 200 || !/^v[12] on win32\n$/.test(r.body)) failures.push(`${r.status} ${r.body}`);
          if (r.body.startsWith('v2')) v2++;
        } catch (err) {
          failures.push(String(err));
        }
      }
    };
    const clients = [client(), client()];
    save(`'v2'`);
    await waitFor(() => v2 >= 20, 'the new code to answer under load', 60_000);
    stop = true;
    await Promise.all(clients);
    expect(failures).toEqual([]);

    save(`'v3' +;`);
    const page = await waitFor(async () => {
      const r = await get(url);
      return r.status === 500 && r.body.includes('does not build') ? r : null;
    }, 'the dev error page', 60_000);
    expect(page.body).toMatch(/app\.ts:4:\d+: error: /);
    save(`'v3'`);
    await waitFor(async () => (await get(url)).body === 'v3 on win32\n', 'the fixed script', 60_000);
  }, 180_000);

  it('Ctrl+C stops the Windows host and its workers', async () => {
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    proc.kill('SIGINT');
    expect(await exited).toBe(0);
    await waitFor(async () => !(await get(url).then(() => true, () => false)), 'the port to close', 30_000);
  }, 60_000);
});
