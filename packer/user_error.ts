// An error the user can act on: printed as one line (no stack) and exit code 1.
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}
