// `install doctor`: checks for the failures IIS and local-host users meet, each with its fix
// (docs/iis-pitfalls.md: bitness 0x800700c1 / 404.4, handler order vs StaticFile,
// 404.2 restriction list, ISAPI features, folder rights, a worker that cannot start, a port).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ResolvedInstallParameters } from '../runtime/install_params';
import { isWindowsFolder, type PackedFolder } from './folder';
import { findIis, type InstallState } from './state';
import { APPCMD, ICACLS, handlerName, identityAccount, q, run, vdirLocation, type IisTargetPaths } from './iis';
import { DEFAULT_BIND, DEFAULT_PORT, hostInvocation, readHostConfig } from './local_config';
import { marker } from './local';
import { bitnessOf, peMachine } from './pe';

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
  if (process.platform !== 'win32' && !isWindowsFolder(folder) && (statSync(folder.worker).mode & 0o111) === 0) {
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
            (isWindowsFolder(folder) ? ` (the bridge is a ${folder.bitness}-bit DLL, machine ${peMachine(folder.bridge)})` : ''),
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
  return run(`${APPCMD} ${args}`);
}

/** The rights icacls lists for an account (F, M, RX, R, W…), and whether any entry denies. */
export function rightsOf(icaclsOut: string, account: string): { rights: Set<string>; denied: boolean } {
  const rights = new Set<string>();
  let denied = false;
  const want = account.toLowerCase();
  for (const raw of icaclsOut.split(/\r?\n/)) {
    const line = raw.trim();
    const i = line.toLowerCase().indexOf(want + ':');
    if (i < 0 || (i > 0 && !/\s/.test(line[i - 1]!))) continue;
    for (const m of line.slice(i + want.length + 1).matchAll(/\(([A-Z,]+)\)/g)) {
      for (const r of m[1]!.split(',')) {
        if (r === 'DENY') denied = true;
        else if (!['OI', 'CI', 'IO', 'NP', 'I'].includes(r)) rights.add(r);
      }
    }
  }
  return { rights, denied };
}

const canRead = (r: Set<string>) => r.has('F') || r.has('M') || r.has('RX');
const canWrite = (r: Set<string>) => r.has('F') || r.has('M');

export function doctorIis(folder: PackedFolder, params: ResolvedInstallParameters, paths: IisTargetPaths, state?: InstallState): Check[] {
  const checks: Check[] = [checkFiles(folder), checkWorkerFile(folder)];
  const pool = params.appPool.name;
  const site = params.site;
  const dllBits = isWindowsFolder(folder) ? bitnessOf(peMachine(folder.bridge)) : undefined;
  if (!isWindowsFolder(folder)) {
    checks.push({ name: 'bitness', status: 'fail', detail: `this folder was packed for ${folder.target}: IIS loads Windows DLLs only`, fix: 'isapi pack <script> --target win-x64 (or win-ia32 for a 32-bit pool)' });
  } else {
    checks.push({ name: 'bitness', status: 'ok', detail: `${folder.bridgeFile} is ${dllBits}-bit (PE header); the pool is planned ${params.appPool.bitness}-bit` });
  }
  if (process.platform !== 'win32') {
    checks.push({
      name: 'IIS',
      status: 'skip',
      detail: 'IIS checks (ISAPI features, pool state and bitness, handler order and access policy, sections, modules, restriction list, filters, folder rights, bindings) run on the Windows server: run install.exe doctor there',
    });
    checks.push(checkWorkerLog(folder));
    return checks;
  }
  const record = state ? findIis(state, site) : undefined;
  if (record?.complete === false) {
    checks.push({
      name: 'install',
      status: 'fail',
      detail: `an install stopped after ${record.steps.length} step(s) (killed or failed): IIS is half-configured for ${folder.name}`,
      fix: 'run install.exe again to finish it, or install.exe remove to undo it',
    });
  }
  const modules = appcmd('list config /section:system.webServer/globalModules').out;
  const wantsFilter = params.filters.length > 0;
  const missingModules = ['IsapiModule', ...(wantsFilter ? ['IsapiFilterModule'] : [])].filter((m) => !new RegExp(`name="${m}"`, 'i').test(modules));
  checks.push(
    missingModules.length === 0
      ? { name: 'ISAPI features', status: 'ok', detail: `${wantsFilter ? 'IsapiModule and IsapiFilterModule are' : 'IsapiModule is'} installed` }
      : {
          name: 'ISAPI features',
          status: 'fail',
          detail: `IIS lacks ${missingModules.join(' and ')}: ${missingModules.includes('IsapiModule') ? 'requests get 404.3 or 500' : 'the filter never loads'}`,
          fix: 'Install-WindowsFeature Web-ISAPI-Ext,Web-ISAPI-Filter (Windows Server) or Enable-WindowsOptionalFeature -Online -FeatureName IIS-ISAPIExtensions,IIS-ISAPIFilter',
        },
  );

  // The site: stopped means IIS could not bind it (another program on the port) or someone stopped it.
  const siteState = appcmd(`list site ${q(site)} /text:state`);
  const bindings = appcmd(`list site ${q(site)} /text:bindings`).out.trim();
  if (siteState.code !== 0) {
    checks.push({ name: 'site', status: 'fail', detail: `IIS has no site "${site}": ${siteState.out}`, fix: 'pass --site with an existing site (appcmd list site)' });
  } else if (!/started/i.test(siteState.out)) {
    const ports = [...bindings.matchAll(/:(\d+):/g)].map((m) => m[1]);
    checks.push({
      name: 'site',
      status: 'fail',
      detail: `site "${site}" (${bindings}) is ${siteState.out.trim()}: requests are refused. When IIS cannot start a site, another program holds one of its ports`,
      fix: `netstat -ano | findstr ":${ports[0] ?? '80'} " shows who holds the port; stop it or change the binding, then ${APPCMD} start site ${q(site)}`,
    });
  } else {
    checks.push({ name: 'site', status: 'ok', detail: `site "${site}" is started (${bindings})` });
  }

  if (params.virtualDirs.length) {
    const poolState = appcmd(`list apppool ${q(pool)} /text:state`);
    if (poolState.code !== 0) {
      checks.push({ name: 'pool', status: 'fail', detail: `application pool ${pool} does not exist: requests get 503`, fix: 'run install.exe' });
    } else {
      const pool32 = /true/i.test(appcmd(`list apppool ${q(pool)} /text:enable32BitAppOnWin64`).out);
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
      checks.push(
        /started/i.test(poolState.out)
          ? { name: 'pool state', status: 'ok', detail: `${pool} is started` }
          : {
              name: 'pool state',
              status: 'fail',
              detail: `${pool} is ${poolState.out.trim()}: every request gets 503 Service Unavailable. IIS stops a pool itself after rapid failures (5 worker crashes in 5 minutes): see the Windows event log (WAS) and logs\\${folder.name}.log`,
              fix: `fix the cause, then ${APPCMD} start apppool /apppool.name:${q(pool)}`,
            },
      );
    }
  }

  for (const v of params.virtualDirs) {
    const location = vdirLocation(site, v.name);
    const listed = appcmd(`list config ${q(location)} /section:system.webServer/handlers`);
    if (listed.code !== 0) {
      checks.push({
        name: `config ${v.name}`,
        status: 'fail',
        detail: `IIS cannot read the handlers section at ${location}: requests get 500.19. appcmd said: ${listed.out}`,
        fix: `fix the file and line it names; for a locked section: ${APPCMD} unlock config ${q(location)} /section:system.webServer/handlers /commit:apphost`,
      });
      continue;
    }
    const handlers = listed.out;
    for (const m of v.scriptMaps) {
      const name = handlerName(folder.name, m.extension);
      const ours = handlers.search(new RegExp(`name="${name}"`, 'i'));
      const statik = handlers.search(/name="StaticFile"/i);
      checks.push(
        ours < 0
          ? { name: `handler ${v.name}`, status: 'fail', detail: `no handler mapping ${name} at ${location}: requests get 404 (or StaticFile serves them)`, fix: 'run install.exe' }
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
    // A script map (requireAccess=Script) needs Script in the section's accessPolicy.
    if (v.scriptMaps.some((m) => m.extension !== '*')) {
      const policy = appcmd(`list config ${q(location)} /section:system.webServer/handlers /text:accessPolicy`).out.trim();
      checks.push(
        /script|execute/i.test(policy)
          ? { name: `access policy ${v.name}`, status: 'ok', detail: `handlers accessPolicy is "${policy}"` }
          : {
              name: `access policy ${v.name}`,
              status: 'fail',
              detail: `the handlers accessPolicy at ${location} is "${policy}", without Script: script-mapped requests get 403.1 (Execute access forbidden)`,
              fix: `${APPCMD} set config ${q(location)} /section:system.webServer/handlers /accessPolicy:"Read, Script" /commit:apphost`,
            },
      );
    }
    const mods = appcmd(`list config ${q(location)} /section:system.webServer/modules`);
    if (mods.code === 0) {
      checks.push(
        /name="IsapiModule"/i.test(mods.out)
          ? { name: `module ${v.name}`, status: 'ok', detail: `IsapiModule is enabled at ${location}` }
          : {
              name: `module ${v.name}`,
              status: 'fail',
              detail: `IsapiModule is not enabled at ${location} (system.webServer/modules): requests get 500.21 (handler has a bad module)`,
              fix: `${APPCMD} set config ${q(location)} /section:system.webServer/modules /+"[name='IsapiModule']" /commit:apphost`,
            },
      );
    }
  }
  if (params.virtualDirs.length) {
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
  }
  if (wantsFilter) {
    const listed = appcmd(`list config ${q(site)} /section:system.webServer/isapiFilters`).out;
    for (const f of params.filters) {
      const dll = f.path === folder.bridge ? paths.dll : f.path;
      const entry = new RegExp(`<add[^>]*name="${f.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"[^>]*>`, 'i').exec(listed)?.[0];
      const pathOk = entry && entry.toLowerCase().includes(`path="${dll.toLowerCase()}"`);
      const bitsOk = entry && new RegExp(`preCondition="[^"]*bitness${params.appPool.bitness}`, 'i').test(entry);
      checks.push(
        !entry
          ? { name: `filter ${f.name}`, status: 'fail', detail: `site "${site}" has no ISAPI filter ${f.name}: it never runs`, fix: 'run install.exe' }
          : !pathOk
            ? { name: `filter ${f.name}`, status: 'fail', detail: `filter ${f.name} points elsewhere (${entry}), not to ${dll}`, fix: 'install.exe remove, then install.exe' }
            : /enabled="false"/i.test(entry)
              ? { name: `filter ${f.name}`, status: 'fail', detail: `filter ${f.name} is disabled`, fix: `IIS Manager → ${site} → ISAPI Filters: enable ${f.name}` }
              : !bitsOk
                ? {
                    name: `filter ${f.name}`,
                    status: 'warn',
                    detail: `filter ${f.name} has no bitness${params.appPool.bitness} precondition: a ${params.appPool.bitness === 64 ? 32 : 64}-bit pool of the site would fail to load it (503)`,
                    fix: 'install.exe remove, then install.exe',
                  }
                : { name: `filter ${f.name}`, status: 'ok', detail: `filter ${f.name} → ${dll} (${params.appPool.bitness}-bit pools of "${site}")` },
      );
    }
  }
  // What each identity really may do, as icacls reports it (a DENY wins over any grant).
  const accounts = new Set<string>();
  const own = params.virtualDirs.length ? identityAccount(params.appPool.identity, pool) : undefined;
  if (own) accounts.add(own);
  if (params.filters.some((f) => f.path === folder.bridge)) {
    for (const line of appcmd(`list app /site.name:${q(site)} /text:applicationPool`).out.split(/\r?\n/)) if (line.trim()) accounts.add(`IIS AppPool\\${line.trim()}`);
  }
  const folderAcl = run(`${ICACLS} ${q(paths.folder)}`);
  const logs = path.win32.join(paths.folder, 'logs');
  const logsAcl = run(`${ICACLS} ${q(logs)}`);
  for (const account of accounts) {
    const f = rightsOf(folderAcl.out, account);
    const l = rightsOf(logsAcl.out, account);
    const problems: string[] = [];
    const fixes: string[] = [];
    if (folderAcl.code !== 0) problems.push(`icacls cannot read ${paths.folder}: ${folderAcl.out}`);
    else if (f.denied || !canRead(f.rights)) {
      problems.push(`${account} ${f.denied ? 'is denied access to' : 'cannot read and execute'} ${paths.folder}: the pool cannot load the DLL or start the worker (500, or 503 after rapid failures)`);
      fixes.push(`${ICACLS} ${q(paths.folder)} /grant ${q(`${account}:(OI)(CI)RX`)}`);
    }
    if (logsAcl.code !== 0) {
      problems.push(`${logs} is missing: the bridge cannot write its log`);
      fixes.push(`mkdir ${q(logs)} && ${ICACLS} ${q(logs)} /grant ${q(`${account}:(OI)(CI)M`)}`);
    } else if (l.denied || !canWrite(l.rights)) {
      problems.push(`${account} cannot write to ${logs}: the bridge's log stays empty`);
      fixes.push(`${ICACLS} ${q(logs)} /grant ${q(`${account}:(OI)(CI)M`)}`);
    }
    checks.push(
      problems.length
        ? { name: `rights ${account}`, status: 'fail', detail: problems.join('; '), fix: fixes.join(' ; ') }
        : { name: `rights ${account}`, status: 'ok', detail: `${account} may read and execute ${paths.folder} and modify ${logs}` },
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
