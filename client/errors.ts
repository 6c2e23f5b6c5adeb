// Every error a user can cause ends as one sentence and a distinct exit code, never a stack trace.
import { UserError } from '../contract/errors';
import { redact } from '../contract/redact';
import type { PlanError } from '../plan/load';

export const EXIT = { ok: 0, failure: 1, invalid: 2, notFound: 3, refused: 4, unavailable: 5 } as const;

/**
 * The user error `err` stands for, if any. Temporal's errors are recognised by the Temporal client's classes,
 * loaded only here, on the way out: `--version` or a usage error never loads the client.
 */
export async function asUserError(err: unknown): Promise<UserError | undefined> {
  if (!(err instanceof Error)) return undefined;
  if (err instanceof UserError) return err;
  // By name: loading the plan module (zod) only to recognise its error would slow every command down.
  if (err.name === 'PlanError' && Array.isArray((err as PlanError).issues)) return new UserError(err.message, EXIT.invalid);
  const {
    ServiceError,
    WorkflowExecutionAlreadyStartedError,
    WorkflowNotFoundError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
  } = await import('@temporalio/client');
  if (err instanceof WorkflowNotFoundError) {
    return new UserError(`no migration ${err.workflowId ?? ''} was found; run \`tiershift list\` to see the migrations.`, EXIT.notFound);
  }
  if (err instanceof WorkflowExecutionAlreadyStartedError) {
    return new UserError(
      `${err.workflowId} is already running; watch it with \`tiershift status ${err.workflowId}\`, or roll it back before starting again.`,
      EXIT.refused,
    );
  }
  if (err instanceof WorkflowUpdateFailedError) {
    const cause = err.cause instanceof Error ? err.cause.message : err.message;
    return new UserError(`refused: ${cause}.`.replace(/\.\.$/, '.'), EXIT.refused);
  }
  // Queries and updates are answered by a worker: with none running, a failing workflow task or a busy
  // worker, Temporal gives up after half a minute with "no poller seen" or a bare deadline, which does not
  // say what to do; `status` asks Temporal which it is (client/health.ts).
  const cause = err instanceof ServiceError ? String((err.cause as Error | undefined)?.message) : '';
  if (err instanceof WorkflowUpdateRPCTimeoutOrCancelledError || /DEADLINE_EXCEEDED|no poller seen/.test(cause)) {
    return new UserError('the migration did not answer in time; `tiershift status` on it says whether no worker is running, its workflow task is failing, or the worker is busy.', EXIT.unavailable);
  }
  return undefined;
}

/** `--json` anywhere on the command line: scripts then get the error as JSON on stdout too. */
const jsonRequested = (): boolean => process.argv.slice(2).includes('--json');

/** The one sentence on stderr; with --json also `{ "error", "exitCode" }` on stdout, where the script reads. */
export function printError(message: string, exitCode: number, detail?: string): void {
  // Errors may quote what the user configured (a URL with a token, a connection string): never in full.
  const text = redact(message);
  console.error(`tiershift: ${text}${detail ? redact(detail) : ''}`);
  if (jsonRequested()) console.log(JSON.stringify({ error: text, exitCode }));
}

/** Runs a CLI action: a user error prints one line on stderr; anything else too, with the stack only on request. */
export async function runAction(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    const userError = await asUserError(err);
    if (userError) {
      printError(userError.message, userError.exitCode);
      process.exit(userError.exitCode);
    }
    const message = err instanceof Error ? err.message : String(err);
    printError(message, EXIT.failure, process.env.TIERSHIFT_DEBUG ? `\n${(err as Error).stack}` : ' (set TIERSHIFT_DEBUG=1 for details)');
    process.exit(EXIT.failure);
  }
}
