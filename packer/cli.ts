// The `isapi` command: pack, serve, help.
import { parseArgs } from 'node:util';
import { DEFAULT_NODE_VERSION } from './node_binary';
import { dev } from './dev';
import { pack } from './pack';
import { TARGETS, type Target } from './paths';
import { serve } from './serve';
import { UserError } from './user_error';

const HELP = `isapi — IIS ISAPI extensions and filters in TypeScript

Usage:
  isapi pack <script.ts> [--out <dir>] [--target ${TARGETS.join('|')}] [--node <version>]
      Bundle the script with the node-isapi runtime into a Node single executable and
      write a deployable folder: <out>/<name>/ with _<name>.so|.dll (the bridge IIS loads),
      <name>[.exe] (the worker) and <name>.manifest.json.
      --out     output directory (default: dist)
      --target  platform of the folder (default: this machine's); win-ia32 is for 32-bit IIS
                pools: a 32-bit bridge whose workers are x64 (docs/iis-32-bit-pools.md)
      --node    Node version inside the worker (default: ${DEFAULT_NODE_VERSION}, proven on every target)

  isapi serve <folder> [--port <n>] [--bind <addr>] [--vdir </path>] [--root <dir>] [--workers <n>]
  isapi serve --dll <library> [--vdir </path>] [--port <n>] ...
      Serve a packed folder (or any native ISAPI extension library) with isapi-host, the
      local ISAPI web server: http://127.0.0.1:8080/<name>/ by default. A folder whose script
      exports only __FilterFactory__ is loaded as a global filter in front of every request
      (--root for static files); one that exports both is loaded as both.
      --port     TCP port (default 8080; 0 picks a free one)
      --bind     address to listen on (default 127.0.0.1)
      --vdir     virtual directory the extension answers (default /<name>)
      --root     folder of static files served for unmapped paths
      --workers  worker processes (default: one per CPU)

  isapi serve --config <file> [--port <n>] [--bind <addr>]
      Serve every application of a local host configuration file, as written by a packed
      folder's installer (dist/<name>/install --config <file>), and print each one's URL;
      --port/--bind override the file's.

  isapi serve --wine <folder> [same options as serve]
      Linux: serve a win-x64 or win-ia32 folder (isapi pack --target win-x64|win-ia32) with the
      Windows isapi-host.exe of its bitness under Wine, to smoke-test what you ship
      (apt-get install -y wine64 wine, and wine32:i386 for win-ia32; Node 22.x workers).
      The Wine prefix is $ISAPI_WINEPREFIX, else one in ~/.cache/node-isapi (prepared once).

  isapi dev <script.ts> [--port <n>] [--bind <addr>] [--vdir </path>] [--root <dir>] [--workers <n>] [--node <version>] [--target win-x64]
      The development loop: serve the script through isapi-host and the real bridge without
      building a single executable (workers run the bundle with the cached plain Node of
      --node's version), rebuild on every save of the script or anything it imports, and swap
      the workers without failing a request. Build errors are printed as file:line:column and
      served as an error page until fixed. Detailed 500 pages are on (ISAPI_DETAILED_ERRORS=1);
      the workers' output is printed here. A script that exports only __FilterFactory__ runs as
      a global filter in front of --root's static files. Ctrl+C stops everything.
      --port     TCP port (default 8080; 0 picks a free one)
      --workers  worker processes (default 1)
      --target   win-x64 on Linux: the Windows host, bridge and node.exe workers under Wine

  isapi --help | isapi <command> --help

Docs: README.md and docs/ in the node-isapi package.`;

function wholeNumber(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UserError(`${what} must be a whole number, got '${v}'`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP);
    return 0;
  }
  if (command === '--version' || command === '-v') {
    console.log(require('../package.json').version);
    return 0;
  }
  const log = (line: string) => console.log(line);
  if (command === 'pack') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        target: { type: 'string' },
        node: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) return console.log(HELP), 0;
    if (positionals.length !== 1) throw new UserError('isapi pack needs exactly one script, e.g. isapi pack examples/hello.ts');
    if (values.target && !TARGETS.includes(values.target as Target)) {
      throw new UserError(`unknown --target '${values.target}': use ${TARGETS.join(' or ')}`);
    }
    await pack({ script: positionals[0]!, outDir: values.out, target: values.target as Target | undefined, node: values.node, log });
    return 0;
  }
  if (command === 'serve') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        port: { type: 'string' },
        bind: { type: 'string' },
        vdir: { type: 'string' },
        root: { type: 'string' },
        dll: { type: 'string' },
        workers: { type: 'string' },
        config: { type: 'string' },
        wine: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) return console.log(HELP), 0;
    const num = (v: string | undefined, what: string) => {
      if (v === undefined) return undefined;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new UserError(`${what} must be a whole number, got '${v}'`);
      return n;
    };
    return serve({
      folder: positionals[0],
      dll: values.dll,
      vdir: values.vdir,
      port: num(values.port, '--port'),
      bind: values.bind,
      root: values.root,
      workers: num(values.workers, '--workers'),
      config: values.config,
      wine: values.wine,
      log,
    });
  }
  if (command === 'dev') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        port: { type: 'string' },
        bind: { type: 'string' },
        vdir: { type: 'string' },
        root: { type: 'string' },
        workers: { type: 'string' },
        node: { type: 'string' },
        target: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) return console.log(HELP), 0;
    if (positionals.length !== 1) throw new UserError('isapi dev needs exactly one script, e.g. isapi dev examples/hello.ts');
    if (values.target && !TARGETS.includes(values.target as Target)) {
      throw new UserError(`unknown --target '${values.target}': use ${TARGETS.join(' or ')}`);
    }
    return dev({
      script: positionals[0]!,
      port: wholeNumber(values.port, '--port'),
      bind: values.bind,
      vdir: values.vdir,
      root: values.root,
      workers: wholeNumber(values.workers, '--workers'),
      node: values.node,
      target: values.target as Target | undefined,
      log,
    });
  }
  throw new UserError(`unknown command '${command}': use pack, serve or dev (isapi --help)`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UserError || (err as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS')) {
      console.error(`isapi: ${(err as Error).message}`);
    } else {
      console.error(`isapi: internal error: ${(err as Error)?.stack ?? err}`);
    }
    process.exit(1);
  },
);
