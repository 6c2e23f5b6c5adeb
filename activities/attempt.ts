// Which of Temporal's attempts produced a step's outcome: the workflow adds the retries to the step's
// attempts, so a step Temporal retried (on this worker or another) does not show "attempt 1".
import { Context } from '@temporalio/activity';

/** The outcome with `attempt` when this is a retry; anything but a step's outcome passes unchanged. */
export function withAttempt<T>(result: T): T {
  const attempt = Context.current().info.attempt;
  if (attempt <= 1 || !result || typeof result !== 'object' || Array.isArray(result) || typeof (result as { summary?: unknown }).summary !== 'string') return result;
  return { ...result, attempt };
}
