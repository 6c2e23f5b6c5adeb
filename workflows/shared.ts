// The messages a migration answers: the status query, the decision Updates and their Signal mirrors.
// Their payload types live in contract/status.ts, which every layer may import.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { ApproveArgs, MigrationStatus, OperatorArgs, RejectArgs, ResumePreview } from '../contract/status';

export const statusQuery = defineQuery<MigrationStatus>('status');
export const resumePreviewQuery = defineQuery<ResumePreview>('resume-preview');
export const approveUpdate = defineUpdate<MigrationStatus, [ApproveArgs]>('approve');
export const rejectUpdate = defineUpdate<MigrationStatus, [RejectArgs]>('reject');
export const resumeUpdate = defineUpdate<MigrationStatus, [OperatorArgs]>('resume');
export const rollbackUpdate = defineUpdate<MigrationStatus, [OperatorArgs]>('rollback');
// Signals mirror the updates for `temporal workflow signal`; a refused signal is recorded, not thrown.
export const approveSignal = defineSignal<[ApproveArgs]>('approve-signal');
export const rejectSignal = defineSignal<[RejectArgs]>('reject-signal');
