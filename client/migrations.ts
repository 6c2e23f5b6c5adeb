// Client operations on migrations: the CLI and the tests use these, so there is one way to start,
// inspect and decide.
import { Client, WorkflowIdConflictPolicy, type WorkflowExecutionInfo, type WorkflowExecutionStatusName, type WorkflowHandle } from '@temporalio/client';
import { executionInfoFromRaw } from '@temporalio/client/lib/helpers';
import { TypedSearchAttributes } from '@temporalio/common';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow';
import type { temporal } from '@temporalio/proto';
import { progressOf, type Progress } from '../contract/progress';
import { GATE_MEMO_KEY, type GateMemo } from '../contract/deadline';
import { UserError } from '../contract/errors';
import type * as Messages from '../contract/messages';
import { unreachableGate } from '../plan/gates';
import type { Proof } from '../contract/identity';
import type { ResolvedPlan } from '../plan/types';
import type { migration } from '../workflows/migration';
import { MigrationPhase, MigrationState, PendingGate, PlanName, TrafficWeight } from '../contract/search-attributes';
import { approveUpdate, rejectUpdate, resumeUpdate, rollbackUpdate, statusQuery, STEP_ACTIVITIES, UNDO_ACTIVITY } from '../workflows/shared';
import { migrationId, TASK_QUEUE, TERMINAL_STATES, type ApproveArgs, type MigrationState as MigrationStateName, type MigrationStatus, type OperatorArgs, type RejectArgs } from '../contract/status';
import { EXIT } from './errors';
import { activityPollers, isUnanswered, MigrationProblemError, noActivityWorkerMessage, notStarted, type MigrationProblem, noWorkerProblem, queryTimedOutProblem, queryTimeoutMs, workflowPollers, workflowPollersAfterGrace, workflowTaskProblem } from './health';

/** A plan with a gate that can never pass, given four eyes and who starts it, is refused before Temporal sees it. */
export function refuseUnreachableGates(plan: ResolvedPlan, startedBy: string): void {
  const problem = unreachableGate(plan, startedBy);
  if (problem) throw new UserError(problem, EXIT.invalid);
}

export async function startMigration(
  client: Client,
  plan: ResolvedPlan,
  startedBy: string,
  opts: { id?: string; historyLimit?: number; startProof?: Proof } = {},
) {
  refuseUnreachableGates(plan, startedBy);
  const workflowId = opts.id ?? migrationId(plan.name);
  return client.workflow.start<typeof migration>('migration', {
    taskQueue: TASK_QUEUE,
    workflowId,
    // A second start of a running migration is refused rather than attached to: two operators must not
    // both believe they started it.
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    args: [{ plan, startedBy, historyLimit: opts.historyLimit, ...(opts.startProof ? { startProof: opts.startProof } : {}) }],
    staticSummary: `${plan.name}: ${plan.description ?? `${plan.steps.length} steps`}`,
    staticDetails: `Plan ${plan.source} (sha256 ${plan.hash.slice(0, 12)}), started by ${startedBy || 'whoever the start proof names'}`,
    typedSearchAttributes: new TypedSearchAttributes([
      { key: MigrationState, value: 'running' },
      { key: MigrationPhase, value: plan.steps[0]?.kind ?? 'done' },
      { key: PlanName, value: plan.name },
      { key: TrafficWeight, value: 0 },
    ]),
  });
}

export function migrationHandle(client: Client, id: string): WorkflowHandle<typeof migration> {
  return client.workflow.getHandle<typeof migration>(id);
}

export async function migrationStatus(client: Client, id: string): Promise<MigrationStatus> {
  return migrationHandle(client, id).query(statusQuery);
}

/**
 * What is sent is checked with the schema the workflow checks it with: a malformed call never leaves the
 * CLI. zod is loaded only here, when a decision is sent: through tsx it costs every command most of a second.
 */
async function wellFormed<T>(schema: (m: typeof Messages) => Parameters<typeof Messages.payloadProblem>[0], call: string, args: T): Promise<T> {
  const messages = await import('../contract/messages');
  const problem = messages.payloadProblem(schema(messages), call, args, 'correct it and run the command again');
  if (problem) throw new UserError(`${problem}.`, EXIT.invalid);
  return args;
}

export async function approveGate(client: Client, id: string, args: ApproveArgs) {
  const checked = await wellFormed((m) => m.approveArgsSchema, 'approval', args);
  return migrationHandle(client, id).executeUpdate(approveUpdate, { args: [checked] });
}

export async function rejectGate(client: Client, id: string, args: RejectArgs) {
  const checked = await wellFormed((m) => m.rejectArgsSchema, 'rejection', args);
  return migrationHandle(client, id).executeUpdate(rejectUpdate, { args: [checked] });
}

/** Who decides, as `decisionFields` (client/identity.ts) says it: a proof, or in a rehearsal a name. */
type Decider = Pick<OperatorArgs, 'by' | 'proof' | 'evidence'>;

/** A name alone is a rehearsal's decision (or one of a run from before proofs). */
const decider = (who: Decider | string): Decider => (typeof who === 'string' ? { by: who } : who);

export async function resumeMigration(client: Client, id: string, who: Decider | string) {
  const checked = await wellFormed((m) => m.operatorArgsSchema, 'resume', { ...decider(who) } satisfies OperatorArgs);
  return migrationHandle(client, id).executeUpdate(resumeUpdate, { args: [checked] });
}

export async function rollbackMigration(client: Client, id: string, who: Decider | string, reason?: string, confirm?: boolean) {
  const checked = await wellFormed((m) => m.operatorArgsSchema, 'rollback', { ...decider(who), reason, ...(confirm ? { confirm } : {}) } satisfies OperatorArgs);
  return migrationHandle(client, id).executeUpdate(rollbackUpdate, { args: [checked] });
}


/**
 * A migration's status whether it runs or has ended. An ended migration answers from its result, so
 * `status`, `watch` and `report` work after the last worker has gone.
 */
export async function migrationStatusAnyState(client: Client, id: string, opts: { queryTimeoutMs?: number } = {}): Promise<MigrationStatus> {
  const handle = migrationHandle(client, id);
  const description = await handle.describe();
  if (description.status.name === 'COMPLETED') return handle.result();
  const running = description.status.name === 'RUNNING';
  // A query needs a worker that can run the workflow: when Temporal already shows that none can, say
  // which of the two it is at once rather than after the query's timeout.
  if (running) {
    const problem = (await workflowPollersAfterGrace(client, description.taskQueue)).length
      ? await workflowTaskProblem(client, description)
      : noWorkerProblem(id, description.taskQueue);
    if (problem) throw new MigrationProblemError(problem);
  }
  const timeoutMs = opts.queryTimeoutMs ?? queryTimeoutMs();
  let status: MigrationStatus;
  try {
    status = await client.withDeadline(Date.now() + timeoutMs, () => handle.query(statusQuery));
  } catch (err) {
    if (!running || !isUnanswered(err)) throw err;
    // Asked again: the worker may have gone, or the workflow task started failing, while the query waited.
    const pollers = await workflowPollers(client, description.taskQueue);
    const problem = !pollers.length
      ? noWorkerProblem(id, description.taskQueue)
      : ((await workflowTaskProblem(client, await handle.describe())) ?? queryTimedOutProblem(id, description.taskQueue, timeoutMs, pollers));
    throw new MigrationProblemError(problem);
  }
  const live = await withLiveProgress(client, status, description.raw.pendingActivities ?? []);
  return running ? withQueueWaits(client, live, description.raw.pendingActivities ?? [], description.taskQueue) : live;
}

/**
 * The running step, when its activity waits on a resource's own task queue (plan/queues.ts) that no
 * worker polls: Temporal keeps such an activity scheduled, never started, and the step would otherwise
 * just look slow. (No worker on the workflow's own queue is said before the query: migrationStatusAnyState.)
 */
export async function withQueueWaits(
  client: Client,
  status: MigrationStatus,
  pending: readonly temporal.api.workflow.v1.IPendingActivityInfo[],
  workflowQueue: string,
): Promise<MigrationStatus> {
  const running = status.steps.find((s) => s.id === status.currentStep && s.state === 'running');
  if (!running) return status;
  const queues = new Set(
    pending
      .filter(notStarted)
      .map((p) => p.activityOptions?.taskQueue?.name)
      .filter((q): q is string => !!q && q !== workflowQueue),
  );
  for (const queue of queues) {
    // A failed describe is no reason to fail the status: the step then just shows as running.
    const polled = await activityPollers(client, queue).then((p) => p.length, () => 1);
    if (!polled) return { ...status, steps: status.steps.map((s) => (s === running ? { ...s, waiting: noActivityWorkerMessage(queue) } : s)) };
  }
  return status;
}

/**
 * The running step's (or rollback action's) latest progress, from its pending activity's heartbeat:
 * Temporal keeps it there, outside the history, so it costs the workflow nothing and is as fresh as the
 * last heartbeat. Added to the status the workflow answered, never into it.
 */
export async function withLiveProgress(
  client: Client,
  status: MigrationStatus,
  pending: readonly temporal.api.workflow.v1.IPendingActivityInfo[],
): Promise<MigrationStatus> {
  const running = status.steps.find((s) => s.id === status.currentStep && s.state === 'running');
  const action = status.rollback?.actions.find((a) => a.state === 'running');
  const want = (types: readonly string[]) => pending.find((p) => p.activityType?.name && types.includes(p.activityType.name) && p.heartbeatDetails?.payloads?.length);
  const stepActivity = running ? want(STEP_ACTIVITIES[running.kind]) : undefined;
  const undoActivity = action ? want([UNDO_ACTIVITY]) : undefined;
  if (!stepActivity && !undoActivity) return status;
  const progressIn = async (activity: temporal.api.workflow.v1.IPendingActivityInfo): Promise<Progress | undefined> => {
    try {
      return progressOf(await decodeFromPayloadsAtIndex(client.options.loadedDataConverter, 0, activity.heartbeatDetails!.payloads));
    } catch {
      // Progress is a convenience: details this client cannot decode must not cost it the status.
      return undefined;
    }
  };
  const stepProgress = stepActivity && (await progressIn(stepActivity));
  const actionProgress = undoActivity && (await progressIn(undoActivity));
  return {
    ...status,
    steps: status.steps.map((s) => (s === running && stepProgress ? { ...s, progress: stepProgress } : s)),
    ...(status.rollback && actionProgress
      ? { rollback: { ...status.rollback, actions: status.rollback.actions.map((a) => (a === action ? { ...a, progress: actionProgress } : a)) } }
      : {}),
  };
}

// In contract/status.ts, where the CLI's option help reads it without loading this module's Temporal client.
export { MIGRATION_STATES } from '../contract/status';

export interface MigrationListing {
  id: string;
  runId: string;
  /** The migration's own state; for a run Temporal ended from outside (terminated, timed out), Temporal's status. */
  state: string;
  phase?: string;
  pendingGate?: string;
  /** The waiting gate's deadline and what happens then, from the memo (runs that opened a gate since it is kept). */
  gateDeadline?: GateMemo;
  plan?: string;
  trafficWeight?: number;
  temporalStatus: WorkflowExecutionStatusName;
  startedAt: string;
  closedAt?: string;
  /** A running migration that cannot make progress: no worker polls its task queue, or its workflow task keeps failing. */
  problem?: MigrationProblem;
}

/**
 * The visibility query `list` sends: the same filters an operator types into the Temporal UI. With `ui`,
 * the query of the UI link `list` prints, without the continued-as-new runs' clause: the UI's filter bar
 * shows `ExecutionStatus != "ContinuedAsNew"` as "ExecutionStatus = ContinuedAsNew", which reads as the
 * opposite, so there a migration's earlier runs are listed, marked as continued.
 */
export function listQuery(opts: { states?: readonly MigrationStateName[]; plan?: string } = {}, { ui = false } = {}): string {
  const clauses = ['WorkflowType = "migration"', ...(ui ? [] : ['ExecutionStatus != "ContinuedAsNew"'])];
  const quote = (values: readonly string[]) => values.map((v) => JSON.stringify(v)).join(', ');
  if (opts.states?.length) {
    // A terminated workflow keeps the state it last upserted: an open state only counts while it runs.
    const open = opts.states.filter((s) => !TERMINAL_STATES.includes(s));
    const ended = opts.states.filter((s) => TERMINAL_STATES.includes(s));
    const parts = [
      ...(open.length ? [`(MigrationState IN (${quote(open)}) AND ExecutionStatus = "Running")`] : []),
      ...(ended.length ? [`MigrationState IN (${quote(ended)})`] : []),
    ];
    clauses.push(parts.length > 1 ? `(${parts.join(' OR ')})` : parts[0]!);
  }
  if (opts.plan) clauses.push(`PlanName = ${JSON.stringify(opts.plan)}`);
  return clauses.join(' AND ');
}

/** The memo's gate, if it is the gate the search attribute says is pending. */
function gateMemo(memo: Record<string, unknown> | undefined, pending: string | undefined): GateMemo | undefined {
  const g = memo?.[GATE_MEMO_KEY] as Partial<GateMemo> | null | undefined;
  return pending && g && g.gate === pending && typeof g.openedAt === 'string' && (g.onTimeout === 'rollback' || g.onTimeout === 'abort') ? (g as GateMemo) : undefined;
}

/**
 * Visibility's rows as `client.workflow.list()` gives them, except that a row whose memo this client
 * cannot decode (a migration encrypted under a codec key not configured here, say after a key rotation)
 * is listed without its memo instead of failing the whole list: the SDK decodes every memo as it lists.
 */
async function* listExecutions(client: Client, query: string, pageSize: number): AsyncGenerator<WorkflowExecutionInfo> {
  const { namespace, loadedDataConverter: converter } = client.options;
  let nextPageToken: Uint8Array = new Uint8Array();
  for (;;) {
    const page = await client.workflowService.listWorkflowExecutions({ namespace, query, pageSize, nextPageToken });
    for (const raw of page.executions) {
      yield await executionInfoFromRaw(raw, converter, raw, namespace).catch(() => executionInfoFromRaw({ ...raw, memo: null }, converter, raw, namespace));
    }
    if (!page.nextPageToken?.length) return;
    nextPageToken = page.nextPageToken;
  }
}

export async function listMigrations(
  client: Client,
  opts: { states?: readonly MigrationStateName[]; plan?: string; limit?: number } = {},
): Promise<MigrationListing[]> {
  const limit = opts.limit ?? 50;
  const found: MigrationListing[] = [];
  for await (const wf of listExecutions(client, listQuery(opts), Math.min(limit, 100))) {
    const sa = wf.typedSearchAttributes;
    const state = sa.get(MigrationState);
    const endedFromOutside = !['RUNNING', 'COMPLETED'].includes(wf.status.name);
    found.push({
      id: wf.workflowId,
      runId: wf.runId,
      state: endedFromOutside || !state ? wf.status.name.toLowerCase().replaceAll('_', '-') : state,
      phase: sa.get(MigrationPhase),
      pendingGate: sa.get(PendingGate) || undefined,
      gateDeadline: gateMemo(wf.memo, sa.get(PendingGate)),
      plan: sa.get(PlanName),
      trafficWeight: sa.get(TrafficWeight),
      temporalStatus: wf.status.name,
      startedAt: wf.startTime.toISOString(),
      closedAt: wf.closeTime?.toISOString(),
    });
    if (found.length >= limit) break;
  }
  await diagnose(client, found);
  return found;
}

/**
 * Marks the running migrations that cannot move: one DescribeTaskQueue per task queue, and a describe
 * of each running migration whose queue has a worker (a failing workflow task shows only there).
 * Visibility does not say it, and `list` sends no queries, so there is no query timeout to report.
 */
async function diagnose(client: Client, rows: MigrationListing[]): Promise<void> {
  const running = rows.filter((r) => r.temporalStatus === 'RUNNING');
  const described = await Promise.all(running.map((r) => client.workflow.getHandle(r.id, r.runId).describe().catch(() => undefined)));
  const pollers = new Map<string, Promise<number>>();
  const polled = (queue: string) => {
    if (!pollers.has(queue)) pollers.set(queue, workflowPollers(client, queue).then((p) => p.length, () => 1));
    return pollers.get(queue)!;
  };
  await Promise.all(
    running.map(async (row, i) => {
      const description = described[i];
      if (!description) return;
      row.problem = (await polled(description.taskQueue))
        ? await workflowTaskProblem(client, description).catch(() => undefined)
        : noWorkerProblem(row.id, description.taskQueue);
    }),
  );
}
