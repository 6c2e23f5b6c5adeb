// The messages a migration answers: the status query, the decision Updates and their Signal mirrors.
// Their payload types live in contract/status.ts, which every layer may import.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ApproveArgs, MigrationStatus, OperatorArgs, RejectArgs, ResumePreview } from '../contract/status';
import type { Activities } from '../activities';
import type { StepKind } from '../plan/types';

export const statusQuery = defineQuery<MigrationStatus>('status');
export const resumePreviewQuery = defineQuery<ResumePreview>('resume-preview');
export const approveUpdate = defineUpdate<MigrationStatus, [ApproveArgs]>('approve');
export const rejectUpdate = defineUpdate<MigrationStatus, [RejectArgs]>('reject');
export const resumeUpdate = defineUpdate<MigrationStatus, [OperatorArgs]>('resume');
export const rollbackUpdate = defineUpdate<MigrationStatus, [OperatorArgs]>('rollback');
// Signals mirror the updates for `temporal workflow signal`; a refused signal is recorded, not thrown.
export const approveSignal = defineSignal<[ApproveArgs]>('approve-signal');
export const rejectSignal = defineSignal<[RejectArgs]>('reject-signal');

/**
 * The activities that do a step's own work, by kind (workflows/migration.ts callStepActivity and
 * shiftTraffic): the CLI takes the running step's live progress from the pending one of these, never
 * from a drift check, a notification or a decision's verification running beside it.
 */
export const STEP_ACTIVITIES = {
  check: ['checkHealth'],
  backup: ['backupDatabase'],
  infra: ['prepareInfra'],
  app: ['updateApp'],
  data: ['syncData'],
  traffic: ['shiftTraffic', 'bakeTraffic', 'analyseTraffic'],
  finalize: ['finalizeMigration'],
  sql: ['runSql'],
  run: ['runCommand'],
  verify: ['verifyService'],
  resource: ['changeResource'],
  gate: [],
} as const satisfies Record<StepKind, readonly (keyof Activities)[]>;

/** The activity a rollback action runs (its progress is a reverse backfill's). */
export const UNDO_ACTIVITY = 'undoStep' satisfies keyof Activities;
