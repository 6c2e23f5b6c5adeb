// The worker's Prometheus endpoint, scraped during a migration: the SDK's series and tiershift's own
// (steps, rows, gates, rollbacks, migrations by state), from a worker process started as a user would.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { withClient } from '../activities/local/postgres';
import { migrationStatus, rejectGate, rollbackMigration, startMigration } from '../client/migrations';
import { postgresUrl } from '../contract/home';
import type { MigrationStatus } from '../contract/status';
import { isOneSentence, spawnWorker, tiershift } from './support/cli';
import { migrationSuite, uniqueName } from './support/local-ops';
import { sandboxPlan } from './support/plans';
import { eventually } from './support/temporal';

const suite = migrationSuite();

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });

/** The value of the series `name{…labels}`, summed over the series that carry every label given. */
function valueOf(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let found: number | undefined;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) found = (found ?? 0) + Number(m[3]);
  }
  return found;
}

describe('worker metrics', () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  it('serves the SDK series and tiershift\'s own during a migration: steps, rows synced, migrations by state, the gate wait and the rollback', async () => {
    const database = uniqueName('metrics').replace(/-/g, '_');
    const admin = (cluster: 'source' | 'target') => postgresUrl(suite.state.postgres[cluster]!, 'postgres');
    await withClient(admin('source'), (c) => c.query(`create database ${database}`));
    stops.push(async () => {
      for (const cluster of ['source', 'target'] as const) await withClient(admin(cluster), (c) => c.query(`drop database if exists ${database} with (force)`));
    });
    await withClient(postgresUrl(suite.state.postgres.source!, database), (c) =>
      c.query(`create table items (id bigint primary key, note text not null); insert into items select i, md5(i::text) from generate_series(1, 1234) i`),
    );
    const port = await freePort();
    const worker = spawnWorker({ TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address, TIERSHIFT_METRICS: `127.0.0.1:${port}`, TIERSHIFT_METRICS_EVERY: '1s' });
    stops.unshift(worker.stop);
    const plan = sandboxPlan({
      name: uniqueName('metrics'),
      resources: {
        itemsDb: `{ kind: postgres, provider: local, cluster: source, database: ${database} }`,
        itemsCopy: `{ kind: postgres, provider: local, cluster: target, database: ${database} }`,
      },
      phases: `
  - data: { from: itemsDb, to: itemsCopy }
  - gate: { name: go }`,
    });
    const handle = await startMigration(suite.temporal.client, plan, 'alice');
    stops.unshift(() => rollbackMigration(suite.temporal.client, handle.workflowId, 'alice', 'test cleanup').then(() => handle.result()).then(() => undefined, () => undefined));
    const scrape = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => undefined);
      return res?.ok ? res.text() : '';
    };

    // Waiting at the gate: the data step's series are there, and the gauge counts this migration.
    await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (s) => s.state === 'awaiting-approval', 120_000);
    const atGate = await eventually(scrape, (t) => (valueOf(t, 'tiershift_migrations', { state: 'awaiting-approval' }) ?? 0) >= 1, 30_000);
    expect(atGate, [...new Set(atGate.match(/^\w+/gm))].join(' ')).toMatch(/^temporal_workflow_task_execution_latency_count\{/m);
    expect(valueOf(atGate, 'tiershift_step_duration_seconds_count', { kind: 'data', outcome: 'done' })).toBe(1);
    expect(valueOf(atGate, 'tiershift_rows_synced_total', { resource: 'itemsCopy' })).toBe(1234);
    expect(valueOf(atGate, 'tiershift_migration_transitions_total', { state: 'running' })).toBeGreaterThanOrEqual(1);
    expect(valueOf(atGate, 'tiershift_migration_transitions_total', { state: 'awaiting-approval' })).toBeGreaterThanOrEqual(1);

    // Rejected: the gate's wait and the rollback are counted, and the migration leaves the gauge.
    await rejectGate(suite.temporal.client, handle.workflowId, { gate: 'go', by: 'bob', reason: 'metrics test' });
    const status = (await handle.result()) as MigrationStatus;
    expect(status.state).toBe('rolled-back');
    const after = await eventually(scrape, (t) => valueOf(t, 'tiershift_migrations', { state: 'awaiting-approval' }) === 0 && valueOf(t, 'tiershift_rollbacks_total', { trigger: 'gate-rejected' }) === 1, 30_000);
    expect(valueOf(after, 'tiershift_gate_wait_seconds_count', { gate: 'go', outcome: 'failed' })).toBe(1);
    expect(valueOf(after, 'tiershift_migration_transitions_total', { state: 'rolled-back' })).toBe(1);
    // Nothing secret on the endpoint: no connection string or password from the sandbox.
    expect(after).not.toMatch(/postgres(ql)?:\/\//);
  }, 240_000);

  it('refuses a metrics address that is not host:port in one sentence, before connecting anywhere', async () => {
    const r = await tiershift(['worker', '--metrics', 'localhost'], { TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address });
    expect(r.code).not.toBe(0);
    expect(isOneSentence(r.stderr), r.stderr).toBe(true);
    expect(r.stderr).toContain('host:port');
  });
});
