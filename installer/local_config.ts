// The local host's configuration file: what `install --config <file>` writes and
// `isapi serve --config <file>` reads. One file describes one site (one isapi-host process):
//
//   {
//     "port": 8080,                        listening port (default 8080)
//     "bind": "127.0.0.1",                 listening address (default 127.0.0.1)
//     "site": "Default Web Site",          the site's name, matched against --site (optional; this default)
//     "accessLog": "logs/access.log",      W3C access log (optional; default <file's folder>/logs/access.log)
//     "root": "www",                       static files for unmapped URLs (optional)
//     "applications": [
//       { "path": "/hello",                                 URL prefix ('/' = every URL)
//         "extension": "/abs/dist/hello/_hello.so",        the ISAPI library
//         "scriptMaps": [{ "extension": "*", "verbs": ["*"] }],   optional; wildcard is all isapi-host does today
//         "environment": { "ISAPI_WORKERS": "2" },         optional; merged into the host's environment
//         "installedBy": "node-isapi:hello" }               set by the installer; entries without it are the user's
//     ],
//     "filters": [ { "name": "rewrite", "library": "/abs/_rewrite.so", "installedBy": "node-isapi:rewrite" } ]
//   }
//
// Relative paths are relative to the file's folder. Unknown keys are kept as they are.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const DEFAULT_SITE = 'Default Web Site';
export const DEFAULT_PORT = 8080;
export const DEFAULT_BIND = '127.0.0.1';

export interface HostScriptMap {
  extension: string;
  verbs: string[];
}

export interface HostApplication {
  path: string;
  extension: string;
  scriptMaps?: HostScriptMap[];
  environment?: Record<string, string>;
  installedBy?: string;
  [key: string]: unknown;
}

export interface HostFilter {
  name: string;
  library: string;
  installedBy?: string;
  [key: string]: unknown;
}

export interface HostConfig {
  port?: number;
  bind?: string;
  site?: string;
  accessLog?: string;
  root?: string;
  applications: HostApplication[];
  filters: HostFilter[];
  [key: string]: unknown;
}

/** A problem with the file: says which file and what is wrong. */
export class HostConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostConfigError';
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function parseHostConfig(text: string, file: string): HostConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new HostConfigError(`${file} is not valid JSON (${(err as Error).message}): fix or delete it`);
  }
  if (!isObject(raw)) throw new HostConfigError(`${file} must hold a JSON object ({ "applications": [...] })`);
  const bad = (what: string) => new HostConfigError(`${file}: ${what}`);
  if (raw.port !== undefined && (!Number.isInteger(raw.port) || (raw.port as number) < 0 || (raw.port as number) > 65535)) {
    throw bad(`"port" must be a whole number from 0 to 65535`);
  }
  for (const key of ['bind', 'site', 'accessLog', 'root'] as const) {
    if (raw[key] !== undefined && typeof raw[key] !== 'string') throw bad(`"${key}" must be a string`);
  }
  const applications = raw.applications ?? [];
  const filters = raw.filters ?? [];
  if (!Array.isArray(applications)) throw bad(`"applications" must be an array`);
  if (!Array.isArray(filters)) throw bad(`"filters" must be an array`);
  applications.forEach((a: unknown, i) => {
    if (!isObject(a)) throw bad(`applications[${i}] must be an object`);
    if (typeof a.path !== 'string' || !a.path.startsWith('/')) throw bad(`applications[${i}].path must be a URL path starting with '/'`);
    if (typeof a.extension !== 'string' || !a.extension) throw bad(`applications[${i}] (${a.path}) needs "extension": the ISAPI library`);
    if (a.environment !== undefined) {
      if (!isObject(a.environment) || Object.values(a.environment).some((v) => typeof v !== 'string')) {
        throw bad(`applications[${i}].environment must map names to strings`);
      }
    }
    if (a.scriptMaps !== undefined && !Array.isArray(a.scriptMaps)) throw bad(`applications[${i}].scriptMaps must be an array`);
  });
  filters.forEach((f: unknown, i) => {
    if (!isObject(f)) throw bad(`filters[${i}] must be an object`);
    if (typeof f.name !== 'string' || !f.name) throw bad(`filters[${i}] needs a "name"`);
    if (typeof f.library !== 'string' || !f.library) throw bad(`filters[${i}] (${f.name}) needs "library": the filter DLL`);
  });
  return { ...raw, applications, filters } as HostConfig;
}

/** Deterministic: the same object always gives the same bytes. */
export function serializeHostConfig(config: HostConfig): string {
  return JSON.stringify(config, null, 2) + '\n';
}

/** The file's config and bytes; a missing file reads as an empty config and no bytes. */
export function readHostConfig(file: string): { config: HostConfig; bytes: Buffer | undefined } {
  if (!existsSync(file)) return { config: { port: DEFAULT_PORT, bind: DEFAULT_BIND, applications: [], filters: [] }, bytes: undefined };
  const bytes = readFileSync(file);
  return { config: parseHostConfig(bytes.toString('utf8'), file), bytes };
}

export interface HostInvocation {
  args: string[];
  env: Record<string, string>;
  port: number;
  bind: string;
  accessLog: string;
  applications: string[];
}

/**
 * isapi-host's arguments and the extra environment for a config file. isapi-host has no
 * per-application environment: every application's variables go into the host's one
 * environment, and two applications that set one variable differently are refused.
 */
export function hostInvocation(
  file: string,
  o: { port?: number; bind?: string; hostSupportsFilters?: boolean } = {},
): HostInvocation {
  const abs = path.resolve(file);
  if (!existsSync(abs)) throw new HostConfigError(`${file}: no such file (create it with \`install --config ${file}\` in a packed folder)`);
  const config = parseHostConfig(readFileSync(abs, 'utf8'), file);
  const dir = path.dirname(abs);
  const resolve = (p: string) => path.resolve(dir, p);
  if (config.applications.length === 0) {
    throw new HostConfigError(`${file} has no applications: install one with \`dist/<name>/install --config ${file}\``);
  }
  const port = o.port ?? config.port ?? DEFAULT_PORT;
  const bind = o.bind ?? config.bind ?? DEFAULT_BIND;
  const accessLog = config.accessLog ? resolve(config.accessLog) : path.join(dir, 'logs', 'access.log');
  const args = ['--port', String(port), '--bind', bind];
  const env: Record<string, string> = {};
  const setBy: Record<string, string> = {};
  const seen = new Set<string>();
  for (const app of config.applications) {
    if (seen.has(app.path)) throw new HostConfigError(`${file}: two applications at ${app.path}: keep one`);
    seen.add(app.path);
    for (const m of app.scriptMaps ?? []) {
      if (m.extension !== '*') {
        throw new HostConfigError(
          `${file}: ${app.path} maps only '${m.extension}' files; isapi-host maps whole virtual directories (wildcard '*'). ` +
            `Use a wildcard script map for local testing`,
        );
      }
    }
    const lib = resolve(app.extension);
    if (!existsSync(lib)) throw new HostConfigError(`${file}: ${app.path}: ${lib} does not exist (was the folder moved or deleted? install it again)`);
    args.push('--vdir', `${app.path}=${lib}`);
    for (const [k, v] of Object.entries(app.environment ?? {})) {
      if (k in env && env[k] !== v) {
        throw new HostConfigError(
          `${file}: ${setBy[k]} sets ${k}=${env[k]} but ${app.path} sets ${k}=${v}; isapi-host runs every application ` +
            `in one process with one environment: make the values agree or use two config files (two hosts)`,
        );
      }
      env[k] = v;
      setBy[k] = app.path;
    }
  }
  if (config.filters.length > 0) {
    if (!o.hostSupportsFilters) {
      throw new HostConfigError(`${file} installs ISAPI filters (${config.filters.map((f) => f.name).join(', ')}), which this isapi-host does not load yet`);
    }
    for (const f of config.filters) args.push('--filter', resolve(f.library));
  }
  args.push('--access-log', accessLog);
  if (config.root) args.push('--root', resolve(config.root));
  return { args, env, port, bind, accessLog, applications: config.applications.map((a) => a.path) };
}
