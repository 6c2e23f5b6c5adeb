// The errors a user can cause: the CLI prints the message as one sentence that says what to do, and exits
// with the code. Every layer may throw one; none needs to know who prints it.

/** A user-fixable problem: the CLI prints its message as one sentence and exits non-zero. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
