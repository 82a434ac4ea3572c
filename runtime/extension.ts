// Extension base classes with pywin32's shape: GetExtensionVersion, HttpExtensionProc,
// TerminateExtension. A script exports `__ExtensionFactory__` returning one of these.

import type { ECB } from './ecb';

export interface ExtensionVersionInfo {
  /** lpszExtensionDesc: shown by the server in diagnostics. */
  ExtensionDesc: string;
}

export type HandlerResult = number | void | undefined;

export interface Extension {
  GetExtensionVersion?(vi: ExtensionVersionInfo): void | Promise<void>;
  /**
   * Handles one request. Return (or resolve to) an HSE_STATUS_* code: the runtime then ends the
   * request unless the handler already called DoneWithSession. Return HSE_STATUS_PENDING to
   * keep the request open and call ecb.DoneWithSession() later.
   */
  HttpExtensionProc(ecb: ECB): HandlerResult | Promise<HandlerResult>;
  /** Called once when the worker stops (HSE_TERM_ADVISORY_UNLOAD or HSE_TERM_MUST_UNLOAD). */
  TerminateExtension?(status: number): void | Promise<void>;
}

/** pywin32's SimpleExtension: subclass it and implement HttpExtensionProc. */
export abstract class SimpleExtension implements Extension {
  GetExtensionVersion(vi: ExtensionVersionInfo): void {
    vi.ExtensionDesc = this.constructor.name;
  }
  abstract HttpExtensionProc(ecb: ECB): HandlerResult | Promise<HandlerResult>;
  TerminateExtension(_status: number): void {}
}

/** What a user's script may export. */
export interface UserModule {
  __ExtensionFactory__?: () => Extension | Promise<Extension>;
  __FilterFactory__?: () => unknown;
  [name: string]: unknown;
}
