// tiershift's own series on the worker's Prometheus endpoint (`tiershift worker --metrics`), beside the
// Temporal SDK's. They are recorded here, in the workflow, through the SDK's metric meter: its sink is
// never called while a history replays, so a worker that restarts, or takes over a run another worker
// started, does not count a step, a gate or a rollback twice. Nothing here is a workflow command.
import { metricMeter } from '@temporalio/workflow';

const secondsBetween = (from: string | undefined, to: string | undefined): number | undefined => {
  if (!from || !to) return undefined;
  const s = (Date.parse(to) - Date.parse(from)) / 1000;
  return Number.isFinite(s) && s >= 0 ? s : undefined;
};

/** A step that ended: how long it ran (first start to end, retries included), by kind and outcome. */
export function stepEnded(kind: string, outcome: 'done' | 'failed' | 'compensated', startedAt?: string, endedAt?: string): void {
  const s = secondsBetween(startedAt, endedAt);
  if (s === undefined) return;
  metricMeter.createHistogram('tiershift_step_duration_seconds', 'float', 's', 'How long steps ran, from their first attempt to their end').record(s, { kind, outcome });
}

/** Rows a data step copied and verified (its `<resource>.rowsCopied` figures). */
export function rowsSynced(rows: number, resource: string): void {
  if (!(rows > 0)) return;
  metricMeter.createCounter('tiershift_rows_synced', 'rows', 'Rows data steps copied to their target').add(Math.round(rows), { resource });
}

/** A gate that stopped waiting: how long it waited, and how it ended (approved, rejected, timed-out, skipped). */
export function gateEnded(gate: string, outcome: string, openedAt?: string, endedAt?: string): void {
  const s = secondsBetween(openedAt, endedAt);
  if (s === undefined) return;
  metricMeter.createHistogram('tiershift_gate_wait_seconds', 'float', 's', 'How long gates waited for their decision').record(s, { gate, outcome });
}

/** A rollback began, and what set it off (a rejected gate, a failed canary, an operator…). */
export function rollbackStarted(trigger: string): void {
  metricMeter.createCounter('tiershift_rollbacks', 'rollbacks', 'Rollbacks started, by trigger').add(1, { trigger });
}

/** A migration entered `state`; the worker's gauge `tiershift_migrations` counts those in each state now. */
export function stateEntered(state: string): void {
  metricMeter.createCounter('tiershift_migration_transitions', 'migrations', 'Migrations entering each state').add(1, { state });
}
