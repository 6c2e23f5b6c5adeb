// Where a backup step's copies live. Keyed by the run (the first execution's run id), not only the
// workflow id: running a plan again reuses its workflow id, and a backup from last week's run must never
// pass for this run's. Within one run, a retried attempt finds and reuses its own finished backup.
import type { StepInput } from './types';

/** `<migration>/<run>/<step>/`, or `<migration>/<step>/` for inputs from workflows that predate run keys. */
export function backupPrefix(input: Pick<StepInput, 'migrationId' | 'runId' | 'step'>): string {
  return `${input.migrationId}/${input.runId ? `${input.runId}/` : ''}${input.step.id}/`;
}

/** The run id as a name part (no dashes), or '' when the input has none. */
export const runKey = (input: Pick<StepInput, 'runId'>): string => (input.runId ?? '').replace(/[^A-Za-z0-9]/g, '');
