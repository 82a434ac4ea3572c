// The `isapi` command: pack, serve, dev, --version, --help (cli_help.ts has the texts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { globalHelp, verbHelp, VERBS, type Verb } from './cli_help';
import { dev } from './dev';
import { pack } from './pack';
import { packageRoot, TARGETS, type Target } from './paths';
import { serve } from './serve';
import { UserError } from './user_error';

function isVerb(word: string): word is Verb {
  return (VERBS as readonly string[]).includes(word);
}

/** Read at run time, so a CLI bundle left from an older build still tells the package's version. */
function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

function wholeNumber(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UserError(`${what} must be a whole number, got '${v}'`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h') {
    console.log(globalHelp());
    return 0;
  }
  if (command === 'help') {
    const verb = rest[0];
    if (verb === undefined) console.log(globalHelp());
    else if (isVerb(verb)) console.log(verbHelp(verb));
    else throw new UserError(`no help for '${verb}': the commands are ${VERBS.join(', ')}`);
    return 0;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    console.log(packageVersion());
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
    if (values.help) return console.log(verbHelp('pack')), 0;
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
    if (values.help) return console.log(verbHelp('serve')), 0;
    return serve({
      folder: positionals[0],
      dll: values.dll,
      vdir: values.vdir,
      port: wholeNumber(values.port, '--port'),
      bind: values.bind,
      root: values.root,
      workers: wholeNumber(values.workers, '--workers'),
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
    if (values.help) return console.log(verbHelp('dev')), 0;
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
  throw new UserError(`unknown command '${command}': use ${VERBS.join(', ')} (isapi --help)`);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    if (err instanceof UserError) {
      console.error(`isapi: ${(err as Error).message}`);
    } else if ((err as { code?: string })?.code?.startsWith?.('ERR_PARSE_ARGS')) {
      // parseArgs names the option; the verb's help lists the right ones.
      const verb = process.argv[2] ?? '';
      console.error(`isapi: ${(err as Error).message} (isapi ${isVerb(verb) ? `${verb} ` : ''}--help)`);
    } else {
      console.error(`isapi: internal error: ${(err as Error)?.stack ?? err}`);
    }
    process.exit(1);
  },
);
