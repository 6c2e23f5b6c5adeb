// The way back past the point of no return, on the run's sandbox: after a cutover the target took
// writes (the canary's orders before it, more after it, an update of an old row), and the reverse sync
// must leave the source with every row the target holds, while the target keeps taking writes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../activities';
import { localProvider } from '../activities/local';
import type { LocalPostgres, LocalTraffic } from '../activities/local/provider';
import { isReadOnly, syncPostgres } from '../activities/local/pg-sync';
import { withClient } from '../activities/local/postgres';
import { finishReverseSync, measureWrites, reverseName, startReverseSync } from '../activities/local/reverse-sync';
import type { UndoInput } from '../activities/types';
import type { AppStep } from '../plan/types';
import { resetSandbox } from '../sandbox/reset';
import { postgresUrl } from '../contract/home';
import { dataStep, finalizeStep, runActivity, sandbox, uniqueName } from './support/local-ops';
import { progressOf } from '../contract/progress';

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

// The backfill at a size several chunks long: with 7 rows per chunk, a 60-row table is compared in 9
// chunks, with rows only the target has, rows that differ and rows only the source has at a chunk's
// first and last key, between chunks, before the target's first key and after its last.
describe('reverse sync backfill, chunked by key range (local)', () => {
  const scratch = `backfill_${uniqueName('chunks').slice(-8)}`;
  const migrationId = 'test-backfill-chunks';
  const from: LocalPostgres = { ...sourceDb, database: scratch };
  const to: LocalPostgres = { ...targetDb, database: scratch };
  const scratchUrl = (cluster: 'source' | 'target') => url(cluster, scratch);
  const key = (w: number, i: number) => [w, `s${String(i).padStart(3, '0')}`] as const;
  // The target holds warehouses 2..4 x skus s000..s019; in key order its chunks end at (2,s006), (2,s013), (3,s000), ...
  const onlyOnTarget = [key(2, 0), key(2, 13), key(3, 7), key(4, 19)];
  const differing = [key(2, 6), key(3, 10), key(4, 18)];
  const onlyOnSource: (readonly [number, string])[] = [[1, 'a'], [2, 's006a'], [3, 's007x'], [4, 's019a'], [5, 'z']];
  /** A table with no row on the target: its one chunk is empty and its range is the whole key space. */
  const emptyOnTarget = 3;

  /** Both clusters as a rollback finds them: the target took writes, the source kept rows of its own. */
  async function seed(): Promise<void> {
    for (const cluster of ['source', 'target'] as const) {
      await withClient(scratchUrl(cluster), async (c) => {
        await c.query('drop table if exists stock, parked');
        await c.query('create table stock (warehouse int, sku text, qty int not null, primary key (warehouse, sku))');
        await c.query('create table parked (id bigint primary key)');
        await c.query(`insert into stock select w, 's' || lpad(i::text, 3, '0'), w * 100 + i from generate_series(2, 4) w, generate_series(0, 19) i`);
        if (cluster === 'target') {
          await c.query('analyze stock');
          return;
        }
        for (const [w, sku] of onlyOnTarget) await c.query('delete from stock where warehouse = $1 and sku = $2', [w, sku]);
        for (const [w, sku] of differing) await c.query('update stock set qty = -1 where warehouse = $1 and sku = $2', [w, sku]);
        for (const [w, sku] of onlyOnSource) await c.query('insert into stock values ($1, $2, 7)', [w, sku]);
        await c.query('insert into parked select generate_series(1, $1)', [emptyOnTarget]);
      });
    }
  }

  const stock = async (cluster: 'source' | 'target') =>
    withClient(scratchUrl(cluster), async (c) => (await c.query<{ k: string; qty: number }>(`select row(warehouse, sku)::text as k, qty from stock order by 1`)).rows);

  async function dropScratch(): Promise<void> {
    await withClient(scratchUrl('source'), async (c) => {
      for (const { subname } of (await c.query<{ subname: string }>('select subname from pg_subscription where subdbid = (select oid from pg_database where datname = current_database())')).rows) {
        const sub = c.escapeIdentifier(subname);
        await c.query(`alter subscription ${sub} disable`);
        await c.query(`alter subscription ${sub} set (slot_name = none)`);
        await c.query(`drop subscription ${sub}`);
      }
    }).catch(() => undefined);
    await withClient(url('target'), (c) => c.query('select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = $1', [scratch]));
    for (const cluster of ['source', 'target'] as const) await withClient(url(cluster), (c) => c.query(`drop database if exists ${c.escapeIdentifier(scratch)} with (force)`));
  }

  beforeAll(async () => {
    for (const cluster of ['source', 'target'] as const) await withClient(url(cluster), (c) => c.query(`create database ${c.escapeIdentifier(scratch)}`));
    process.env.TIERSHIFT_BACKFILL_CHUNK_ROWS = '7';
  });

  afterAll(async () => {
    delete process.env.TIERSHIFT_BACKFILL_CHUNK_ROWS;
    await dropScratch();
    expect(await replicationObjects()).toEqual([]);
  });

  it('counts, inserts what is missing and upserts, chunk by chunk, with every figure right', async () => {
    await seed();
    const before = await stock('source');

    // Count only: the source is left as it is.
    const counted = await runActivity(measureWrites, [from, to]);
    expect(counted.result).toEqual({ targetOnly: onlyOnTarget.length, differing: differing.length });
    expect(await stock('source')).toEqual(before);
    // One heartbeat per chunk of `stock`, each at most 7 rows further: the table is never held whole.
    const chunks = counted.heartbeats
      .map((h) => h as { phase?: string; table?: string; tableRowsCompared?: number; tableRowsEstimate?: number; rowsEstimate?: number })
      .filter((h) => h.phase === 'reverse backfill' && h.table === 'stock');
    expect(chunks.map((h) => h.tableRowsCompared)).toEqual([7, 14, 21, 28, 35, 42, 49, 56, 60]);
    expect(chunks.every((h) => h.tableRowsEstimate === 60 && h.rowsEstimate === 60)).toBe(true);
    // Each carries a reading: rows compared in all out of the planner's estimate (passed, it grows to match).
    for (const h of chunks as { rowsCompared?: number; rowsEstimate?: number }[]) {
      expect(progressOf(h)).toMatchObject({ phase: 'counting the writes to recover', unit: 'rows', done: h.rowsCompared, total: Math.max(h.rowsEstimate!, h.rowsCompared!) });
    }

    // Before any cutover (the write point's recovery): only the missing rows, the differing ones keep the source's version.
    const app: AppStep = { ...cutover, id: '5-app', title: 'Deploy green', kind: 'app', resource: 'app', version: 'v2' };
    const recovered = await run(startReverseSync, { migrationId, step: app, resources: { sourceDb: from, targetDb: to }, part: 'start' }, from, to);
    expect(recovered.summary).toBe(`copied to sourceDb the ${onlyOnTarget.length} rows only targetDb had (60 compared in 2 tables); ${differing.length} rows differ on both sides and keep sourceDb's version: at risk`);
    expect(recovered.figures).toEqual({ 'sourceDb.rowsRecovered.start': onlyOnTarget.length, 'sourceDb.rowsAtRisk': differing.length });
    const targetRows = await stock('target');
    const keyOf = ([w, sku]: readonly [number, string]) => `(${w},${sku})`;
    const afterInsert = new Map((await stock('source')).map((r) => [r.k, r.qty]));
    expect(afterInsert.size).toBe(60 + onlyOnSource.length);
    for (const r of targetRows) expect([r.k, afterInsert.get(r.k)]).toEqual([r.k, differing.some((d) => keyOf(d) === r.k) ? -1 : r.qty]);
    for (const k of onlyOnSource) expect(afterInsert.get(keyOf(k))).toBe(7);

    // Past the point of no return, from the original state: the target's version of every row it has.
    await seed();
    const undoInput: UndoInput = { migrationId, step: cutover, resources: { sourceDb: from, targetDb: to }, part: 'start' };
    const started = await run(startReverseSync, undoInput, from, to);
    expect(started.figures).toMatchObject({
      'sourceDb.rowsCopiedBack': onlyOnTarget.length + differing.length,
      'sourceDb.rowsComparedBack': 60,
      'sourceDb.rowsOnlyOnSource': onlyOnSource.length + emptyOnTarget,
    });
    const finished = await run(finishReverseSync, { ...undoInput, part: 'finish' }, from, to);
    expect(finished.figures).toMatchObject({ 'sourceDb.reverseSyncStopped': true });
    const upserted = new Map((await stock('source')).map((r) => [r.k, r.qty]));
    expect(upserted.size).toBe(60 + onlyOnSource.length);
    for (const r of targetRows) expect([r.k, upserted.get(r.k)]).toEqual([r.k, r.qty]);
    for (const k of onlyOnSource) expect(upserted.get(keyOf(k))).toBe(7);
    expect(await withClient(scratchUrl('source'), async (c) => (await c.query('select id from parked')).rowCount)).toBe(emptyOnTarget);
  });
});
