// The IIS backend (IIS 7+; environment variables need IIS 10): the plan as appcmd.exe and
// icacls command lines, each with the command that undoes it. On Windows the planner asks the
// server what exists (so a second install changes nothing) and runs the lines; elsewhere
// `--iis --dry-run` prints the plan for a fresh server.
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
import { InstallError } from './errors';
import type { PackedFolder } from './folder';
import type { Plan, PlanItem } from './plan';
import { findIis, type IisRecord, type IisStep, type InstallState } from './state';

export const APPCMD = '%windir%\\system32\\inetsrv\\appcmd.exe';

/** Quotes a command-line value when it needs it (spaces, or empty). */
export function q(v: string): string {
  return v === '' || /[\s&()^|<>]/.test(v) ? `"${v}"` : v;
}

/** What the planner needs to know about the server. */
export interface IisServer {
  /** A description for the plan's notes. */
  readonly description: string | undefined;
  siteExists(site: string): boolean;
  /** Whether the thing a step creates is there already. */
  has(key: string): boolean;
  /** The application pool of the site's root application (for `/` virtual directories). */
  rootPool(site: string): string;
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
  siteExists(site: string) {
    return this.sites.some((s) => s.toLowerCase() === site.toLowerCase());
  }
  has(key: string) {
    return this.keys.has(key.toLowerCase());
  }
  rootPool() {
    return 'DefaultAppPool';
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

function run(line: string): { code: number; out: string } {
  const expanded = line.replace(/%windir%/gi, process.env.windir ?? process.env.SystemRoot ?? 'C:\\Windows');
  const m = /^("[^"]+"|\S+)\s*(.*)$/.exec(expanded)!;
  const exe = m[1]!.replace(/^"|"$/g, '');
  const r = spawnSync(exe, m[2] ? [m[2]] : [], { encoding: 'utf8', windowsVerbatimArguments: true, windowsHide: true });
  return { code: r.status ?? 1, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** The real server, asked through appcmd (Windows). */
export class AppcmdServer implements IisServer {
  readonly description = undefined;
  private cache = new Map<string, { code: number; out: string }>();
  constructor() {
    const appcmd = APPCMD.replace(/%windir%/i, process.env.windir ?? 'C:\\Windows');
    if (!existsSync(appcmd)) {
      throw new InstallError(
        `IIS is not installed (${appcmd} is missing): install the Web Server (IIS) role with the ISAPI Extensions feature ` +
          `(Install-WindowsFeature Web-Server,Web-ISAPI-Ext on Windows Server; Enable-WindowsOptionalFeature -Online -FeatureName IIS-ISAPIExtensions on Windows 10/11)`,
      );
    }
  }
  private ask(args: string) {
    let r = this.cache.get(args);
    if (!r) this.cache.set(args, (r = run(`${APPCMD} ${args}`)));
    return r;
  }
  siteExists(site: string) {
    const r = this.ask(`list site /name:${q(site)}`);
    return r.code === 0 && r.out.length > 0;
  }
  rootPool(site: string) {
    const r = this.ask(`list app ${q(site + '/')} /text:applicationPool`);
    return r.code === 0 && r.out ? r.out.split(/\r?\n/)[0]!.trim() : 'DefaultAppPool';
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
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
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
      case 'dir':
        return existsSync(a);
      case 'acl': {
        const r = run(`icacls ${q(a)}`);
        return r.code === 0 && r.out.toLowerCase().includes(b.toLowerCase());
      }
      default:
        return false;
    }
  }
}

export interface IisTargetPaths {
  /** The folder on the server (Windows path). */
  folder: string;
  /** The bridge DLL on the server. */
  dll: string;
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

/** Every step a fresh install takes, in order (existing ones are skipped by planIisInstall). */
export function iisSteps(folder: PackedFolder, params: ResolvedInstallParameters, paths: IisTargetPaths, server: IisServer): IisStep[] {
  const { site } = params;
  const pool = params.appPool.name;
  const bits = params.appPool.bitness;
  const steps: IisStep[] = [];
  const config = (location: string | undefined, section: string, expr: string) =>
    `${APPCMD} set config ${location === undefined ? '' : q(location) + ' '}/section:${section} ${expr} /commit:apphost`;

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
      command: config(undefined, 'system.applicationHost/applicationPools', `/+"[name='${pool}'].environmentVariables.[name='${k}',value='${v}']"`),
      undo: config(undefined, 'system.applicationHost/applicationPools', `/-"[name='${pool}'].environmentVariables.[name='${k}']"`),
    });
  }
  for (const v of params.virtualDirs) {
    const location = v.name === '/' ? site : `${site}${v.name}`;
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
        command: `${APPCMD} add app /site.name:${q(site)} /path:${v.name} /physicalPath:${q(paths.folder)} /applicationPool:${q(pool)}`,
        undo: `${APPCMD} delete app ${q(location)}`,
      });
    }
    for (const m of v.scriptMaps) {
      const name = handlerName(folder.name, m.extension);
      const wildcard = m.extension === '*';
      steps.push({
        key: `handler|${location}|${name}`,
        what: `handler mapping ${name}: ${wildcard ? 'every request' : `*${m.extension}`} under ${v.name}${m.verbs[0] === '*' ? '' : ` (${m.verbs.join(',')})`} → ${path.win32.basename(paths.dll)}, before StaticFile`,
        command: config(
          location,
          'system.webServer/handlers',
          `/+"[@start,name='${name}',path='${wildcard ? '*' : '*' + m.extension}',verb='${m.verbs.join(',')}',modules='IsapiModule',` +
            `scriptProcessor='${paths.dll}',resourceType='Unspecified',requireAccess='${wildcard ? 'None' : 'Script'}',preCondition='bitness${bits}']"`,
        ),
        undo: config(location, 'system.webServer/handlers', `/-"[name='${name}']"`),
      });
    }
  }
  steps.push({
    key: `restriction|${paths.dll}`,
    what: `allow ${path.win32.basename(paths.dll)} in the ISAPI and CGI restrictions (else 404.2)`,
    command: config(undefined, 'system.webServer/security/isapiCgiRestriction', `/+"[path='${paths.dll}',allowed='True',description='node-isapi ${folder.name}']"`),
    undo: config(undefined, 'system.webServer/security/isapiCgiRestriction', `/-"[path='${paths.dll}']"`),
  });
  for (const f of params.filters) {
    const dll = f.path === folder.bridge ? paths.dll : f.path;
    steps.push({
      key: `filter|${site}|${f.name}`,
      what: `ISAPI filter ${f.name} for ${site} → ${dll}`,
      command: config(site, 'system.webServer/isapiFilters', `/+"[name='${f.name}',path='${dll}',enabled='true',preCondition='bitness${bits}']"`),
      undo: config(site, 'system.webServer/isapiFilters', `/-"[name='${f.name}']"`),
    });
  }
  const account = identityAccount(params.appPool.identity, pool);
  if (account) {
    steps.push({
      key: `acl|${paths.folder}|${account}`,
      what: `read and execute on ${paths.folder} for ${account}`,
      command: `icacls ${q(paths.folder)} /grant ${q(`${account}:(OI)(CI)RX`)}`,
      undo: `icacls ${q(paths.folder)} /remove:g ${q(account)}`,
    });
    const logs = path.win32.join(paths.folder, 'logs');
    steps.push({ key: `dir|${logs}`, what: `folder ${logs} for the worker logs (kept by remove)`, command: `mkdir ${q(logs)}`, undo: null });
    steps.push({
      key: `acl|${logs}|${account}`,
      what: `modify on ${logs} for ${account} (the bridge writes its logs there)`,
      command: `icacls ${q(logs)} /grant ${q(`${account}:(OI)(CI)M`)}`,
      undo: `icacls ${q(logs)} /remove:g ${q(account)}`,
    });
  }
  return steps;
}

export interface IisInstall {
  plan: Plan;
  steps: IisStep[];
  record: IisRecord | undefined;
}

export function planIisInstall(
  folder: PackedFolder,
  params: ResolvedInstallParameters,
  paths: IisTargetPaths,
  server: IisServer,
  state: InstallState,
): IisInstall {
  if (!server.siteExists(params.site)) {
    throw new InstallError(
      `IIS has no site named '${params.site}'` +
        (server.description ? ` (${server.description})` : '') +
        `: pass --site with an existing site (appcmd list site shows them), or create the site first`,
    );
  }
  const missing = server.missingFeatures(params.filters.length > 0);
  if (missing.length) {
    throw new InstallError(
      `IIS lacks ${missing.join(' and ')}: install them (Install-WindowsFeature Web-ISAPI-Ext,Web-ISAPI-Filter on Windows Server; ` +
        `Enable-WindowsOptionalFeature -Online -FeatureName IIS-ISAPIExtensions,IIS-ISAPIFilter on Windows 10/11), then run install again`,
    );
  }
  const record = findIis(state, params.site);
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
  if (folder.target !== 'win-x64') {
    notes.push(`this folder was packed for ${folder.target}; IIS needs \`isapi pack --target win-x64\`: the plan names that folder's files`);
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
  const source = record?.steps ?? assumed;
  if (!source) {
    plan.notes.push('nothing recorded: this folder installed nothing into this site');
    return { plan, undo: [], record };
  }
  if (!record) plan.notes.push('no install recorded here: the plan shows what remove does after an install that created every step above');
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

/** Runs steps; on a failure, undoes the ones already applied (newest first) and throws. */
export function applyIisSteps(steps: IisStep[], log: (line: string) => void): IisStep[] {
  const done: IisStep[] = [];
  for (const s of steps) {
    const r = s.command.startsWith('mkdir ') ? mkdirStep(s.command) : run(s.command);
    if (r.code !== 0) {
      const failures: string[] = [];
      for (const d of [...done].reverse()) {
        if (!d.undo) continue;
        const u = run(d.undo);
        if (u.code !== 0) failures.push(`  could not undo (${d.what}): ${d.undo}\n    ${u.out}`);
      }
      throw new InstallError(
        `${s.what} failed:\n  ${s.command}\n  ${r.out || `exit code ${r.code}`}\n` +
          (failures.length ? `rolled back, except:\n${failures.join('\n')}` : `rolled back: the ${done.length} step(s) already applied were undone; nothing is left half-installed`),
      );
    }
    log(`  done: ${s.what}`);
    done.push(s);
  }
  return done;
}

function mkdirStep(command: string): { code: number; out: string } {
  const dir = command.slice(6).replace(/^"|"$/g, '');
  try {
    mkdirSync(dir, { recursive: true });
    return { code: 0, out: '' };
  } catch (err) {
    return { code: 1, out: (err as Error).message };
  }
}

/** Runs undo commands for remove; failures are reported, the rest still run. */
export function applyIisUndo(steps: IisStep[], log: (line: string) => void): string[] {
  const failures: string[] = [];
  for (const s of steps) {
    const r = run(s.undo!);
    if (r.code !== 0) failures.push(`${s.what}: ${s.undo}\n    ${r.out}`);
    else log(`  removed: ${s.what}`);
  }
  return failures;
}
