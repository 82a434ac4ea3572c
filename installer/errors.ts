// An error the person running the installer can act on: printed as one message, with an exit
// code that tells fleet tools (DSC, Ansible, SCCM, Web Deploy) what happened without parsing text.
export const EXIT = {
  /** Done, or nothing to change. */
  ok: 0,
  /** Refused before any change: bad arguments or install parameters, or something in IIS this installer did not create. */
  refused: 1,
  /** Not run as administrator: nothing changed. */
  notElevated: 2,
  /** A prerequisite is missing (IIS, its ISAPI features, the site): nothing changed. */
  prerequisite: 3,
  /** A step failed; what was applied was undone: nothing changed. */
  rolledBack: 4,
  /** A step failed and not everything could be undone, or remove left something: the state file records what is left. */
  incomplete: 5,
  /** doctor found at least one failure. */
  doctorFailed: 6,
  /** An internal error (a bug): please report it. */
  internal: 70,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class InstallError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.refused,
  ) {
    super(message);
    this.name = 'InstallError';
  }
}
