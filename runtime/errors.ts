// Errors with pywin32's names. An ISAPIError carries the Win32 error code ISAPI reported.

export class ISAPIError extends Error {
  constructor(
    readonly errno: number,
    readonly strerror: string,
    readonly funcname = '',
  ) {
    super(funcname ? `${funcname}: ${strerror} (error ${errno})` : `${strerror} (error ${errno})`);
    this.name = new.target.name;
  }
}

/** Raised by ECB methods: the server refused a call (unknown variable, session already done…). */
export class ExtensionError extends ISAPIError {}

/** Raised by filter-context methods. */
export class FilterError extends ISAPIError {}

/** Thrown by a handler to ask for a fresh worker (pywin32's InternalReloadException). */
export class InternalReloadException extends Error {
  constructor(message = 'reload requested') {
    super(message);
    this.name = 'InternalReloadException';
  }
}
