// What the bundle cannot carry, reported at pack time with the user's file and line: esbuild's
// own warnings (shown, not silenced), a require()/import() whose module name is computed at run
// time or through createRequire(), and a require() esbuild could not resolve but left in place
// because it sits in a try block. Both of the last two work beside the project's node_modules and fail once the folder is
// copied to a server (the packed worker has no node_modules), but both may be intentional (an
// optional dependency, a plugin loaded from an absolute path), so they are warnings; an import
// that cannot be resolved anywhere else is esbuild's error and stops the pack.
import type { Message, Metafile } from 'esbuild';
import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { packageRoot } from './paths';

export function formatMessage(m: Message, kind: 'warning' | 'error' = 'warning'): string {
  const where = m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}: ` : '';
  return `${where}${kind}: ${m.text}`;
}

/** The source with comments and the text of string literals blanked out (same length and lines). */
export function codeOnly(src: string): string {
  const out = src.split('');
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== '\n') out[k] = ' ';
  };
  let i = 0;
  // Template literals nest through ${…}: a stack of brace depths at which a template resumes.
  const templates: number[] = [];
  let depth = 0;
  const template = () => {
    // i is just after a backtick or a closing brace of ${…}: text until ` or ${.
    const start = i;
    while (i < src.length && src[i] !== '`' && !(src[i] === '$' && src[i + 1] === '{')) i += src[i] === '\\' ? 2 : 1;
    blank(start, Math.min(i, src.length));
    if (src[i] === '$') {
      templates.push(depth);
      depth++;
      i += 2;
    } else i++;
  };
  while (i < src.length) {
    const c = src[i]!;
    if (c === '/' && src[i + 1] === '/') {
      const end = src.indexOf('\n', i);
      blank(i, end < 0 ? src.length : end);
      i = end < 0 ? src.length : end;
    } else if (c === '/' && src[i + 1] === '*') {
      const end = src.indexOf('*/', i + 2);
      blank(i, end < 0 ? src.length : end + 2);
      i = end < 0 ? src.length : end + 2;
    } else if (c === '"' || c === "'") {
      const start = ++i;
      while (i < src.length && src[i] !== c && src[i] !== '\n') i += src[i] === '\\' ? 2 : 1;
      blank(start, Math.min(i, src.length));
      i++;
    } else if (c === '`') {
      i++;
      template();
    } else if (c === '{') {
      depth++;
      i++;
    } else if (c === '}') {
      depth--;
      i++;
      if (templates.length && templates[templates.length - 1] === depth) {
        templates.pop();
        template();
      }
    } else i++;
  }
  return out.join('');
}

function lineCol(src: string, index: number): string {
  const before = src.slice(0, index);
  const line = before.split('\n').length;
  return `${line}:${index - before.lastIndexOf('\n')}`;
}

const builtins = new Set(builtinModules);
const isBuiltin = (spec: string) => spec.startsWith('node:') || builtins.has(spec) || builtins.has(spec.split('/')[0]!);

/** The user's own source files among a build's inputs: not dependencies, not node-isapi's runtime. */
function userInputs(metafile: Metafile, workDir: string): Array<{ key: string; file: string }> {
  const runtime = path.join(packageRoot, 'runtime') + path.sep;
  return Object.keys(metafile.inputs)
    .filter((key) => !key.includes(':') || /^[A-Za-z]:[\\/]/.test(key)) // namespaced inputs (<stdin>, plugins)
    .map((key) => ({ key, file: path.resolve(workDir, key) }))
    .filter(({ file }) => !file.split(/[\\/]/).includes('node_modules') && !file.startsWith(runtime) && /\.[cm]?[jt]sx?$/.test(file));
}

/** Warnings for what the bundle leaves to run time in the user's own files, each at its line. */
export function unbundledRequires(metafile: Metafile, workDir: string = process.cwd()): string[] {
  const warnings: string[] = [];
  for (const { key, file } of userInputs(metafile, workDir)) {
    let src: string;
    try {
      src = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const code = codeOnly(src);
    const shown = path.relative(process.cwd(), file) || file;
    for (const m of code.matchAll(/(?<![.\w$])(require|import)\s*\(\s*/g)) {
      const at = m.index! + m[0].length;
      const next = src[at];
      if (next === ')' || next === undefined) continue;
      if (next === "'" || next === '"') continue;
      if (next === '`') {
        // esbuild bundles `./dir/${x}.js` as every matching file; other templates stay computed.
        const end = src.indexOf('`', at + 1);
        const text = src.slice(at + 1, end < 0 ? undefined : end);
        if (!text.includes('${') || text.startsWith('./') || text.startsWith('../')) continue;
      }
      const close = code.indexOf(')', at);
      const expr = src.slice(m.index!, close < 0 ? at + 20 : close + 1).replace(/\s+/g, ' ');
      warnings.push(
        `${shown}:${lineCol(src, m.index!)}: warning: \`${expr}\` names its module at run time, so it is not bundled; ` +
          `the packed worker has no node_modules, so there it can load only Node's built-in modules or a file by absolute path. ` +
          `Name the module literally (${m[1] === 'import' ? "e.g. one `await import('pkg')` per choice" : "e.g. `require('pkg')`"}) to bundle it`,
      );
    }
    // A require made by createRequire() is a run-time require: esbuild bundles none of its calls.
    for (const m of code.matchAll(/(?<![.\w$])createRequire\s*\(/g)) {
      warnings.push(
        `${shown}:${lineCol(src, m.index!)}: warning: modules loaded through \`createRequire()\` are not bundled; the packed worker has no node_modules, ` +
          `so there it loads only Node's built-in modules or files by absolute path. Import them instead (\`import pkg from 'pkg'\`) to bundle them`,
      );
    }
    for (const imp of metafile.inputs[key]!.imports) {
      // A glob ('./locale/**/*.js', from a template) lists its files as imports of their own.
      if (!imp.external || isBuiltin(imp.path) || path.isAbsolute(imp.path) || imp.path.includes('*')) continue;
      const literal = [`'${imp.path}'`, `"${imp.path}"`, `\`${imp.path}\``].map((q) => src.indexOf(q)).filter((n) => n >= 0);
      const where = literal.length ? `:${lineCol(src, Math.min(...literal))}` : '';
      warnings.push(
        `${shown}${where}: warning: "${imp.path}" cannot be resolved, so it is not bundled (esbuild keeps it because the ${imp.kind === 'require-call' ? 'require' : 'import'} is in a try block); ` +
          `the packed worker will not find it at run time, so its catch runs. Install it (npm install ${imp.path.startsWith('@') ? imp.path.split('/').slice(0, 2).join('/') : imp.path.split('/')[0]}) to bundle it`,
      );
    }
  }
  return warnings;
}
