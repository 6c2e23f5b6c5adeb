// Every error a user can cause ends as one sentence and a distinct exit code, never a stack trace.
import { UserError } from '../contract/errors';
import { redact } from '../contract/redact';
import { stopTracing } from '../contract/tracing';
import type { PlanError } from '../plan/load';

export const EXIT = { ok: 0, failure: 1, invalid: 2, notFound: 3, refused: 4, unavailable: 5 } as const;

/** Who the CLI calls Temporal as: set by connectClient, read when Temporal's authorizer refuses a call. */
export interface Caller {
  address: string;
  namespace: string;
  /** The token's `sub`, when it is a JWT that names one. */
  subject?: string;
  /** given: --api-key, TEMPORAL_API_KEY or a profile's api_key; sandbox: the sandbox's service client; none: no token. */
  source: 'given' | 'sandbox' | 'none';
}
let caller: Caller | undefined;
export function setCaller(c: Caller): void {
  caller = c;
}

/** gRPC's PERMISSION_DENIED, what Temporal's authorizer answers, anywhere in the error's causes. */
export function permissionDenied(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if ((e as { code?: unknown }).code === 7) return true;
  }
  return false;
}

/** The one sentence for a call Temporal's authorizer refused: who, where, and how to get the role. */
export function refusedByTemporal(c: Caller | undefined): UserError {
  const where = c ? `Temporal at ${c.address} refused` : 'Temporal refused';
  const ns = c?.namespace ?? 'the namespace';
  const who =
    c?.source === 'none'
      ? 'a call without a token'
      : `${c?.subject ?? 'the caller'}${c?.source === 'sandbox' ? " (the sandbox's service client)" : c?.source === 'given' ? ' (the token given with --api-key, TEMPORAL_API_KEY or the profile)' : ''}`;
  const todo =
    c?.source === 'none'
      ? `pass a token whose permissions claim grants ${ns}:write with --api-key or TEMPORAL_API_KEY`
      : `the token does not grant this on ${ns} (starting or deciding needs ${ns}:write in its permissions claim) or does not verify, so ask the cluster's administrator for the role or pass another token with --api-key`;
  return new UserError(`${where} ${who}: ${todo}.`, EXIT.refused);
}

/**
 * The user error `err` stands for, if any. Temporal's errors are recognised by the Temporal client's classes,
 * loaded only here, on the way out: `--version` or a usage error never loads the client.
 */
export async function asUserError(err: unknown): Promise<UserError | undefined> {
  if (!(err instanceof Error)) return undefined;
  if (err instanceof UserError) return err;
  // By name: loading the plan module (zod) only to recognise its error would slow every command down.
  if (err.name === 'PlanError' && Array.isArray((err as PlanError).issues)) return new UserError(err.message, EXIT.invalid);
  // Before anything of the migration runs: Temporal's authorizer turned the call away.
  if (permissionDenied(err)) return refusedByTemporal(caller);
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
    if (userError) printError(userError.message, userError.exitCode);
    else {
      const message = err instanceof Error ? err.message : String(err);
      printError(message, EXIT.failure, process.env.TIERSHIFT_DEBUG ? `\n${(err as Error).stack}` : ' (set TIERSHIFT_DEBUG=1 for details)');
    }
    await exitCli(userError?.exitCode ?? EXIT.failure);
  }
}

/** Ends the CLI with `code` once the command's batched spans (its error among them) are sent: 3 s at most, nothing to send when tracing is off. */
export async function exitCli(code: number): Promise<never> {
  await stopTracing();
  process.exit(code);
}
