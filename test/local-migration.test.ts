// Whole migrations on the sandbox, through the real Temporal dev server and the local provider: the
// runbook's phases end to end under load, the automatic rollback of a failing canary, and workers
// killed in the middle of the data phase.
import { defaultPayloadConverter } from '@temporalio/common';
import { afterEach, describe, expect, it } from 'vitest';
import { withClient } from '../activities/local/postgres';
import { replicationName } from '../activities/local/pg-sync';
import { runLoad } from '../client/load';
import { approveGate, migrationStatus, rollbackMigration, startMigration } from '../client/migrations';
import { postgresUrl } from '../contract/home';
import type { MigrationStatus } from '../contract/status';
import { spawnWorker } from './support/cli';
import { shoppers } from './support/load';
import { blobMd5s, containerOf, migrationSuite, sandbox, tables, uniqueName } from './support/local-ops';
import { canaryPlan, container, sandboxPlan, sandboxResources } from './support/plans';
import { eventually, startWorker } from './support/temporal';
import { driveGates, expectWholeMigration, runWholeMigration } from './support/whole-migration';

/** Whole migrations with killed workers and restarts: bounded, but generous on a loaded 2-core machine. */
const HEAVY = 300_000;

const suite = migrationSuite();

const dbUrl = (cluster: 'source' | 'target') => postgresUrl(suite.state.postgres[cluster]!);
const colorsThroughFront = async (n: number) => {
  const colors: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const res = await fetch(new URL('/health', suite.state.haproxy!.frontendUrl));
    const color = res.headers.get('x-app-color') ?? 'none';
    colors[color] = (colors[color] ?? 0) + 1;
  }
  return colors;
};

/** Read traffic through the front door for the whole migration: the shoppers the migration must not fail. */
const readers = () => shoppers({ front: suite.state.haproxy!.frontendUrl, readsPerSecond: 25, lookups: 20_000, durationMs: 300_000 });

describe('a full migration on the sandbox', () => {
  it('backs up, prepares, syncs, deploys, shifts 10/50/100 and cuts over with no failed request', async () => {
    const run = await runWholeMigration(suite, 'full');
    await expectWholeMigration(run);
    expect(await colorsThroughFront(20)).toEqual({ green: 20 });
    expect(run.reads.sent).toBeGreaterThan(200);
  }, HEAVY);
});

describe('a failing canary', () => {
  it('rolls back by itself: all traffic on blue, green stopped, replication removed, the source unchanged', async () => {
    const plan = canaryPlan(uniqueName('canary'), { maxErrorRate: 0.05, rest: '  - finalize: { resources: [targetDb] }' });
    const sourceBefore = await tables('source');
    const { stop: stopWorker } = await startWorker({ connection: suite.temporal.connection });
    const load = readers();
    let status: MigrationStatus;
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      status = await driveGates(suite.temporal.client, handle, ['cutover'], async () => {
        // v2 turns out broken: every request it serves fails.
        const res = await fetch(`http://127.0.0.1:${sandbox().apps.green!.port}/admin/fault`, { method: 'POST', body: JSON.stringify({ errorRate: 1 }) });
        expect(res.status).toBe(200);
      });
    } finally {
      await stopWorker();
    }
    const traffic = (await load.stop()).reads;

    expect(status.state).toBe('rolled-back');
    expect(status.rollback?.trigger).toBe('analysis');
    expect(status.rollback?.reason).toMatch(/the canary green failed \d+ of \d+ requests/);
    expect(status.rollback?.actions.map((a) => a.state)).toEqual(status.rollback?.actions.map(() => 'done'));
    expect(traffic.byStatus['500']).toBeGreaterThan(0);
    expect(await colorsThroughFront(20)).toEqual({ blue: 20 });
    expect(sandbox().apps.green).toBeUndefined();
    const name = replicationName(status.migrationId);
    const left = await withClient(dbUrl('source'), async (c) => (await c.query('select 1 from pg_publication where pubname = $1 union all select 1 from pg_replication_slots where slot_name = $1', [name])).rowCount);
    expect(left).toBe(0);
    expect(await tables('source')).toEqual(sourceBefore);
  }, HEAVY);
});

describe('past the point of no return', () => {
  it('a confirmed rollback syncs every write the target took back to the source before users return to it', async () => {
    const plan = canaryPlan(uniqueName('ponr'), {
      maxErrorRate: 0,
      rest: '  - finalize: { resources: [targetDb], pointOfNoReturn: { gate: finalize } }\n  - check: { resources: [targetDb] }\n  - gate: { name: complete }',
    });
    const { stop: stopWorker } = await startWorker({ connection: suite.temporal.connection });
    const load = readers();
    // New orders through the front door the whole time: on blue they land on the source, on green on the target.
    const ordersStop = new AbortController();
    const writer = runLoad({ url: new URL('/api/orders', suite.state.haproxy!.frontendUrl).toString(), method: 'POST', body: {}, ratePerSecond: 5, durationMs: 300_000, maxRequests: 1_500, signal: ordersStop.signal });
    let status: MigrationStatus;
    let targetOrders = 0;
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      for (const gate of ['cutover', 'finalize']) {
        await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (s) => s.pendingGate?.gate === gate || s.state !== 'running', 240_000);
        await approveGate(suite.temporal.client, handle.workflowId, { gate, by: 'bob' });
      }
      const crossed = await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (s) => s.pendingGate?.gate === 'complete' || s.state !== 'running', 240_000);
      expect(crossed.pointOfNoReturn, JSON.stringify(crossed.failure)).toMatchObject({ crossed: true });
      // Green has been writing to the target since the canary; let it take more after the cutover.
      await new Promise((r) => setTimeout(r, 3_000));
      targetOrders = await withClient(dbUrl('target'), async (c) => Number((await c.query('select count(*) as n from orders').then((r) => r.rows[0].n))));
      await expect(rollbackMigration(suite.temporal.client, handle.workflowId, 'carol', 'v2 loses payments')).rejects.toMatchObject({ cause: { message: expect.stringMatching(/--confirm/) } });
      await rollbackMigration(suite.temporal.client, handle.workflowId, 'carol', 'v2 loses payments', true);
      status = (await handle.result()) as MigrationStatus;
    } finally {
      ordersStop.abort();
      await stopWorker();
    }
    const traffic = (await load.stop()).reads;
    const written = await writer;

    expect(status.state, JSON.stringify(status.rollback)).toBe('rolled-back');
    expect(status.rollback?.actions.map((a) => `${a.stepId}${a.part ? `/${a.part}` : ''}:${a.state}`)).toEqual([
      '4-finalize/start:done',
      '3-traffic-50:done',
      '1-app:done',
      '4-finalize/finish:done',
      '0-data:done',
    ]);
    const figures = Object.assign({}, ...status.steps.map((s) => s.figures));
    expect(figures['sourceDb.rowsCopiedBack']).toBeGreaterThan(0);
    // Every row the target holds is on the source, as the target has it.
    expect(targetOrders).toBeGreaterThan(0);
    const missing = await withClient(dbUrl('target'), async (t) =>
      withClient(dbUrl('source'), async (s) => {
        let count = 0;
        for (const { table, key } of [{ table: 'customers', key: 'id' }, { table: 'orders', key: 'id' }, { table: 'order_items', key: 'order_id, line_no' }, { table: 'payments', key: 'id' }]) {
          const sql = `select row(${key})::text as k, md5(t::text) as h from ${table} t`;
          const have = new Map((await s.query<{ k: string; h: string }>(sql)).rows.map((r) => [r.k, r.h]));
          for (const r of (await t.query<{ k: string; h: string }>(sql)).rows) if (have.get(r.k) !== r.h) count += 1;
        }
        return count;
      }),
    );
    expect(missing).toBe(0);
    // Users are back on blue, on the source, and nobody saw an error.
    expect(await colorsThroughFront(20)).toEqual({ blue: 20 });
    expect(sandbox().apps.green).toBeUndefined();
    expect(written.byColor.green, JSON.stringify(written)).toBeGreaterThan(0);
    expect(written.failed, JSON.stringify(written.byStatus)).toBe(0);
    expect(traffic.failed, JSON.stringify(traffic.byStatus)).toBe(0);
  }, HEAVY);
});

describe('workers killed in the data phase', () => {
  const workers: ReturnType<typeof spawnWorker>[] = [];
  afterEach(async () => {
    await Promise.all(workers.map((w) => w.stop()));
  }, HEAVY);

  it('resume the blob copy from its last heartbeat and the PostgreSQL sync from its subscription', async () => {
    const bulk = uniqueName('bulk');
    const dr = uniqueName('bulk-dr');
    const source = containerOf('primary', bulk);
    await source.create();
    const COUNT = 600;
    for (let i = 0; i < COUNT; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, COUNT - i) }, (_, j) => {
          const body = Buffer.alloc(2048 + ((i + j) % 7) * 1024, `blob-${i + j}`);
          return source.getBlockBlobClient(`part-${String(i + j).padStart(4, '0')}.bin`).uploadData(body);
        }),
      );
    }
    const plan = sandboxPlan(
      {
        name: uniqueName('killed'),
        head: `
defaults:
  retry: { maximumAttempts: 5, initialInterval: 1s, backoffCoefficient: 1, maximumInterval: 1s }
  timeouts: { startToClose: 10m, heartbeat: 3s }`,
        resources: { ...sandboxResources('sourceDb', 'targetDb'), bulk: container('primary', bulk), bulkDr: container('secondary', dr) },
        phases: `
  - data: { from: bulk, to: bulkDr }
  - data: { from: sourceDb, to: targetDb }`,
      },
      'killed.yaml',
    );
    const env = { TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address };
    const spawn = () => {
      const w = spawnWorker(env);
      workers.push(w);
      return w;
    };
    const handle = await startMigration(suite.temporal.client, plan, 'alice');
    const pendingSync = async () =>
      (await handle.describe()).raw.pendingActivities?.find((a) => a.activityType?.name === 'syncData') ?? undefined;

    // 1. Killed after the first page of blobs was heartbeated.
    const first = spawn();
    // The first page's progress reached the server (keepalive beats before it carry no progress).
    const progressOf = (a: Awaited<ReturnType<typeof pendingSync>>) => {
      const payload = a?.heartbeatDetails?.payloads?.[0];
      return payload ? (defaultPayloadConverter.fromPayload(payload) as { copied?: number } | undefined) : undefined;
    };
    await eventually(pendingSync, (a) => (progressOf(a)?.copied ?? 0) > 0, 60_000);
    first.child.kill('SIGKILL');
    const atKill = new Map<string, string | undefined>();
    for await (const b of containerOf('secondary', dr).listBlobsFlat()) atKill.set(b.name, b.properties.copyId);
    expect(atKill.size).toBeGreaterThan(0);
    expect(atKill.size).toBeLessThan(COUNT);

    // 2. Killed once the PostgreSQL sync has created its subscription.
    const second = spawn();
    const subscription = replicationName(handle.workflowId);
    await eventually(
      () => withClient(dbUrl('target'), async (c) => (await c.query('select 1 from pg_subscription where subname = $1', [subscription])).rowCount),
      (n) => n === 1,
      120_000,
    );
    second.child.kill('SIGKILL');

    // 3. A third worker finishes the migration.
    spawn();
    const status = (await handle.result()) as MigrationStatus;
    expect(status.state, JSON.stringify(status.failure)).toBe('completed');
    const [blobStep, pgStep] = status.steps;
    // One step, two of Temporal's attempts: the killed one and the one that resumed.
    expect(blobStep!.attempts).toBe(2);
    expect(blobStep!.summary).toContain('resumed from a previous attempt');
    expect(pgStep!.summary).toContain('existing subscription');

    // Every blob arrived intact; those copied before the kill were not copied again.
    expect(await blobMd5s('secondary', dr)).toEqual(await blobMd5s('primary', bulk));
    for await (const b of containerOf('secondary', dr).listBlobsFlat()) {
      if (atKill.has(b.name)) expect(b.properties.copyId, b.name).toBe(atKill.get(b.name));
    }
    expect(Number(blobStep!.figures['bulkDr.blobsCopied']) + Number(blobStep!.figures['bulkDr.blobsSkipped'])).toBe(COUNT);
    expect(await tables('target')).toEqual(await tables('source'));
    await source.delete();
  }, HEAVY);
});
