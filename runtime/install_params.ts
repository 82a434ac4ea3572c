// Install parameters: what a script exports, beside its factories, to tell its installer
// (`install` / `install.exe` in the packed folder) how to register it with IIS or with the
// local host. The successors of pywin32's ISAPIParameters, VirtualDirParameters,
// ScriptMapParams and FilterParameters, for IIS 7 and later (no metabase).
//
//   import type { InstallParameters } from 'node-isapi';
//   export const install: InstallParameters = {
//     virtualDirs: [{ name: '/hello', scriptMaps: [{ extension: '*', verbs: ['GET', 'HEAD'] }] }],
//     environment: { GREETING: 'hi' },
//     workers: 2,
//     verbs: { 'show-config': { description: 'print the resolved parameters', run: (ctx) => ctx.log(JSON.stringify(ctx.parameters)) } },
//   };
//
// Without an `install` export the installer uses one virtual directory `/<name>` with a
// wildcard script map, in its own application pool.

/** A script map: which requests of a virtual directory go to the extension (IIS handler mapping). */
export interface ScriptMapParams {
  /** `*` (wildcard: every request under the virtual directory) or a file extension such as `.api`. Default `*`. */
  extension?: string;
  /** HTTP verbs the map answers; default all (`*`). */
  verbs?: string[];
}

/** A virtual directory (an IIS application) answered by the extension. */
export interface VirtualDirParameters {
  /** URL path, e.g. `/hello`; `/` is the site's root. Required. */
  name: string;
  /** Shown in status output. */
  description?: string;
  /** Default: one wildcard map for every verb. */
  scriptMaps?: ScriptMapParams[];
}

/** An ISAPI filter, installed for the whole site. */
export interface FilterParameters {
  /** The filter's name in IIS (unique within the site). Required. */
  name: string;
  description?: string;
  /**
   * The filter's DLL. Default: this folder's bridge when the script exports `__FilterFactory__`;
   * otherwise required (an absolute path, or a path relative to the packed folder).
   */
  path?: string;
}

/** The IIS application pool the extension's virtual directories run in (ignored by the local host). */
export interface AppPoolParameters {
  /** Default `node-isapi-<name>`: a pool of its own, created by the installer. */
  name?: string;
  /** Default `ApplicationPoolIdentity` (the `IIS AppPool\<pool>` virtual account). */
  identity?: 'ApplicationPoolIdentity' | 'NetworkService' | 'LocalService' | 'LocalSystem';
  /** 32 or 64. Default: the bridge's bitness (read from the DLL). A value that differs from the bridge is refused. */
  bitness?: 32 | 64;
}

/** Passed to hooks and custom verbs. */
export interface InstallContext {
  /** The script's name (`hello`). */
  name: string;
  /** The packed folder (where the installer sits). */
  folder: string;
  /** The bridge's path in the folder. */
  bridge: string;
  /** `iis` or `local`. */
  backend: 'iis' | 'local';
  /** The parameters after defaults were applied. */
  parameters: ResolvedInstallParameters;
  /** Command-line words after a custom verb. */
  args: string[];
  dryRun: boolean;
  verbose: boolean;
  /** Prints a line unless --quiet. */
  log(line: string): void;
}

export type InstallHook = (ctx: InstallContext) => void | Promise<void>;

/** A verb of the script's own (pywin32's custom_arg_handlers): `install <verb> [args…]`. */
export interface CustomVerb {
  description?: string;
  run(ctx: InstallContext): void | number | Promise<void | number>;
}

export interface InstallParameters {
  /** IIS site (pywin32's ServerName). Default `Default Web Site`; `--site` overrides. */
  site?: string;
  /** Default: `[{ name: '/<name>' }]`. */
  virtualDirs?: VirtualDirParameters[];
  filters?: FilterParameters[];
  appPool?: AppPoolParameters;
  /** Environment variables for the bridge and its workers (IIS: the pool's environmentVariables, IIS 10+). */
  environment?: Record<string, string>;
  /** Worker processes (ISAPI_WORKERS). */
  workers?: number;
  /** Request deadline in milliseconds (ISAPI_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs?: number;
  /**
   * A worker whose own memory passes this many MiB is replaced without failing a request
   * (ISAPI_WORKER_MEMORY_LIMIT_MB). IIS's Private Memory Limit counts w3wp only, not workers.
   */
  workerMemoryLimitMB?: number;
  preInstall?: InstallHook;
  postInstall?: InstallHook;
  preRemove?: InstallHook;
  postRemove?: InstallHook;
  /** Custom verbs, e.g. `{ 'create-db': { run(ctx) { … } } }`; a plain function is accepted too. */
  verbs?: Record<string, CustomVerb | CustomVerb['run']>;
}

export interface ResolvedScriptMap {
  extension: string;
  verbs: string[];
}

export interface ResolvedVirtualDir {
  name: string;
  description: string;
  scriptMaps: ResolvedScriptMap[];
}

export interface ResolvedFilter {
  name: string;
  description: string;
  /** Absolute path of the filter DLL. */
  path: string;
}

/** What the installer works with: every default filled in, every value checked. */
export interface ResolvedInstallParameters {
  site: string;
  virtualDirs: ResolvedVirtualDir[];
  filters: ResolvedFilter[];
  appPool: { name: string; identity: NonNullable<AppPoolParameters['identity']>; bitness: 32 | 64 };
  /** `environment` plus the ISAPI_* settings from `workers`, `requestTimeoutMs` and `workerMemoryLimitMB`. */
  environment: Record<string, string>;
}
