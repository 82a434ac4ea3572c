// Stack traces of a packed app name the TypeScript files and lines, at little memory cost.
//
// Node's own source-map support (process.setSourceMapsEnabled) parses the whole map when the
// app is compiled and decodes every mapping into objects on the first stack trace: for an
// Express app that is ~12 MiB of heap kept for good, 94% of it for node_modules nobody reads.
// Here nothing is loaded until a stack trace has a frame in the app; then the map's `mappings`
// string is kept as it is, with an index of where each generated line starts and the decoder's
// state there, and only the line a frame is on is decoded.
//
// packer/bundle.ts writes the map (its sources as absolute paths) as a SEA asset and beside the
// app file (for plain node at pack time), and makes this module the app's first import, so it is
// installed before any user code runs, in the worker and in each pool thread.

/** An original position: a file path, a 0-based line and a 0-based column. */
export interface OriginalPosition {
  source: string;
  line: number;
  column: number;
}

const BASE64 = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) BASE64['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.charCodeAt(i)] = i;
const SEMICOLON = 59;
const COMMA = 44;

/** A source map read lazily: one pass to index it, then one generated line decoded per lookup. */
export class LineIndexedSourceMap {
  /** Where each generated line starts in `mappings`; one more entry for the end. */
  private readonly lineStart: Int32Array;
  /** Source index, original line and original column in force at the start of each line (and at the end). */
  private readonly state: Int32Array;
  /** 1 where the last segment before a line start has no original position. */
  private readonly startsUnmapped: Uint8Array;
  /** The first generated line with a mapping (-1: none). */
  private readonly firstMappedLine: number;
  /** Where the VLQ decoder is in `mappings`. */
  private pos = 0;

  constructor(
    private readonly mappings: string,
    private readonly sources: readonly string[],
  ) {
    let lines = 1;
    for (let i = mappings.indexOf(';'); i >= 0; i = mappings.indexOf(';', i + 1)) lines++;
    this.lineStart = new Int32Array(lines + 1);
    this.state = new Int32Array(3 * (lines + 1));
    this.startsUnmapped = new Uint8Array(lines + 1);
    let line = 0;
    let field = 0;
    let unmapped = false;
    let source = 0;
    let origLine = 0;
    let origColumn = 0;
    let firstMapped = -1;
    while (this.pos < mappings.length) {
      const c = mappings.charCodeAt(this.pos);
      if (c === SEMICOLON || c === COMMA) {
        this.pos++;
        field = 0;
        if (c === SEMICOLON) {
          line++;
          this.lineStart[line] = this.pos;
          this.setState(line, source, origLine, origColumn, unmapped);
        }
        continue;
      }
      const v = this.vlq();
      if (field === 0) unmapped = true;
      else if (field === 1) source += v;
      else if (field === 2) origLine += v;
      else if (field === 3) {
        origColumn += v;
        unmapped = false;
        if (firstMapped < 0) firstMapped = line;
      }
      field++;
    }
    this.lineStart[lines] = mappings.length;
    this.setState(lines, source, origLine, origColumn, unmapped);
    this.firstMappedLine = firstMapped;
  }

  static fromJSON(json: string): LineIndexedSourceMap {
    const map = JSON.parse(json) as { mappings: string; sources: string[]; sourceRoot?: string };
    const root = map.sourceRoot ?? '';
    return new LineIndexedSourceMap(map.mappings, root ? map.sources.map((s) => root + s) : map.sources);
  }

  /**
   * The original position of a generated one (0-based line and column): the last mapping at or
   * before it, as Node's SourceMap.findEntry answers (a column left of a line's first mapping
   * takes the previous line's last one); null when there is none or it maps to no source.
   */
  lookup(line: number, column: number): OriginalPosition | null {
    const lines = this.lineStart.length - 1;
    if (this.firstMappedLine < 0 || line < this.firstMappedLine) return null;
    if (line >= lines) return this.stateAt(lines);
    let source = this.state[3 * line]!;
    let origLine = this.state[3 * line + 1]!;
    let origColumn = this.state[3 * line + 2]!;
    let found: OriginalPosition | null | undefined;
    let genColumn = 0;
    // The line's segments end at the next ';' (or, on the last line, at the end).
    const end = line + 1 < lines ? this.lineStart[line + 1]! - 1 : this.mappings.length;
    const segmentEnds = () => this.pos >= end || this.mappings.charCodeAt(this.pos) === COMMA;
    for (this.pos = this.lineStart[line]!; this.pos < end; this.pos++) {
      genColumn += this.vlq();
      if (genColumn > column) break;
      if (segmentEnds()) {
        found = null; // a segment without an original position
        continue;
      }
      source += this.vlq();
      origLine += this.vlq();
      origColumn += this.vlq();
      if (!segmentEnds()) this.vlq(); // the name, not needed
      found = this.position(source, origLine, origColumn);
    }
    if (found !== undefined) return found;
    return line > this.firstMappedLine ? this.stateAt(line) : null;
  }

  private setState(line: number, source: number, origLine: number, origColumn: number, unmapped: boolean): void {
    this.startsUnmapped[line] = unmapped ? 1 : 0;
    this.state[3 * line] = source;
    this.state[3 * line + 1] = origLine;
    this.state[3 * line + 2] = origColumn;
  }

  private stateAt(line: number): OriginalPosition | null {
    if (this.startsUnmapped[line]) return null;
    return this.position(this.state[3 * line]!, this.state[3 * line + 1]!, this.state[3 * line + 2]!);
  }

  private position(source: number, line: number, column: number): OriginalPosition | null {
    const path = this.sources[source];
    return path === undefined ? null : { source: path, line, column };
  }

  /** Decodes one base64 VLQ value at `pos` and moves past it. */
  private vlq(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const digit = BASE64[this.mappings.charCodeAt(this.pos++)] ?? -1;
      if (digit < 0) throw new Error(`invalid source map mappings at ${this.pos - 1}`);
      result += (digit & 31) * 2 ** shift;
      if (!(digit & 32)) break;
      shift += 5;
    }
    return result & 1 ? -(result - 1) / 2 : result / 2;
  }
}

type PrepareStackTrace = (err: Error, callsites: NodeJS.CallSite[]) => unknown;

function builtin<T>(id: string): T {
  const get = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
  return (get ? get(id) : require(id)) as T;
}

/** The map of the app compiled as `appFile`: a SEA asset, else the file beside it. */
function readMap(appFile: string, asset: string): string {
  let sea: typeof import('node:sea') | undefined;
  try {
    sea = builtin<typeof import('node:sea')>('node:sea');
  } catch {}
  // getRawAsset is a view of the executable itself: only the decoded text is copied.
  if (sea?.isSea()) return Buffer.from(sea.getRawAsset(asset)).toString('utf8');
  return builtin<typeof import('node:fs')>('node:fs').readFileSync(`${appFile}.map`, 'utf8');
}

/** The header line of a stack trace, as V8 writes it (Error.prototype.toString, guarded). */
function errorString(err: unknown): string {
  try {
    return Error.prototype.toString.call(err);
  } catch (thrown) {
    try {
      return `<error: ${Error.prototype.toString.call(thrown)}>`;
    } catch {
      return '<error>';
    }
  }
}

/**
 * Sets Error.prepareStackTrace to write V8's default stack trace, with each frame in `appFile`
 * located in its original source. Leaves a prepareStackTrace someone else set in place, and does
 * nothing if already installed. Returns whether it installed.
 */
export function installSourceMaps(appFile: string, loadMap: () => string): boolean {
  const previous = Error.prepareStackTrace as PrepareStackTrace | undefined;
  // Node sets its own default (ErrorPrepareStackTrace) in every realm: that one counts as none.
  if (previous !== undefined && previous.name !== 'ErrorPrepareStackTrace') return false;
  let map: LineIndexedSourceMap | null | undefined;

  const frame = (callsite: NodeJS.CallSite): string => {
    const text = String(callsite);
    try {
      if (callsite.getFileName() !== appFile) return text;
      if (map === undefined) {
        try {
          map = LineIndexedSourceMap.fromJSON(loadMap());
        } catch {
          map = null; // no map: frames stay as they are (and no retry on every trace)
        }
      }
      const line = callsite.getLineNumber();
      const column = callsite.getColumnNumber();
      if (!map || line === null || column === null) return text;
      const location = `${appFile}:${line}:${column}`;
      const at = text.lastIndexOf(location);
      const original = at >= 0 ? map.lookup(line - 1, column - 1) : null;
      if (!original) return text;
      return `${text.slice(0, at)}${original.source}:${original.line + 1}:${original.column + 1}${text.slice(at + location.length)}`;
    } catch {
      return text;
    }
  };

  const prepareStackTrace: PrepareStackTrace = (err, callsites) => {
    // Node's default with no frames gives its header (which adds [code] to Node's own errors).
    const header = previous ? String(previous(err, [])) : errorString(err);
    return callsites.length ? `${header}\n    at ${callsites.map(frame).join('\n    at ')}` : header;
  };
  Error.prepareStackTrace = prepareStackTrace;
  return true;
}

// Defined by packer/bundle.ts for the worker's bundle: the SEA asset holding the app's map.
declare const __ISAPI_MAP_ASSET__: string | undefined;
if (typeof __ISAPI_MAP_ASSET__ === 'string' && typeof __filename === 'string') {
  const appFile = __filename;
  const asset = __ISAPI_MAP_ASSET__;
  installSourceMaps(appFile, () => readMap(appFile, asset));
}
