// An error the person running the installer can act on: printed as one message, exit code 1.
export class InstallError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InstallError';
  }
}
