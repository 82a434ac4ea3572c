// The IIS backend (IIS 7+; environment variables need IIS 10): the plan as appcmd.exe and
// icacls command lines, each with the command that undoes it. On Windows the planner asks the
// server what exists (so a second install changes nothing) and runs the lines; elsewhere
// `--iis --dry-run` prints the plan for a fresh server.
//
// Its length (~700 lines) is the list of IIS changes, each beside the command that undoes it and
// the query that tells whether it is already there: keeping the three together is what makes
// a re-run change nothing and a removal exact. The quoting rules come first below, the journal
// in state.ts, the checks in doctor.ts.
//
// Command forms (Microsoft's appcmd documentation, "Getting Started with AppCmd.exe", the IIS
// configuration reference for applicationPools/add/environmentVariables, handlers/add,
// isapiCgiRestriction/add and isapiFilters/filter):
//   appcmd add apppool /name:P /managedRuntimeVersion:"" …         (empty = No Managed Code)
//   appcmd add app /site.name:S /path:/p /physicalPath:D /applicationPool:P
//   appcmd set config "S/p" /section:system.webServer/handlers /+"[@start,name='…',…]" /commit:apphost
//      (handlers is locked at application level by default: /commit:apphost writes a <location>
//       in applicationHost.config; @start puts the mapping first, before StaticFile)
//   appcmd set config /section:system.webServer/security/isapiCgiRestriction /+"[path='…',allowed='True',description='…']" /commit:apphost
//   appcmd set config "S" /section:system.webServer/isapiFilters /+"[name='…',path='…',enabled='true',preCondition='bitness64']" /commit:apphost
//   appcmd set config /section:system.applicationHost/applicationPools /+"[name='P'].environmentVariables.[name='K',value='V']" /commit:apphost
//   appcmd recycle apppool /apppool.name:P
//   icacls D /grant "IIS AppPool\P:(OI)(CI)RX"
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { ResolvedInstallParameters } from '../runtime/install_params';
import { EXIT, InstallError } from './errors';
import { isWindowsFolder, type PackedFolder } from './folder';
import type { Plan, PlanItem } from './plan';
import { findIis, type IisRecord, type IisStep, type InstallState } from './state';

export const APPCMD = '%windir%\\system32\\inetsrv\\appcmd.exe';
// By full path: an elevated installer must not pick up an icacls.exe from the current folder or PATH.
export const ICACLS = '%windir%\\system32\\icacls.exe';

/**
 * One command-line argument (or the value part of `/name:value`), written so that
 * CommandLineToArgvW (and the MSVC runtime that appcmd and icacls start with) gives back exactly
 * `v`: quoted when it has a space, a tab, a quote, cmd.exe's & ( ) ^ | < >, or is empty; inside
 * quotes, backslashes before a quote and at the end are doubled (so `C:\my app\` stays one
 * argument instead of swallowing the next one).
 */
export function q(v: string): string {
  return v !== '' && !/[\s"&()^|<>]/.test(v) ? v : quoted(v);
}

/** `v` always in quotes, as Microsoft's documentation writes appcmd's /+"[…]" expressions. */
export function quoted(v: string): string {
  let out = '"';
  let slashes = 0;
  for (const c of v) {
    if (c === '\\') {
      slashes++;
      continue;
    }
    if (c === '"') out += '\\'.repeat(slashes * 2 + 1) + '"';
    else out += '\\'.repeat(slashes) + c;
    slashes = 0;
  }
  return out + '\\'.repeat(slashes * 2) + '"';
}

/** Splits a command line the way CommandLineToArgvW does (for running plan lines and for tests). */
export function splitCommandLine(line: string): string[] {
  const args: string[] = [];
  let i = 0;
  const n = line.length;
  while (i < n) {
    while (i < n && (line[i] === ' ' || line[i] === '\t')) i++;
    if (i >= n) break;
    let arg = '';
    let quoted = false;
    for (; i < n; i++) {
      const c = line[i]!;
      if (!quoted && (c === ' ' || c === '\t')) break;
      if (c === '\\') {
        let k = i;
        while (k < n && line[k] === '\\') k++;
        const count = k - i;
        if (line[k] === '"') {
          arg += '\\'.repeat(count >> 1);
          if (count & 1) {
            arg += '"';
            i = k;
          } else {
            i = k - 1;
          }
        } else {
          arg += '\\'.repeat(count);
          i = k - 1;
        }
        continue;
      }
      if (c === '"') {
        if (quoted && line[i + 1] === '"') {
          arg += '"';
          i++;
        } else {
          quoted = !quoted;
        }
        continue;
      }
      arg += c;
    }
    args.push(arg);
  }
  return args;
}

/**
 * A path that goes into the plan: inside appcmd's '…' values (scriptProcessor, isapiFilters,
 * the restriction list) an apostrophe cannot be carried, a double quote cannot be in a Windows
 * path, and IIS expands %NAME% in paths. Refused before anything changes.
 */
export function checkIisPath(p: string, what: string): void {
  const bad = p.includes("'") ? "an apostrophe (')" : p.includes('"') ? 'a double quote' : p.includes('%') ? "'%'" : /[\0-\x1f]/.test(p) ? 'a control character' : undefined;
  if (!bad) return;
  const why = p.includes("'")
    ? "appcmd writes these paths inside '…' values (the handler's scriptProcessor, the restriction list, isapiFilters) and has no way to escape one"
    : p.includes('%')
      ? 'IIS expands %NAME% in physical paths and DLL paths, so the path could silently change'
      : 'Windows paths cannot hold it';
  throw new InstallError(`${what} '${p}' contains ${bad}: ${why}. Move the folder to a path without it, or pass --physical-path`);
}

/** What the planner needs to know about the server. */
export interface IisServer {
  /** A description for the plan's notes. */
  readonly description: string | undefined;
  /**
   * Reading IIS's configuration needs administrator rights: throws the one-line "run as
   * administrator" error (with appcmd's own text) when this process has none.
   */
  checkAccess(): void;
  siteExists(site: string): boolean;
  /** Whether the thing a step creates is there already. */
  has(key: string): boolean;
  /** The application pool of the site's root application (for `/` virtual directories). */
  rootPool(site: string): string;
  /** Every pool that serves an application of the site (a site's filters load in each). */
  sitePools(site: string): string[];
  /** IsapiModule / IsapiFilterModule installed (undefined: unknown). */
  missingFeatures(filters: boolean): string[];
}

/** A server held in memory: a fresh IIS with only "Default Web Site", and the tests' simulated server. */
export class MemoryServer implements IisServer {
  readonly keys = new Set<string>();
  constructor(
    readonly description: string | undefined = undefined,
    readonly sites = ['Default Web Site'],
  ) {}
  checkAccess() {}
  siteExists(site: string) {
    return this.sites.some((s) => s.toLowerCase() === site.toLowerCase());
  }
  has(key: string) {
    return this.keys.has(key.toLowerCase());
  }
  rootPool() {
    return 'DefaultAppPool';
  }
  sitePools() {
    return ['DefaultAppPool'];
  }
  missingFeatures() {
    return [];
  }
  apply(step: IisStep) {
    if (step.key) this.keys.add(step.key.toLowerCase());
  }
  undo(step: IisStep) {
    if (step.key) this.keys.delete(step.key.toLowerCase());
  }
}

export const FRESH_SERVER_NOTE = `dry run on ${process.platform}: the plan assumes a fresh IIS 10 server with only "Default Web Site"; on the server, install.exe asks IIS what exists first`;

const windir = () => process.env.windir ?? process.env.SystemRoot ?? 'C:\\Windows';

/** Runs one plan line: the program (with %windir% expanded) and the rest exactly as printed. */
export function run(line: string): { code: number; out: string } {
  const m = /^(\S+)\s*(.*)$/.exec(line)!;
  const exe = m[1]!.replace(/^%windir%/i, windir());
  // Verbatim: the plan line is already quoted for CommandLineToArgvW; Node must not quote it again.
  const r = spawnSync(exe, m[2] ? [m[2]] : [], { encoding: 'utf8', windowsVerbatimArguments: true, windowsHide: true });
  if (r.error) return { code: 1, out: `${exe}: ${r.error.message}` };
  return { code: r.status ?? 1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

const ACCESS_DENIED = /insufficient permissions|access is denied|0x80070005|hresult:80070005/i;

/** The real server, asked through appcmd (Windows). */
export class AppcmdServer implements IisServer {
  readonly description = undefined;
  private cache = new Map<string, { code: number; out: string }>();
  constructor() {
    const appcmd = APPCMD.replace(/%windir%/i, windir());
    if (!existsSync(appcmd)) {
      throw new InstallError(
        `IIS is not installed (${appcmd} is missing): install the Web Server (IIS) role with the ISAPI Extensions feature ` +
          `(Install-WindowsFeature Web-Server,Web-ISAPI-Ext on Windows Server; Enable-WindowsOptionalFeature -Online -FeatureName IIS-ISAPIExtensions on Windows 10/11)`,
        EXIT.prerequisite,
      );
    }
  }
  private ask(args: string) {
    let r = this.cache.get(args);
    if (!r) this.cache.set(args, (r = run(`${APPCMD} ${args}`)));
    return r;
  }
  checkAccess() {
    const r = this.ask('list site');
    if (r.code === 0) return;
    if (ACCESS_DENIED.test(r.out)) {
      throw new InstallError(`run install.exe as administrator (right-click → Run as administrator, or from an elevated prompt): only administrators can read and change IIS's configuration. appcmd said: ${r.out}`, EXIT.notElevated);
    }
    throw new InstallError(`appcmd cannot list IIS's sites: ${r.out || `exit code ${r.code}`}`, EXIT.prerequisite);
  }
  siteExists(site: string) {
    const r = this.ask(`list site /name:${q(site)}`);
    return r.code === 0 && r.out.length > 0;
  }
  rootPool(site: string) {
    const r = this.ask(`list app ${q(site + '/')} /text:applicationPool`);
    return r.code === 0 && r.out ? r.out.split(/\r?\n/)[0]!.trim() : 'DefaultAppPool';
  }
  sitePools(site: string) {
    const r = this.ask(`list app /site.name:${q(site)} /text:applicationPool`);
    if (r.code !== 0) return [this.rootPool(site)];
    return [...new Set(r.out.split(/\r?\n/).map((l) => l.trim()).filter(Boolean))];
  }
  missingFeatures(filters: boolean) {
    const r = this.ask('list config /section:system.webServer/globalModules');
    const missing: string[] = [];
    if (!/name="IsapiModule"/i.test(r.out)) missing.push('ISAPI Extensions (IsapiModule)');
    if (filters && !/name="IsapiFilterModule"/i.test(r.out)) missing.push('ISAPI Filters (IsapiFilterModule)');
    return missing;
  }
  has(key: string) {
    const [kind, ...rest] = key.split('|');
    const a = rest[0] ?? '';
    const b = rest[1] ?? '';
    const c = rest[2] ?? '';
    const has = (args: string, re: RegExp) => {
      const r = this.ask(args);
      return r.code === 0 && re.test(r.out);
    };
    switch (kind) {
      case 'apppool':
        return has(`list apppool /name:${q(a)}`, /\S/);
      case 'env':
        return has(`list apppool ${q(a)} /config`, new RegExp(`<add name="${esc(b)}" value="${esc(c)}"`, 'i'));
      case 'app':
        return has(`list app ${q(a)}`, /\S/);
      case 'rootpool':
        return this.rootPool(a).toLowerCase() === b.toLowerCase();
      case 'handler':
        return has(`list config ${q(a)} /section:system.webServer/handlers`, new RegExp(`name="${esc(b)}"`, 'i'));
      case 'restriction':
        return has('list config /section:system.webServer/security/isapiCgiRestriction', new RegExp(`path="${esc(a)}"[^>]*allowed="true"`, 'i'));
      case 'filter':
        return has(`list config ${q(a)} /section:system.webServer/isapiFilters`, new RegExp(`name="${esc(b)}"`, 'i'));
      case 'hidden':
        return has(`list config ${q(a)} /section:system.webServer/security/requestFiltering`, new RegExp(`segment="${esc(b)}"`, 'i'));
      case 'dir':
        return existsSync(a);
      case 'acl': {
        const r = run(`${ICACLS} ${q(a)}`);
        return r.code === 0 && r.out.toLowerCase().includes(`${b.toLowerCase()}:`);
      }
      default:
        return false;
    }
  }
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

export interface IisTargetPaths {
  /** The folder on the server (Windows path). */
  folder: string;
  /** The bridge DLL on the server. */
  dll: string;
}

export interface IisPlanOptions {
  /** `--site-root`: the person running install accepted that a `/` virtual directory changes the whole site. */
  siteRoot?: boolean;
}

export function identityAccount(identity: ResolvedInstallParameters['appPool']['identity'], pool: string): string | undefined {
  switch (identity) {
    case 'ApplicationPoolIdentity':
      return `IIS AppPool\\${pool}`;
    case 'NetworkService':
      return 'NETWORK SERVICE';
    case 'LocalService':
      return 'LOCAL SERVICE';
    default:
      return undefined; // LocalSystem can read everything already
  }
}

export function handlerName(name: string, extension: string): string {
  return extension === '*' ? `node-isapi-${name}` : `node-isapi-${name}-${extension.replace(/^\./, '')}`;
}

export function vdirLocation(site: string, vdir: string): string {
  return vdir === '/' ? site : `${site}${vdir}`;
}

/** The folder's files a browser must never get, whatever the handler mappings: each a hidden segment. */
export function privateFiles(folder: PackedFolder): string[] {
  // Named as on the server: a linux-x64 folder's dry run plans for its win-x64 twin.
  const files = isWindowsFolder(folder) ? Object.keys(folder.manifest.files) : [`_${folder.name}.dll`, `${folder.name}.exe`, 'install.exe'];
  return [...files, `${folder.name}.manifest.json`, `${folder.name}.install-state.json`];
}

const config = (location: string | undefined, section: string, expr: string) =>
  `${APPCMD} set config ${location === undefined ? '' : q(location) + ' '}/section:${section} ${expr} /commit:apphost`;

/** What a `/` virtual directory changes for the whole site: refused without --site-root, noted with it. */
export function siteRootChanges(folder: PackedFolder, params: ResolvedInstallParameters, server: IisServer, dllName: string): string[] {
  const root = params.virtualDirs.find((v) => v.name === '/');
  if (!root) return [];
  const previous = server.rootPool(params.site);
  const changes = [
    `the root application of "${params.site}" moves from ${previous} to ${params.appPool.name}: every page of the site that no other application serves runs in the new pool`,
  ];
  for (const m of root.scriptMaps) {
    changes.push(
      m.extension === '*'
        ? `every request to the site, static files and default documents included, goes to ${dllName} (handler ${handlerName(folder.name, '*')} before StaticFile)`
        : `every *${m.extension} request anywhere in the site goes to ${dllName}`,
    );
  }
  return changes;
}

/** Every step a fresh install takes, in order (existing ones are skipped by planIisInstall). */
export function iisSteps(folder: PackedFolder, params: ResolvedInstallParameters, paths: IisTargetPaths, server: IisServer): IisStep[] {
  const { site } = params;
  const pool = params.appPool.name;
  const bits = params.appPool.bitness;
  const steps: IisStep[] = [];
  const dllName = path.win32.basename(paths.dll);
  const hasPool = params.virtualDirs.length > 0;

  if (hasPool) {
    steps.push({
      key: `apppool|${pool}`,
      what: `application pool ${pool} (no managed code, ${bits}-bit, ${params.appPool.identity})`,
      command:
        `${APPCMD} add apppool /name:${q(pool)} /managedRuntimeVersion:"" /managedPipelineMode:Integrated ` +
        `/enable32BitAppOnWin64:${bits === 32 ? 'true' : 'false'} /processModel.identityType:${params.appPool.identity}`,
      undo: `${APPCMD} delete apppool ${q(pool)}`,
    });
    for (const [k, v] of Object.entries(params.environment)) {
      steps.push({
        key: `env|${pool}|${k}|${v}`,
        what: `environment ${k}=${v} for the pool's worker processes (IIS 10+)`,
        command: config(undefined, 'system.applicationHost/applicationPools', '/+' + quoted(`[name='${pool}'].environmentVariables.[name='${k}',value='${v}']`)),
        undo: config(undefined, 'system.applicationHost/applicationPools', '/-' + quoted(`[name='${pool}'].environmentVariables.[name='${k}']`)),
      });
    }
  }
  // Who must read the folder: our pool; and, for a filter that is this folder's bridge, every
  // pool of the site, since each loads the filter (and the bridge writes its log from each).
  // Granted before any handler or filter names the DLL, so IIS never tries to load it unreadable.
  const accounts: string[] = [];
  const own = hasPool ? identityAccount(params.appPool.identity, pool) : undefined;
  if (own) accounts.push(own);
  if (params.filters.some((f) => f.path === folder.bridge)) {
    for (const other of server.sitePools(site)) {
      if (other.toLowerCase() === pool.toLowerCase() && hasPool) continue;
      // Another pool's identity is not known to the planner; its virtual account is IIS's default.
      const account = `IIS AppPool\\${other}`;
      if (!accounts.some((a) => a.toLowerCase() === account.toLowerCase())) accounts.push(account);
    }
  }
  const logs = path.win32.join(paths.folder, 'logs');
  if (accounts.length) {
    steps.push({ key: `dir|${logs}`, what: `folder ${logs} for the worker logs (kept by remove)`, command: `mkdir ${q(logs)}`, undo: null, dir: logs });
  }
  for (const account of accounts) {
    const why = account === own ? '' : ' (it loads the site\'s filter)';
    steps.push({
      key: `acl|${paths.folder}|${account}`,
      what: `read and execute on ${paths.folder} for ${account}${why}`,
      command: `${ICACLS} ${q(paths.folder)} /grant ${q(`${account}:(OI)(CI)RX`)}`,
      undo: `${ICACLS} ${q(paths.folder)} /remove:g ${q(account)}`,
    });
    steps.push({
      key: `acl|${logs}|${account}`,
      what: `modify on ${logs} for ${account} (the bridge writes its logs there)`,
      command: `${ICACLS} ${q(logs)} /grant ${q(`${account}:(OI)(CI)M`)}`,
      undo: `${ICACLS} ${q(logs)} /remove:g ${q(account)}`,
    });
  }
  for (const v of params.virtualDirs) {
    const location = vdirLocation(site, v.name);
    if (v.name === '/') {
      const previous = server.rootPool(site);
      steps.push({
        key: `rootpool|${site}|${pool}`,
        what: `the root application of ${site} runs in ${pool} (was ${previous})`,
        command: `${APPCMD} set app ${q(site + '/')} /applicationPool:${q(pool)}`,
        undo: `${APPCMD} set app ${q(site + '/')} /applicationPool:${q(previous)}`,
      });
    } else {
      steps.push({
        key: `app|${location}`,
        what: `application ${v.name} in ${site} → ${paths.folder}`,
        command: `${APPCMD} add app /site.name:${q(site)} /path:${q(v.name)} /physicalPath:${q(paths.folder)} /applicationPool:${q(pool)}`,
        undo: `${APPCMD} delete app ${q(location)}`,
      });
      // The application's root is this folder: hide the executables, the manifest, the
      // install state and the logs from StaticFile, whatever the script maps send elsewhere.
      for (const segment of privateFiles(folder)) {
        steps.push({
          key: `hidden|${location}|${segment}`,
          what: `request filtering hides ${segment} under ${v.name} (404.8)`,
          command: config(location, 'system.webServer/security/requestFiltering', '/+' + quoted(`hiddenSegments.[segment='${segment}']`)),
          undo: config(location, 'system.webServer/security/requestFiltering', '/-' + quoted(`hiddenSegments.[segment='${segment}']`)),
        });
      }
      // Scoped to logs/ itself, so that an extension URL with a "logs" segment elsewhere still works.
      steps.push({
        key: `hidden|${location}/logs|logs`,
        what: `request filtering hides ${v.name}/logs/ (404.8)`,
        command: config(`${location}/logs`, 'system.webServer/security/requestFiltering', '/+' + quoted(`hiddenSegments.[segment='logs']`)),
        undo: config(`${location}/logs`, 'system.webServer/security/requestFiltering', '/-' + quoted(`hiddenSegments.[segment='logs']`)),
      });
    }
    for (const m of v.scriptMaps) {
      const name = handlerName(folder.name, m.extension);
      const wildcard = m.extension === '*';
      steps.push({
        key: `handler|${location}|${name}`,
        what: `handler mapping ${name}: ${wildcard ? 'every request' : `*${m.extension}`} under ${v.name}${m.verbs[0] === '*' ? '' : ` (${m.verbs.join(',')})`} → ${dllName}, before StaticFile`,
        command: config(
          location,
          'system.webServer/handlers',
          '/+' +
            quoted(
            `[@start,name='${name}',path='${wildcard ? '*' : '*' + m.extension}',verb='${m.verbs.join(',')}',modules='IsapiModule',` +
              `scriptProcessor='${paths.dll}',resourceType='Unspecified',requireAccess='${wildcard ? 'None' : 'Script'}',preCondition='bitness${bits}']`,
            ),
        ),
        undo: config(location, 'system.webServer/handlers', '/-' + quoted(`[name='${name}']`)),
      });
    }
  }
  if (hasPool) {
    steps.push({
      key: `restriction|${paths.dll}`,
      what: `allow ${dllName} in the ISAPI and CGI restrictions (else 404.2)`,
      command: config(undefined, 'system.webServer/security/isapiCgiRestriction', '/+' + quoted(`[path='${paths.dll}',allowed='True',description='node-isapi ${folder.name}']`)),
      undo: config(undefined, 'system.webServer/security/isapiCgiRestriction', '/-' + quoted(`[path='${paths.dll}']`)),
    });
  }
  // Filters are per site in IIS (the ISAPI Filters feature exists at the server and the site
  // only), and a site's filter loads in every pool that serves one of the site's applications.
  for (const f of params.filters) {
    const dll = f.path === folder.bridge ? paths.dll : f.path;
    steps.push({
      key: `filter|${site}|${f.name}`,
      what: `ISAPI filter ${f.name} for the whole site ${site} (${bits}-bit pools) → ${dll === paths.dll ? dllName : dll}`,
      command: config(site, 'system.webServer/isapiFilters', '/+' + quoted(`[name='${f.name}',path='${dll}',enabled='true',preCondition='bitness${bits}']`)),
      undo: config(site, 'system.webServer/isapiFilters', '/-' + quoted(`[name='${f.name}']`)),
    });
  }
  return steps;
}

export interface IisInstall {
  plan: Plan;
  steps: IisStep[];
  record: IisRecord | undefined;
}

/** Checks every name and path the plan writes, before anything is changed. */
function checkPlanInputs(folder: PackedFolder, params: ResolvedInstallParameters, paths: IisTargetPaths): void {
  checkIisPath(paths.folder, params.virtualDirs.length ? 'the physical path' : 'the folder');
  checkIisPath(paths.dll, 'the bridge DLL path');
  for (const f of params.filters) if (f.path !== folder.bridge) checkIisPath(f.path, `filter ${f.name}'s DLL`);
}

/**
 * A journal left by an install that was killed: the step it had started is adopted when the
 * server has it (it completed before the kill), so install resumes and remove undoes it.
 */
export function settleJournal(record: IisRecord | undefined, server: IisServer): IisRecord | undefined {
  if (!record?.pending) return record;
  const p = record.pending;
  const steps = p.key && server.has(p.key) && !record.steps.some((s) => s.key === p.key) ? [...record.steps, p] : record.steps;
  return { ...record, steps, pending: undefined };
}

export function planIisInstall(
  folder: PackedFolder,
  params: ResolvedInstallParameters,
  paths: IisTargetPaths,
  server: IisServer,
  state: InstallState,
  o: IisPlanOptions = {},
): IisInstall {
  checkPlanInputs(folder, params, paths);
  if (!server.siteExists(params.site)) {
    throw new InstallError(
      `IIS has no site named '${params.site}'` +
        (server.description ? ` (${server.description})` : '') +
        `: pass --site with an existing site (appcmd list site shows them), or create the site first`,
      EXIT.prerequisite,
    );
  }
  const missing = server.missingFeatures(params.filters.length > 0);
  if (missing.length) {
    throw new InstallError(
      `IIS lacks ${missing.join(' and ')}: install them (Install-WindowsFeature Web-ISAPI-Ext,Web-ISAPI-Filter on Windows Server; ` +
        `Enable-WindowsOptionalFeature -Online -FeatureName IIS-ISAPIExtensions,IIS-ISAPIFilter on Windows 10/11), then run install again`,
      EXIT.prerequisite,
    );
  }
  const record = settleJournal(findIis(state, params.site), server);
  const rootChanges = siteRootChanges(folder, params, server, path.win32.basename(paths.dll));
  const rootRecorded = record?.steps.some((s) => s.key?.startsWith('rootpool|'));
  if (rootChanges.length && !o.siteRoot && !rootRecorded) {
    throw new InstallError(
      `install.virtualDirs has '/', the root of site "${params.site}"; installing there changes the whole site:\n  - ${rootChanges.join('\n  - ')}\n` +
        `Run install --site-root to accept that, or install under a path of its own (virtualDirs: [{ name: '/${folder.name}' }])`,
    );
  }
  const recorded = new Set((record?.steps ?? []).map((s) => s.key?.toLowerCase()));
  const all = iisSteps(folder, params, paths, server);
  const items: PlanItem[] = [];
  const steps: IisStep[] = [];
  let poolExisted = false;
  for (const s of all) {
    const exists = s.key !== null && server.has(s.key);
    if (!exists) {
      // A variable an earlier install set to another value: change it in place (adding would clash).
      const [kind, pool, varName] = (s.key ?? '').split('|');
      const earlier = kind === 'env' ? record?.steps.filter((r) => r.key?.startsWith(`env|${pool}|${varName}|`)).pop() : undefined;
      if (earlier && server.has(earlier.key!)) {
        const old = earlier.key!.split('|')[3]!;
        const value = s.key!.split('|')[3]!;
        const set = (v: string) =>
          `${APPCMD} set config /section:system.applicationHost/applicationPools /[name='${pool}'].environmentVariables.[name='${varName}'].value:${q(v)} /commit:apphost`;
        const change: IisStep = { key: s.key, what: `environment ${varName}=${value} (was ${old}) for the pool's worker processes`, command: set(value), undo: set(old) };
        items.push({ action: 'change', what: change.what, command: change.command });
        steps.push(change);
        continue;
      }
      items.push({ action: 'create', what: s.what, command: s.command });
      steps.push(s);
      continue;
    }
    if (s.key!.startsWith('apppool|')) poolExisted = true;
    items.push({ action: 'keep', what: s.what });
    // Things that must be ours to share: an application or a handler someone else made is refused.
    const kind = s.key!.split('|')[0]!;
    if ((kind === 'app' || kind === 'handler' || kind === 'filter') && !recorded.has(s.key!.toLowerCase())) {
      throw new InstallError(
        `IIS already has ${s.what.split(' →')[0]} that this installer did not create: it does not take over or replace it. ` +
          `Remove it in IIS Manager, or choose another name in the install parameters`,
      );
    }
  }
  if (poolExisted && steps.length > 0) {
    const recycle: IisStep = {
      key: null,
      what: `recycle ${params.appPool.name} so the changes take effect`,
      command: `${APPCMD} recycle apppool /apppool.name:${q(params.appPool.name)}`,
      undo: null,
    };
    items.push({ action: 'run', what: recycle.what, command: recycle.command });
    steps.push(recycle);
  }
  const notes = server.description ? [server.description] : [];
  if (record?.complete === false) notes.push(`an earlier install stopped after ${record.steps.length} step(s) (killed or failed): this one resumes it`);
  if (!isWindowsFolder(folder)) {
    notes.push(`this folder was packed for ${folder.target}; IIS needs \`isapi pack --target win-x64\`: the plan names that folder's files`);
  }
  if (rootChanges.length) notes.push(`--site-root: ${rootChanges.join('; ')}`);
  const bridgeFilters = params.filters.filter((f) => f.path === folder.bridge);
  if (bridgeFilters.length) {
    notes.push(
      `the filter ${bridgeFilters.map((f) => f.name).join(', ')} is this folder's bridge: it loads in every ${params.appPool.bitness}-bit pool of "${params.site}" ` +
        `(${server.sitePools(params.site).join(', ') || 'none yet'}${params.virtualDirs.length ? `, ${params.appPool.name}` : ''}), and each starts its own workers` +
        // IIS skips a bitness32 filter in a 64-bit pool without a word: say it before it happens.
        (params.appPool.bitness === 32
          ? '; a 32-bit (win-ia32) filter loads only in pools with enable32BitAppOnWin64, so a site whose pools are 64-bit needs the win-x64 folder'
          : ''),
    );
  }
  if (!params.virtualDirs.length && Object.keys(params.environment).length) {
    notes.push('a filter-only script has no pool of its own: the environment settings are not applied (set them on the site\'s pools)');
  }
  return { plan: { verb: 'install', backend: 'iis', target: `IIS site "${params.site}"`, notes, items }, steps, record };
}

export interface IisRemove {
  plan: Plan;
  undo: IisStep[];
  record: IisRecord | undefined;
}

/** Undoes what the record says install created, newest first; with no record, nothing. */
export function planIisRemove(site: string, record: IisRecord | undefined, server: IisServer, assumed?: IisStep[]): IisRemove {
  const plan: Plan = { verb: 'remove', backend: 'iis', target: `IIS site "${site}"`, notes: [], items: [] };
  if (server.description) plan.notes.push(server.description);
  record = settleJournal(record, server);
  const source = record?.steps ?? assumed;
  if (!source) {
    plan.notes.push('nothing recorded: this folder installed nothing into this site');
    return { plan, undo: [], record };
  }
  if (!record) plan.notes.push('no install recorded here: the plan shows what remove does after an install that created every step above');
  if (record?.complete === false) plan.notes.push(`an install stopped after ${record.steps.length} step(s) (killed or failed): remove undoes exactly those`);
  const undo: IisStep[] = [];
  for (const s of [...source].reverse()) {
    if (!s.undo) continue;
    if (record && s.key && !server.has(s.key)) {
      plan.items.push({ action: 'keep', what: `${s.what} (already gone)` });
      continue;
    }
    plan.items.push({ action: 'remove', what: s.what, command: s.undo });
    undo.push(s);
  }
  return { plan, undo, record };
}

/** Called around each step, so the state file records it before the next one starts. */
export interface Journal {
  starting(step: IisStep): void;
  applied(step: IisStep): void;
  /** After a failure: the steps that were applied and could not be undone (empty: all undone). */
  rolledBack(left: IisStep[]): void;
}

/** Runs steps; on a failure, undoes the ones already applied (newest first) and throws. */
export function applyIisSteps(steps: IisStep[], log: (line: string) => void, journal?: Journal): IisStep[] {
  const done: IisStep[] = [];
  for (const s of steps) {
    journal?.starting(s);
    const r = s.dir !== undefined ? mkdirStep(s.dir) : run(s.command);
    if (r.code !== 0) {
      const failures: string[] = [];
      const left: IisStep[] = [];
      for (const d of [...done].reverse()) {
        if (!d.undo) continue;
        const u = run(d.undo);
        if (u.code !== 0) {
          failures.push(`  could not undo (${d.what}): ${d.undo}\n    ${u.out}`);
          left.unshift(d);
        }
      }
      journal?.rolledBack(left);
      throw new InstallError(
        `${s.what} failed:\n  ${s.command}\n  ${r.out || `exit code ${r.code}`}\n` +
          (failures.length
            ? `rolled back, except:\n${failures.join('\n')}\nthe state file records what is left: fix the cause, then run install (to finish) or remove (to undo it)`
            : `rolled back: the ${done.length} step(s) already applied were undone; nothing is left half-installed`),
        failures.length ? EXIT.incomplete : EXIT.rolledBack,
      );
    }
    log(`  done: ${s.what}`);
    done.push(s);
    journal?.applied(s);
  }
  return done;
}

function mkdirStep(dir: string): { code: number; out: string } {
  try {
    mkdirSync(dir, { recursive: true });
    return { code: 0, out: '' };
  } catch (err) {
    return { code: 1, out: (err as Error).message };
  }
}

/** Runs undo commands for remove; failures are reported, the rest still run. */
export function applyIisUndo(steps: IisStep[], log: (line: string) => void, onUndone?: (s: IisStep) => void): string[] {
  const failures: string[] = [];
  for (const s of steps) {
    const r = run(s.undo!);
    if (r.code !== 0) failures.push(`${s.what}: ${s.undo}\n    ${r.out}`);
    else {
      log(`  removed: ${s.what}`);
      onUndone?.(s);
    }
  }
  return failures;
}
