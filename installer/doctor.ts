// `install doctor`: checks for the failures IIS and local-host users meet, each with its fix
// (reference/prior-art.md §A/§B: bitness 0x800700c1 / 404.4, handler order vs StaticFile,
// 404.2 restriction list, ISAPI features, folder rights, a worker that cannot start, a port).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ResolvedInstallParameters } from '../runtime/install_params';
import type { PackedFolder } from './folder';
import { APPCMD, handlerName, identityAccount, q, type IisTargetPaths } from './iis';
import { DEFAULT_BIND, DEFAULT_PORT, hostInvocation, readHostConfig } from './local_config';
import { marker } from './local';
import { bitnessOf, peMachine } from './pe';
import { spawnSync } from 'node:child_process';

export interface Check {
  name: string;
  status: 'ok' | 'fail' | 'warn' | 'skip';
  detail: string;
  fix?: string;
}

function checkFiles(folder: PackedFolder): Check {
  const bad: string[] = [];
  for (const [file, info] of Object.entries(folder.manifest.files)) {
    const p = path.join(folder.dir, file);
    if (!existsSync(p)) bad.push(`${file} is missing`);
    else if (createHash('sha256').update(readFileSync(p)).digest('hex') !== info.sha256) bad.push(`${file} differs from what was packed`);
  }
  return bad.length
    ? { name: 'folder', status: 'fail', detail: bad.join('; '), fix: 'copy the whole packed folder again (or pack it again): the bridge and the worker must match' }
    : { name: 'folder', status: 'ok', detail: `${Object.keys(folder.manifest.files).length} files match ${folder.name}.manifest.json` };
}

function checkWorkerLog(folder: PackedFolder): Check {
  const log = path.join(folder.dir, 'logs', `${folder.name}.log`);
  if (!existsSync(log)) return { name: 'worker', status: 'skip', detail: `no ${path.relative(folder.dir, log)} yet: the worker has not run (send a request first)` };
  const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
  const tail = lines.slice(-12);
  // Trouble after the last worker that became ready: exits, start failures, backoff.
  const lastReady = lines.map((l, i) => (/worker \d+ ready/.test(l) ? i : -1)).reduce((a, b) => Math.max(a, b), -1);
  const failing = lines.slice(lastReady + 1).some((l) => /failed to start|exited|died|backing off|cannot/i.test(l));
  if (failing) {
    return {
      name: 'worker',
      status: 'fail',
      detail: `the worker is failing; the end of ${log}:\n      ${tail.join('\n      ')}`,
      fix: 'fix the error above in the script (or its environment), pack again, and reinstall',
    };
  }
  return { name: 'worker', status: 'ok', detail: `${log} shows no start failure` };
}

function checkWorkerFile(folder: PackedFolder): Check {
  if (!folder.worker || !existsSync(folder.worker)) return { name: 'worker file', status: 'fail', detail: 'the worker executable is missing', fix: 'pack again' };
  if (process.platform !== 'win32' && folder.target !== 'win-x64' && (statSync(folder.worker).mode & 0o111) === 0) {
    return { name: 'worker file', status: 'fail', detail: `${folder.worker} is not executable`, fix: `chmod +x ${folder.worker}` };
  }
  return { name: 'worker file', status: 'ok', detail: path.basename(folder.worker) };
}

function checkPort(bind: string, port: number): Promise<Check> {
  if (port === 0) return Promise.resolve({ name: 'port', status: 'ok', detail: 'port 0: the host picks a free port' });
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        resolve({ name: 'port', status: 'warn', detail: `${bind}:${port} is in use (by a running \`isapi serve\`, or another program)`, fix: `stop the other program, or set "port" in the config file` });
      } else if (err.code === 'EACCES') {
        resolve({ name: 'port', status: 'fail', detail: `${bind}:${port} cannot be opened: ports below 1024 need privileges`, fix: 'set "port" to 1024 or above in the config file' });
      } else {
        resolve({ name: 'port', status: 'fail', detail: `${bind}:${port} cannot be opened: ${err.message}`, fix: `check "bind" (an address of this machine) and "port" in the config file` });
      }
    });
    srv.listen(port, bind, () => srv.close(() => resolve({ name: 'port', status: 'ok', detail: `${bind}:${port} can be opened` })));
  });
}

export async function doctorLocal(folder: PackedFolder, params: ResolvedInstallParameters, file: string): Promise<Check[]> {
  const checks: Check[] = [checkFiles(folder), checkWorkerFile(folder)];
  const host = process.platform === 'win32' ? 'win-x64' : 'linux-x64';
  checks.push(
    folder.target === host
      ? { name: 'platform', status: 'ok', detail: `${folder.target} folder on a ${host} host` }
      : {
          name: 'platform',
          status: 'fail',
          detail: `this folder was packed for ${folder.target}; the local host here loads ${host} folders` +
            (folder.target === 'win-x64' ? ` (the bridge is a ${folder.bitness}-bit DLL, machine ${peMachine(folder.bridge)})` : ''),
          fix: `pack for this machine (isapi pack <script>), or run the win-x64 folder under Wine with isapi-host.exe`,
        },
  );
  if (!existsSync(file)) {
    checks.push({ name: 'config', status: 'fail', detail: `${file} does not exist`, fix: `run install --config ${file}` });
    return checks;
  }
  try {
    const { config } = readHostConfig(file);
    const mine = config.applications.filter((a) => a.installedBy === marker(folder)).map((a) => a.path);
    const missing = params.virtualDirs.map((v) => v.name).filter((n) => !mine.includes(n));
    checks.push(
      missing.length
        ? { name: 'config', status: 'fail', detail: `${file} lacks ${missing.join(', ')}`, fix: `run install --config ${file}` }
        : { name: 'config', status: 'ok', detail: `${file} serves ${mine.join(', ')}` },
    );
    try {
      hostInvocation(file, { hostSupportsFilters: true });
      checks.push({ name: 'host arguments', status: 'ok', detail: 'the file translates to isapi-host arguments' });
    } catch (err) {
      checks.push({ name: 'host arguments', status: 'fail', detail: (err as Error).message, fix: 'edit the file as the message says' });
    }
    checks.push(await checkPort(config.bind ?? DEFAULT_BIND, config.port ?? DEFAULT_PORT));
  } catch (err) {
    checks.push({ name: 'config', status: 'fail', detail: (err as Error).message, fix: 'fix the file, or delete it and install again' });
  }
  checks.push(checkWorkerLog(folder));
  return checks;
}

function appcmd(args: string): { code: number; out: string } {
  const exe = APPCMD.replace(/%windir%/i, process.env.windir ?? 'C:\\Windows');
  const r = spawnSync(exe, [args], { encoding: 'utf8', windowsVerbatimArguments: true, windowsHide: true });
  return { code: r.status ?? 1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

export function doctorIis(folder: PackedFolder, params: ResolvedInstallParameters, paths: IisTargetPaths): Check[] {
  const checks: Check[] = [checkFiles(folder), checkWorkerFile(folder)];
  const pool = params.appPool.name;
  const dllBits = folder.target === 'win-x64' ? bitnessOf(peMachine(folder.bridge)) : undefined;
  if (folder.target !== 'win-x64') {
    checks.push({ name: 'bitness', status: 'fail', detail: `this folder was packed for ${folder.target}: IIS loads Windows DLLs only`, fix: 'isapi pack <script> --target win-x64' });
  } else {
    checks.push({ name: 'bitness', status: 'ok', detail: `${folder.bridgeFile} is ${dllBits}-bit (PE header); the pool is planned ${params.appPool.bitness}-bit` });
  }
  if (process.platform !== 'win32') {
    checks.push({
      name: 'IIS',
      status: 'skip',
      detail: 'IIS checks (ISAPI features, pool bitness, handler order, restriction list, folder rights) run on the Windows server: run install.exe doctor there',
    });
    checks.push(checkWorkerLog(folder));
    return checks;
  }
  const modules = appcmd('list config /section:system.webServer/globalModules').out;
  checks.push(
    /name="IsapiModule"/i.test(modules)
      ? { name: 'ISAPI features', status: 'ok', detail: 'IsapiModule is installed' }
      : {
          name: 'ISAPI features',
          status: 'fail',
          detail: 'IIS has no ISAPI Extensions feature (IsapiModule): requests would get 404.3 or 500',
          fix: 'Install-WindowsFeature Web-ISAPI-Ext,Web-ISAPI-Filter (Windows Server) or Enable-WindowsOptionalFeature -Online -FeatureName IIS-ISAPIExtensions,IIS-ISAPIFilter',
        },
  );
  const poolCfg = appcmd(`list apppool ${q(pool)} /text:enable32BitAppOnWin64`);
  if (poolCfg.code !== 0) {
    checks.push({ name: 'pool', status: 'fail', detail: `application pool ${pool} does not exist`, fix: 'run install.exe' });
  } else {
    const pool32 = /true/i.test(poolCfg.out);
    const ok = (dllBits === 32) === pool32;
    checks.push(
      ok
        ? { name: 'pool bitness', status: 'ok', detail: `${pool} is ${pool32 ? 32 : 64}-bit like the DLL` }
        : {
            name: 'pool bitness',
            status: 'fail',
            detail: `${pool} is ${pool32 ? 32 : 64}-bit but ${folder.bridgeFile} is ${dllBits}-bit: IIS fails with 0x800700c1 (HTTP 404.4/500)`,
            fix: `${APPCMD} set apppool ${q(pool)} /enable32BitAppOnWin64:${dllBits === 32 ? 'true' : 'false'}`,
          },
    );
  }
  for (const v of params.virtualDirs) {
    const location = v.name === '/' ? params.site : `${params.site}${v.name}`;
    const handlers = appcmd(`list config ${q(location)} /section:system.webServer/handlers`).out;
    const name = handlerName(folder.name, v.scriptMaps[0]!.extension);
    const ours = handlers.search(new RegExp(`name="${name}"`, 'i'));
    const statik = handlers.search(/name="StaticFile"/i);
    checks.push(
      ours < 0
        ? { name: `handler ${v.name}`, status: 'fail', detail: `no handler mapping ${name} at ${location}`, fix: 'run install.exe' }
        : statik >= 0 && statik < ours
          ? {
              name: `handler ${v.name}`,
              status: 'fail',
              detail: `StaticFile comes before ${name}: requests get 404 instead of reaching the extension`,
              fix: `IIS Manager → ${location} → Handler Mappings → View Ordered List: move ${name} above StaticFile (or remove and install again)`,
            }
          : { name: `handler ${v.name}`, status: 'ok', detail: `${name} is mapped before StaticFile` },
    );
  }
  const restr = appcmd('list config /section:system.webServer/security/isapiCgiRestriction').out;
  const esc = paths.dll.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  checks.push(
    new RegExp(`path="${esc}"[^>]*allowed="true"`, 'i').test(restr)
      ? { name: 'restriction list', status: 'ok', detail: `${paths.dll} is allowed` }
      : {
          name: 'restriction list',
          status: 'fail',
          detail: `${paths.dll} is not allowed in ISAPI and CGI Restrictions: requests get 404.2`,
          fix: `${APPCMD} set config /section:system.webServer/security/isapiCgiRestriction /+"[path='${paths.dll}',allowed='True']" /commit:apphost`,
        },
  );
  const account = identityAccount(params.appPool.identity, pool);
  if (account) {
    const r = spawnSync('icacls', [paths.folder], { encoding: 'utf8' });
    const ok = (r.stdout ?? '').toLowerCase().includes(account.toLowerCase());
    checks.push(
      ok
        ? { name: 'folder rights', status: 'ok', detail: `${account} has rights on ${paths.folder}` }
        : {
            name: 'folder rights',
            status: 'fail',
            detail: `${account} has no rights on ${paths.folder}: the pool cannot load the DLL or start the worker (500)`,
            fix: `icacls ${q(paths.folder)} /grant ${q(`${account}:(OI)(CI)RX`)}`,
          },
    );
  }
  checks.push(checkWorkerLog(folder));
  return checks;
}

export function formatChecks(checks: Check[]): string {
  const mark = { ok: 'ok  ', fail: 'FAIL', warn: 'warn', skip: 'skip' } as const;
  const lines: string[] = [];
  for (const c of checks) {
    lines.push(`${mark[c.status]} ${c.name}: ${c.detail}`);
    if (c.fix && c.status !== 'ok') lines.push(`     fix: ${c.fix}`);
  }
  return lines.join('\n');
}
