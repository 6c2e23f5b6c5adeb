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

/**
 * A condition that passes by itself: a process slow to become ready, a port not yet released, a
 * connection refused or reset. Activities that hit one are retried (the workflow only refuses to retry
 * `UserError` proper, by type name); the CLI prints its message like any UserError's, and that message
 * still says what to check should it persist.
 */
export class TransientError extends UserError {
  constructor(message: string, exitCode = 1) {
    super(message, exitCode);
    this.name = 'TransientError';
  }
}
