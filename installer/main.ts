// The installer program: `install` / `install.exe` in a packed folder, a native launcher that
// runs the worker executable (which carries the user's script plus this file) in installer
// mode. It reads the script's `install` export and custom verbs (never calling its factories),
// plans, then applies the plan to IIS or to the local host's config file. Verbs: install
// (default), remove (uninstall), status, doctor, custom.
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { InstallContext, ResolvedInstallParameters } from '../runtime/install_params';
import { doctorIis, doctorLocal, formatChecks } from './doctor';
import { EXIT, InstallError } from './errors';
import { isWindowsFolder, loadFolder, type PackedFolder } from './folder';
import {
  APPCMD,
  AppcmdServer,
  FRESH_SERVER_NOTE,
  MemoryServer,
  applyIisSteps,
  applyIisUndo,
  iisSteps,
  planIisInstall,
  settleJournal,
  planIisRemove,
  q,
  type IisServer,
  type IisTargetPaths,
} from './iis';
import { applyLocalInstall, applyLocalRemove, planLocalInstall, planLocalRemove, restoreLocal } from './local';
import { readHostConfig } from './local_config';
import { bringOnline, upgradeFolder, type UpgradeResult } from './upgrade';
import { resolveParameters, scriptInstallExports, BUILTIN_VERBS, type ScriptInstallExports } from './params';
import { changes, formatPlan, type Plan } from './plan';
import { findIis, findLocal, readState, withRecord, writeState, type IisRecord, type IisStep, type InstallState } from './state';

export interface InstallerOptions {
  /** The packed folder; default: the folder of the running executable. */
  folder?: string;
  argv?: string[];
  out?: (text: string) => void;
  err?: (text: string) => void;
  /** The IIS server to plan against (tests); default: appcmd on Windows, a fresh server elsewhere. */
  server?: IisServer;
  platform?: NodeJS.Platform;
}

const HELP = (name: string, verbs: Record<string, { description?: string }>) => `${name} installer (node-isapi)

Usage: install [verb] [options]
  install      register the extension (default verb)
  remove       undo exactly what install created (alias: uninstall)
  status       show what is installed
  doctor       check for common failures and print their fixes
  upgrade <installed folder>
               run from a newly packed folder: take the installed folder offline
               (app_offline.htm), replace its files, install, and bring it back
${Object.entries(verbs)
  .map(([v, d]) => `  ${v.padEnd(12)} ${d.description ?? '(the script\'s own verb)'}`)
  .join('\n')}
Options:
  --config <file>        the local host's configuration file (created if absent); serve it
                         with \`isapi serve --config <file>\`
  --iis                  IIS (the default on Windows); elsewhere only with --dry-run
  --site <name>          the site (default: the script's, else "Default Web Site")
  --physical-path <dir>  IIS: where this folder sits on the server (default: where it is)
  --site-root            IIS: allow a '/' virtual directory (the site's root application moves
                         into this pool and the handler serves the whole site; the plan lists it)
  --dry-run              print the plan and change nothing
  --json                 machine-readable output: one JSON document on stdout
  --quiet, -q            print errors only
  --verbose, -v          print unchanged items and each step as it runs
  --help, -h             this text

IIS needs an administrator (run it elevated). An install that is killed or fails half-way is
recorded step by step: run install again to finish it, or remove to undo exactly what it did.

Exit codes: 0 done (or nothing to change); 1 refused before any change (bad arguments or
parameters, or something in IIS this installer did not create); 2 not run as administrator;
3 a prerequisite is missing (IIS, its ISAPI features, the site); 4 a step failed and everything
was rolled back; 5 a step failed and not everything could be undone (the state file records what
is left: run install or remove again); 6 doctor found a failure; 70 internal error.`;

type Backend = { kind: 'local'; file: string } | { kind: 'iis' };

export async function runInstaller(user: Record<string, unknown>, o: InstallerOptions = {}): Promise<number> {
  const out = o.out ?? ((t: string) => process.stdout.write(t + '\n'));
  const err = o.err ?? ((t: string) => process.stderr.write(t + '\n'));
  const platform = o.platform ?? process.platform;
  const argv = o.argv ?? process.argv.slice(2);
  let json = argv.includes('--json');
  try {
    let folder = loadFolder(path.resolve(o.folder ?? path.dirname(process.execPath)));
    const exp = scriptInstallExports(user, folder.name);
    const first = argv.find((a) => !a.startsWith('-'));
    const custom = first !== undefined && first in exp.verbs ? first : undefined;
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: !custom,
      options: {
        config: { type: 'string' },
        iis: { type: 'boolean' },
        site: { type: 'string' },
        'physical-path': { type: 'string' },
        'site-root': { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean', short: 'q' },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    json = !!values.json;
    const quiet = !!values.quiet;
    const verbose = !!values.verbose && !quiet;
    const dryRun = !!values['dry-run'];
    const log = (line: string) => {
      if (!quiet && !json) out(line);
    };
    let verb = positionals[0] ?? 'install';
    if (verb === 'uninstall') verb = 'remove';
    if (values.help || verb === 'help') {
      out(HELP(folder.name, exp.verbs));
      return 0;
    }
    if (!custom && !(BUILTIN_VERBS as readonly string[]).includes(verb)) {
      const known = ['install', 'remove', 'status', 'doctor', ...Object.keys(exp.verbs)];
      throw new InstallError(`unknown verb '${verb}': use ${known.join(', ')} (install --help)`);
    }
    if (!custom && positionals.length > (verb === 'upgrade' ? 2 : 1)) throw new InstallError(`unexpected '${positionals[verb === 'upgrade' ? 2 : 1]}' after ${verb} (install --help)`);
    // upgrade: this (new) folder's files go into the installed one, which is then installed as usual.
    let upgrade: UpgradeResult | undefined;
    if (verb === 'upgrade' && !values.help) {
      upgrade = upgradeFolder(folder, positionals[1], { dryRun, log });
      folder = upgrade.live;
      verb = 'install';
    }

    const backend: Backend = pickBackend(values.config as string | undefined, !!values.iis, platform);
    const windowsTarget = backend.kind === 'iis';
    const params = resolveParameters(exp, folder, { site: values.site as string | undefined, windowsPaths: windowsTarget });
    const ctx: InstallContext = {
      name: folder.name,
      folder: folder.dir,
      bridge: folder.bridge,
      backend: backend.kind,
      parameters: params,
      args: custom ? verbArgs(argv, custom) : [],
      dryRun,
      verbose,
      log,
    };

    if (custom) {
      const r = await exp.verbs[custom]!.run(ctx);
      return typeof r === 'number' ? r : 0;
    }
    if (backend.kind === 'iis' && platform !== 'win32' && (verb === 'install' || verb === 'remove') && !dryRun) {
      throw new InstallError(
        `the IIS backend runs on Windows (install.exe on the server). Here, \`--iis --dry-run\` prints the plan, ` +
          `and \`--config <file>\` installs into the local host's configuration`,
      );
    }
    const paths = iisPaths(folder, values['physical-path'] as string | undefined, platform);
    const server = backend.kind === 'iis' ? (o.server ?? (platform === 'win32' ? new AppcmdServer() : new MemoryServer(FRESH_SERVER_NOTE))) : undefined;
    // Before anything is planned: without administrator rights appcmd can read nothing, and
    // every later message ("no site named …") would be wrong.
    server?.checkAccess();

    // One JSON document per run, printed at the end; text output shows the plan before applying.
    const report = (plan: Plan, result: string, extra: Record<string, unknown> = {}) => {
      const outcome = result || (changes(plan) === 0 ? 'nothing to change' : '');
      if (json) out(JSON.stringify({ verb: plan.verb, backend: plan.backend, target: plan.target, dryRun, changes: changes(plan), plan, result: outcome, exitCode: 0, ...extra }, null, 2));
      else if (!quiet) out(formatPlan(plan, folder.name, { verbose }) + (result ? `\n${result}` : ''));
    };
    const preview = (plan: Plan) => {
      if (!json && !quiet) out(formatPlan(plan, folder.name, { verbose }));
    };

    if (verb === 'install') {
      try {
        const code = await install(folder, exp, params, backend, { dryRun, log, report, preview, ctx, server: server!, paths, siteRoot: !!values['site-root'], json });
        if (upgrade?.bridgeChanged && !dryRun) {
          // The web server still has the old bridge loaded: new workers must not meet it.
          if (backend.kind === 'iis' && server instanceof AppcmdServer && server.has(`apppool|${params.appPool.name}`)) {
            applyIisSteps([{ key: null, what: `recycle ${params.appPool.name} to load the new bridge`, command: `${APPCMD} recycle apppool /apppool.name:${q(params.appPool.name)}`, undo: null }], log);
          } else {
            log(`the bridge changed: restart the web server (isapi serve, or recycle the application pool) to load it`);
          }
        }
        if (upgrade) log(`upgraded ${folder.dir}: ${upgrade.replaced.length ? upgrade.replaced.join(', ') : 'no file changed'}`);
        return code;
      } finally {
        if (upgrade) bringOnline(upgrade);
      }
    }
    if (verb === 'remove') {
      return await remove(folder, exp, params, backend, { dryRun, log, report, preview, ctx, server: server!, paths, err, siteRoot: !!values['site-root'], json });
    }
    if (verb === 'status') {
      const state = readState(folder);
      const status = backend.kind === 'local' ? localStatus(folder, backend.file, params) : iisStatus(findIis(state, params.site), server!, params.site);
      if (json) out(JSON.stringify({ ...status, exitCode: 0 }, null, 2));
      else if (!quiet) out(status.lines.join('\n'));
      return EXIT.ok;
    }
    // doctor
    const checks = backend.kind === 'local' ? await doctorLocal(folder, params, backend.file) : doctorIis(folder, params, paths, readState(folder));
    const code = checks.some((c) => c.status === 'fail') ? EXIT.doctorFailed : EXIT.ok;
    if (json) out(JSON.stringify({ checks, exitCode: code }, null, 2));
    else out(formatChecks(checks));
    return code;
  } catch (e) {
    const known = e instanceof InstallError || (e as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS');
    const message = known ? (e as Error).message : `internal error: ${(e as Error)?.stack ?? e}`;
    const exitCode = e instanceof InstallError ? e.exitCode : known ? EXIT.refused : EXIT.internal;
    if (json) out(JSON.stringify({ error: message, exitCode }, null, 2));
    err(`install: ${message}`);
    return exitCode;
  }
}

/** The words after a custom verb, without the installer's own options. */
function verbArgs(argv: string[], verb: string): string[] {
  const withValue = ['--config', '--site', '--physical-path'];
  const flags = ['--iis', '--dry-run', '--json', '--quiet', '-q', '--verbose', '-v'];
  const rest = argv.slice(argv.indexOf(verb) + 1);
  const args: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (withValue.includes(a)) i++;
    else if (!flags.includes(a) && !withValue.some((o) => a.startsWith(o + '='))) args.push(a);
  }
  return args;
}

function pickBackend(config: string | undefined, iis: boolean, platform: NodeJS.Platform): Backend {
  if (config !== undefined && iis) throw new InstallError('choose one backend: --config <file> (the local host) or --iis');
  if (config !== undefined) {
    if (!config) throw new InstallError('--config needs a file name, e.g. --config isapi-host.json');
    return { kind: 'local', file: path.resolve(config) };
  }
  if (iis || platform === 'win32') return { kind: 'iis' };
  throw new InstallError(
    `choose a backend: --config <file> installs into the local host's configuration (then \`isapi serve --config <file>\`); ` +
      `--iis --dry-run prints the IIS plan`,
  );
}

function iisPaths(folder: PackedFolder, physical: string | undefined, platform: NodeJS.Platform): IisTargetPaths {
  // A trailing backslash means nothing to IIS and only invites quoting mistakes: C:\apps\hello\ → C:\apps\hello.
  const dir = (physical ?? folder.dir).replace(/(?<=[^:\\])[\\/]+$/, '');
  const dllName = isWindowsFolder(folder) ? folder.bridgeFile : `_${folder.name}.dll`;
  const join = platform === 'win32' || physical ? path.win32.join : path.join;
  return { folder: dir, dll: join(dir, dllName) };
}

interface Run {
  dryRun: boolean;
  log: (line: string) => void;
  report: (plan: Plan, result: string, extra?: Record<string, unknown>) => void;
  preview: (plan: Plan) => void;
  ctx: InstallContext;
  server: IisServer;
  paths: IisTargetPaths;
  siteRoot: boolean;
  json: boolean;
  err?: (t: string) => void;
}

async function install(folder: PackedFolder, exp: ScriptInstallExports, params: ResolvedInstallParameters, backend: Backend, r: Run): Promise<number> {
  const state = readState(folder);
  if (backend.kind === 'local') {
    const p = planLocalInstall(folder, params, backend.file, state);
    if (r.dryRun) return r.report(p.plan, 'dry run: nothing changed'), 0;
    if (p.bytes === undefined) return r.report(p.plan, ''), 0;
    await exp.hooks.preInstall?.(r.ctx);
    let record;
    try {
      record = applyLocalInstall(backend.file, p);
      writeState(folder, withRecord(state, p.record, record));
      await exp.hooks.postInstall?.(r.ctx);
    } catch (e) {
      restoreLocal(backend.file, p.before);
      writeState(folder, state);
      throw new InstallError(`install failed and was rolled back (${backend.file} is as it was): ${(e as Error).message}`, EXIT.rolledBack);
    }
    r.report(p.plan, `installed: serve it with \`isapi serve --config ${backend.file}\``);
    return 0;
  }
  const p = planIisInstall(folder, params, r.paths, r.server, state, { siteRoot: r.siteRoot });
  if (r.dryRun) return r.report(p.plan, 'dry run: nothing changed'), 0;
  const previous = findIis(state, params.site);
  if (p.steps.length === 0) {
    // A journal whose last step had completed: nothing left to do but to say so.
    if (previous && (previous.complete === false || previous.pending)) replaceIis(folder, params.site, { ...p.record!, complete: true, pending: undefined });
    return r.report(p.plan, ''), 0;
  }
  r.preview(p.plan);
  await exp.hooks.preInstall?.(r.ctx);
  // The journal: written before the first step, and around every step after it.
  const record: IisRecord = {
    backend: 'iis',
    site: params.site,
    installedAt: new Date().toISOString(),
    complete: false,
    steps: [...(p.record?.steps ?? [])],
  };
  const save = () => replaceIis(folder, params.site, { ...record });
  save();
  const journal = {
    starting(s: IisStep) {
      record.pending = s.key !== null ? s : undefined;
      save();
    },
    applied(s: IisStep) {
      if (s.key !== null) {
        // A changed value replaces the record of the old one.
        const [kind, pool, name] = s.key.split('|');
        if (kind === 'env') record.steps = record.steps.filter((x) => !x.key?.startsWith(`env|${pool}|${name}|`));
        record.steps.push(s);
      }
      record.pending = undefined;
      save();
    },
    rolledBack(left: IisStep[]) {
      record.pending = undefined;
      if (left.length === 0) {
        // Everything this run applied was undone: the record is what it was before.
        replaceIis(folder, params.site, previous);
      } else {
        record.steps = [...(p.record?.steps ?? []), ...left];
        save();
      }
    },
  };
  const done = applyIisSteps(p.steps, r.ctx.verbose ? r.log : () => {}, journal);
  try {
    await exp.hooks.postInstall?.(r.ctx);
  } catch (e) {
    const failures = applyIisUndo([...done].reverse().filter((s) => s.undo), () => {});
    journal.rolledBack(failures.length ? done.filter((s) => s.key !== null) : []);
    throw new InstallError(`install failed and was rolled back: ${(e as Error).message}`, failures.length ? EXIT.incomplete : EXIT.rolledBack);
  }
  record.complete = true;
  save();
  r.log(`installed into IIS site "${params.site}"`);
  if (r.json) r.report(p.plan, `installed into IIS site "${params.site}"`);
  return 0;
}

async function remove(folder: PackedFolder, exp: ScriptInstallExports, params: ResolvedInstallParameters, backend: Backend, r: Run): Promise<number> {
  const state = readState(folder);
  if (backend.kind === 'local') {
    const p = planLocalRemove(folder, backend.file, state);
    if (r.dryRun) return r.report(p.plan, 'dry run: nothing changed'), 0;
    if (!p.record) return r.report(p.plan, ''), 0;
    await exp.hooks.preRemove?.(r.ctx);
    applyLocalRemove(backend.file, p);
    writeState(folder, withRecord(state, p.record, undefined));
    for (const w of p.warnings) r.err?.(`install: warning: ${w}`);
    await exp.hooks.postRemove?.(r.ctx);
    r.report(p.plan, 'removed');
    return 0;
  }
  const record = findIis(state, params.site);
  // Off Windows there is no server to ask: show what remove does after a fresh install.
  const assumed = !record && r.server instanceof MemoryServer ? iisSteps(folder, params, r.paths, r.server) : undefined;
  const p = planIisRemove(params.site, record, r.server, assumed);
  if (r.dryRun) return r.report(p.plan, 'dry run: nothing changed'), 0;
  if (!record) return r.report(p.plan, ''), 0;
  r.preview(p.plan);
  await exp.hooks.preRemove?.(r.ctx);
  // Each undone step leaves the record at once, so a killed remove can be run again.
  const left: IisRecord = { ...p.record!, steps: [...p.record!.steps] };
  const failures = applyIisUndo(p.undo, r.ctx.verbose ? r.log : () => {}, (s) => {
    left.steps = left.steps.filter((x) => x !== s);
    replaceIis(folder, params.site, left);
  });
  if (failures.length) {
    throw new InstallError(`some steps could not be undone (the record keeps them; fix and run remove again):\n  ${failures.join('\n  ')}`, EXIT.incomplete);
  }
  replaceIis(folder, params.site, undefined);
  await exp.hooks.postRemove?.(r.ctx);
  r.log(`removed from IIS site "${params.site}"`);
  if (r.json) r.report(p.plan, `removed from IIS site "${params.site}"`);
  return 0;
}

function localStatus(folder: PackedFolder, file: string, params: ResolvedInstallParameters) {
  const state = readState(folder);
  const record = findLocal(state, file);
  const { config, bytes } = readHostConfig(file);
  const apps = params.virtualDirs.map((v) => {
    const a = config.applications.find((x) => x.path === v.name);
    return { path: v.name, installed: !!a && a.installedBy === `node-isapi:${folder.name}`, extension: a?.extension };
  });
  const lines = [`${folder.name} in local host config ${file}${bytes ? '' : ' (the file does not exist)'}:`];
  for (const a of apps) lines.push(`  ${a.installed ? 'installed' : 'not installed'}: ${a.path}${a.extension ? ` → ${a.extension}` : ''}`);
  lines.push(record ? `  recorded by install on ${record.installedAt}` : '  no install recorded in this folder');
  return { backend: 'local', config: file, installed: apps.every((a) => a.installed), applications: apps, recorded: !!record, lines };
}

function iisStatus(stored: IisRecord | undefined, server: IisServer, site: string) {
  const record = settleJournal(stored, server);
  const steps = (record?.steps ?? []).map((s) => ({ what: s.what, present: s.key ? server.has(s.key) : undefined }));
  const lines = [`IIS site "${site}":`];
  if (!record) lines.push('  no install recorded in this folder');
  else if (record.complete === false) lines.push(`  incomplete: an install stopped after ${record.steps.length} step(s); run install to finish it, or remove to undo it`);
  for (const s of steps) lines.push(`  ${s.present ? 'present' : 'missing'}: ${s.what}`);
  if (server.description) lines.push(`  note: ${server.description}`);
  const complete = !!record && record.complete !== false;
  return { backend: 'iis', site, recorded: !!record, complete, installed: complete && steps.every((s) => s.present), steps, lines };
}

/** Rewrites the folder's record for one IIS site (undefined: drops it). */
function replaceIis(folder: PackedFolder, site: string, next: IisRecord | undefined): void {
  const state = readState(folder);
  writeState(folder, withRecord(state, findIis(state, site), next));
}

/** The installer bundle's entry (installer/build.ts) calls this with the user's module. */
export function installerMain(user: Record<string, unknown>): void {
  runInstaller(user).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`install: internal error: ${(e as Error)?.stack ?? e}\n`);
      process.exit(1);
    },
  );
}
