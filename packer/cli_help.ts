// The `isapi` command's help: one text per verb (`isapi <verb> --help`), and the whole of them
// (`isapi --help`). README.md's "Command line" section shows the same usage lines.
import { DEFAULT_NODE_VERSION } from './node_binary';
import { TARGETS } from './paths';

export const VERBS = ['pack', 'serve', 'dev'] as const;
export type Verb = (typeof VERBS)[number];

const PACK = `isapi pack <script.ts> [--out <dir>] [--target ${TARGETS.join('|')}] [--node <version>]
    Bundle the script with the node-isapi runtime into a Node single executable and
    write a deployable folder: <out>/<name>/ with _<name>.so|.dll (the bridge IIS loads),
    <name>[.exe] (the worker: the one copy of Node in the folder), install[.exe] (a small
    launcher that runs the worker as the installer) and <name>.manifest.json; win-ia32 adds
    _<name>.x64.node (the x64 workers' channel addon).
    The bridge and host come prebuilt with the package: no compiler is needed, and any
    build machine (Linux x64 or Windows x64) packs for every target.
    --out     output directory (default: dist)
    --target  platform of the folder (default: this machine's); win-ia32 is for 32-bit IIS
              pools: a 32-bit bridge whose workers are x64 (docs/iis-32-bit-pools.md)
    --node    Node version inside the worker (default: ${DEFAULT_NODE_VERSION}, proven on every target)

    Example: isapi pack app.ts --target win-x64`;

const SERVE = `isapi serve <folder> [--port <n>] [--bind <addr>] [--vdir </path>] [--root <dir>] [--workers <n>]
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
    The Wine prefix is $ISAPI_WINEPREFIX, else one in ~/.cache/node-isapi (prepared once).`;

const DEV = `isapi dev <script.ts> [--port <n>] [--bind <addr>] [--vdir </path>] [--root <dir>] [--workers <n>] [--node <version>] [--target win-x64]
    The development loop: serve the script through isapi-host and the real bridge without
    building a single executable (workers run the bundle with the cached plain Node of
    --node's version), rebuild on every save of the script or anything it imports, and swap
    the workers without failing a request. Build errors are printed as file:line:column and
    served as an error page until fixed. Detailed 500 pages are on (ISAPI_DETAILED_ERRORS=1);
    the workers' output is printed here. A script that exports only __FilterFactory__ runs as
    a global filter in front of --root's static files. Ctrl+C stops everything.
    --port     TCP port (default 8080; 0 picks a free one)
    --bind     address to listen on (default 127.0.0.1)
    --vdir     virtual directory the extension answers (default /<name>)
    --root     folder of static files served for unmapped paths
    --workers  worker processes (default 1)
    --node     Node version of the workers (default: ${DEFAULT_NODE_VERSION}, as pack)
    --target   win-x64 on Linux: the Windows host, bridge and node.exe workers under Wine`;

const VERB_HELP: Record<Verb, string> = { pack: PACK, serve: SERVE, dev: DEV };

const FOOTER = 'Docs: README.md and docs/ in the node-isapi package (node_modules/node-isapi).';

export function verbHelp(verb: Verb): string {
  return `Usage:\n${indent(VERB_HELP[verb])}\n\n${FOOTER}`;
}

export function globalHelp(): string {
  return [
    'isapi — IIS ISAPI extensions and filters in TypeScript',
    '',
    'Usage:',
    ...VERBS.map((v) => `${indent(VERB_HELP[v])}\n`),
    '  isapi --version          print the version of node-isapi',
    '  isapi --help             this text; isapi <command> --help: one command',
    '',
    FOOTER,
  ].join('\n');
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
}
