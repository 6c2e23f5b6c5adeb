// Why a running migration does not answer, as Temporal reports it. A status query can fail for three
// different reasons that need three different actions from the operator, so the CLI asks Temporal which
// one it is instead of guessing: no worker polls the migration's task queue (start one); a worker polls
// but the workflow task keeps failing (fix the code or the input; the history says what failed); or a
// worker polls and nothing fails, but the query was not answered in time (the worker is busy or stuck).
import type { Client, WorkflowExecutionDescription } from '@temporalio/client';
import { tsToMs } from '@temporalio/common/lib/time';
// The package is CommonJS: under Node's ESM loader (the CLI through tsx) only its default export is there.
import proto from '@temporalio/proto';
import { UserError } from '../contract/errors';
import { EXIT } from './errors';

const { temporal } = proto;

export type ProblemKind = 'no-worker' | 'workflow-task-failing' | 'query-timed-out';

/** What is wrong with a running migration, in one sentence that says what to do. */
export interface MigrationProblem {
  kind: ProblemKind;
  message: string;
  /** What stays the same while the problem does (the failure's message): a watch says it once. */
  same: string;
}

/** A UserError that carries its diagnosis, so `watch` can show it and keep watching. */
export class MigrationProblemError extends UserError {
  constructor(readonly problem: MigrationProblem) {
    super(problem.message, problem.kind === 'workflow-task-failing' ? EXIT.failure : EXIT.unavailable);
  }
}

/**
 * A live worker keeps a long poll open on its task queue and renews it at least every minute (the
 * server answers an idle poll after about 60 s); a poller Temporal last saw longer ago than this has
 * stopped, even though DescribeTaskQueue still lists it for a few minutes.
 */
export const POLLER_FRESH_MS = 90_000;

export interface Poller {
  identity: string;
  lastSeenMsAgo: number;
}

/** The workers polling a workflow task queue, as Temporal saw them within POLLER_FRESH_MS. */
export function workflowPollers(client: Client, taskQueue: string, now = Date.now()): Promise<Poller[]> {
  return pollers(client, taskQueue, 'workflow', now);
}

/** The workers polling a task queue for activities (a resource's own queue has only those). */
export function activityPollers(client: Client, taskQueue: string, now = Date.now()): Promise<Poller[]> {
  return pollers(client, taskQueue, 'activity', now);
}

/** An activity Temporal has scheduled and no worker has started yet. */
export const notStarted = (activity: { state?: number | null }): boolean => activity.state === temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED;

async function pollers(client: Client, taskQueue: string, kind: 'workflow' | 'activity', now: number): Promise<Poller[]> {
  const { TaskQueueType } = temporal.api.enums.v1;
  const response = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue, kind: temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_NORMAL },
    taskQueueType: kind === 'workflow' ? TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW : TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
  });
  return (response.pollers ?? [])
    .map((p) => ({ identity: p.identity ?? '', lastSeenMsAgo: p.lastAccessTime ? now - (tsToMs(p.lastAccessTime) ?? 0) : Infinity }))
    .filter((p) => p.lastSeenMsAgo <= POLLER_FRESH_MS);
}

/**
 * The pollers, waiting up to `graceMs` for a first one: a worker started a moment ago (a test, a
 * `tiershift worker` just launched) may not have reached the server with its first poll yet.
 */
export async function workflowPollersAfterGrace(client: Client, taskQueue: string, graceMs = 3_000): Promise<Poller[]> {
  const deadline = Date.now() + graceMs;
  for (;;) {
    const pollers = await workflowPollers(client, taskQueue);
    if (pollers.length || Date.now() >= deadline) return pollers;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

const historyCommand = (id: string) => `temporal workflow show -w ${id}`;

/**
 * The failure of the migration's workflow task, when it is being retried: the describe's pending
 * workflow task says that it is (attempt > 1), the history's last WorkflowTaskFailed event says why.
 * Temporal records only the first failure of a run of retries in the history, and the retries fail the
 * same way until the code or the input changes, so that event is the message to show. A task that timed
 * out instead (a worker stopped while it held it, a sticky worker gone) is no failure of the code: the
 * next worker usually completes it, and if none answers, the query's timeout says so.
 */
export async function workflowTaskProblem(client: Client, description: WorkflowExecutionDescription): Promise<MigrationProblem | undefined> {
  const pending = description.raw.pendingWorkflowTask;
  if (!pending || (pending.attempt ?? 0) <= 1) return undefined;
  const id = description.workflowId;
  const { EventType } = temporal.api.enums.v1;
  const ended = [EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED, EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT, EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED];
  const response = await client.workflowService.getWorkflowExecutionHistoryReverse({
    namespace: client.options.namespace,
    execution: { workflowId: id, runId: description.runId },
    maximumPageSize: 50,
  });
  const last = (response.history?.events ?? []).find((e) => e.eventType != null && ended.includes(e.eventType));
  if (last?.eventType !== EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) return undefined;
  const why = last.workflowTaskFailedEventAttributes?.failure?.message?.split('\n')[0]?.trim() || 'no message recorded';
  return {
    kind: 'workflow-task-failing',
    same: why,
    message: `a worker polls, but ${id}'s workflow task keeps failing (attempt ${pending.attempt}): "${why.replace(/\.$/, '')}"; see the history with \`${historyCommand(id)}\`.`,
  };
}

/** No worker polls the migration's task queue: start one. */
export function noWorkerProblem(id: string, taskQueue: string): MigrationProblem {
  return {
    kind: 'no-worker',
    same: taskQueue,
    message: `no worker is polling task queue "${taskQueue}" (Temporal has seen none in the last ${POLLER_FRESH_MS / 1000} s), so ${id} cannot answer; start one with \`tiershift worker\`.`,
  };
}

/** A step's activity waits on a task queue of its resources' that no worker polls. */
export function noActivityWorkerMessage(taskQueue: string): string {
  return `no worker polls task queue "${taskQueue}", where this step's resources run their activities (Temporal has seen none in the last ${POLLER_FRESH_MS / 1000} s); start one there with \`tiershift worker --task-queue ${taskQueue}\`.`;
}

/** A worker polls and the workflow task does not fail, yet the query was not answered in time. */
export function queryTimedOutProblem(id: string, taskQueue: string, timeoutMs: number, pollers: Poller[]): MigrationProblem {
  const seen = Math.min(...pollers.map((p) => p.lastSeenMsAgo));
  return {
    kind: 'query-timed-out',
    same: taskQueue,
    message:
      `${id} did not answer its status query within ${timeoutMs / 1000} s, although a worker polled task queue "${taskQueue}" ` +
      `${Math.max(0, Math.round(seen / 1000))} s ago and its workflow task is not failing; the worker may be busy or stuck: check its log and try again.`,
  };
}

/**
 * A query failed because nothing answered it in time, as opposed to the workflow refusing it: the
 * client's deadline or the server's ("query timed out before a worker could process it"), both
 * DEADLINE_EXCEEDED, or the call given up (CANCELLED) or left without a route (UNAVAILABLE) meanwhile.
 */
const UNANSWERED_CODES = new Set([1, 4, 14]);
export function isUnanswered(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err.cause as { code?: unknown } | undefined)?.code ?? (err as { code?: unknown }).code;
  const text = `${err.message} ${String((err.cause as Error | undefined)?.message ?? '')}`;
  return (typeof code === 'number' && UNANSWERED_CODES.has(code)) || /deadline exceeded|timed out|no poller seen/i.test(text);
}

/**
 * How long `status` and `watch` wait for a query's answer: TIERSHIFT_QUERY_TIMEOUT (seconds), else 30 s,
 * about when Temporal itself gives up on an unanswered query: a worker replaying a long history on a
 * loaded machine may need that long.
 */
export function queryTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.TIERSHIFT_QUERY_TIMEOUT;
  if (text === undefined || text === '') return 30_000;
  const seconds = Number(text);
  if (!(Number.isFinite(seconds) && seconds > 0 && seconds <= 600)) {
    throw new UserError(`TIERSHIFT_QUERY_TIMEOUT takes a number of seconds between 0 and 600; got "${text}".`, EXIT.invalid);
  }
  return seconds * 1000;
}
