// The demo's shape on the sandbox: v2 writes to the target from the canary on, and traffic reaches 100%
// before the finalize gate. While that gate waits, new orders exist only on the target. Every way back
// to blue from there (an operator's rollback, a failed analysis at 100%, the gate's timeout) must leave
// the source with every one of those orders before users return to it, and say how many it recovered.
import type { Client } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { withClient } from '../activities/local/postgres';
import { buildReport, reportMarkdown } from '../client/report';
import { migrationStatus, rollbackMigration, approveGate, startMigration } from '../client/migrations';
import { postgresUrl } from '../contract/home';
import type { MigrationStatus } from '../contract/status';
import { shoppers } from './support/load';
import { migrationSuite, sandbox, uniqueName } from './support/local-ops';
import { canaryPlan } from './support/plans';
import { eventually, startWorker } from './support/temporal';

const HEAVY = 300_000;
const suite = migrationSuite();
const dbUrl = (cluster: 'source' | 'target') => postgresUrl(suite.state.postgres[cluster]!);

/** Sync, v2 on the target, a 50/100 canary, then the finalize gate (the point of no return) as in plans/demo.yaml. */
function demoShaped(name: string, { maxErrorRate = 0.05, gate = '{ gate: finalize }' } = {}) {
  return canaryPlan(uniqueName(name), { maxErrorRate, lastBake: '8s', rest: `  - finalize: { resources: [targetDb], pointOfNoReturn: ${gate} }` });
}

/** Rows the target holds whose key the source lacks, and rows both hold differently, over the shop's tables. */
async function divergence(): Promise<{ targetOnly: number; differing: number }> {
  return withClient(dbUrl('target'), async (t) =>
    withClient(dbUrl('source'), async (s) => {
      const out = { targetOnly: 0, differing: 0 };
      for (const { table, key } of [{ table: 'customers', key: 'id' }, { table: 'orders', key: 'id' }, { table: 'order_items', key: 'order_id, line_no' }, { table: 'payments', key: 'id' }]) {
        const sql = `select row(${key})::text as k, md5(t::text) as h from ${table} t`;
        const have = new Map((await s.query<{ k: string; h: string }>(sql)).rows.map((r) => [r.k, r.h]));
        for (const r of (await t.query<{ k: string; h: string }>(sql)).rows) {
          if (!have.has(r.k)) out.targetOnly += 1;
          else if (have.get(r.k) !== r.h) out.differing += 1;
        }
      }
      return out;
    }),
  );
}

/** Shoppers reading and ordering through the front door for the whole migration. */
const shop = () => shoppers({ front: suite.state.haproxy!.frontendUrl, readsPerSecond: 10, writesPerSecond: 5, lookups: 20_000, durationMs: 300_000 });

async function untilGate(client: Client, id: string, gate: string): Promise<MigrationStatus> {
  const status = await eventually(() => migrationStatus(client, id), (s) => s.pendingGate?.gate === gate || !['running', 'awaiting-approval'].includes(s.state), 240_000);
  if (status.pendingGate?.gate !== gate) throw new Error(`expected gate ${gate}, the migration is ${status.state}: ${JSON.stringify(status.failure ?? status.rollback ?? {})}`);
  return status;
}

/** The rollback recovered first, before traffic went back, and once more after v2 stopped. */
function expectRecoveredFirst(status: MigrationStatus) {
  expect(status.rollback?.actions.map((a) => `${a.stepId}${a.part ? `/${a.part}` : ''}:${a.state}`)).toEqual(['1-app/start:done', '3-traffic-50:done', '1-app:done', '1-app/finish:done', '0-data:done']);
}

describe('past the write point, before the cutover', () => {
  it('refuses a plain rollback with the count of orders only the target has; --confirm copies them back first, and status and report say so', async () => {
    const { stop: stopWorker } = await startWorker({ connection: suite.temporal.connection });
    const load = shop();
    let status: MigrationStatus;
    let before: { targetOnly: number; differing: number };
    let refusal = '';
    try {
      const handle = await startMigration(suite.temporal.client, demoShaped('writes-operator'), 'alice');
      await untilGate(suite.temporal.client, handle.workflowId, 'cutover');
      await approveGate(suite.temporal.client, handle.workflowId, { gate: 'cutover', by: 'bob' });
      const waiting = await untilGate(suite.temporal.client, handle.workflowId, 'finalize');
      expect(waiting.targetWrites).toMatchObject({ stepId: '1-app', crossed: true, recovery: 'reverse-sync' });
      expect(waiting.traffic?.weight).toBe(100);
      // All users are on v2: new orders land on the target only.
      before = await eventually(divergence, (d) => d.targetOnly > 0, 30_000);
      try {
        await rollbackMigration(suite.temporal.client, handle.workflowId, 'carol', 'v2 looks wrong');
      } catch (err) {
        refusal = ((err as { cause?: Error }).cause ?? (err as Error)).message;
      }
      expect((await migrationStatus(suite.temporal.client, handle.workflowId)).state).toBe('awaiting-approval');
      await rollbackMigration(suite.temporal.client, handle.workflowId, 'carol', 'v2 looks wrong', true);
      status = (await handle.result()) as MigrationStatus;
    } finally {
      await stopWorker();
    }
    const { reads, writes } = await load.stop();

    const [, counted] = refusal.match(/^targetDb holds (\d+) rows sourceDb lacks and 0 rows both hold differently, written since 1-app put the new version on it; `tiershift rollback \S+ --reason "\.\.\." --confirm` first copies the \d+ rows only targetDb has to sourceDb/) ?? [];
    expect(Number(counted), refusal).toBeGreaterThanOrEqual(before.targetOnly);
    expect(status.state, JSON.stringify(status.rollback)).toBe('rolled-back');
    expectRecoveredFirst(status);
    // No order is lost: every row the target took is on the source.
    expect(await divergence()).toEqual({ targetOnly: 0, differing: 0 });
    expect(status.rollback?.rowsRecovered).toBeGreaterThanOrEqual(Number(counted));
    expect(status.rollback?.rowsAtRisk).toBe(0);
    expect(reportMarkdown(buildReport(status))).toMatch(new RegExp(`Rows recovered / at risk \\| ${status.rollback?.rowsRecovered} / 0 \\|`));
    expect(writes.byColor.green, JSON.stringify(writes)).toBeGreaterThan(0);
    expect(writes.failed, JSON.stringify(writes.byStatus)).toBe(0);
    expect(reads.failed, JSON.stringify(reads.byStatus)).toBe(0);
    // Blue takes orders on the source again, with ids past everything the target handed out.
    const order = await fetch(new URL(`http://127.0.0.1:${sandbox().apps.blue!.port}/api/orders`), { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(order.status).toBe(201);
  }, HEAVY);

  it('recovers by itself when the analysis at 100% fails: no order lost', async () => {
    const { stop: stopWorker } = await startWorker({ connection: suite.temporal.connection });
    const load = shop();
    let status: MigrationStatus;
    try {
      const handle = await startMigration(suite.temporal.client, demoShaped('writes-analysis'), 'alice');
      await untilGate(suite.temporal.client, handle.workflowId, 'cutover');
      await approveGate(suite.temporal.client, handle.workflowId, { gate: 'cutover', by: 'bob' });
      // v2 breaks once it has all the users (and has written some of their orders).
      await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (s) => s.traffic?.weight === 100, 240_000);
      await eventually(divergence, (d) => d.targetOnly > 0, 30_000);
      const res = await fetch(`http://127.0.0.1:${sandbox().apps.green!.port}/admin/fault`, { method: 'POST', body: JSON.stringify({ errorRate: 1 }) });
      expect(res.status).toBe(200);
      status = (await handle.result()) as MigrationStatus;
    } finally {
      await stopWorker();
    }
    await load.stop();
    expect(status.rollback?.trigger).toBe('analysis');
    expectRecoveredFirst(status);
    expect(await divergence()).toEqual({ targetOnly: 0, differing: 0 });
    expect(status.rollback?.rowsRecovered).toBeGreaterThan(0);
    expect(status.rollback?.rowsAtRisk).toBe(0);
  }, HEAVY);

  it('recovers by itself when the finalize gate times out: no order lost', async () => {
    const { stop: stopWorker } = await startWorker({ connection: suite.temporal.connection });
    const load = shop();
    let status: MigrationStatus;
    try {
      const handle = await startMigration(suite.temporal.client, demoShaped('writes-timeout', { gate: '{ gate: finalize, timeout: 6s }' }), 'alice');
      await untilGate(suite.temporal.client, handle.workflowId, 'cutover');
      await approveGate(suite.temporal.client, handle.workflowId, { gate: 'cutover', by: 'bob' });
      status = (await handle.result()) as MigrationStatus;
    } finally {
      await stopWorker();
    }
    const { writes } = await load.stop();
    expect(status.rollback?.trigger).toBe('gate-timeout');
    expectRecoveredFirst(status);
    expect(writes.byColor.green).toBeGreaterThan(0);
    expect(await divergence()).toEqual({ targetOnly: 0, differing: 0 });
    expect(status.rollback?.rowsRecovered).toBeGreaterThan(0);
    expect(writes.failed, JSON.stringify(writes.byStatus)).toBe(0);
  }, HEAVY);
});
