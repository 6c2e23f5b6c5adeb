// The worker's Prometheus endpoint: the Temporal SDK's own series (temporal_*: task latencies, slots,
// polls, failures) and tiershift's (tiershift_*: recorded by the workflow, workflows/metrics.ts, plus the
// gauge of migrations in each state, counted here). One endpoint, served by the SDK's runtime, so nothing
// else listens on the worker's host.
import { Client } from '@temporalio/client';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { durationMs } from '../contract/duration';
import { UserError } from '../contract/errors';
import type { MigrationState } from '../contract/status';

/** States a migration can still leave; ended ones are counted by tiershift_migration_transitions_total. */
const LIVE_STATES: readonly MigrationState[] = ['running', 'awaiting-approval', 'awaiting-operator', 'rolling-back'];

/** `host:port`, the address `--metrics` or TIERSHIFT_METRICS names; undefined when neither does. */
export function metricsAddress(flag: string | undefined): string | undefined {
  const address = flag ?? process.env.TIERSHIFT_METRICS;
  if (address === undefined || address === '') return undefined;
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(address);
  if (!m || Number(m[2]) > 65535) {
    throw new UserError(`--metrics expects host:port to serve Prometheus metrics on, such as 127.0.0.1:9464, got "${address}"; fix it and start the worker again.`);
  }
  return address;
}

/** Installs the SDK runtime with its Prometheus exporter on `address`: before any connection is made. */
export function serveMetrics(address: string): void {
  Runtime.install({
    telemetryOptions: {
      metrics: { prometheus: { bindAddress: address, countersTotalSuffix: true, unitSuffix: false, useSecondsForDurations: true } },
    },
  });
}

/**
 * Every `every`, sets `tiershift_migrations{state}` to how many migrations are in each live state, from
 * Temporal's visibility store (the search attribute the workflow keeps current). Counted, not summed from
 * transitions, so it stays right across worker restarts; every worker reports the same value (use max()).
 */
export function countMigrations(connection: NativeConnection, namespace: string, every = Math.max(1_000, durationMs(process.env.TIERSHIFT_METRICS_EVERY ?? '15s'))): () => void {
  const client = new Client({ connection, namespace });
  const gauge = Runtime.instance().metricMeter.createGauge('tiershift_migrations', 'int', 'migrations', 'Migrations now in each state');
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const count = async () => {
    for (const state of LIVE_STATES) {
      // A failed count keeps the last value: visibility lags or blips must not zero the gauge.
      const n = await client.workflow
        .count(`WorkflowType = "migration" AND ExecutionStatus = "Running" AND MigrationState = "${state}"`)
        .then((r) => r.count)
        .catch(() => undefined);
      if (n !== undefined) gauge.set(n, { state });
    }
    if (!stopped) timer = setTimeout(() => void count(), every);
  };
  void count();
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
  };
}
