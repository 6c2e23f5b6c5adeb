// The way back past the point of no return: after the cutover the target took writes the source never
// saw (the new version's canary orders, everything since). Rolling back must hand the source every one
// of them before users return to it, so the reverse sync runs in two parts around the traffic undo:
//
//   start:  a logical replication slot on the target, created with an exported snapshot; the source
//           receives, from that snapshot, every row it lacks or holds differently (compared by primary
//           key and row checksum), then a subscription on the slot streams every later write.
//   finish: once the new version is stopped, writes to the target are paused until the source has
//           them all, the source's sequences move past the target's, and the replication is dropped.
//
// Rows only the source has are kept: a rollback never deletes data. PostgreSQL 15 has no `origin =
// none`, so the forward replication (source -> target) is always dropped before the reverse one starts.
import { ApplicationFailure, heartbeat } from '@temporalio/activity';
import type pg from 'pg';
import { KEY_RANGE_SETTINGS, withPgClient } from '../../contract/pg';
import type { LocalPostgres } from './provider';
import type { StepOutcome, UndoInput } from '../types';
import { ProgressMeter } from '../../contract/progress';
import {
  dropPublication,
  dropSlot,
  dropSubscription,
  endReplication,
  ensurePublication,
  findSubscription,
  oneAttemptAtATime,
  raiseSequences,
  replicationName,
  setReadOnly,
  SMALL_LAG_BYTES,
  sourceSequences,
  waitForLag,
} from './pg-sync';
import { withClient } from './postgres';
import { positiveSetting } from './pg-copy';
import { postgresConnection } from './sandbox';

/** A database as the reverse sync names it in messages. */
type Db = Pick<LocalPostgres, 'name'>;
/**
 * How the worker reaches a database: the sandbox resolves its clusters (the default); Azure resolves
 * its Key Vault references (activities/azure/logical.ts), so the same reverse sync runs on both.
 */
export type Connect<R extends Db> = (resource: R) => Promise<string>;
const local = postgresConnection as Connect<Db>;

/** Rows fetched from the target and written to the source per statement. */
const BATCH = 2_000;

export const reverseName = (migrationId: string): string => replicationName(`${migrationId}-reverse`);

interface Backfill {
  tables: number;
  rowsCompared: number;
  rowsCopied: number;
  rowsOnlyOnSource: number;
  /** Rows the target lacks on the source (copied unless counting only). */
  rowsOnlyOnTarget: number;
  /** Rows both sides hold with different values (overwritten when upserting, else left as they are). */
  rowsDiffering: number;
}

/**
 * How rows the target has are written to the source: `upsert` past the cutover (the source was read-only
 * since, so the target's version is the newer one); `insert-missing` before it (both sides may have
 * changed a row: the source keeps its version and the row is counted as at risk); `count` writes nothing.
 */
type CopyMode = 'upsert' | 'insert-missing' | 'count';

/**
 * Part one: the source gets everything the target has, then keeps receiving its writes. `from` is the
 * migration's source (it receives), `to` the database that took over (it publishes).
 */
export async function startReverseSync<R extends Db>(input: UndoInput, from: R, to: R, connect: Connect<R> = local): Promise<StepOutcome> {
  return oneAtATime(input, from, connect, () => startHolding(input, from, to, connect));
}

/**
 * An attempt Temporal gave up on (a heartbeat it stopped hearing) may still run when the next starts: the
 * two would drop each other's slot and copy back twice. Each holds the migration's reverse-sync lock on
 * the source (pg-sync.ts oneAttemptAtATime) for as long as it runs.
 */
async function oneAtATime<R extends Db, T>(input: UndoInput, from: R, connect: Connect<R>, fn: () => Promise<T>): Promise<T> {
  const fence = await oneAttemptAtATime(await connect(from), reverseName(input.migrationId));
  try {
    return await fn();
  } finally {
    await fence.release();
  }
}

async function startHolding<R extends Db>(input: UndoInput, from: R, to: R, connect: Connect<R>): Promise<StepOutcome> {
  if (input.step.kind === 'app') return recoverWrites(input, from, to, 'start', connect);
  const name = reverseName(input.migrationId);
  const back = await connect(from);
  const ahead = await connect(to);
  await dropForward(input.migrationId, back, ahead);
  // The cutover made the source read-only; it takes writes again: first the target's, then the users'.
  const reopened = await setReadOnly(back, false);

  let backfill: Backfill | undefined;
  const existing = await withClient(back, (c) => findSubscription(c, name));
  if (existing) {
    if (!existing.enabled) await withClient(back, (c) => c.query(`alter subscription ${c.escapeIdentifier(name)} enable`));
  } else {
    await withClient(ahead, async (c) => {
      // A slot without its subscription is what an attempt that died mid-backfill leaves: start over (the backfill is idempotent).
      await dropSlot(c, name);
      await ensurePublication(c, name);
    });
    backfill = await withExportedSnapshot(ahead, name, (snapshot) => copyBack(ahead, snapshot, back, to.name, 'upsert'));
    await withClient(back, (c) =>
      c.query(
        `create subscription ${c.escapeIdentifier(name)} connection ${c.escapeLiteral(ahead)} publication ${c.escapeIdentifier(name)} ` +
          `with (create_slot = false, slot_name = ${c.escapeLiteral(name)}, copy_data = false)`,
      ),
    );
  }
  const { lagBytes: lag } = await waitForLag(ahead, back, name, SMALL_LAG_BYTES);
  const f = from.name;
  return {
    summary:
      `reverse sync ${to.name} -> ${f} running (subscription ${name} on ${f}, lag ${lag} bytes; ${f} writable again, ${reopened} read-only sessions ended)` +
      (backfill
        ? `; copied back ${backfill.rowsCopied} of ${backfill.rowsCompared} rows compared in ${backfill.tables} tables, kept ${backfill.rowsOnlyOnSource} rows only ${f} has`
        : '; its backfill was done by an earlier attempt'),
    figures: {
      [`${f}.reverseLagBytes`]: lag,
      ...(backfill
        ? { [`${f}.rowsCopiedBack`]: backfill.rowsCopied, [`${f}.rowsComparedBack`]: backfill.rowsCompared, [`${f}.rowsOnlyOnSource`]: backfill.rowsOnlyOnSource }
        : {}),
    },
    // Upserted: rows both sides held differently now hold the target's (newer) version, nothing is at risk.
    recovery: { recovered: backfill?.rowsCopied ?? 0, atRisk: 0 },
  };
}

/** A cut-short cutover or a replication still running: with it, rows copied back would be applied to the target a second time. */
async function dropForward(migrationId: string, back: string, ahead: string): Promise<void> {
  const forward = replicationName(migrationId);
  await dropSubscription(ahead, forward);
  await withClient(back, (c) => dropSlot(c, forward));
  await dropPublication(back, forward);
}

/**
 * The write point's recovery, before any cutover: the new version wrote to the target while replication
 * still ran, so the source lacks its rows (their ids come from sequences kept far ahead, see pg-sync.ts).
 * `start`, before users return to the source: the replication stops (so nothing comes back twice) and
 * every row only the target has is inserted into the source. `finish`, once the new version has stopped:
 * the same again for the rows it wrote meanwhile, and the source's sequences move past the target's. A
 * row both sides hold differently keeps the source's version (users may have changed it there) and is
 * counted as at risk. Idempotent: inserts only what is missing.
 */
async function recoverWrites<R extends Db>(input: UndoInput, from: R, to: R, part: 'start' | 'finish', connect: Connect<R>): Promise<StepOutcome> {
  const back = await connect(from);
  const ahead = await connect(to);
  await dropForward(input.migrationId, back, ahead);
  const copied = await copyBack(ahead, undefined, back, to.name, 'insert-missing');
  // The source hands out ids again: past the copied rows' ids (drawn from the target's sequences, far
  // ahead). Measured on the source itself, so a rollback that copied nothing leaves its sequences alone.
  const raised = part === 'finish' ? await raiseSequences(back, await withClient(back, sourceSequences), 0n) : 0;
  const f = from.name;
  return {
    summary:
      `copied to ${f} the ${copied.rowsOnlyOnTarget} rows only ${to.name} had (${copied.rowsCompared} compared in ${copied.tables} tables)` +
      `${copied.rowsDiffering ? `; ${copied.rowsDiffering} rows differ on both sides and keep ${f}'s version: at risk` : ''}` +
      (part === 'finish' ? `; ${raised} of ${f}'s sequences moved past the copied rows' ids` : ''),
    figures: { [`${f}.rowsRecovered.${part}`]: copied.rowsCopied, [`${f}.rowsAtRisk`]: copied.rowsDiffering, ...(part === 'finish' ? { [`${f}.sequencesRaisedBack`]: raised } : {}) },
    recovery: { recovered: copied.rowsCopied, atRisk: copied.rowsDiffering },
  };
}

/** What a rollback now would have to recover: rows only the target has, and rows both sides hold differently. Reads only. */
export async function measureWrites<R extends Db>(from: R, to: R, connect: Connect<R> = local): Promise<{ targetOnly: number; differing: number }> {
  const counted = await copyBack(await connect(to), undefined, await connect(from), to.name, 'count');
  return { targetOnly: counted.rowsOnlyOnTarget, differing: counted.rowsDiffering };
}

/** Part two, once nobody should write to the target any more: the last writes, the sequences, then the replication goes. */
export async function finishReverseSync<R extends Db>(input: UndoInput, from: R, to: R, connect: Connect<R> = local): Promise<StepOutcome> {
  return oneAtATime(input, from, connect, () => finishHolding(input, from, to, connect));
}

async function finishHolding<R extends Db>(input: UndoInput, from: R, to: R, connect: Connect<R>): Promise<StepOutcome> {
  if (input.step.kind === 'app') return recoverWrites(input, from, to, 'finish', connect);
  // The source will hand out ids again: past every id the target used, rows copied back included.
  const { stopped, quiesceMs, raised } = await endReplication(await connect(to), await connect(from), reverseName(input.migrationId));
  const f = from.name;
  return {
    summary: stopped
      ? `${f} has every write ${to.name} received: reverse sync stopped with ${to.name}'s writes paused for ${quiesceMs} ms, ${raised} sequences moved past ${to.name}'s, replication dropped`
      : `no reverse sync left to stop; ${raised ? `${raised} sequences moved past ${to.name}'s` : `${f}'s sequences already past ${to.name}'s`}`,
    figures: { [`${f}.reverseQuiesceMs`]: quiesceMs, [`${f}.sequencesRaisedBack`]: raised, [`${f}.reverseSyncStopped`]: stopped },
  };
}

/**
 * Creates the slot over a replication connection, which exports the snapshot the slot starts from:
 * what the snapshot shows is copied by hand, everything after it arrives through the slot, nothing twice.
 * The snapshot lives as long as that connection, so `fn` runs while it is open.
 */
async function withExportedSnapshot<T>(url: string, slot: string, fn: (snapshot: string) => Promise<T>): Promise<T> {
  return withPgClient(
    url,
    async (replication) => {
      const { rows } = await replication.query<{ snapshot_name: string }>(`CREATE_REPLICATION_SLOT "${slot}" LOGICAL pgoutput EXPORT_SNAPSHOT`);
      return fn(rows[0]!.snapshot_name);
    },
    { extra: { replication: 'database' } },
  );
}

interface Table {
  table: string;
  key: string[];
  /** The key columns' types, to read a chunk's bounds back from their text. */
  keyTypes: string[];
  columns: string[];
  identity: boolean;
  /** The planner's row estimate (pg_class.reltuples, 0 when never analysed): progress only. */
  estimate: number;
}

/** Target rows compared per chunk: what the worker holds of a table at once. */
const DEFAULT_CHUNK_ROWS = 50_000;

const chunkRows = (): number => positiveSetting('TIERSHIFT_BACKFILL_CHUNK_ROWS', DEFAULT_CHUNK_ROWS);

/**
 * A key range as SQL: `(k1, k2) > (lo) and (k1, k2) <= (hi)`, either end open when absent. Bounds travel as
 * text and are cast to the key's types, so the comparison is PostgreSQL's own and the primary key's index
 * serves it. Both clusters must order keys alike (a text key's collation), which a copied schema does.
 */
function keyRange(c: pg.Client, t: Table, lo: string[] | undefined, hi: string[] | undefined, params: unknown[]): string {
  const key = `(${t.key.map((k) => c.escapeIdentifier(k)).join(', ')})`;
  const bound = (values: string[]) =>
    `(${values
      .map((v, i) => {
        params.push(v);
        return `$${params.length}::${t.keyTypes[i]}`;
      })
      .join(', ')})`;
  const parts = [...(lo ? [`${key} > ${bound(lo)}`] : []), ...(hi ? [`${key} <= ${bound(hi)}`] : [])];
  return parts.length ? parts.join(' and ') : 'true';
}

/**
 * Every row of the target's snapshot that the source lacks or holds differently is written to the source,
 * parents first. Memory is bounded by the chunk size, in the worker and on both servers: the target's
 * snapshot is walked in key order, a chunk at a time (keyset, so each chunk is an index range scan); the
 * source's rows in the same key range are compared against that chunk by the source itself (a join of its
 * range, streamed, with the chunk's keys), so only the chunk and the keys to copy reach the worker.
 * The ranges (-inf, hi1], (hi1, hi2], ..., (hiN, +inf) cover the whole key space once: every source row
 * is counted exactly once, those before the target's first key and after its last included.
 */
async function copyBack(ahead: string, snapshot: string | undefined, back: string, target: string, mode: CopyMode): Promise<Backfill> {
  const chunk = chunkRows();
  // Both sides read by key range (KEY_RANGE_SETTINGS): the planner would scan a whole table per chunk.
  return withPgClient(ahead, (a) =>
    withPgClient(back, async (b) => {
      await a.query('begin isolation level repeatable read read only');
      if (snapshot) await a.query(`set transaction snapshot ${a.escapeLiteral(snapshot)}`);
      // Row checksums and key texts compare text: both sides must print values the same way.
      for (const c of [a, b]) await c.query("set timezone = 'UTC'; set datestyle = 'ISO, YMD'; set extra_float_digits = 3");
      // The cutover made the source read-only for everyone else; this session writes the target's rows back.
      // One transaction for the whole backfill, as before: the source commits all of it or nothing, and a
      // retry compares from scratch (the reverse sync's after a fresh slot and snapshot).
      await b.query(`begin read ${mode === 'count' ? 'only' : 'write'}`);
      try {
        const tables = await tablesParentsFirst(a);
        const total: Backfill = { tables: tables.length, rowsCompared: 0, rowsCopied: 0, rowsOnlyOnSource: 0, rowsOnlyOnTarget: 0, rowsDiffering: 0 };
        const rowsEstimate = tables.reduce((n, t) => n + t.estimate, 0);
        // Planner statistics: an estimate the rows compared may pass (the meter then shows it finishing).
        const meter = new ProgressMeter(mode === 'count' ? 'counting the writes to recover' : 'reverse backfill', 'rows', rowsEstimate);
        for (const t of tables) {
          if (!t.key.length) {
            throw ApplicationFailure.nonRetryable(`table ${t.table} on ${target} has no primary key, so its rows cannot be matched for the reverse sync; add one, then resume`, 'NonRetryable');
          }
          const ident = a.escapeIdentifier(t.table);
          const keyCols = t.key.map((k) => a.escapeIdentifier(k)).join(', ');
          const keyText = `row(${keyCols})::text`;
          const cols = t.columns.map((c) => a.escapeIdentifier(c)).join(', ');
          const update = t.columns.filter((c) => !t.key.includes(c)).map((c) => `${a.escapeIdentifier(c)} = excluded.${a.escapeIdentifier(c)}`);
          let tableCompared = 0;
          const progress = () =>
            heartbeat({
              phase: 'reverse backfill',
              table: t.table,
              ...total,
              tableRowsCompared: tableCompared,
              tableRowsEstimate: t.estimate,
              rowsEstimate,
              progress: meter.read(total.rowsCompared),
            });
          let lo: string[] | undefined;
          for (;;) {
            const params: unknown[] = [];
            const after = lo ? keyRange(a, t, lo, undefined, params) : 'true';
            params.push(chunk);
            const { rows: onTarget } = await a.query<{ k: string; b: string[]; h: string }>(
              `select ${keyText} as k, array[${t.key.map((k) => `${a.escapeIdentifier(k)}::text`).join(', ')}] as b, md5(t::text) as h ` +
                `from ${ident} t where ${after} order by ${keyCols} limit $${params.length}`,
              params,
            );
            // The last chunk's range is open upwards: it also holds the source's rows past the target's last key.
            const last = onTarget.length < chunk;
            const hi = last ? undefined : onTarget[onTarget.length - 1]!.b;
            const range: unknown[] = [JSON.stringify(onTarget.map((r) => ({ k: r.k, h: r.h })))];
            const where = keyRange(b, t, lo, hi, range);
            // A full join: source rows of the range without a partner are only the source's, chunk rows without one only the target's.
            const { rows } = await b.query<{ source_rows: string; matched: string; only_target: string[]; differing: string[] }>(
              `select count(s.k) as source_rows, count(s.k) filter (where c.k is not null) as matched,
                      coalesce(array_agg(c.k) filter (where s.k is null), '{}') as only_target,
                      coalesce(array_agg(c.k) filter (where s.h <> c.h), '{}') as differing
                 from (select ${keyText} as k, md5(s::text) as h from ${ident} s where ${where}) s
                 full join json_to_recordset($1::json) as c(k text, h text) on c.k = s.k`,
              range,
            );
            const cmp = rows[0]!;
            total.rowsCompared += onTarget.length;
            tableCompared += onTarget.length;
            total.rowsOnlyOnTarget += cmp.only_target.length;
            total.rowsDiffering += cmp.differing.length;
            total.rowsOnlyOnSource += Number(cmp.source_rows) - Number(cmp.matched);
            const missing = mode === 'upsert' ? [...cmp.only_target, ...cmp.differing] : mode === 'insert-missing' ? cmp.only_target : [];
            for (let i = 0; i < missing.length; i += BATCH) {
              const fetch: unknown[] = [missing.slice(i, i + BATCH)];
              // Within the chunk's range, so the key's index finds the rows.
              const { rows: found } = await a.query<{ rows: string }>(
                `select coalesce(json_agg(t), '[]')::text as rows from ${ident} t where ${keyRange(a, t, lo, hi, fetch)} and ${keyText} = any($1::text[])`,
                fetch,
              );
              await b.query(
                `insert into ${ident} (${cols}) ${t.identity ? 'overriding system value ' : ''}select ${cols} from json_populate_recordset(null::${ident}, $1::json) ` +
                  `on conflict (${keyCols}) ${update.length && mode === 'upsert' ? `do update set ${update.join(', ')}` : 'do nothing'}`,
                [found[0]!.rows],
              );
              total.rowsCopied += Math.min(BATCH, missing.length - i);
            }
            progress();
            if (last) break;
            lo = hi;
          }
        }
        await b.query('commit');
        return total;
      } catch (err) {
        await b.query('rollback').catch(() => undefined);
        throw err;
      } finally {
        await a.query('rollback').catch(() => undefined);
      }
    }, { settings: KEY_RANGE_SETTINGS }),
  { settings: KEY_RANGE_SETTINGS });
}

/** Base tables with their key and writable columns, ordered so a table comes after every table it references. */
async function tablesParentsFirst(c: pg.Client): Promise<Table[]> {
  const { rows } = await c.query<{ table: string; key: string[] | null; key_types: string[] | null; estimate: number; columns: string[]; identity: boolean; parents: string[] | null }>(`
    select t.relname as table,
           (select array_agg(a.attname::text order by k.ord)
              from pg_index i cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
              join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
             where i.indrelid = t.oid and i.indisprimary) as key,
           (select array_agg(format_type(a.atttypid, a.atttypmod) order by k.ord)
              from pg_index i cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
              join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
             where i.indrelid = t.oid and i.indisprimary) as key_types,
           greatest(t.reltuples, 0)::float8 as estimate,
           (select array_agg(a.attname::text order by a.attnum) from pg_attribute a
             where a.attrelid = t.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated = '') as columns,
           exists (select 1 from pg_attribute a where a.attrelid = t.oid and a.attnum > 0 and a.attidentity <> '') as identity,
           (select array_agg(distinct p.relname::text) from pg_constraint f join pg_class p on p.oid = f.confrelid
             where f.conrelid = t.oid and f.contype = 'f' and f.confrelid <> t.oid) as parents
      from pg_class t join pg_namespace n on n.oid = t.relnamespace
     where n.nspname = 'public' and t.relkind = 'r'
     order by t.relname`);
  const ordered: Table[] = [];
  const placed = new Set<string>();
  let pending = rows;
  while (pending.length) {
    const ready = pending.filter((r) => (r.parents ?? []).every((p) => placed.has(p) || !rows.some((x) => x.table === p)));
    // A cycle of foreign keys: take the rest as they come (the transaction checks them all at commit only if deferrable).
    const next = ready.length ? ready : pending;
    for (const r of next) {
      ordered.push({ table: r.table, key: r.key ?? [], keyTypes: r.key_types ?? [], columns: r.columns, identity: r.identity, estimate: Math.round(r.estimate) });
      placed.add(r.table);
    }
    pending = pending.filter((r) => !placed.has(r.table));
  }
  return ordered;
}
