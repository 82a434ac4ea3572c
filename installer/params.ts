// Checks the script's install parameters and fills in the defaults. Every problem is
// reported before anything is changed.
import { existsSync } from 'node:fs';
import path from 'node:path';
import type {
  CustomVerb,
  InstallHook,
  InstallParameters,
  ResolvedInstallParameters,
  ResolvedScriptMap,
  ResolvedVirtualDir,
} from '../runtime/install_params';
import { InstallError } from './errors';
import type { PackedFolder } from './folder';
import { DEFAULT_SITE } from './local_config';

/** The export the installer reads from the user's script. */
export const INSTALL_EXPORT = 'install';

export const BUILTIN_VERBS = ['install', 'remove', 'uninstall', 'status', 'doctor', 'upgrade', 'help'] as const;

export interface ScriptInstallExports {
  parameters: InstallParameters;
  hooks: { preInstall?: InstallHook; postInstall?: InstallHook; preRemove?: InstallHook; postRemove?: InstallHook };
  verbs: Record<string, CustomVerb>;
  exportsFilter: boolean;
  exportsExtension: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
// Characters that would break out of an appcmd value ('…') or a command line ("…").
const SAFE_TEXT = /^[^'"\r\n%]*$/;

/** Reads the script's exports without calling its factories. */
export function scriptInstallExports(user: Record<string, unknown>, name: string): ScriptInstallExports {
  const raw = user[INSTALL_EXPORT];
  if (raw !== undefined && !isObject(raw)) {
    throw new InstallError(`${name}: the script's \`${INSTALL_EXPORT}\` export must be an InstallParameters object ({ virtualDirs: [...] }), got ${typeof raw}`);
  }
  const parameters = (raw ?? {}) as InstallParameters;
  const hooks: ScriptInstallExports['hooks'] = {};
  for (const h of ['preInstall', 'postInstall', 'preRemove', 'postRemove'] as const) {
    const fn = parameters[h];
    if (fn === undefined) continue;
    if (typeof fn !== 'function') throw new InstallError(`${name}: install.${h} must be a function`);
    hooks[h] = fn;
  }
  const verbs: Record<string, CustomVerb> = {};
  if (parameters.verbs !== undefined) {
    if (!isObject(parameters.verbs)) throw new InstallError(`${name}: install.verbs must map verb names to { run(ctx) } objects`);
    for (const [verb, v] of Object.entries(parameters.verbs)) {
      if (!/^[a-z][a-z0-9-]*$/.test(verb)) throw new InstallError(`${name}: custom verb '${verb}': use lower-case letters, digits and '-'`);
      if ((BUILTIN_VERBS as readonly string[]).includes(verb)) throw new InstallError(`${name}: custom verb '${verb}' hides the installer's own verb: rename it`);
      if (typeof v === 'function') verbs[verb] = { run: v };
      else if (isObject(v) && typeof v.run === 'function') verbs[verb] = v as unknown as CustomVerb;
      else throw new InstallError(`${name}: custom verb '${verb}' must be a function or { description, run(ctx) }`);
    }
  }
  return { parameters, hooks, verbs, exportsFilter: typeof user.__FilterFactory__ === 'function', exportsExtension: typeof user.__ExtensionFactory__ === 'function' };
}

function checkText(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new InstallError(`${what} must be a non-empty string`);
  if (!SAFE_TEXT.test(value)) throw new InstallError(`${what} '${value}' contains a quote, '%' or a line break, which IIS command lines cannot carry`);
  return value;
}

function vdirName(value: unknown, i: number): string {
  if (value === undefined || value === null || value === '') {
    throw new InstallError(
      `install.virtualDirs[${i}] has no name: give each virtual directory its URL path, e.g. { name: '/hello' } ('/' is the site root)`,
    );
  }
  if (typeof value !== 'string') throw new InstallError(`install.virtualDirs[${i}].name must be a string such as '/hello'`);
  let name = value.trim();
  if (!name.startsWith('/')) name = '/' + name;
  if (name.length > 1 && name.endsWith('/')) name = name.slice(0, -1);
  if (!/^\/([A-Za-z0-9._~-]+(\/[A-Za-z0-9._~-]+)*)?$/.test(name)) {
    throw new InstallError(`install.virtualDirs[${i}].name '${value}' is not a plain URL path: use letters, digits, '.', '_', '~', '-' and '/'`);
  }
  return name;
}

function scriptMaps(value: unknown, where: string): ResolvedScriptMap[] {
  if (value === undefined) return [{ extension: '*', verbs: ['*'] }];
  if (!Array.isArray(value) || value.length === 0) throw new InstallError(`${where}.scriptMaps must be a non-empty array (or left out for a wildcard map)`);
  const seen = new Set<string>();
  return value.map((m: unknown, j) => {
    const at = `${where}.scriptMaps[${j}]`;
    if (!isObject(m)) throw new InstallError(`${at} must be an object like { extension: '*' }`);
    const extension = m.extension === undefined ? '*' : m.extension;
    if (typeof extension !== 'string' || !(extension === '*' || /^\.[A-Za-z0-9_-]+$/.test(extension))) {
      throw new InstallError(`${at}.extension must be '*' or a file extension like '.api', got ${JSON.stringify(m.extension)}`);
    }
    if (seen.has(extension.toLowerCase())) throw new InstallError(`${at}: '${extension}' is mapped twice`);
    seen.add(extension.toLowerCase());
    let verbs = ['*'];
    if (m.verbs !== undefined) {
      if (!Array.isArray(m.verbs) || m.verbs.length === 0 || m.verbs.some((v) => typeof v !== 'string' || !/^(\*|[A-Za-z-]+)$/.test(v))) {
        throw new InstallError(`${at}.verbs must be a non-empty list of HTTP verbs such as ['GET', 'POST'] (or ['*'])`);
      }
      verbs = m.verbs.includes('*') ? ['*'] : m.verbs.map((v: string) => v.toUpperCase());
    }
    return { extension, verbs };
  });
}

export interface ResolveOptions {
  /** --site */
  site?: string;
  /** Where filter paths and the folder live on the target machine (IIS dry runs from another OS). */
  windowsPaths?: boolean;
}

export function resolveParameters(exp: ScriptInstallExports, folder: PackedFolder, o: ResolveOptions = {}): ResolvedInstallParameters {
  const p = exp.parameters;
  const site = checkText(o.site ?? p.site ?? DEFAULT_SITE, o.site ? '--site' : 'install.site');

  if (p.virtualDirs !== undefined && (!Array.isArray(p.virtualDirs) || p.virtualDirs.length === 0)) {
    throw new InstallError(`install.virtualDirs must be a non-empty array of { name: '/path' } (or left out for /${folder.name})`);
  }
  if (p.virtualDirs !== undefined && !exp.exportsExtension && exp.exportsFilter) {
    throw new InstallError(`install.virtualDirs: this script exports no __ExtensionFactory__, only a filter: it serves no virtual directory (leave virtualDirs out)`);
  }
  // A filter-only script serves no URL of its own: no application, no handler, no pool.
  const vdirsIn = p.virtualDirs ?? (exp.exportsExtension || !exp.exportsFilter ? [{ name: `/${folder.name}` }] : []);
  const names = new Set<string>();
  const virtualDirs: ResolvedVirtualDir[] = vdirsIn.map((v: unknown, i) => {
    if (!isObject(v)) throw new InstallError(`install.virtualDirs[${i}] must be an object like { name: '/hello' }`);
    const name = vdirName(v.name, i);
    if (names.has(name)) throw new InstallError(`install.virtualDirs: '${name}' appears twice`);
    names.add(name);
    const description = v.description === undefined ? `${folder.name} (node-isapi)` : checkText(v.description, `install.virtualDirs[${i}].description`);
    return { name, description, scriptMaps: scriptMaps(v.scriptMaps, `install.virtualDirs[${i}]`) };
  });

  if (p.filters !== undefined && !Array.isArray(p.filters)) throw new InstallError(`install.filters must be an array of { name, path }`);
  const filterNames = new Set<string>();
  // A script that exports __FilterFactory__ gets its filter registered unless it lists its own.
  const filtersIn = p.filters ?? (exp.exportsFilter ? [{ name: `node-isapi-${folder.name}`, description: `${folder.name} (node-isapi filter)` }] : []);
  const filters = filtersIn.map((f: unknown, i) => {
    if (!isObject(f)) throw new InstallError(`install.filters[${i}] must be an object like { name: 'rewrite', path: '_rewrite.dll' }`);
    if (f.name === undefined || f.name === '') throw new InstallError(`install.filters[${i}] has no name: give each filter a name unique in the site`);
    const name = checkText(f.name, `install.filters[${i}].name`);
    if (filterNames.has(name)) throw new InstallError(`install.filters: '${name}' appears twice`);
    filterNames.add(name);
    let dll: string;
    if (f.path === undefined || f.path === '') {
      if (!exp.exportsFilter) {
        throw new InstallError(
          `install.filters[${i}] ('${name}') has no DLL: set its path to the filter's DLL, or export __FilterFactory__ from this script so the folder's bridge is the filter`,
        );
      }
      dll = folder.bridge;
    } else {
      const given = checkText(f.path, `install.filters[${i}].path`);
      const windowsAbs = path.win32.isAbsolute(given) && /^[A-Za-z]:|^\\\\/.test(given);
      dll = windowsAbs || path.isAbsolute(given) ? given : path.join(folder.dir, given);
      const checkable = process.platform === 'win32' || !windowsAbs;
      if (checkable && !existsSync(dll)) throw new InstallError(`install.filters[${i}] ('${name}'): ${dll} does not exist`);
    }
    const description = f.description === undefined ? name : checkText(f.description, `install.filters[${i}].description`);
    return { name, description, path: dll };
  });

  const pool = (p.appPool ?? {}) as NonNullable<InstallParameters['appPool']>;
  if (!isObject(pool as unknown)) throw new InstallError('install.appPool must be an object like { name, identity, bitness }');
  const poolName = checkText(pool.name ?? `node-isapi-${folder.name}`, 'install.appPool.name');
  const identities = ['ApplicationPoolIdentity', 'NetworkService', 'LocalService', 'LocalSystem'] as const;
  const identity = pool.identity ?? 'ApplicationPoolIdentity';
  if (!identities.includes(identity)) throw new InstallError(`install.appPool.identity must be one of ${identities.join(', ')}, got '${identity}'`);
  const bitness = pool.bitness ?? folder.bitness;
  if (bitness !== 32 && bitness !== 64) throw new InstallError(`install.appPool.bitness must be 32 or 64`);
  if (bitness !== folder.bitness) {
    throw new InstallError(
      `install.appPool.bitness is ${bitness} but ${folder.bridgeFile} is a ${folder.bitness}-bit DLL: IIS would fail to load it ` +
        `(error 0x800700c1, HTTP 404.4/500). Leave bitness out, or pack for the pool's bitness`,
    );
  }

  const environment: Record<string, string> = {};
  if (p.environment !== undefined) {
    if (!isObject(p.environment)) throw new InstallError('install.environment must map variable names to strings');
    for (const [k, v] of Object.entries(p.environment)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new InstallError(`install.environment: '${k}' is not a valid variable name`);
      if (typeof v !== 'string') throw new InstallError(`install.environment.${k} must be a string, got ${typeof v}`);
      environment[k] = checkText(v, `install.environment.${k}`);
    }
  }
  const positive = (v: unknown, what: string) => {
    if (!Number.isInteger(v) || (v as number) <= 0) throw new InstallError(`${what} must be a positive whole number, got ${JSON.stringify(v)}`);
    return String(v);
  };
  if (p.workers !== undefined) environment.ISAPI_WORKERS = positive(p.workers, 'install.workers');
  if (p.requestTimeoutMs !== undefined) environment.ISAPI_REQUEST_TIMEOUT_MS = positive(p.requestTimeoutMs, 'install.requestTimeoutMs');
  if (p.workerMemoryLimitMB !== undefined) environment.ISAPI_WORKER_MEMORY_LIMIT_MB = positive(p.workerMemoryLimitMB, 'install.workerMemoryLimitMB');

  return { site, virtualDirs, filters, appPool: { name: poolName, identity, bitness }, environment };
}
