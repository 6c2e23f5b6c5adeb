// The data phase on the sandbox: PostgreSQL logical replication from the source to the target (the
// local twin of an online migration), verified at a consistent point, and the cutover that ends it.
// Every operation finds what an earlier attempt left and carries on from there.
import { ApplicationFailure, heartbeat, sleep } from '@temporalio/activity';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import pg from 'pg';
import type { DataStep, FinalizeStep, Resource } from '../../plan/types';
import type { LocalPostgres } from './provider';
import { findBinary } from '../../sandbox/binaries';
import type { Json, StepInput, StepOutcome, UndoInput } from '../types';
import { userTables, withClient } from './postgres';
import { checksumModes, describeDifference, rowEstimates, SnapshotExporters, verifyChunks } from './pg-verify';
import { copyStage, dropCopyMarker, initialCopy, TargetBuild, type CopyOutcome } from './pg-copy';
import { postgresConnection } from './sandbox';
import { libpqCommandLine, pgClient, withPgClient } from '../../contract/pg';

/** Longest time writers on the source are held back, for the verification and for the cutover. */
const QUIESCE_MS = 10_000;
/**
 * The server ends the session that pauses writes once it sits idle in its transaction this long: a
 * frozen or partitioned worker cannot keep writers blocked past it. A little above QUIESCE_MS, which a
 * live worker never exceeds (it polls the session while waiting, and commits or rolls back by then).
 */
export const PAUSE_SESSION_LIMIT_MS = QUIESCE_MS + 5_000;
/** application_name of the session holding the write pause: what an operator looks for in pg_stat_activity. */
export const PAUSE_APPLICATION_NAME = 'tiershift: writes paused';
/**
 * The session's TCP keepalives (seconds): a worker host that vanished (power, network) is noticed by the
 * server in about idle + interval x count, and its locks released, instead of after the kernel's ~2 h.
 */
const PAUSE_SESSION_SETTINGS = {
  idle_in_transaction_session_timeout: PAUSE_SESSION_LIMIT_MS,
  tcp_keepalives_idle: 5,
  tcp_keepalives_interval: 2,
  tcp_keepalives_count: 3,
};
/** Lag under which quiescing is worth trying: the rest drains in well under a second. */
export const SMALL_LAG_BYTES = 256 * 1024;
/**
 * Sequences on the target start this far past the source's values: nextval() is not transactional and
 * not blocked by the table locks, so a straggler on the source may still draw a few numbers after we
 * read them; the gap keeps the target's new ids and invoice numbers clear of those.
 */
export const SEQUENCE_GAP = 1000n;
/**
 * While replication runs, the new version may already write to the target (a canary): its sequences
 * start this far ahead so its ids never meet the ones the source still hands out and replicates.
 */
const CANARY_SEQUENCE_GAP = 1_000_000n;
const POLL_MS = 1_000;

export type PgSyncUndo = {
  publication: string;
  subscription: string;
  slot: string;
  createdDatabase: boolean;
  loadedSchema: boolean;
};

interface Progress {
  tablesDone: number;
  tablesTotal: number;
  rows: number;
  bytes: number;
  lagBytes: number;
}

/**
 * Publication, subscription and slot share one name per migration: readable, at most 63 bytes, and
 * with a hash whenever sanitising changed the id, so `a-b` and `a_b` cannot share a slot.
 */
export function replicationName(migrationId: string): string {
  const clean = migrationId.toLowerCase().replace(/[^a-z0-9_]+/g, '_');
  const name = `tiershift_${clean}`;
  if (clean === migrationId && name.length <= 63) return name;
  return `${name.slice(0, 54)}_${createHash('sha256').update(migrationId).digest('hex').slice(0, 8)}`;
}

function postgresResource(resources: Record<string, Resource>, name: string): LocalPostgres {
  const resource = resources[name];
  if (resource?.kind !== 'postgres') {
    throw ApplicationFailure.nonRetryable(`${name} is not a postgres resource of the plan; name postgres resources in the data step`, 'NonRetryable');
  }
  return resource;
}

function onDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

const databaseOf = (url: string): string => decodeURIComponent(new URL(url).pathname.slice(1));

/**
 * The two databases of a data step as the replication reaches them: the resources' names (for messages)
 * and connection strings the worker resolved. The sandbox resolves its clusters; Azure its Key Vault
 * references (activities/azure/logical.ts): the same data phase runs on both.
 */
export interface Ends {
  from: Pick<LocalPostgres, 'name'>;
  to: Pick<LocalPostgres, 'name'>;
  src: string;
  dst: string;
}

async function localEnds(resources: Record<string, Resource>, step: { from: string; to: string }): Promise<Ends> {
  const from = postgresResource(resources, step.from);
  const to = postgresResource(resources, step.to);
  return { from, to, src: await postgresConnection(from), dst: await postgresConnection(to) };
}

export async function syncPostgres(input: StepInput<DataStep>): Promise<StepOutcome> {
  return syncDatabases(input, await localEnds(input.resources, input.step));
}

export async function syncDatabases(input: StepInput<DataStep>, { from, to, src, dst }: Ends): Promise<StepOutcome> {
  const { migrationId } = input;
  if (src === dst) throw ApplicationFailure.nonRetryable(`${from.name} and ${to.name} are the same database; point the data step at two databases`, 'NonRetryable');
  const name = replicationName(migrationId);

  // Before anything is created: the verification compares rows by primary key, and logical replication
  // cannot apply an update or delete to a table without one.
  const tables = await withClient(src, userTables);
  const keyless = tables.filter((t) => t.key.length === 0).map((t) => t.table);
  if (keyless.length) {
    throw ApplicationFailure.nonRetryable(
      `${from.name} has ${keyless.length === 1 ? 'a table' : 'tables'} without a primary key (${keyless.join(', ')}), which the data step can neither replicate updates of nor verify; add a primary key to ${keyless.length === 1 ? 'it' : 'each'} and run the step again`,
      'NonRetryable',
    );
  }

  const createdDatabase = await ensureDatabase(dst);
  // Held until this attempt ends: an attempt whose heartbeat Temporal stopped hearing may still be running
  // when the next one starts, and the two must not read and change the copy's state at the same time.
  const fence = await oneAttemptAtATime(dst, name);
  try {
    return await syncHolding(input, { from, to, src, dst, name, tables, createdDatabase });
  } finally {
    await fence.release();
  }
}

/**
 * Waits until no other attempt of this migration's data step runs, then holds a session advisory lock on
 * the target until `release`. The server frees it when the session ends: a killed worker never keeps it.
 * An attempt Temporal gave up on learns so at its next heartbeat and is cancelled, so the wait is short.
 */
export async function oneAttemptAtATime(dst: string, name: string): Promise<{ release: () => Promise<void> }> {
  const c = pgClient(dst, { applicationName: 'tiershift: data step attempt', settings: { tcp_keepalives_idle: 5, tcp_keepalives_interval: 2, tcp_keepalives_count: 3 } });
  await c.connect();
  try {
    for (;;) {
      const { rows } = await c.query<{ held: boolean }>(`select pg_try_advisory_lock(hashtextextended($1, 0)) as held`, [`tiershift data step ${name}`]);
      if (rows[0]?.held) break;
      heartbeat({ phase: 'waiting for an earlier attempt of this step to stop' });
      await sleep(500);
    }
  } catch (err) {
    await c.end().catch(() => undefined);
    throw err;
  }
  return { release: () => c.end().catch(() => undefined) };
}

interface SyncContext {
  from: Ends['from'];
  to: Ends['to'];
  src: string;
  dst: string;
  name: string;
  tables: Awaited<ReturnType<typeof userTables>>;
  createdDatabase: boolean;
}

async function syncHolding(input: StepInput<DataStep>, { from, to, src, dst, name, tables, createdDatabase }: SyncContext): Promise<StepOutcome> {
  const { step } = input;
  let loadedSchema = false;
  let copy: CopyOutcome | undefined;
  const reused = await withClient(dst, (c) => findSubscription(c, name));
  const build = new TargetBuild(src, dst, tables);
  let verified = false;
  let quiesceMs = 0;
  let verifyMs = 0;
  let chunks = 0;
  let built: Awaited<ReturnType<TargetBuild['finish']>>;
  let progress: Progress;
  try {
    if (reused) {
      // Past the copy: the subscription streams; an attempt stopped there only needs it running again.
      await withClient(src, (s) => ensurePublication(s, name));
      if (!reused.enabled) await withClient(dst, (c) => c.query(`alter subscription ${c.escapeIdentifier(name)} enable`));
      await build.open();
    } else {
      if ((await copyStage(dst, name)).stage === 'none') {
        // The post-data section is read while the tables are created: the copy needs it from its first table on.
        const opened = build.open();
        opened.catch(() => undefined);
        loadedSchema = await ensureSchema(src, dst, to.name);
        await refuseFilledTarget(dst, to.name);
        await opened;
      } else {
        await build.open();
      }
      await withClient(src, (s) => ensurePublication(s, name));
      copy = await initialCopy(src, dst, name, tables, dropSlot, build);
      await subscribeFromSlot(src, dst, name);
    }
    await dropCopyMarker(dst, name);
    // No index build may lock a table the subscription writes to while it catches up and the point is taken.
    await build.hold();
    // A subscription created by an older tiershift copies its tables itself: they must be ready first.
    if (reused) await waitForTableSync(src, dst, name);
    await waitForStreaming(src, dst, name);
    progress = await waitForLag(src, dst, name, SMALL_LAG_BYTES);

    if (!step.verify) {
      built = await build.finish(() => true);
    } else {
      const exporters = new SnapshotExporters();
      try {
        // The pause only fixes the point: with the source's writers held and the marker applied, the
        // target holds exactly what the source does, and a snapshot on each side keeps that view.
        const point = await quiesced(src, name, async () => {
          const [source, target] = await Promise.all([exporters.export(src), exporters.export(dst)]);
          return { source, target };
        });
        quiesceMs = point.quiesceMs;
        // What the target still lacks (indexes, foreign keys, statistics) is built while the rows are checked.
        let checking = true;
        const finishing = build.finish(() => !checking);
        finishing.catch(() => undefined);
        const started = Date.now();
        const [estimates, modes] = await withClient(src, async (c) => [await rowEstimates(c, tables.map((t) => t.table)), await checksumModes(c, tables)] as const);
        const check = await verifyChunks(src, dst, point.result, tables, estimates, modes);
        verifyMs = Date.now() - started;
        checking = false;
        if (check.differences.length) {
          throw ApplicationFailure.nonRetryable(
            `${to.name} differs from ${from.name} at a consistent point (${check.differences.map(describeDifference).join('; ')}); something else writes to the target: stop it, roll back the data step and run it again`,
            'NonRetryable',
          );
        }
        verified = true;
        progress = { ...progress, rows: check.rows };
        chunks = check.chunks;
        built = await finishing;
      } finally {
        await exporters.close();
      }
    }
  } finally {
    await build.stop();
  }
  const rows = progress.rows;

  const sequencesRaised = await raiseSequences(dst, await withClient(src, sourceSequences), CANARY_SEQUENCE_GAP);

  const n = to.name;
  const undo: PgSyncUndo = { publication: name, subscription: name, slot: name, createdDatabase, loadedSchema };
  return {
    summary:
      `${n}: ${progress.tablesTotal} tables, ${rows} rows replicated from ${from.name} (${reused ? 'existing' : 'new'} subscription ${name}, lag ${progress.lagBytes} bytes)` +
      `; ${copySummary(copy, built)}` +
      (verified ? `, verified identical in ${chunks} chunks (${verifyMs} ms) at a point taken with writes paused for ${quiesceMs} ms` : ', not verified (the plan says verify: false)'),
    figures: {
      [`${n}.tablesCopied`]: progress.tablesTotal,
      [`${n}.rowsCopied`]: rows,
      [`${n}.bytes`]: progress.bytes,
      [`${n}.lagBytes`]: progress.lagBytes,
      [`${n}.quiesceMs`]: quiesceMs,
      [`${n}.verified`]: verified,
      [`${n}.verifyMs`]: verifyMs,
      [`${n}.chunksChecked`]: chunks,
      [`${n}.sequencesRaised`]: sequencesRaised,
      [`${n}.indexesBuilt`]: built.built,
      [`${n}.foreignKeysValidated`]: built.foreignKeysValidated,
      ...(copy ? { [`${n}.copyMs`]: copy.copyMs, [`${n}.copyChunks`]: copy.chunks } : {}),
    },
    undo,
  };
}

function copySummary(copy: CopyOutcome | undefined, built: Awaited<ReturnType<TargetBuild['finish']>>): string {
  const copied = !copy
    ? ''
    : copy.start === 'rows-present'
      ? 'rows copied by an earlier attempt; '
      : `copied ${copy.rows} rows in ${copy.chunks} chunks in ${copy.copyMs} ms${copy.start === 'recopied' ? ' (again: an earlier attempt was interrupted mid-copy)' : ''}; `;
  const found = built.found ? ` (${built.found} already there)` : '';
  const keys = built.foreignKeysValidated ? `, ${built.foreignKeysValidated} foreign keys validated` : '';
  return `${copied}${built.built} indexes, constraints and triggers built${found}${keys}`;
}

/** Creates the target database when missing; true if this call created it. */
async function ensureDatabase(dst: string): Promise<boolean> {
  const database = databaseOf(dst);
  return withClient(onDatabase(dst, 'postgres'), async (c) => {
    if ((await c.query('select 1 from pg_database where datname = $1', [database])).rowCount) return false;
    await c.query(`create database ${c.escapeIdentifier(database)}`);
    return true;
  });
}

/** Loads the source's schema into an empty target; true if it did. Same table list means done before. */
async function ensureSchema(src: string, dst: string, target: string): Promise<boolean> {
  const [want, have] = await Promise.all([src, dst].map((url) => withClient(url, async (c) => (await userTables(c)).map((t) => t.table))));
  if (have!.length === 0) {
    await copySchema(src, dst);
    return true;
  }
  if (have!.join() === want!.join()) return false;
  throw ApplicationFailure.nonRetryable(
    `${target} already has tables (${have!.join(', ')}) that do not match the source's (${want!.join(', ')}); drop them or point the plan at an empty database, then resume`,
    'NonRetryable',
  );
}

/**
 * The tables, sequences and types without indexes and constraints (pg_dump's pre-data section) | psql, in
 * one transaction on the target so a failure leaves nothing behind. The copy fills bare tables; the rest
 * is built after it (pg-copy.ts).
 */
async function copySchema(src: string, dst: string): Promise<void> {
  const from = libpqCommandLine(src);
  const to = libpqCommandLine(dst);
  const dump = spawn(findBinary('pg_dump'), ['--schema-only', '--section=pre-data', '--no-owner', '--no-privileges', '--no-publications', '--no-subscriptions', '-d', from.url], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: from.env,
  });
  const load = spawn(findBinary('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '-d', to.url], { stdio: ['pipe', 'ignore', 'pipe'], env: to.env });
  dump.stdout!.pipe(load.stdin!);
  const [dumped, loaded] = await Promise.all([finished(dump), finished(load)]);
  if (dumped.code !== 0 || loaded.code !== 0) {
    const why = (dumped.code !== 0 ? dumped : loaded).stderr.trim().split('\n')[0] ?? '';
    throw new Error(`copying the schema failed: ${dumped.code !== 0 ? 'pg_dump' : 'psql'} said "${why}"`);
  }
}

function finished(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

export async function ensurePublication(c: pg.Client, name: string): Promise<void> {
  if ((await c.query('select 1 from pg_publication where pubname = $1', [name])).rowCount) return;
  // FOR ALL TABLES also publishes tables created later, which a schema change mid-migration needs.
  await c.query(`create publication ${c.escapeIdentifier(name)} for all tables`);
}

interface Subscription {
  oid: number;
  enabled: boolean;
  slot: string | null;
}

export async function findSubscription(c: pg.Client, name: string): Promise<Subscription | undefined> {
  const { rows } = await c.query<{ oid: number; subenabled: boolean; subslotname: string | null }>(
    'select oid, subenabled, subslotname from pg_subscription where subname = $1 and subdbid = (select oid from pg_database where datname = current_database())',
    [name],
  );
  return rows[0] && { oid: rows[0].oid, enabled: rows[0].subenabled, slot: rows[0].subslotname };
}

/** The initial copy inserts every row: into a table that already holds rows it would duplicate or fail. */
async function refuseFilledTarget(dst: string, target: string): Promise<void> {
  await withClient(dst, async (c) => {
    const filled: string[] = [];
    for (const { table } of await userTables(c)) {
      if ((await c.query(`select 1 from ${c.escapeIdentifier(table)} limit 1`)).rowCount) filled.push(table);
    }
    if (filled.length) {
      throw ApplicationFailure.nonRetryable(
        `${target} already holds rows in ${filled.join(', ')} and has no subscription to continue; empty those tables (or drop the database) and resume`,
        'NonRetryable',
      );
    }
  });
}

/**
 * The subscription, created on the slot the copy read its snapshot from, without a copy of its own:
 * it streams every change committed after the copy's point, and lists every table as ready at once.
 */
async function subscribeFromSlot(src: string, dst: string, name: string): Promise<void> {
  await withClient(dst, (c) =>
    c.query(
      `create subscription ${c.escapeIdentifier(name)} connection ${c.escapeLiteral(src)} publication ${c.escapeIdentifier(name)} ` +
        `with (create_slot = false, slot_name = ${c.escapeLiteral(name)}, copy_data = false)`,
    ),
  );
}

async function lagBytes(s: pg.Client, slot: string): Promise<number> {
  const { rows } = await s.query<{ lag: string | null }>(
    'select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint as lag from pg_replication_slots where slot_name = $1',
    [slot],
  );
  if (!rows[0]) {
    throw ApplicationFailure.nonRetryable(`the replication slot ${slot} is missing on the source; roll back the data step (it drops the subscription) and run it again`, 'NonRetryable');
  }
  return Math.max(0, Number(rows[0].lag ?? 0));
}

async function readProgress(s: pg.Client, t: pg.Client, name: string): Promise<Progress & { errors: number }> {
  const sub = await findSubscription(t, name);
  if (!sub) throw new Error(`the subscription ${name} disappeared from the target while copying`);
  const { rows } = await t.query<{ total: string; done: string; rows: string; bytes: string; errors: string }>(
    `select (select count(*) from pg_subscription_rel where srsubid = $1) as total,
            (select count(*) from pg_subscription_rel where srsubid = $1 and srsubstate in ('r', 's')) as done,
            (select coalesce(sum(n_live_tup), 0) from pg_stat_user_tables where schemaname = 'public')
              + (select coalesce(sum(tuples_processed), 0) from pg_stat_progress_copy where datname = current_database()) as rows,
            (select coalesce(sum(pg_total_relation_size(relid)), 0) from pg_stat_user_tables where schemaname = 'public') as bytes,
            (select coalesce(sum(apply_error_count + sync_error_count), 0) from pg_stat_subscription_stats where subid = $1) as errors`,
    [sub.oid],
  );
  const r = rows[0]!;
  return {
    tablesDone: Number(r.done),
    tablesTotal: Number(r.total),
    rows: Number(r.rows),
    bytes: Number(r.bytes),
    lagBytes: await lagBytes(s, name),
    errors: Number(r.errors),
  };
}

/** Polls progress with a heartbeat until `done`; a new subscription error fails the attempt (retried). */
async function watch(src: string, dst: string, name: string, phase: string, done: (p: Progress) => boolean): Promise<Progress> {
  return withClient(src, (s) =>
    withClient(dst, async (t) => {
      const firstErrors = (await readProgress(s, t, name)).errors;
      for (;;) {
        const { errors, ...progress } = await readProgress(s, t, name);
        heartbeat({ phase, ...progress });
        if (errors > firstErrors) {
          throw new Error(`the subscription ${name} reported ${errors - firstErrors} replication errors during ${phase}; see the target cluster's server log`);
        }
        if (done(progress)) return progress;
        await sleep(POLL_MS);
      }
    }),
  );
}

/**
 * Until the subscription's apply worker streams from the slot. A new subscription's worker starts a moment
 * after it is created; the lag reads small before that, and the write pause must not be what waits for it.
 */
async function waitForStreaming(src: string, dst: string, name: string): Promise<void> {
  await withClient(src, (s) =>
    withClient(dst, async (t) => {
      for (const started = Date.now(); ; ) {
        const worker = await t.query('select 1 from pg_stat_subscription where subname = $1 and pid is not null and relid is null', [name]);
        const slot = await s.query('select 1 from pg_replication_slots where slot_name = $1 and active', [name]);
        if (worker.rowCount && slot.rowCount) return;
        // PostgreSQL restarts a failed apply worker every 5 s: a minute of failures is not the weather.
        if (Date.now() - started > 60_000) throw new Error(`the subscription ${name} did not start streaming within a minute; see the target cluster's server log`);
        heartbeat({ phase: 'starting replication' });
        await sleep(100);
      }
    }),
  );
}

const waitForTableSync = (src: string, dst: string, name: string) => watch(src, dst, name, 'table sync', (p) => p.tablesDone === p.tablesTotal);
/** Until the subscriber (on `dst`) is within `bytes` of the publisher (`src`); a replication error fails it. */
export const waitForLag = (src: string, dst: string, name: string, bytes: number) => watch(src, dst, name, 'catching up', (p) => p.lagBytes <= bytes);

/**
 * Runs `fn` at a consistent point: writers on the source's tables are blocked (EXCLUSIVE mode still
 * lets readers in), and the subscription has applied everything committed before the lock. Bounded by
 * QUIESCE_MS; past that it releases the writers and fails the attempt, to be retried. A worker that can
 * no longer release them (frozen, cut off) is bounded by the server: PAUSE_SESSION_LIMIT_MS, keepalives.
 */
async function quiesced<T>(src: string, slot: string, fn: () => Promise<T>): Promise<{ result: T; quiesceMs: number }> {
  return withPgClient(src, async (c) => {
    const tables = (await userTables(c)).map((t) => c.escapeIdentifier(t.table));
    const started = Date.now();
    const deadline = started + QUIESCE_MS;
    await lockAll(c, tables, deadline);
    try {
      const lsn = await withClient(src, writeMarker);
      for (;;) {
        const applied = await c.query<{ done: boolean }>('select confirmed_flush_lsn >= $1::pg_lsn as done from pg_replication_slots where slot_name = $2', [lsn, slot]);
        if (applied.rows[0]?.done) break;
        if (Date.now() > deadline) throw new Error(`the target did not apply the source's last writes within ${QUIESCE_MS} ms of paused writes; retrying`);
        heartbeat({ phase: 'quiesced', waitingFor: lsn });
        await sleep(100);
      }
      const result = await withDeadline(fn(), deadline - Date.now());
      await c.query('commit');
      return { result, quiesceMs: Date.now() - started };
    } catch (err) {
      await c.query('rollback').catch(() => undefined);
      throw err;
    }
  }, { applicationName: PAUSE_APPLICATION_NAME, settings: PAUSE_SESSION_SETTINGS });
}

/**
 * Opens a transaction holding EXCLUSIVE locks on every table. An app transaction may hold one table
 * while it waits for another we already hold: with a lock wait longer than deadlock_timeout (1 s),
 * PostgreSQL would break that deadlock by failing the app's transaction. So each try waits less than
 * that, gives way (releasing what it took) and tries again, until the deadline.
 *
 * Autovacuum is the exception. Its lock (SHARE UPDATE EXCLUSIVE) conflicts with every mode that holds
 * writers back, and on a big table it runs for minutes: short tries would each hold the writers for
 * nothing until the deadline. PostgreSQL cancels an autovacuum that blocks a lock request once the request
 * has waited deadlock_timeout, so a try that finds one waits that long (writers held about a second, once);
 * where this session may signal it (a superuser), it is cancelled at once. One that protects against
 * wraparound is never cancelled: the deadline's error names it.
 */
async function lockAll(c: pg.Client, tables: string[], deadline: number): Promise<void> {
  const oids = tables.length ? (await c.query<{ oid: number }>(`select unnest($1::regclass[])::oid as oid`, [tables])).rows.map((r) => r.oid) : [];
  for (let attempt = 1; ; attempt++) {
    const vacuums = await autovacuumsOn(c, oids);
    await c.query('begin');
    try {
      const wait = vacuums.length ? `(current_setting('deadlock_timeout')::interval + interval '300 ms')` : `interval '300 ms'`;
      await c.query(`select set_config('lock_timeout', (extract(epoch from ${wait}) * 1000)::int::text, true)`);
      if (tables.length) await c.query(`lock table ${tables.join(', ')} in exclusive mode`);
      return;
    } catch (err) {
      await c.query('rollback').catch(() => undefined);
      if ((err as { code?: string }).code !== '55P03') throw err;
      if (Date.now() > deadline) throw new Error(`${await blockers(c, oids)} kept the source's tables from being locked for ${QUIESCE_MS} ms; retrying`);
      heartbeat({ phase: 'pausing writes', attempt });
      await sleep(50 + Math.floor(Math.random() * 100));
    }
  }
}

/**
 * Autovacuum workers holding a lock on one of `oids`, each cancelled where this session may (a superuser),
 * except one that protects against wraparound: PostgreSQL itself never cancels those, nor do we.
 */
async function autovacuumsOn(c: pg.Client, oids: number[]): Promise<number[]> {
  const { rows } = await c.query<{ pid: number; wraparound: boolean }>(
    `select distinct a.pid, coalesce(a.query like '%(to prevent wraparound)%', false) as wraparound
       from pg_locks l join pg_stat_activity a on a.pid = l.pid
      where a.backend_type = 'autovacuum worker' and l.granted and l.relation = any($1::oid[])`,
    [oids],
  );
  for (const { pid } of rows.filter((r) => !r.wraparound)) await c.query('select pg_cancel_backend($1)', [pid]).catch(() => undefined);
  return rows.map((r) => r.pid);
}

/** Who holds locks on `oids` that writers' pauses conflict with, in a few words for the error. */
async function blockers(c: pg.Client, oids: number[]): Promise<string> {
  const { rows } = await c.query<{ who: string }>(
    `select distinct coalesce(nullif(a.backend_type, 'client backend'), 'session') || ' ' || a.pid ||
            coalesce(' (' || nullif(a.application_name, '') || ')', '') || ': ' || left(coalesce(a.query, ''), 80) as who
       from pg_locks l join pg_stat_activity a on a.pid = l.pid
      where l.granted and l.relation = any($1::oid[]) and l.pid <> pg_backend_pid()
        and l.mode in ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock', 'RowExclusiveLock')
      limit 3`,
    [oids],
  );
  return rows.length ? rows.map((r) => r.who).join('; ') : 'other sessions';
}

/**
 * A committed marker in the source's WAL, written once the writers are paused: every earlier commit
 * precedes it. Unlike the bare insert position it is flushed at once (so the walsender reaches it
 * without further traffic) and never points just past a page header the subscriber cannot confirm.
 */
async function writeMarker(c: pg.Client): Promise<string> {
  await c.query('set synchronous_commit = on');
  const { rows } = await c.query<{ lsn: string }>(`select pg_logical_emit_message(true, 'tiershift', 'quiesced')::text as lsn`);
  return rows[0]!.lsn;
}

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the consistent-point work took over ${QUIESCE_MS} ms of paused writes; retrying`)), Math.max(0, ms));
  });
  promise.catch(() => undefined);
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Disables a subscription and waits until its apply worker has exited: nothing more arrives after this. */
async function stopSubscription(url: string, name: string, oid: number): Promise<void> {
  await withClient(url, async (c) => {
    await c.query(`alter subscription ${c.escapeIdentifier(name)} disable`);
    while ((await c.query('select 1 from pg_stat_subscription where subid = $1 and pid is not null', [oid])).rowCount) await sleep(100);
  });
}

/**
 * Drops the subscription without asking the source (disable, detach the slot, drop), so it works even
 * when the source is down; the slot is dropped on the source afterwards. Keeps the target's data.
 */
export async function dropSubscription(dst: string, name: string): Promise<boolean> {
  return withClient(dst, async (c) => {
    const sub = await findSubscription(c, name);
    if (!sub) return false;
    const ident = c.escapeIdentifier(name);
    if (sub.enabled) await c.query(`alter subscription ${ident} disable`);
    if (sub.slot) await c.query(`alter subscription ${ident} set (slot_name = none)`);
    await c.query(`drop subscription ${ident}`);
    return true;
  });
}

/** Drops a slot once its walsender has gone (it lingers briefly after the subscription is disabled). */
export async function dropSlot(s: pg.Client, slot: string): Promise<boolean> {
  for (let waited = 0; ; waited += 200) {
    const { rows } = await s.query<{ active_pid: number | null }>('select active_pid from pg_replication_slots where slot_name = $1', [slot]);
    if (!rows[0]) return false;
    const pid = rows[0].active_pid;
    if (pid === null) {
      await s.query('select pg_drop_replication_slot($1)', [slot]);
      return true;
    }
    // Its subscription is disabled or gone: a walsender still holding the slot is only slow to notice.
    if (waited >= 5_000) await s.query('select pg_terminate_backend($1)', [pid]);
    if (waited >= 15_000) throw new Error(`the replication slot ${slot} on the source is still in use by pid ${pid}`);
    await sleep(200);
  }
}

export async function dropPublication(src: string, name: string): Promise<boolean> {
  return withClient(src, async (c) => {
    if (!(await c.query('select 1 from pg_publication where pubname = $1', [name])).rowCount) return false;
    await c.query(`drop publication ${c.escapeIdentifier(name)}`);
    return true;
  });
}

/** Read-only: whether the target database and this migration's replication exist before the data step. */
export async function observePgSync(input: StepInput<DataStep>): Promise<Json> {
  return observeReplication(input, await localEnds(input.resources, input.step));
}

async function observeReplication({ migrationId }: StepInput<DataStep>, { src, dst }: Ends): Promise<Json> {
  const name = replicationName(migrationId);
  const database = databaseOf(dst);
  // pg_subscription and pg_database are shared catalogs: the maintenance database sees them even before the target exists.
  const target = await withClient(onDatabase(dst, 'postgres'), async (c) => ({
    database: Boolean((await c.query('select 1 from pg_database where datname = $1', [database])).rowCount),
    subscription: Boolean((await c.query('select 1 from pg_subscription s join pg_database d on d.oid = s.subdbid where s.subname = $1 and d.datname = $2', [name, database])).rowCount),
  }));
  const source = await withClient(src, async (c) => ({
    publication: Boolean((await c.query('select 1 from pg_publication where pubname = $1', [name])).rowCount),
    slot: Boolean((await c.query('select 1 from pg_replication_slots where slot_name = $1', [name])).rowCount),
  }));
  return { name, ...target, ...source };
}

/** Removes the replication (subscription, slot, publication); never touches the data on either side. */
export async function undoPgSync(input: UndoInput): Promise<StepOutcome> {
  const { step } = input;
  if (step.kind !== 'data') throw new Error(`undoPgSync got a ${step.kind} step`);
  return undoReplication(input, await localEnds(input.resources, step));
}

export async function undoReplication(input: UndoInput, { from, to, src, dst }: Ends): Promise<StepOutcome> {
  const recorded = input.undo as Partial<PgSyncUndo> | undefined;
  const name = recorded?.subscription ?? replicationName(input.migrationId);
  // An attempt of the step Temporal gave up on may still run: it could create what this drops.
  const fence = await oneAttemptAtATime(dst, name).catch((err: { code?: string }) => {
    if (err.code === '3D000') return undefined; // no target database: the step never got that far
    throw err;
  });
  let subscription: boolean, slot: boolean, publication: boolean;
  try {
    // An undo during the copy keeps pg-copy.ts's marker: those rows are a copy nothing else wrote to, and a
    // later data step copies them again instead of refusing the filled tables.
    subscription = await dropSubscription(dst, name);
    slot = await withClient(src, (s) => dropSlot(s, recorded?.slot ?? name));
    publication = await dropPublication(src, recorded?.publication ?? name);
  } finally {
    await fence?.release();
  }
  const dropped = [subscription && `subscription ${name} on ${to.name}`, slot && `slot ${name}`, publication && `publication ${name} on ${from.name}`].filter(Boolean);
  // The target keeps its rows: writes the new version made there exist nowhere else.
  return {
    summary: dropped.length
      ? `dropped ${dropped.join(', ')}; ${to.name} keeps its copied data${recorded?.createdDatabase ? ' (in a database this migration created)' : ''}`
      : `no replication of ${name} left to remove`,
    figures: { [`${to.name}.subscriptionDropped`]: subscription, [`${from.name}.publicationDropped`]: publication },
  };
}

interface SequenceValue {
  sequence: string;
  /** Highest value handed out on the source, or the largest value of a column it feeds; null if neither. */
  value: bigint | null;
}

/** Per sequence of the public schema: its last value and the largest value in every column it feeds. */
export async function sourceSequences(c: pg.Client): Promise<SequenceValue[]> {
  const { rows: sequences } = await c.query<{ name: string; last_value: string | null }>(
    `select sequencename as name, last_value::text from pg_sequences where schemaname = 'public' and increment_by > 0 order by 1`,
  );
  // Identity and serial columns own their sequence; other defaults (invoice_number) depend on it.
  const { rows: columns } = await c.query<{ seq: string; tbl: string; col: string }>(`
    select seq.relname as seq, tbl.relname as tbl, a.attname as col
      from pg_depend d
      join pg_class seq on seq.oid = d.objid and seq.relkind = 'S'
      join pg_class tbl on tbl.oid = d.refobjid
      join pg_attribute a on a.attrelid = tbl.oid and a.attnum = d.refobjsubid
     where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
       and seq.relnamespace = 'public'::regnamespace
    union
    select seq.relname, tbl.relname, a.attname
      from pg_depend d
      join pg_attrdef ad on ad.oid = d.objid
      join pg_class seq on seq.oid = d.refobjid and seq.relkind = 'S'
      join pg_class tbl on tbl.oid = ad.adrelid
      join pg_attribute a on a.attrelid = ad.adrelid and a.attnum = ad.adnum
     where d.classid = 'pg_attrdef'::regclass and seq.relnamespace = 'public'::regnamespace`);
  const result: SequenceValue[] = [];
  for (const { name, last_value } of sequences) {
    let value = last_value === null ? null : BigInt(last_value);
    // Rows inserted with explicit ids leave the sequence behind the data: the column decides too.
    for (const { tbl, col } of columns.filter((x) => x.seq === name)) {
      const { rows } = await c.query<{ max: string | null }>(`select max(${c.escapeIdentifier(col)})::text as max from ${c.escapeIdentifier(tbl)}`);
      const max = rows[0]?.max;
      if (max != null && (value === null || BigInt(max) > value)) value = BigInt(max);
    }
    result.push({ sequence: name, value });
  }
  return result;
}

/** Moves target sequences forward only (never back: the new version may already draw from them); returns how many moved. */
export async function raiseSequences(dst: string, source: SequenceValue[], gap = SEQUENCE_GAP): Promise<number> {
  return withClient(dst, async (c) => {
    let raised = 0;
    for (const { sequence, value } of source) {
      if (value === null) continue;
      const wanted = value + gap;
      const { rows } = await c.query<{ next: string }>(
        `select (case when last_value is null then start_value else last_value + increment_by end)::text as next
           from pg_sequences where schemaname = 'public' and sequencename = $1`,
        [sequence],
      );
      if (!rows[0]) throw ApplicationFailure.nonRetryable(`the target has no sequence ${sequence}; its schema differs from the source's, fix it and resume`, 'NonRetryable');
      if (BigInt(rows[0].next) > wanted) continue;
      await c.query(`select setval(format('public.%I', $1::text)::regclass, $2::bigint, true)`, [sequence, wanted.toString()]);
      raised += 1;
    }
    return raised;
  });
}

/**
 * Ends a replication at a consistent point: with the publisher's writers paused, waits until the
 * subscriber has every write, moves the subscriber's sequences (identity columns included) past the
 * publisher's values, stops the subscription, then drops it (keeping the data), the slot and the
 * publication. Without a subscription left, it only checks the sequences.
 */
export async function endReplication(publisher: string, subscriber: string, name: string): Promise<{ stopped: boolean; quiesceMs: number; raised: number; publicationDropped: boolean }> {
  const sub = await withClient(subscriber, (c) => findSubscription(c, name));
  let quiesceMs = 0;
  let raised: number;
  if (sub) {
    // An attempt that stopped it and then failed: it must catch up once more before the cut.
    if (!sub.enabled) await withClient(subscriber, (c) => c.query(`alter subscription ${c.escapeIdentifier(name)} enable`));
    const cut = await quiesced(publisher, name, async () => {
      const moved = await raiseSequences(subscriber, await withClient(publisher, sourceSequences));
      // Stopped while writers are still paused, and waited for: the subscriber then holds exactly the
      // publisher's last state, and no write made after the pause can still arrive.
      await stopSubscription(subscriber, name, sub.oid);
      return moved;
    });
    raised = cut.result;
    quiesceMs = cut.quiesceMs;
  } else {
    raised = await raiseSequences(subscriber, await withClient(publisher, sourceSequences));
  }
  const stopped = await dropSubscription(subscriber, name);
  await withClient(publisher, (s) => dropSlot(s, name));
  const publicationDropped = await dropPublication(publisher, name);
  return { stopped, quiesceMs, raised, publicationDropped };
}

/** The finalize step's cutover: the target takes over from the source it was replicated from. */
export async function cutoverPostgres(input: StepInput<FinalizeStep>, from: LocalPostgres, to: LocalPostgres): Promise<StepOutcome> {
  return cutOver(input, { from, to, src: await postgresConnection(from), dst: await postgresConnection(to) });
}

export async function cutOver(input: StepInput<FinalizeStep>, { from, to, src, dst }: Ends): Promise<StepOutcome> {
  const { stopped, quiesceMs, raised, publicationDropped } = await endReplication(src, dst, replicationName(input.migrationId));
  // Replication has ended: a write the old version still made to the source would exist nowhere else,
  // and a later reverse sync could overwrite it. The source refuses writes until a reverse sync lifts this.
  const writersEnded = await setReadOnly(src, true);
  const n = to.name;
  return {
    summary:
      (stopped
        ? `${n} took over from ${from.name}: replication stopped with writes paused for ${quiesceMs} ms, ${raised} sequences moved past the source's values, subscription and publication dropped`
        : `${n}: no replication from ${from.name} left to stop${publicationDropped ? ' (dropped a leftover publication)' : ''}; ${raised ? `${raised} sequences moved past the source's values` : "sequences already past the source's values"}`) +
      `; ${from.name} is read-only (${writersEnded} open sessions ended so they reconnect read-only)`,
    figures: { [`${n}.sequencesSynced`]: raised, [`${n}.quiesceMs`]: quiesceMs, [`${n}.subscriptionDropped`]: stopped, [`${from.name}.readOnly`]: true },
  };
}

/**
 * Makes a database refuse (or accept again) writes from every new session, then ends its other client
 * sessions, which keep the default they connected with: pools reconnect and get the new default.
 * Idempotent; returns how many sessions it ended.
 */
export async function setReadOnly(url: string, on: boolean): Promise<number> {
  return withClient(url, async (c) => {
    // Once read-only, this session starts read-only too, and could not lift it.
    await c.query('set default_transaction_read_only = off');
    const { rows } = await c.query<{ db: string; current: string | null }>(
      `select current_database() as db,
              (select s from pg_db_role_setting r cross join unnest(r.setconfig) s
                where r.setrole = 0 and r.setdatabase = (select oid from pg_database where datname = current_database())
                  and s like 'default_transaction_read_only=%') as current`,
    );
    const { db, current } = rows[0]!;
    const ident = c.escapeIdentifier(db);
    if ((current === 'default_transaction_read_only=on') !== on) {
      await c.query(on ? `alter database ${ident} set default_transaction_read_only = on` : `alter database ${ident} reset default_transaction_read_only`);
    }
    // Every time, not only on the change: an attempt that died between the two left sessions with the old default.
    const ended = await c.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`,
    );
    return ended.rowCount ?? 0;
  });
}

/** Whether new sessions on the database start read-only (the cutover's doing). */
export async function isReadOnly(url: string): Promise<boolean> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ on: boolean }>(
      `select exists (select 1 from pg_db_role_setting r cross join unnest(r.setconfig) s
                       where r.setrole = 0 and r.setdatabase = (select oid from pg_database where datname = current_database())
                         and s = 'default_transaction_read_only=on') as on`,
    );
    return rows[0]!.on;
  });
}
