// The local data phase on the run's sandbox: logical replication of the seeded shop from the source
// cluster to the target while orders keep arriving, its undo, and the cutover. Leaves the sandbox as
// it found it: no replication objects, the target's shop database empty again.
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../activities';
import { localProvider } from '../activities/local';
import type { LocalPostgres } from '../activities/local/provider';
import { replicationName, syncPostgres, undoPgSync, type PgSyncUndo } from '../activities/local/pg-sync';
import { copyStage } from '../activities/local/pg-copy';
import { fingerprints, withClient } from '../activities/local/postgres';
import { sandboxState } from '../activities/local/sandbox';
import { runLoad } from '../client/load';
import { PHASES } from '../plan/phases';
import type { DataStep, FinalizeStep } from '../plan/types';
import { postgresUrl, type SandboxState } from '../contract/home';

const MIGRATION = 'test-local-pg-sync';
const NAME = replicationName(MIGRATION);
const source: LocalPostgres = { name: 'shop-source', kind: 'postgres', provider: 'local', cluster: 'source' };
const target: LocalPostgres = { name: 'shop-target', kind: 'postgres', provider: 'local', cluster: 'target' };
const resources = { [source.name]: source, [target.name]: target };
/** The dispatcher over the local provider: what a worker registers. */
const local = createActivities({ local: localProvider });
const common = {
  phaseIndex: 3,
  retry: { maximumAttempts: 1, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
  timeouts: { startToClose: '10m', heartbeat: '30s' },
};
const dataStep: DataStep = { ...common, id: '3-data', kind: 'data', title: 'Replicate shop to the target', from: source.name, to: target.name, verify: true };
const finalizeStep: FinalizeStep = { ...common, id: '9-finalize', kind: 'finalize', title: 'Cut over to the target', resources: [source.name, target.name], syncedFrom: { [target.name]: source.name } };
const dataInput = { migrationId: MIGRATION, step: dataStep, resources };

let state: SandboxState;
let targetHadShop = false;
const url = (cluster: 'source' | 'target', database?: string) => postgresUrl(state.postgres[cluster]!, database);

async function query<T extends pg.QueryResultRow>(cluster: 'source' | 'target', sql: string, params: unknown[] = [], database?: string): Promise<T[]> {
  return withClient(url(cluster, database), async (c) => (await c.query<T>(sql, params)).rows);
}

/** Our replication objects still present: subscriptions on the target, publications and slots on the source. */
async function replicationLeft(): Promise<string[]> {
  const [subs, pubs, slots] = await Promise.all([
    query<{ n: string }>('target', 'select subname as n from pg_subscription', [], 'postgres'),
    query<{ n: string }>('source', 'select pubname as n from pg_publication'),
    query<{ n: string }>('source', 'select slot_name as n from pg_replication_slots'),
  ]);
  return [...subs.map((r) => `subscription ${r.n}`), ...pubs.map((r) => `publication ${r.n}`), ...slots.map((r) => `slot ${r.n}`)];
}

/** The target's shop database back to how the sandbox made it (empty), or gone if it was not there. */
async function resetTarget(): Promise<void> {
  const database = state.postgres.target!.database;
  await withClient(url('target', 'postgres'), async (c) => {
    await c.query(`drop database if exists ${c.escapeIdentifier(database)} with (force)`);
    if (targetHadShop) await c.query(`create database ${c.escapeIdentifier(database)}`);
  });
}

/** Temporal's activity test environment (heartbeats recorded); the logger keeps expected failures quiet. */
function activityEnv() {
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  const beats: Record<string, unknown>[] = [];
  env.on('heartbeat', (details: Record<string, unknown>) => beats.push(details));
  const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> => env.run<A, R, typeof fn>(fn, ...args);
  return { run, beats };
}

const count = async (cluster: 'source' | 'target', sql: string) => Number((await query<{ n: string }>(cluster, sql))[0]!.n);

const sameData = async () => {
  const [a, b] = await Promise.all([withClient(url('source'), fingerprints), withClient(url('target'), fingerprints)]);
  return JSON.stringify(a) === JSON.stringify(b);
};

describe('local PostgreSQL sync', () => {
  beforeAll(async () => {
    state = sandboxState();
    const shop = state.postgres.target!.database;
    targetHadShop = (await query('target', 'select 1 from pg_database where datname = $1', [shop], 'postgres')).length > 0;
    const tables = targetHadShop ? await query<{ t: string }>('target', `select tablename as t from pg_tables where schemaname = 'public'`) : [];
    if (tables.length) throw new Error(`the target's ${shop} database already has tables (${tables.map((t) => t.t).join(', ')}); another test left them`);
    expect(await replicationLeft()).toEqual([]);
  });

  // Always, also after a failure: other test files share this sandbox.
  afterAll(async () => {
    await activityEnv().run(undoPgSync, { ...dataInput }).catch(() => undefined);
    await resetTarget();
    expect(await replicationLeft()).toEqual([]);
  });

  it('replicates the seeded shop to the target while orders keep arriving on the source', async () => {
    const ordersBefore = await count('source', 'select count(*) as n from orders');
    const stop = new AbortController();
    // Through blue, the app of the source: real order transactions (order, items, invoice number).
    const writer = runLoad({
      url: `http://127.0.0.1:${state.apps.blue!.port}/api/orders`,
      method: 'POST',
      body: {},
      ratePerSecond: 20,
      durationMs: 60_000,
      maxRequests: 1_200,
      signal: stop.signal,
    });
    const { run, beats } = activityEnv();
    try {
      const outcome = await run(syncPostgres, dataInput);
      expect(outcome.figures).toMatchObject({ 'shop-target.tablesCopied': 5, 'shop-target.verified': true });
      expect(outcome.figures['shop-target.rowsCopied']).toBeGreaterThan(ordersBefore);
      expect(outcome.figures['shop-target.quiesceMs']).toEqual(expect.any(Number));
      expect(outcome.undo).toEqual({ publication: NAME, subscription: NAME, slot: NAME, createdDatabase: !targetHadShop, loadedSchema: true } satisfies PgSyncUndo);
      expect(outcome.summary).toContain('new subscription');
      // The copy reports rows out of the planner's estimate, chunk by chunk (one at least per table).
      const copying = beats.filter((b) => b.phase === 'initial copy');
      expect(copying.at(-1)).toMatchObject({ chunksDone: copying.at(-1)!.chunksTotal, progress: { phase: 'initial copy', unit: 'rows' } });
      expect(Number(copying.at(-1)!.chunksTotal)).toBeGreaterThanOrEqual(5);
    } finally {
      stop.abort();
    }
    const written = await writer;
    expect(written.failed).toBe(0);
    expect(written.byStatus['201']).toBeGreaterThan(0);
    const ordersAfter = await count('source', 'select count(*) as n from orders');
    expect(ordersAfter).toBe(ordersBefore + written.byStatus['201']!);
    // Replication keeps running after the step: the last orders reach the target too.
    await expect.poll(sameData, { timeout: 30_000, interval: 500 }).toBe(true);
  });

  it('reuses the publication and the subscription on a second call', async () => {
    const oid = async () => (await query<{ oid: number }>('target', 'select oid from pg_subscription where subname = $1', [NAME]))[0]?.oid;
    const before = await oid();
    const outcome = await activityEnv().run(syncPostgres, dataInput);
    expect(outcome.summary).toContain('existing subscription');
    expect(outcome.figures['shop-target.verified']).toBe(true);
    expect(await oid()).toBe(before);
    expect((await replicationLeft()).sort()).toEqual([`publication ${NAME}`, `slot ${NAME}`, `subscription ${NAME}`]);
  });

  it('undo drops the replication, leaves the source untouched and keeps the copied data', async () => {
    const sourceBefore = await withClient(url('source'), fingerprints);
    const { run } = activityEnv();
    const outcome = await run(undoPgSync, { ...dataInput, undo: { publication: NAME, subscription: NAME, slot: NAME, createdDatabase: false, loadedSchema: true } });
    expect(outcome.figures).toEqual({ 'shop-target.subscriptionDropped': true, 'shop-source.publicationDropped': true });
    expect(await replicationLeft()).toEqual([]);
    expect(await withClient(url('source'), fingerprints)).toEqual(sourceBefore);
    expect(await sameData()).toBe(true);

    const again = await run(undoPgSync, { ...dataInput });
    expect(again.summary).toMatch(/^no replication .* left to remove$/);
  });

  it('refuses to start over on a target that already holds rows', async () => {
    const failure = await activityEnv().run(syncPostgres, dataInput).catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect((failure as ApplicationFailure).nonRetryable).toBe(true);
    expect((failure as Error).message).toMatch(/shop-target already holds rows in .*orders.*; empty those tables/);
    expect(await replicationLeft()).toEqual([]);
  });

  it('cutover moves every sequence past the source and ends the replication; a second call has nothing to stop', async () => {
    await resetTarget();
    const { run } = activityEnv();
    await run(syncPostgres, dataInput);
    const finalizeInput = { migrationId: MIGRATION, step: finalizeStep, resources };
    const outcome = await run(local.finalizeMigration, finalizeInput);
    const sequences = await count('source', `select count(*) as n from pg_sequences where schemaname = 'public'`);
    // The sync already put them far ahead (so a canary can write); the cutover checks them again.
    expect(outcome.figures['shop-target.sequencesSynced']).toBeLessThanOrEqual(sequences);
    expect(outcome.figures).toMatchObject({ 'shop-target.subscriptionDropped': true });
    expect(await replicationLeft()).toEqual([]);

    // The new version writes to the target now: its ids and invoice numbers must not reuse the source's.
    const [max] = await query<{ customer: string; order: string; invoice: string }>(
      'source',
      'select (select max(id) from customers) as customer, (select max(id) from orders) as order, (select max(invoice_number) from orders) as invoice',
    );
    const inserted = await withClient(url('target'), async (c) => {
      const customer = await c.query<{ id: string }>(`insert into customers (email, full_name, country) values ('cutover@example.com', 'Cut Over', 'DE') returning id`);
      const order = await c.query<{ id: string; invoice_number: string }>('insert into orders (customer_id, total_cents) values ($1, 100) returning id, invoice_number', [customer.rows[0]!.id]);
      return { customer: BigInt(customer.rows[0]!.id), order: BigInt(order.rows[0]!.id), invoice: BigInt(order.rows[0]!.invoice_number) };
    });
    expect(inserted.customer).toBeGreaterThan(BigInt(max!.customer));
    expect(inserted.order).toBeGreaterThan(BigInt(max!.order));
    expect(inserted.invoice).toBeGreaterThan(BigInt(max!.invoice));

    const again = await run(local.finalizeMigration, finalizeInput);
    expect(again.figures).toMatchObject({ 'shop-target.sequencesSynced': 0, 'shop-target.subscriptionDropped': false });
    expect(again.summary).toContain('no replication from shop-source left to stop');
  });
});

/**
 * The verification on its own databases (one per scenario, on both clusters), so the shop's tables and
 * the other files sharing this sandbox are untouched. Small chunks make small tables span many.
 */
describe('local PostgreSQL sync: chunked verification at a consistent point', () => {
  const chunkEnv = process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS;
  // Also when run alone (-t): the first block's setup is what reads the sandbox otherwise.
  beforeAll(() => {
    state ??= sandboxState();
  });
  afterAll(() => {
    if (chunkEnv === undefined) delete process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS;
    else process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS = chunkEnv;
  });

  /** A data step between two databases named `database` on the source and target clusters, filled by `setup`. */
  async function scenario(database: string, setup: string) {
    await withClient(url('source', 'postgres'), async (c) => {
      await c.query(`drop database if exists ${c.escapeIdentifier(database)} with (force)`);
      await c.query(`create database ${c.escapeIdentifier(database)}`);
    });
    await withClient(url('source', database), (c) => c.query(setup));
    const from: LocalPostgres = { name: 'vsrc', kind: 'postgres', provider: 'local', cluster: 'source', database };
    const to: LocalPostgres = { name: 'vdst', kind: 'postgres', provider: 'local', cluster: 'target', database };
    const step: DataStep = { ...dataStep, from: from.name, to: to.name };
    const input = { migrationId: `test-verify-${database}`, step, resources: { [from.name]: from, [to.name]: to } };
    const onTarget = <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => query<T>('target', sql, params, database);
    const cleanup = async () => {
      await activityEnv().run(undoPgSync, { ...input }).catch(() => undefined);
      for (const cluster of ['source', 'target'] as const) {
        await withClient(url(cluster, 'postgres'), (c) => c.query(`drop database if exists ${c.escapeIdentifier(database)} with (force)`));
      }
    };
    return { input, onTarget, cleanup };
  }

  const failureOf = async (p: Promise<unknown>): Promise<ApplicationFailure> => {
    const failure = await p.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect((failure as ApplicationFailure).nonRetryable).toBe(true);
    return failure as ApplicationFailure;
  };

  it('finds rows changed on the target in one chunk and names their keys', async () => {
    process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS = '1000';
    const s = await scenario('verify_diff', `create table items (id bigint primary key, v text not null);
      insert into items select i, md5(i::text) from generate_series(1, 5000) i`);
    try {
      const { run, beats } = activityEnv();
      const first = await run(syncPostgres, s.input);
      expect(first.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 5000 });
      expect(first.figures['vdst.chunksChecked']).toBeGreaterThanOrEqual(5);
      const last = beats.filter((b) => b.phase === 'verifying').at(-1);
      expect(last).toMatchObject({ rowsChecked: 5000, tablesDone: 1, tablesTotal: 1, checkedUpTo: { items: 'all' }, progress: { phase: 'verifying', unit: 'rows', done: 5000 } });

      // Writes straight to the target, which replication never undoes: seven keys of the chunk (2000, 3000].
      await s.onTarget(`update items set v = 'changed' where id between 2341 and 2347`);
      await s.onTarget('delete from items where id = 2346');
      const failure = await failureOf(activityEnv().run(syncPostgres, s.input));
      expect(failure.message).toMatch(/^vdst differs from vsrc at a consistent point \(items: rows differ at id 2341, 2342, 2343, 2344, 2345 \(and 2 more\)\); something else writes to the target: stop it, roll back the data step and run it again$/);
    } finally {
      await s.cleanup();
    }
  });

  it('pauses writes for the same short time at 50k and at 500k rows; the checksums run after the pause', async () => {
    process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS = '20000';
    const measured: Record<string, { quiesceMs: number; verifyMs: number }> = {};
    for (const rows of [50_000, 500_000]) {
      const s = await scenario(`verify_${rows}`, `create table orders (id bigint primary key, customer int not null, note text not null);
        insert into orders select i, i % 997, repeat(md5(i::text), 6) from generate_series(1, ${rows}) i;
        analyze orders`);
      try {
        const { run, beats } = activityEnv();
        const outcome = await run(syncPostgres, s.input);
        expect(outcome.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': rows });
        measured[rows] = { quiesceMs: Number(outcome.figures['vdst.quiesceMs']), verifyMs: Number(outcome.figures['vdst.verifyMs']) };
        // Progress against the planner's estimate, while it runs.
        expect(beats.some((b) => b.phase === 'verifying' && Number(b.rowsChecked) < rows && Math.abs(Number(b.rowsTotal) - rows) < rows / 10)).toBe(true);
      } finally {
        await s.cleanup();
      }
    }
    for (const { quiesceMs } of Object.values(measured)) expect(quiesceMs).toBeLessThan(2_000);
    expect(measured[500_000]!.verifyMs).toBeGreaterThan(measured[500_000]!.quiesceMs);
  });

  it('pauses writes briefly although autovacuum holds the source table (it would for minutes on a big one)', async () => {
    process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS = '20000';
    // A real autovacuum, throttled so it would run for hours: its lock conflicts with the pause's.
    const s = await scenario('verify_autovacuum', `create table orders (id bigint primary key, note text not null) with (
        autovacuum_vacuum_insert_threshold = 1, autovacuum_vacuum_insert_scale_factor = 0,
        autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1);
      insert into orders select i, repeat(md5(i::text), 4) from generate_series(1, 50000) i`);
    const naptime = async (value: string | null) =>
      withClient(url('source', 'postgres'), async (c) => {
        await c.query(value === null ? 'alter system reset autovacuum_naptime' : `alter system set autovacuum_naptime = ${value}`);
        await c.query('select pg_reload_conf()');
      });
    const vacuuming = () =>
      query<{ pid: number }>('source', `select pid from pg_stat_activity where backend_type = 'autovacuum worker' and datname = 'verify_autovacuum' and query ilike '%orders%'`);
    try {
      await naptime('1');
      const deadline = Date.now() + 30_000;
      while (!(await vacuuming()).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      const [vacuum] = await vacuuming();
      expect(vacuum, 'an autovacuum of orders is running').toBeDefined();
      const outcome = await activityEnv().run(syncPostgres, s.input);
      expect(outcome.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 50_000 });
      expect(Number(outcome.figures['vdst.quiesceMs'])).toBeLessThan(2_000);
      // The pause ended that autovacuum rather than waiting it out (a later one may have started since).
      expect((await vacuuming()).map((v) => v.pid)).not.toContain(vacuum!.pid);
    } finally {
      await naptime(null);
      await s.cleanup();
    }
  });

  it('refuses a table without a primary key before copying anything, naming it', async () => {
    process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS = '1000';
    const s = await scenario('verify_keyless', `create table events (at int not null, note text);
      insert into events select i, 'e' || i from generate_series(1, 3000) i;
      create table kept (id int primary key)`);
    try {
      const failure = await failureOf(activityEnv().run(syncPostgres, s.input));
      expect(failure.message).toBe(
        'vsrc has a table without a primary key (events), which the data step can neither replicate updates of nor verify; add a primary key to it and run the step again',
      );
      expect(await query('target', 'select 1 from pg_database where datname = $1', ['verify_keyless'], 'postgres')).toEqual([]);
      expect(await replicationLeft()).toEqual([]);
      // `tiershift plan` says so up front, in the data step's line.
      expect(PHASES.data.describe?.(dataStep)).toContain('tables without a primary key are refused before any copy');
    } finally {
      await s.cleanup();
    }
  });

  it('verifies a table of many chunks with a composite primary key (text and number)', async () => {
    process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS = '700';
    const s = await scenario('verify_composite', `create table lines (region text, n int, qty int not null, primary key (region, n));
      insert into lines select r, i, i % 7 from unnest(array['eu', 'us', 'ap', 'Eu west', 'sa']) r, generate_series(1, 2000) i`);
    try {
      const outcome = await activityEnv().run(syncPostgres, s.input);
      expect(outcome.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 10_000 });
      expect(outcome.figures['vdst.chunksChecked']).toBe(Math.ceil(10_000 / 700));

      // 'us' sorts last in any collation: rows 9500 and 9501 of the key order, one chunk (9100, 9800].
      await s.onTarget(`update lines set qty = -1 where (region, n) in (('us', 1500), ('us', 1501))`);
      const failure = await failureOf(activityEnv().run(syncPostgres, s.input));
      expect(failure.message).toContain('(lines: rows differ at (region, n) (us, 1500), (us, 1501));');
    } finally {
      await s.cleanup();
    }
  });

  it('checks a table whose column type has no hash function (json) by the md5 of its rows, and still finds a change', async () => {
    process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS = '1000';
    const s = await scenario('verify_json', `create table docs (id int primary key, body json not null);
      insert into docs select i, json_build_object('n', i) from generate_series(1, 3000) i`);
    try {
      const outcome = await activityEnv().run(syncPostgres, s.input);
      expect(outcome.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 3000 });
      await s.onTarget(`update docs set body = '{"n": -1}' where id = 1234`);
      const failure = await failureOf(activityEnv().run(syncPostgres, s.input));
      expect(failure.message).toContain('(docs: rows differ at id 1234);');
    } finally {
      await s.cleanup();
    }
  });

  /**
   * Ends, as a killed worker's would end, the target sessions on `database` that match `which` (SQL on
   * pg_stat_activity), the first time any do, polling every 25 ms for up to 30 s; true if it ended some.
   */
  const endSessionsOnce = (database: string, which: string) =>
    withClient(url('target', 'postgres'), async (c) => {
      for (let i = 0; i < 1200; i++) {
        const { rowCount } = await c.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and ${which}`, [database]);
        if (rowCount) return true;
        await new Promise((r) => setTimeout(r, 25));
      }
      return false;
    });

  /** A shop-like schema with what a copy must not lose: generated and dropped columns, indexes, foreign keys, checks, a trigger. */
  const richSchema = (rows: number, customers = 500) => `
    create table customers (id bigint primary key, email text not null unique);
    insert into customers select i, 'c' || i || '@example.com' from generate_series(1, ${customers}) i;
    create table orders (
      id bigint generated by default as identity primary key,
      customer_id bigint not null references customers (id),
      total_cents int not null check (total_cents >= 0),
      gone text,
      note text not null,
      total_eur numeric generated always as (total_cents / 100.0) stored);
    alter table orders drop column gone;
    insert into orders (customer_id, total_cents, note) select 1 + i % 500, i % 10000, repeat(md5(i::text), 3) from generate_series(1, ${rows}) i;
    create index orders_customer on orders (customer_id);
    create index orders_note on orders (note);
    create unique index orders_customer_id on orders (customer_id, id);
    create function stamp() returns trigger language plpgsql as $$ begin new.note := new.note; return new; end $$;
    create trigger orders_stamp before insert on orders for each row execute function stamp();
    analyze`;

  /** Index and constraint definitions of a database's public schema, to compare the two sides. */
  const definitions = async (cluster: 'source' | 'target', database: string) => ({
    indexes: (await query<{ d: string }>(cluster, `select indexdef as d from pg_indexes where schemaname = 'public' order by 1`, [], database)).map((r) => r.d),
    constraints: (await query<{ d: string }>(cluster, `select conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid) as d from pg_constraint where connamespace = 'public'::regnamespace order by 1`, [], database)).map((r) => r.d),
    triggers: (await query<{ d: string }>(cluster, `select tgname as d from pg_trigger where not tgisinternal order by 1`, [], database)).map((r) => r.d),
  });

  it('runs an attempt that starts while an earlier one still copies only after that one ends, so every row goes in once', async () => {
    // What Temporal does when it stops hearing an attempt's heartbeat (a busy host): it starts the next
    // attempt while the first may still run. Without a fence the second finds the copy unfinished,
    // truncates it and copies again, under the feet of the first.
    process.env.TIERSHIFT_COPY_CHUNK_ROWS = '20000';
    const s = await scenario('two_attempts', `create table items (id bigint primary key, note text not null);
      insert into items select i, repeat(md5(i::text), 4) from generate_series(1, 200000) i`);
    try {
      const first = activityEnv();
      const firstRun = first.run(syncPostgres, s.input);
      firstRun.catch(() => undefined);
      // The first attempt is copying: its marker exists at 0/0.
      for (let i = 0; i < 600 && (await copyStage(url('target', 'postgres'), replicationName(s.input.migrationId))).stage !== 'copying'; i++) await new Promise((r) => setTimeout(r, 50));
      expect((await copyStage(url('target', 'postgres'), replicationName(s.input.migrationId))).stage).toBe('copying');
      const second = activityEnv();
      const [a, b] = await Promise.all([firstRun, second.run(syncPostgres, s.input)]);
      expect(a.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 200_000 });
      expect(b.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 200_000 });
      expect(second.beats.some((d) => d.phase === 'waiting for an earlier attempt of this step to stop')).toBe(true);
      // The second attempt found the first one's subscription and copied nothing.
      expect(b.summary).toContain('existing subscription');
      const [inserted] = await s.onTarget<{ n: string }>(`select n_tup_ins as n from pg_stat_user_tables where relname = 'items'`);
      expect(inserted?.n).toBe('200000');
    } finally {
      delete process.env.TIERSHIFT_COPY_CHUNK_ROWS;
      await s.cleanup();
    }
  });

  it('copies big tables in parallel chunks at one snapshot, then builds the indexes and constraints', async () => {
    process.env.TIERSHIFT_COPY_CHUNK_ROWS = '2000';
    const s = await scenario('copy_chunks', richSchema(20_000));
    try {
      const { run, beats } = activityEnv();
      const outcome = await run(syncPostgres, s.input);
      expect(outcome.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 20_500 });
      // orders (ids 1 to 20000) in ten ranges of 2000 ids, customers in one.
      expect(outcome.figures['vdst.copyChunks']).toBe(11);
      expect(outcome.summary).toMatch(/copied 20500 rows in 11 chunks in \d+ ms; 8 indexes, constraints and triggers built, 1 foreign keys validated,/);
      // None of them was on the target while the rows went in: all 8 were built after, none found.
      expect(outcome.figures['vdst.indexesBuilt']).toBe(8);
      expect(outcome.summary).not.toContain('already there');
      expect(await definitions('target', 'copy_chunks')).toEqual(await definitions('source', 'copy_chunks'));
      const progress = beats.filter((b) => b.phase === 'initial copy').map((b) => b.progress as { done: number; total: number; unit: string });
      expect(progress.at(-1)).toMatchObject({ unit: 'rows', done: 20_500 });
      expect(Math.abs(progress.at(-1)!.total - 20_500)).toBeLessThan(2_000);
      // Identity values copied as they were; the target's own next id comes after them.
      const [next] = await s.onTarget<{ id: string }>(`insert into orders (customer_id, total_cents, note) values (1, 1, 'x') returning id`);
      expect(BigInt(next!.id)).toBeGreaterThan(20_000n);
    } finally {
      delete process.env.TIERSHIFT_COPY_CHUNK_ROWS;
      await s.cleanup();
    }
  });

  it('copies into a target whose schema someone made beforehand, foreign keys and trigger included, and keeps it', async () => {
    process.env.TIERSHIFT_COPY_CHUNK_ROWS = '5000';
    const s = await scenario('copy_premade', richSchema(20_000));
    try {
      // The same schema on the target, empty: its foreign key and trigger must not fire for copied rows.
      await withClient(url('target', 'postgres'), (c) => c.query('create database copy_premade'));
      await s.onTarget(richSchema(0, 0));
      const outcome = await activityEnv().run(syncPostgres, s.input);
      expect(outcome.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 20_500, 'vdst.indexesBuilt': 0 });
      expect(outcome.summary).toContain('0 indexes, constraints and triggers built (8 already there)');
      expect(await definitions('target', 'copy_premade')).toEqual(await definitions('source', 'copy_premade'));
    } finally {
      delete process.env.TIERSHIFT_COPY_CHUNK_ROWS;
      await s.cleanup();
    }
  });

  it('an attempt that dies during the index build resumes there: rows kept, the missing indexes built, nothing twice', async () => {
    const s = await scenario('copy_resume', richSchema(150_000));
    try {
      // The attempt's sessions end as a killed worker's do, once it builds the secondary indexes (which
      // it does while it verifies, the subscription streaming).
      const kill = endSessionsOnce('copy_resume', `application_name like 'tiershift%' and query ilike 'create%index%' and state = 'active'`);
      const first = await activityEnv().run(syncPostgres, s.input).then(() => 'completed', (err: Error) => err.message);
      expect(await kill).toBe(true);
      expect(first).not.toBe('completed');
      const rowsBefore = await s.onTarget<{ n: string }>('select count(*) as n from orders');
      expect(Number(rowsBefore[0]!.n)).toBe(150_000);

      const outcome = await activityEnv().run(syncPostgres, s.input);
      // The subscription streams on; what the first attempt built stays, the rest is built.
      expect(outcome.summary).toContain('existing subscription');
      expect(outcome.summary).toMatch(/; [1-9]\d* indexes, constraints and triggers built \([1-9]\d* already there\)/);
      // Each row went into the target once: no second copy.
      const [inserted] = await s.onTarget<{ n: string }>(`select n_tup_ins as n from pg_stat_user_tables where relname = 'orders'`);
      expect(inserted?.n).toBe('150000');
      expect(outcome.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 150_500 });
      expect(await definitions('target', 'copy_resume')).toEqual(await definitions('source', 'copy_resume'));
    } finally {
      await s.cleanup();
    }
  });

  it('an attempt that dies during the copy starts the copy again from a new snapshot, without duplicating a row', async () => {
    process.env.TIERSHIFT_COPY_CHUNK_ROWS = '20000';
    const s = await scenario('copy_again', richSchema(150_000));
    try {
      const kill = endSessionsOnce('copy_again', `application_name = 'tiershift: copying' and query ilike 'copy%from stdin%'`);
      const first = await activityEnv().run(syncPostgres, s.input).then(() => 'completed', (err: Error) => err.message);
      expect(await kill).toBe(true);
      expect(first).not.toBe('completed');
      const outcome = await activityEnv().run(syncPostgres, s.input);
      expect(outcome.summary).toContain('(again: an earlier attempt was interrupted mid-copy)');
      expect(outcome.figures).toMatchObject({ 'vdst.verified': true, 'vdst.rowsCopied': 150_500 });
      const [n] = await s.onTarget<{ n: string }>('select count(*) as n from orders');
      expect(Number(n!.n)).toBe(150_000);
    } finally {
      delete process.env.TIERSHIFT_COPY_CHUNK_ROWS;
      await s.cleanup();
    }
  });
});
