// Server variables the worker can answer without asking the bridge: the ones the bridge
// prefetched with the request, the ECB's own fields, and every header-derived name
// (HTTP_*, HEADER_*, ALL_HTTP) computed from ALL_RAW the way the host computes them.

import type { RequestBegin } from './channel';

export type RawHeaders = Array<[name: string, value: string]>;

export function parseAllRaw(allRaw: string): RawHeaders {
  const out: RawHeaders = [];
  for (const line of allRaw.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    out.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return out;
}

const toCgi = (name: string) => name.toUpperCase().replace(/-/g, '_');

function joined(headers: RawHeaders, match: (name: string) => boolean): string | undefined {
  const values = headers.filter(([n]) => match(n)).map(([, v]) => v);
  return values.length ? values.join(', ') : undefined;
}

/**
 * The variables the bridge sends with every request (native/channel/messages.h
 * kPrefetchedVariables; test/unit/wire_schema.test.ts checks that the two lists agree).
 */
export const PREFETCHED_VARIABLES = [
  'URL', 'SCRIPT_NAME', 'SERVER_PROTOCOL', 'REMOTE_ADDR', 'REMOTE_PORT', 'SERVER_NAME', 'SERVER_PORT', 'HTTPS',
  'UNENCODED_URL', 'ALL_RAW',
] as const;

/** The variables the request's own fields answer. */
const FIELD_VARIABLES = new Map<string, (begin: RequestBegin) => string>([
  ['REQUEST_METHOD', (b) => b.method],
  ['QUERY_STRING', (b) => b.query],
  ['PATH_INFO', (b) => b.pathInfo],
  ['PATH_TRANSLATED', (b) => b.pathTranslated],
  ['CONTENT_TYPE', (b) => b.contentType],
]);

/**
 * The value, or undefined when the variable does not exist, or null when only the server
 * can tell (the caller then asks the bridge).
 */
export function localServerVariable(
  name: string,
  begin: RequestBegin,
  headers: RawHeaders | null,
): string | undefined | null {
  const upper = name.toUpperCase();
  if (upper in begin.vars) return begin.vars[upper];
  const field = FIELD_VARIABLES.get(upper);
  if (field) return field(begin);
  return headers ? headerVariable(name, headers) : null;
}

/** Every variable known without the bridge, but for the header-derived ones: what a pool thread gets. */
export function knownVariables(begin: RequestBegin): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, field] of FIELD_VARIABLES) out[name] = field(begin);
  return Object.assign(out, begin.vars);
}

/** HTTP_*, HEADER_* and ALL_HTTP from the request headers; null for any other name. */
export function headerVariable(name: string, headers: RawHeaders): string | undefined | null {
  const upper = name.toUpperCase();
  if (upper === 'ALL_HTTP') return headers.map(([n, v]) => `HTTP_${toCgi(n)}:${v}\r\n`).join('');
  if (upper.startsWith('HTTP_') && upper !== 'HTTP_VERSION') {
    const want = upper.slice(5);
    return joined(headers, (n) => toCgi(n) === want);
  }
  if (upper.startsWith('HEADER_')) {
    const want = name.slice(7).toLowerCase();
    return joined(headers, (n) => n.toLowerCase() === want);
  }
  return null;
}
