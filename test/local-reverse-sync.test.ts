// The way back past the point of no return, on the run's sandbox: after a cutover the target took
// writes (the canary's orders before it, more after it, an update of an old row), and the reverse sync
// must leave the source with every row the target holds, while the target keeps taking writes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../activities';
import { localProvider } from '../activities/local';
import type { LocalPostgres, LocalTraffic } from '../activities/local/provider';
import { isReadOnly, syncPostgres } from '../activities/local/pg-sync';
import { withClient } from '../activities/local/postgres';
import { reverseName } from '../activities/local/reverse-sync';
import type { UndoInput } from '../activities/types';
import { resetSandbox } from '../sandbox/reset';
import { postgresUrl } from '../contract/home';
import { dataStep, finalizeStep, runActivity, sandbox, uniqueName } from './support/local-ops';

const MIGRATION = 'test-reverse-sync';
const sourceDb: LocalPostgres = { name: 'sourceDb', kind: 'postgres', provider: 'local', cluster: 'source' };
const targetDb: LocalPostgres = { name: 'targetDb', kind: 'postgres', provider: 'local', cluster: 'target' };
const resources = { sourceDb, targetDb };
/** The dispatcher over the local provider: what a worker registers. */
const local = createActivities({ local: localProvider });
const cutover = finalizeStep('9-finalize', { targetDb: 'sourceDb' }, { gate: 'point-of-no-return', recovery: 'reverse-sync' });
const undo = (part: 'start' | 'finish'): UndoInput => ({ migrationId: MIGRATION, step: cutover, resources, part });
const url = (cluster: 'source' | 'target', database?: string) => postgresUrl(sandbox().postgres[cluster]!, database);
const run = async <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A) => (await runActivity(fn, args)).result;

/** Per table, every row as key -> checksum: what "the same rows" means across the two clusters. */
async function rowsByTable(cluster: 'source' | 'target'): Promise<Record<string, Map<string, string>>> {
  return withClient(url(cluster), async (c) => {
    await c.query("set timezone = 'UTC'; set datestyle = 'ISO, YMD'; set extra_float_digits = 3");
    const keys: Record<string, string> = { customers: 'id', products: 'id', orders: 'id', order_items: 'order_id, line_no', payments: 'id' };
    const out: Record<string, Map<string, string>> = {};
    for (const [table, key] of Object.entries(keys)) {
      const { rows } = await c.query<{ k: string; h: string }>(`select row(${key})::text as k, md5(t::text) as h from ${table} t`);
      out[table] = new Map(rows.map((r) => [r.k, r.h]));
    }
    return out;
  });
}

/** Whether a new session on the source may write (the cutover makes it read-only; the reverse sync lifts that). */
async function writable(): Promise<boolean> {
  return withClient(url('source'), async (c) => {
    try {
      await c.query('begin');
      await c.query(`insert into customers (email, full_name, country) values ($1, 'Probe', 'NL')`, [`${uniqueName('probe')}@example.com`]);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === '25006') return false;
      throw err;
    } finally {
      await c.query('rollback');
    }
  });
}

/** A writer of the new version on the target: an order with a line every few milliseconds until stopped. */
function targetWriter() {
  let stop = false;
  let written = 0;
  const done = withClient(url('target'), async (c) => {
    const customer = (await c.query<{ id: string }>(`insert into customers (email, full_name, country) values ($1, 'Green Writer', 'NL') returning id`, [`${uniqueName('green')}@example.com`])).rows[0]!.id;
    written += 1;
    while (!stop) {
      await c.query('begin');
      const order = (await c.query<{ id: string }>(`insert into orders (customer_id, status, total_cents) values ($1, 'pending', 1999) returning id`, [customer])).rows[0]!.id;
      await c.query('insert into order_items (order_id, line_no, product_id, quantity, unit_price_cents) values ($1, 1, 1, 1, 1999)', [order]);
      await c.query('commit');
      written += 2;
      await new Promise((r) => setTimeout(r, 20));
    }
  });
  return {
    stop: async () => {
      stop = true;
      await done;
      return written;
    },
  };
}

async function replicationObjects(): Promise<string[]> {
  const list = async (cluster: 'source' | 'target') =>
    withClient(url(cluster), async (c) => {
      const { rows } = await c.query<{ n: string }>(
        `select 'subscription ' || subname as n from pg_subscription union all select 'publication ' || pubname from pg_publication union all select 'slot ' || slot_name from pg_replication_slots`,
      );
      return rows.map((r) => `${cluster}: ${r.n}`);
    });
  return [...(await list('source')), ...(await list('target'))];
}

describe('reverse sync past the point of no return (local)', () => {
  beforeAll(async () => {
    await resetSandbox(sandbox());
    expect(await replicationObjects()).toEqual([]);
  });

  // Always, also after a failure: the next test files expect a migration-free sandbox.
  afterAll(async () => {
    await resetSandbox(sandbox());
    expect(await replicationObjects()).toEqual([]);
  });

  it('gives the source every row the target received, while the target keeps taking writes', async () => {
    await run(syncPostgres, { migrationId: MIGRATION, step: dataStep('3-data', 'sourceDb', 'targetDb'), resources });
    // The canary writes to the target before the cutover: rows the source has never seen.
    const canaryOrder = await withClient(url('target'), async (c) => {
      const customer = (await c.query<{ id: string }>(`insert into customers (email, full_name, country) values ($1, 'Canary', 'DE') returning id`, [`${uniqueName('canary')}@example.com`])).rows[0]!.id;
      return (await c.query<{ id: string }>('insert into orders (customer_id, total_cents) values ($1, 500) returning id', [customer])).rows[0]!.id;
    });
    // Blue still serves everything: cutting over now would leave its users writing to a source nobody reads.
    const front: LocalTraffic = { name: 'front', kind: 'traffic', provider: 'local', stable: 'blue', canary: 'green', backend: 'app' };
    await expect(run(local.finalizeMigration, { migrationId: MIGRATION, step: { ...cutover, fronts: ['front'] }, resources: { ...resources, front } })).rejects.toThrow(
      /^the cutover needs blue on front to serve 0% of the traffic, but front: expected blue 0 .*found blue \d+ .*; send every user to green \(or roll back\), then resume$/,
    );
    expect(await replicationObjects()).not.toEqual([]);
    expect(await writable()).toBe(true);
    await run(local.finalizeMigration, { migrationId: MIGRATION, step: cutover, resources });
    // Replication has ended: the source refuses writes, from sessions opened before the cutover too.
    expect(await writable()).toBe(false);
    expect(await isReadOnly(url('source'))).toBe(true);
    // After the cutover: more writes, and a change to a row both sides had.
    const oldOrder = await withClient(url('target'), async (c) => {
      await c.query(`update orders set status = 'shipped' where id = $1`, [canaryOrder]);
      return (await c.query<{ id: string }>(`update orders set status = 'cancelled' where id = (select min(id) from orders) returning id`)).rows[0]!.id;
    });
    // An attempt that died after creating the slot left it behind without its subscription.
    await withClient(url('target'), (c) => c.query(`select pg_create_logical_replication_slot($1, 'pgoutput')`, [reverseName(MIGRATION)]));

    const writer = targetWriter();
    let written: number;
    try {
      const { result: started, heartbeats } = await runActivity(local.undoStep, [undo('start')]);
      expect(started.summary).toMatch(/^reverse sync targetDb -> sourceDb running .*sourceDb writable again/);
      expect(await writable()).toBe(true);
      expect(started.figures['sourceDb.rowsCopiedBack']).toBeGreaterThanOrEqual(3);
      expect(started.figures['sourceDb.rowsOnlyOnSource']).toBe(0);
      expect(heartbeats.some((b) => (b as { phase?: string }).phase === 'reverse backfill')).toBe(true);
      // A retry finds the subscription and does not copy again.
      const again = await run(local.undoStep, undo('start'));
      expect(again.summary).toContain('its backfill was done by an earlier attempt');
      // Writes keep arriving on the target while the reverse replication runs.
      await new Promise((r) => setTimeout(r, 2_000));
    } finally {
      written = await writer.stop();
    }
    expect(written).toBeGreaterThan(10);

    const finished = await run(local.undoStep, undo('finish'));
    expect(finished.figures).toMatchObject({ 'sourceDb.reverseSyncStopped': true });
    expect(finished.summary).toMatch(/^sourceDb has every write targetDb received/);
    expect(await replicationObjects()).toEqual([]);

    const [onSource, onTarget] = [await rowsByTable('source'), await rowsByTable('target')];
    for (const [table, rows] of Object.entries(onTarget)) {
      const missing = [...rows].filter(([k, h]) => onSource[table]!.get(k) !== h).map(([k]) => k);
      expect({ table, missing: missing.slice(0, 5), count: missing.length }).toEqual({ table, missing: [], count: 0 });
    }
    const statusOf = async (id: string) => (await withClient(url('source'), (c) => c.query<{ status: string }>('select status from orders where id = $1', [id]))).rows[0]?.status;
    expect(await statusOf(canaryOrder)).toBe('shipped');
    expect(await statusOf(oldOrder)).toBe('cancelled');

    // The source hands out ids again, past every id the target used.
    const maxTarget = await withClient(url('target'), async (c) => BigInt((await c.query<{ m: string }>('select max(id)::text as m from orders')).rows[0]!.m));
    const fresh = await withClient(url('source'), async (c) => {
      const customer = (await c.query<{ id: string }>(`insert into customers (email, full_name, country) values ($1, 'Back', 'FR') returning id`, [`${uniqueName('back')}@example.com`])).rows[0]!.id;
      return BigInt((await c.query<{ id: string }>('insert into orders (customer_id, total_cents) values ($1, 100) returning id', [customer])).rows[0]!.id);
    });
    expect(fresh).toBeGreaterThan(maxTarget);

    const second = await run(local.undoStep, undo('finish'));
    expect(second.figures).toMatchObject({ 'sourceDb.reverseSyncStopped': false });
  });
});
