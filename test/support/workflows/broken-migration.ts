// A `migration` workflow whose every workflow task fails, as a worker running a buggy build does: it
// reads a field the input does not have, so Temporal records "Cannot read properties of undefined" and
// retries the task for ever. Registered only by test/cli-status.test.ts's own worker, on a task queue of
// its own; the name is `migration` so that `tiershift list` (WorkflowType = "migration") shows it.
interface MalformedInput {
  plan?: { rollout?: { steps: unknown[] } };
}

export async function migration(input: MalformedInput): Promise<number> {
  return input.plan!.rollout!.steps.length;
}
