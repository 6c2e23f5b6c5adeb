// Client operations on migrations: the CLI and the tests use these, so there is one way to start,
// inspect and decide.
import { Client, WorkflowIdConflictPolicy, type WorkflowHandle } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import type { ResolvedPlan } from '../plan/types';
import type { migration } from '../workflows/migration';
import { MigrationPhase, MigrationState, PlanName, TrafficWeight } from '../workflows/search-attributes';
import {
  approveUpdate,
  migrationId,
  rejectUpdate,
  resumeUpdate,
  rollbackUpdate,
  statusQuery,
  TASK_QUEUE,
  type ApproveArgs,
  type MigrationStatus,
  type RejectArgs,
} from '../workflows/shared';

export async function startMigration(
  client: Client,
  plan: ResolvedPlan,
  startedBy: string,
  opts: { id?: string; historyLimit?: number } = {},
) {
  const workflowId = opts.id ?? migrationId(plan.name);
  return client.workflow.start<typeof migration>('migration', {
    taskQueue: TASK_QUEUE,
    workflowId,
    // A second start of a running migration is refused rather than attached to: two operators must not
    // both believe they started it.
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    args: [{ plan, startedBy, historyLimit: opts.historyLimit }],
    staticSummary: `${plan.name}: ${plan.description ?? `${plan.steps.length} steps`}`,
    staticDetails: `Plan ${plan.source} (sha256 ${plan.hash.slice(0, 12)}), started by ${startedBy}`,
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

export async function approveGate(client: Client, id: string, args: ApproveArgs) {
  return migrationHandle(client, id).executeUpdate(approveUpdate, { args: [args] });
}

export async function rejectGate(client: Client, id: string, args: RejectArgs) {
  return migrationHandle(client, id).executeUpdate(rejectUpdate, { args: [args] });
}

export async function resumeMigration(client: Client, id: string, by: string) {
  return migrationHandle(client, id).executeUpdate(resumeUpdate, { args: [{ by }] });
}

export async function rollbackMigration(client: Client, id: string, by: string, reason?: string) {
  return migrationHandle(client, id).executeUpdate(rollbackUpdate, { args: [{ by, reason }] });
}

