// Every header the runtime writes for a handler is checked here first, as Node's
// checkIsHttpToken/checkInvalidHeaderChar do for http.ServerResponse: a CR or LF in a name or a
// value would let request data split the response (a second header, a second body), and a NUL
// would make a server end the header text early. The bridge checks again in the web server's
// process (native/bridge/response_check.cc); these errors say which header and which call.

import { ERROR_INVALID_PARAMETER } from './constants';
import { ExtensionError, type ISAPIError } from './errors';

type ErrorClass = new (errno: number, strerror: string, funcname?: string) => ISAPIError;

// RFC 9110 §5.6.2 token.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Controls but HTAB: CR, LF, NUL and the rest (RFC 9110 §5.5 field-value).
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

function shown(s: string): string {
  return JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);
}

export function checkHeaderName(name: string, funcname: string, E: ErrorClass = ExtensionError): void {
  if (!TOKEN.test(name)) {
    throw new E(ERROR_INVALID_PARAMETER, `header name ${shown(name)} is not a valid token (RFC 9110): no spaces, colons, CR, LF or NUL`, funcname);
  }
}

export function checkHeaderValue(name: string, value: string, funcname: string, E: ErrorClass = ExtensionError): void {
  if (CONTROL.test(value)) {
    throw new E(ERROR_INVALID_PARAMETER, `header ${shown(name)} has a CR, LF, NUL or other control character in its value ${shown(value)}`, funcname);
  }
}

/**
 * ISAPI header text: "Name: value" lines ending in CRLF. With `body`, a blank line ends
 * the headers and what follows is body (SEND_RESPONSE_HEADER's convention); without it, the text
 * is a list of header lines only (AddResponseHeaders), so a blank line inside it is refused.
 */
export function checkHeaderLines(text: string, funcname: string, opts: { body: boolean }, E: ErrorClass = ExtensionError): void {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const last = i === lines.length - 1;
    // Lines end in CRLF: a bare LF is what a value smuggling a line break looks like (some
    // clients read it as one, the bridge refuses it).
    if (!last && !lines[i]!.endsWith('\r')) throw new E(ERROR_INVALID_PARAMETER, `header line ${shown(lines[i]!)} ends in a bare LF: end header lines with CRLF`, funcname);
    const line = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!;
    if (line === '') {
      if (last || opts.body) return;
      // Only the closing blank line(s) may follow.
      if (lines.slice(i + 1).every((l) => l === '' || l === '\r')) return;
      throw new E(ERROR_INVALID_PARAMETER, 'a blank line inside header lines would start a body', funcname);
    }
    const colon = line.indexOf(':');
    if (colon < 0) throw new E(ERROR_INVALID_PARAMETER, `header line ${shown(line)} has no ':'`, funcname);
    const name = line.slice(0, colon).replace(/[ \t]+$/, '');
    checkHeaderName(name, funcname, E);
    checkHeaderValue(name, line.slice(colon + 1), funcname, E);
  }
}

/** "200 OK": three digits, then nothing or a space and a reason without controls. */
export function checkStatus(status: string, funcname: string, E: ErrorClass = ExtensionError): void {
  if (status === '') return; // the server's "200 OK"
  if (!/^\d{3}( |$)/.test(status) || CONTROL.test(status)) {
    throw new E(ERROR_INVALID_PARAMETER, `status ${shown(status)} must be three digits and a reason phrase without CR, LF or NUL`, funcname);
  }
}

/** A URL the server writes into a header (Location) or reads as a C string. */
export function checkUrl(url: string, funcname: string, E: ErrorClass = ExtensionError): void {
  if (CONTROL.test(url)) throw new E(ERROR_INVALID_PARAMETER, `URL ${shown(url)} has a CR, LF, NUL or other control character`, funcname);
}

/** A string the server reads as a C string: a NUL would end it early. */
export function checkNoNul(s: string, what: string, funcname: string, E: ErrorClass = ExtensionError): void {
  if (s.includes('\0')) throw new E(ERROR_INVALID_PARAMETER, `${what} ${shown(s)} has a NUL`, funcname);
}
