// The data phase's initial copy, the way pgcopydb does it: the tables without their indexes and
// constraints, a replication slot whose exported snapshot every copy session reads, the rows streamed
// from the source's COPY to the target's COPY in parallel (across tables, and by key range within big
// ones), each table's primary key built as soon as its rows are in, and then the subscription, which
// streams every change made since the slot's consistent point. The other indexes, the foreign keys and
// the rest of the schema are built while the rows are verified (TargetBuild).
//
// Where a copy stands is kept in the target cluster, not in the worker: a replication origin named after
// the migration exists from before the first row is copied until the subscription exists, and its
// progress is the slot's consistent point once every row is copied. A retried attempt reads it:
//   - no marker: nothing of ours in the target;
//   - marker without progress (null, or 0/0): a copy was interrupted; its snapshot died with its
//     worker, so the rows it copied are removed (truncate: they are only ever ours) and the copy starts
//     again from a new slot;
//   - marker at an LSN: every row is there; the build carries on with what is still missing.
// Once the subscription exists, a retry finds it and builds only what is missing.
import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import { spawn } from 'node:child_process';
import os from 'node:os';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { KEY_RANGE_SETTINGS, libpqCommandLine, pgClient, withPgClient } from '../../contract/pg';
import { ProgressMeter } from '../../contract/progress';
import { findBinary } from '../../sandbox/binaries';
import { withClient } from './postgres';

/** Rows per copy chunk unless TIERSHIFT_COPY_CHUNK_ROWS says otherwise: tables above it are copied by several sessions. */
export const DEFAULT_COPY_CHUNK_ROWS = 100_000;
/**
 * Sessions a side copying and building indexes at once (twice as many check chunks, pg-verify.ts),
 * unless TIERSHIFT_COPY_JOBS says otherwise: one per CPU of this machine, where the sandbox's clusters run (2 to 8). Measured on 2 CPUs,
 * 4 sessions made the data phase a fifth slower than 2: the work is CPU-bound, and more sessions only
 * take turns.
 */
export const DEFAULT_COPY_JOBS = Math.max(2, Math.min(8, os.availableParallelism()));
/** Heartbeats with progress at most this often: enough for a live bar, little for the server. */
const BEAT_MS = 1_000;
/**
 * The server notices a vanished client this fast (PostgreSQL 14+), and ends its COPY or CREATE INDEX
 * instead of finishing work nobody will commit, holding locks a retry waits for.
 */
const SESSION_SETTINGS = { client_connection_check_interval: 1000, tcp_keepalives_idle: 5, tcp_keepalives_interval: 2, tcp_keepalives_count: 3 };
/** Memory for each index build on the target: several run at once. */
const INDEX_SETTINGS = { ...SESSION_SETTINGS, maintenance_work_mem: '128MB', max_parallel_maintenance_workers: 0 };
/** Errors that mean an index or constraint a previous attempt built is there already. */
const ALREADY_THERE = new Set(['42P07', '42710', '42P16']);
/** Row variable in the chunk queries, as in pg-verify.ts: unlikely as a column name. */
const ROW = 'tiershift_row';

/**
 * A whole-number setting of the worker's environment (chunk sizes, sessions), or its default. A bad value
 * fails the step for good: no retry fixes the environment.
 */
export function positiveSetting(name: string, fallback: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) {
    throw ApplicationFailure.nonRetryable(`${name} is "${raw}"; set it to a whole number above 0 (or unset it for ${fallback}) and restart the worker`, 'NonRetryable');
  }
  return n;
}
export const copyChunkRows = () => positiveSetting('TIERSHIFT_COPY_CHUNK_ROWS', DEFAULT_COPY_CHUNK_ROWS);
export const pgJobs = () => positiveSetting('TIERSHIFT_COPY_JOBS', DEFAULT_COPY_JOBS);

export interface CopyTable {
  table: string;
  key: string[];
}

export interface CopyOutcome {
  /** How this attempt found the copy: started it, started it again after an interrupted one, or found the rows there. */
  start: 'fresh' | 'recopied' | 'rows-present';
  rows: number;
  bytes: number;
  chunks: number;
  copyMs: number;
}

/** The marker's name: the replication name, which is unique per migration, with a suffix. */
export const copyMarker = (name: string): string => `${name}_copy`;

export type CopyStage = { stage: 'none' } | { stage: 'copying' } | { stage: 'copied'; lsn: string };

export async function copyStage(dst: string, name: string): Promise<CopyStage> {
  return withClient(dst, async (c) => {
    const { rows } = await c.query<{ lsn: string | null }>(
      `select pg_replication_origin_progress(roname, true)::text as lsn from pg_replication_origin where roname = $1`,
      [copyMarker(name)],
    );
    if (!rows[0]) return { stage: 'none' };
    const lsn = rows[0].lsn;
    return lsn && lsn !== '0/0' ? { stage: 'copied', lsn } : { stage: 'copying' };
  });
}

/** Removes the marker once the subscription exists (an undo mid-copy keeps it, see undoPgSync). Idempotent. */
export async function dropCopyMarker(dst: string, name: string): Promise<boolean> {
  return withClient(dst, async (c) => {
    if (!(await c.query('select 1 from pg_replication_origin where roname = $1', [copyMarker(name)])).rowCount) return false;
    await c.query('select pg_replication_origin_drop($1)', [copyMarker(name)]);
    return true;
  });
}

/**
 * Copies every row of `tables` from `src` to `dst` at one consistent point, handing each table to
 * `build` as soon as its rows are in, and returns once every primary key is built (what the
 * subscription needs to apply updates and deletes). On return the slot `name` exists on the source at
 * the copy's point, ready for a subscription created with `copy_data = false`. `dropSlot` removes a
 * slot left by an attempt whose copy did not finish. The source must have a publication `name` already.
 */
export async function initialCopy(
  src: string,
  dst: string,
  name: string,
  tables: CopyTable[],
  dropSlot: (s: pg.Client, slot: string) => Promise<boolean>,
  build: TargetBuild,
): Promise<CopyOutcome> {
  let stage = await copyStage(dst, name);
  let start: CopyOutcome['start'] = stage.stage === 'none' ? 'fresh' : stage.stage === 'copying' ? 'recopied' : 'rows-present';
  if (stage.stage === 'copied' && !(await withClient(src, async (s) => (await s.query('select 1 from pg_replication_slots where slot_name = $1', [name])).rowCount))) {
    // The rows are there but the slot that would stream what changed since is gone: copy again.
    stage = { stage: 'copying' };
    start = 'recopied';
  }
  let rows = 0;
  let bytes = 0;
  let chunks = 0;
  let copyMs = 0;
  const started = Date.now();
  if (stage.stage !== 'copied') {
    if (stage.stage === 'copying') await truncateAll(dst, tables);
    else await withClient(dst, (c) => c.query('select pg_replication_origin_create($1)', [copyMarker(name)]));
    await withClient(src, (s) => dropSlot(s, name));
    const copied = await copyAtNewSlot(src, dst, name, tables, build);
    await withClient(dst, (c) => c.query('select pg_replication_origin_advance($1, $2::pg_lsn)', [copyMarker(name), copied.lsn]));
    ({ rows, bytes, chunks } = copied);
    copyMs = Date.now() - started;
  }
  await build.keysReady();
  await slotReleased(src, name);
  return { start, rows, bytes, chunks, copyMs };
}

/**
 * What the copy leaves out, built on the target: the source's post-data section (indexes, constraints,
 * foreign keys, triggers, rules, policies). In three stages:
 *   - during the copy, each table's primary key then its other indexes and constraints, as soon as the
 *     table's rows are in (`tableCopied`), `pgJobs()` at once;
 *   - held (`hold`) while the subscription catches up and the verification's point is taken: an index
 *     build locks its table against the subscription's writes, which the write pause must never wait for;
 *   - released (`release`) during the verification: what is left, then the foreign keys (added NOT VALID
 *     and validated with a lock that lets replication write), the rest in pg_dump's order, and ANALYZE.
 * Every item is one implicit transaction, there whole or not at all: an item that reports "already
 * exists" was built by an earlier attempt (or whoever made the target's schema) and is kept. So a retried
 * attempt builds exactly what is missing.
 */
export class TargetBuild {
  private readonly counts = { built: 0, found: 0 };
  private pool?: BuildPool;
  private data?: PostData;
  private names?: Map<string, string>;
  private readonly queued = new Set<PostDataItem>();

  constructor(
    private readonly src: string,
    private readonly dst: string,
    private readonly tables: CopyTable[],
  ) {}

  /** Reads the source's post-data section and opens the build (before the copy, or on a retry). */
  async open(): Promise<void> {
    const [data, names] = await Promise.all([postData(this.src), qualifiedNames(this.src, this.tables)]);
    this.data = data;
    this.names = names;
    this.pool = new BuildPool(this.dst, data.preamble, this.counts);
  }

  private get own(): PostDataItem[] {
    // Primary keys first: the subscription waits for them.
    const own = (this.data?.items ?? []).filter((i) => i.type === 'INDEX' || i.type === 'CONSTRAINT');
    return [...own.filter(isKey), ...own.filter((i) => !isKey(i))];
  }

  private queue(items: PostDataItem[]): void {
    const fresh = items.filter((i) => !this.queued.has(i));
    for (const i of fresh) this.queued.add(i);
    this.pool!.add(fresh);
  }

  /**
   * A table's rows are all in: its primary key is built now, while other tables are still copied. Its
   * other indexes wait for the verification: built now, they would hold up the subscription.
   */
  tableCopied(table: string): void {
    const name = this.names!.get(table);
    this.queue(this.own.filter((i) => isKey(i) && i.table === name));
  }

  /** Every primary key built. */
  async keysReady(): Promise<void> {
    this.queue(this.own.filter(isKey));
    await this.pool!.keysDone();
  }

  /** No build starts from now on, and none runs once this resolves. */
  async hold(): Promise<void> {
    await this.pool!.hold();
  }

  /**
   * Builds everything still missing and returns the counts. `beats`: whether it reports its progress in
   * the heartbeat (not while the verification reports its own).
   */
  async finish(beats: () => boolean): Promise<{ built: number; found: number; foreignKeysValidated: number }> {
    const pool = this.pool!;
    const items = this.data!.items;
    this.queue(this.own);
    pool.meter(items.length, beats);
    pool.release();
    pool.close();
    await pool.done();
    const foreign = items.filter((i) => i.type === 'FK CONSTRAINT').map((i) => ({ ...i, sql: notValid(i.sql) }));
    const rest = items.filter((i) => i.type !== 'FK CONSTRAINT' && !this.own.includes(i));
    await new BuildPool(this.dst, this.data!.preamble, this.counts, pool, 1).run([...foreign, ...rest]);
    const foreignKeysValidated = await validateAndAnalyze(this.src, this.dst, this.tables);
    return { ...this.counts, foreignKeysValidated };
  }

  async stop(): Promise<void> {
    await this.pool?.stop();
  }
}

const isKey = (i: PostDataItem) => i.type === 'CONSTRAINT' && /\bPRIMARY KEY\b/.test(i.sql);

/** Each table's name as pg_dump writes it (`public.orders`, `public."Order Lines"`), to match its post-data items. */
async function qualifiedNames(src: string, tables: CopyTable[]): Promise<Map<string, string>> {
  return withClient(src, async (c) => {
    const { rows } = await c.query<{ t: string; q: string }>(`select t, 'public.' || quote_ident(t) as q from unnest($1::text[]) t`, [tables.map((t) => t.table)]);
    return new Map(rows.map((r) => [r.t, r.q]));
  });
}

/**
 * Waits for the walsender of the connection that created the slot to exit: a subscription whose apply
 * worker finds the slot still active fails to start, and PostgreSQL tries it again only 5 s later.
 */
async function slotReleased(src: string, slot: string): Promise<void> {
  await withClient(src, async (s) => {
    for (let waited = 0; waited < 30_000; waited += 50) {
      const { rows } = await s.query<{ active: boolean }>('select active from pg_replication_slots where slot_name = $1', [slot]);
      if (!rows[0]?.active) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
}

/** An attempt that died mid-copy left some chunks: only ever this migration's rows (the marker says so). */
async function truncateAll(dst: string, tables: CopyTable[]): Promise<void> {
  if (!tables.length) return;
  await withClient(dst, (c) => c.query(`truncate table ${tables.map((t) => c.escapeIdentifier(t.table)).join(', ')}`));
}

interface Chunk {
  table: string;
  /** The table quoted, for the truncate of a table copied whole. */
  ident: string;
  /** The whole table in this one chunk. */
  whole: boolean;
  /** The copy query's source: the table itself, or a select of one key range. */
  source: string;
  target: string;
  /** Source bytes this chunk is expected to move, for the bar. */
  share: number;
}

interface Copied {
  lsn: string;
  rows: number;
  bytes: number;
  chunks: number;
}

/**
 * Creates the slot with an exported snapshot, then copies every chunk through `pgJobs()` pairs of
 * sessions reading that snapshot. The replication connection that exported it stays open and idle until
 * the last chunk is read: the snapshot lives exactly as long as it does.
 */
async function copyAtNewSlot(
  src: string,
  dst: string,
  name: string,
  tables: CopyTable[],
  build: TargetBuild,
): Promise<Copied> {
  const repl = pgClient(src, { applicationName: 'tiershift: copy snapshot', settings: SESSION_SETTINGS, extra: { replication: 'database' } });
  await repl.connect();
  const opened: pg.Client[] = [repl];
  try {
    // The chunks are planned while the slot waits for a consistent point: key ranges need no snapshot.
    const planned = withPgClient(src, (c) => planChunks(c, tables), { settings: KEY_RANGE_SETTINGS });
    planned.catch(() => undefined);
    // EXPORT_SNAPSHOT is the spelling every PostgreSQL from 10 on accepts.
    const created = await repl.query<{ consistent_point: string; snapshot_name: string }>(`CREATE_REPLICATION_SLOT ${repl.escapeIdentifier(name)} LOGICAL pgoutput EXPORT_SNAPSHOT`);
    const { consistent_point: lsn, snapshot_name: snapshot } = created.rows[0]!;
    const plan = await planned;
    // A table another one's foreign key points at cannot be truncated alone (a target whose schema
    // someone made before, with its constraints): it is copied without FREEZE.
    const referenced = await withClient(dst, async (c) =>
      new Set(
        (
          await c.query<{ t: string }>(
            `select distinct r.relname as t from pg_constraint k join pg_class r on r.oid = k.confrelid where k.contype = 'f' and r.relnamespace = 'public'::regnamespace`,
          )
        ).rows.map((r) => r.t),
      ),
    );
    for (const chunk of plan.chunks) if (referenced.has(chunk.table)) chunk.whole = false;
    const total = { rows: plan.rows, bytes: plan.bytes };
    const meter = new ProgressMeter('initial copy', 'rows', total.rows);
    meter.setTotal(total.rows, total.bytes);
    let rowsDone = 0;
    let bytesDone = 0;
    let chunksDone = 0;
    let lastBeat = 0;
    // Rows of chunks in flight are estimated from their bytes; finished chunks count their real rows.
    const inFlight = new Map<Chunk, number>();
    const beat = (force = false) => {
      if (!force && Date.now() - lastBeat < BEAT_MS) return;
      lastBeat = Date.now();
      const flying = [...inFlight.entries()].reduce((n, [chunk, b]) => n + (chunk.share > 0 ? Math.min(1, b / chunk.share) * plan.rowsOf(chunk) : 0), 0);
      heartbeat({ phase: 'initial copy', chunksDone, chunksTotal: plan.chunks.length, progress: meter.read(Math.round(rowsDone + flying), bytesDone) });
    };
    beat(true);
    const queue = [...plan.chunks];
    const chunksLeft = new Map<string, number>();
    for (const chunk of plan.chunks) chunksLeft.set(chunk.table, (chunksLeft.get(chunk.table) ?? 0) + 1);
    const cancelled = Context.current().cancellationSignal;
    const job = async () => {
      const s = pgClient(src, { applicationName: 'tiershift: copying', settings: { ...SESSION_SETTINGS, ...KEY_RANGE_SETTINGS } });
      // As the subscription's own workers do: triggers and foreign keys of a target schema made
      // beforehand do not fire for rows that come from the source (which checked them already).
      const t = pgClient(dst, { applicationName: 'tiershift: copying', settings: { ...SESSION_SETTINGS, synchronous_commit: 'off', session_replication_role: 'replica' } });
      opened.push(s, t);
      await Promise.all([s.connect(), t.connect()]);
      await s.query('begin isolation level repeatable read read only');
      await s.query(`set transaction snapshot ${s.escapeLiteral(snapshot)}`);
      for (let chunk = queue.shift(); chunk; chunk = queue.shift()) {
        if (cancelled.aborted) throw cancelled.reason instanceof Error ? cancelled.reason : new Error('the copy was cancelled');
        inFlight.set(chunk, 0);
        const current = chunk;
        // A table copied whole goes into a table emptied in the same transaction, with FREEZE: its rows
        // are written frozen, so the index build and the verification do not rewrite every page to set
        // hint bits. (A table in several chunks cannot: each chunk commits on its own.)
        if (chunk.whole) await t.query(`begin; truncate table ${chunk.ident}`);
        const reader = s.query(copyTo(`copy ${chunk.source} to stdout (format binary)`));
        const writer = t.query(copyFrom(`copy ${chunk.target} from stdin (format binary${chunk.whole ? ', freeze' : ''})`));
        reader.on('data', (data: Buffer) => {
          bytesDone += data.length;
          inFlight.set(current, (inFlight.get(current) ?? 0) + data.length);
          beat();
        });
        await pipeline(reader, writer);
        if (chunk.whole) await t.query('commit');
        inFlight.delete(chunk);
        rowsDone += writer.rowCount;
        chunksDone += 1;
        const left = (chunksLeft.get(chunk.table) ?? 1) - 1;
        chunksLeft.set(chunk.table, left);
        if (left === 0) build.tableCopied(chunk.table);
        beat();
      }
      await s.query('commit');
    };
    const settled = await Promise.allSettled(Array.from({ length: Math.min(pgJobs(), Math.max(1, plan.chunks.length)) }, job));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    beat(true);
    return { lsn, rows: rowsDone, bytes: bytesDone, chunks: plan.chunks.length };
  } finally {
    await Promise.all(opened.map((c) => c.end().catch(() => undefined)));
  }
}

/**
 * Splits every table into chunks: a table up to `copyChunkRows()` rows is one chunk; a bigger one is cut
 * at every `copyChunkRows()`-th key, found by walking its primary key's index (keys only, no rows). The
 * biggest chunks go first, so the last minutes are not one session copying one big table alone.
 */
async function planChunks(c: pg.Client, tables: CopyTable[]) {
  const size = copyChunkRows();
  const { rows: stats } = await c.query<{ table: string; rows: number; bytes: number }>(
    `select c.relname as table,
            (case when c.reltuples > 0 then c.reltuples else pg_relation_size(c.oid) / 100 end)::float8 as rows,
            pg_table_size(c.oid)::float8 as bytes
       from pg_class c where c.relnamespace = 'public'::regnamespace and c.relname = any($1::text[])`,
    [tables.map((t) => t.table)],
  );
  const stat = new Map(stats.map((s) => [s.table, s]));
  const chunks: Chunk[] = [];
  const rowsPerChunk = new Map<Chunk, number>();
  for (const t of tables) {
    const ident = c.escapeIdentifier(t.table);
    const { rows: columns } = await c.query<{ name: string }>(
      `select attname as name from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped and attgenerated = '' order by attnum`,
      [`public.${ident}`],
    );
    // Generated columns are computed again on the target; COPY may not write them.
    const cols = columns.map((col) => c.escapeIdentifier(col.name)).join(', ');
    const target = `${ident} (${cols})`;
    const estimate = Math.round(stat.get(t.table)?.rows ?? 0);
    const bytes = stat.get(t.table)?.bytes ?? 0;
    // Ranges of the key's first column when it is an integer (every row has one value there, so they
    // still cut the table exactly), else of the whole key.
    const byValue = estimate > size ? await integerBoundaries(c, t, Math.ceil(estimate / size)) : undefined;
    const bounds = byValue ?? (estimate > size ? await boundaries(c, t, size) : []);
    const pieces = bounds.length + 1;
    const keyList = (byValue ? t.key.slice(0, 1) : t.key).map((k) => `${ROW}.${c.escapeIdentifier(k)}`).join(', ');
    const literal = (key: string[]) => `(${key.map((v) => c.escapeLiteral(v)).join(', ')})`;
    for (let i = 0; i < pieces; i++) {
      const lo = i > 0 ? bounds[i - 1]! : null;
      const hi = i < bounds.length ? bounds[i]! : null;
      const where = [lo && `(${keyList}) > ${literal(lo)}`, hi && `(${keyList}) <= ${literal(hi)}`].filter(Boolean).join(' and ');
      const chunk: Chunk = {
        table: t.table,
        ident,
        whole: pieces === 1,
        source: pieces === 1 ? target : `(select ${columns.map((col) => `${ROW}.${c.escapeIdentifier(col.name)}`).join(', ')} from ${ident} ${ROW} where ${where})`,
        target,
        share: bytes / pieces,
      };
      chunks.push(chunk);
      rowsPerChunk.set(chunk, estimate / pieces);
    }
  }
  // The biggest table first, all its chunks together: it is done early, and its primary key (the longest
  // to build) is built while the smaller tables are still copied, instead of after the last row.
  const tableBytes = (chunk: Chunk) => stat.get(chunk.table)?.bytes ?? 0;
  chunks.sort((a, b) => tableBytes(b) - tableBytes(a) || (a.table < b.table ? -1 : a.table > b.table ? 1 : 0));
  return {
    chunks,
    rows: [...rowsPerChunk.values()].reduce((a, b) => a + b, 0),
    bytes: chunks.reduce((a, b) => a + b.share, 0),
    rowsOf: (chunk: Chunk) => rowsPerChunk.get(chunk) ?? 0,
  };
}

/**
 * For a key whose first column is an integer: `pieces` ranges of that column of equal width between its
 * smallest and largest value, two index lookups instead of a walk through the index. Undefined for any
 * other key. Gaps in the ids only make some chunks smaller.
 */
async function integerBoundaries(c: pg.Client, t: CopyTable, pieces: number): Promise<string[][] | undefined> {
  const ident = c.escapeIdentifier(t.table);
  const col = c.escapeIdentifier(t.key[0]!);
  const { rows: types } = await c.query<{ type: string }>(`select atttypid::regtype::text as type from pg_attribute where attrelid = $1::regclass and attname = $2`, [
    `public.${ident}`,
    t.key[0],
  ]);
  if (!['smallint', 'integer', 'bigint'].includes(types[0]?.type ?? '')) return undefined;
  // min() and max() of an indexed column: one index lookup each.
  const { rows } = await c.query<{ lo: string | null; hi: string | null }>(`select min(${col})::text as lo, max(${col})::text as hi from ${ident}`);
  const r = rows[0]!;
  if (r.lo === null || r.hi === null) return [];
  const lo = BigInt(r.lo);
  const width = (BigInt(r.hi) - lo + 1n) / BigInt(pieces);
  if (width < 1n) return [];
  return Array.from({ length: pieces - 1 }, (_, i) => [(lo + width * BigInt(i + 1) - 1n).toString()]);
}

/** Every `size`-th key of the table in key order: an index-only walk, one step per chunk. */
async function boundaries(c: pg.Client, t: CopyTable, size: number): Promise<string[][]> {
  const ident = c.escapeIdentifier(t.table);
  const cols = t.key.map((k) => `${ROW}.${c.escapeIdentifier(k)}`);
  const keyList = cols.join(', ');
  const keyText = `array[${cols.map((k) => `${k}::text`).join(', ')}]`;
  const found: string[][] = [];
  for (;;) {
    const lo = found.at(-1);
    const params = lo ?? [];
    const where = lo ? `where (${keyList}) > (${lo.map((_, i) => `$${i + 1}`).join(', ')})` : '';
    const { rows } = await c.query<{ key: string[] }>(`select ${keyText} as key from ${ident} ${ROW} ${where} order by ${keyList} offset ${size - 1} limit 1`, params);
    if (!rows[0]) return found;
    found.push(rows[0].key);
    heartbeat({ phase: 'planning the copy', table: t.table, boundaries: found.length });
  }
}

interface PostDataItem {
  name: string;
  type: string;
  sql: string;
  /** The table it belongs to as pg_dump writes it (`public.orders`), for indexes and constraints. */
  table: string | null;
}

/** `CREATE [UNIQUE] INDEX name ON [ONLY] public.t USING …` or `ALTER TABLE [ONLY] public.t ADD CONSTRAINT …`. */
const ITEM_TABLE = /^(?:CREATE (?:UNIQUE )?INDEX \S+ ON (?:ONLY )?|ALTER TABLE (?:ONLY )?)((?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")+")\.(?:[a-z_][a-z0-9_$]*|"(?:[^"]|"")+"))/;

/**
 * The source's post-data section (indexes, constraints, foreign keys, triggers, rules, policies), from
 * pg_dump, one item per object as pg_dump's own "-- Name: …; Type: …" headers separate them.
 */
interface PostData {
  preamble: string;
  items: PostDataItem[];
}

async function postData(src: string): Promise<PostData> {
  const text = await new Promise<string>((resolve, reject) => {
    const from = libpqCommandLine(src);
    const dump = spawn(findBinary('pg_dump'), ['--schema-only', '--section=post-data', '--no-owner', '--no-privileges', '--no-publications', '--no-subscriptions', '-d', from.url], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: from.env,
    });
    let out = '';
    let err = '';
    dump.stdout.on('data', (d: Buffer) => (out += d.toString()));
    dump.stderr.on('data', (d: Buffer) => (err += d.toString()));
    dump.on('error', reject);
    dump.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`reading the source's indexes and constraints failed: pg_dump said "${err.trim().split('\n')[0] ?? ''}"`))));
  });
  const header = /^--\n-- Name: (.*?); Type: (.*?); Schema: .*?; Owner: .*\n--\n/gm;
  const marks = [...text.matchAll(header)];
  // pg_dump 15.14 and later frame its output with psql's \restrict and \unrestrict, which only psql
  // reads; its comment lines go too, so each item ends with its own semicolon (see notValid).
  const sqlOnly = (part: string) =>
    part
      .split('\n')
      .filter((line) => !line.startsWith('\\') && !line.startsWith('--'))
      .join('\n')
      .trim();
  const preamble = sqlOnly(text.slice(0, marks[0]?.index ?? text.length));
  const items = marks.map((m, i) => {
    const sql = sqlOnly(text.slice(m.index! + m[0].length, marks[i + 1]?.index ?? text.length));
    return { name: m[1]!, type: m[2]!, sql, table: ITEM_TABLE.exec(sql)?.[1] ?? null };
  });
  return { preamble, items: items.filter((i) => i.sql) };
}

/**
 * Sessions on the target that build post-data items as they are added, `width` at once. A deadlock
 * between two items (two foreign keys locking the same tables in opposite order) is tried again.
 */
class BuildPool {
  private readonly queue: PostDataItem[] = [];
  private closed = false;
  private held = false;
  private running = 0;
  private keysLeft = 0;
  private failure?: unknown;
  private waiting: (() => void)[] = [];
  private readonly sessions: pg.Client[] = [];
  private workers?: Promise<void>;
  private total?: number;
  private beats: () => boolean = () => true;
  private readonly progressMeter: ProgressMeter;

  constructor(
    private readonly dst: string,
    private readonly preamble: string,
    private readonly counts: { built: number; found: number },
    shared?: BuildPool,
    private readonly width = pgJobs(),
  ) {
    this.progressMeter = shared?.progressMeter ?? new ProgressMeter('building indexes and constraints', 'objects');
    if (shared) {
      this.total = shared.total;
      this.beats = shared.beats;
    }
  }

  /** From here on heartbeats report the build's progress out of `total` items, whenever `beats()` says so. */
  meter(total: number, beats: () => boolean): void {
    this.total = total;
    this.beats = beats;
    this.progressMeter.setTotal(total);
    this.beat();
  }

  add(items: PostDataItem[]): void {
    if (!items.length) return;
    this.queue.push(...items);
    this.keysLeft += items.filter(isKey).length;
    if (!this.workers) {
      this.workers = this.start();
      // Awaited by done(); a pool stopped after a failed copy must not leave an unhandled rejection.
      this.workers.catch(() => undefined);
    }
    this.wakeAll();
  }

  close(): void {
    this.closed = true;
    this.wakeAll();
  }

  /** Until every primary key added so far is built (or a build failed). */
  async keysDone(): Promise<void> {
    await this.until(() => this.keysLeft === 0);
  }

  /** No item starts until `release`; resolves once none is running. */
  async hold(): Promise<void> {
    this.held = true;
    await this.until(() => this.running === 0);
  }

  release(): void {
    this.held = false;
    this.wakeAll();
  }

  async done(): Promise<void> {
    await this.workers;
  }

  /** All of `items`, one after the other, then done. */
  async run(items: PostDataItem[]): Promise<void> {
    try {
      this.add(items);
      this.close();
      await this.done();
    } finally {
      await this.stop();
    }
  }

  /** Ends the sessions; builds running in them are rolled back by the server. */
  async stop(): Promise<void> {
    this.queue.length = 0;
    this.held = false;
    this.close();
    await Promise.all(this.sessions.map((c) => c.end().catch(() => undefined)));
  }

  private wakeAll(): void {
    for (const wake of this.waiting.splice(0)) wake();
  }

  private async until(condition: () => boolean): Promise<void> {
    while (!condition()) {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    if (this.failure) throw this.failure;
  }

  private beat(): void {
    if (this.total !== undefined && this.beats()) heartbeat({ phase: 'building indexes', progress: this.progressMeter.read(this.counts.built + this.counts.found) });
  }

  private start(): Promise<void> {
    const cancelled = Context.current().cancellationSignal;
    const worker = async () => {
      const t = pgClient(this.dst, { applicationName: 'tiershift: building indexes', settings: INDEX_SETTINGS });
      this.sessions.push(t);
      await t.connect();
      if (this.preamble) await t.query(this.preamble);
      for (;;) {
        if (cancelled.aborted) throw cancelled.reason instanceof Error ? cancelled.reason : new Error('the index build was cancelled');
        const item = this.held ? undefined : this.queue.shift();
        if (item) {
          this.running += 1;
          try {
            await this.apply(t, item);
          } finally {
            this.running -= 1;
            if (isKey(item)) this.keysLeft -= 1;
            this.wakeAll();
          }
          continue;
        }
        if (this.closed && !this.held && !this.queue.length) return;
        await new Promise<void>((resolve) => this.waiting.push(resolve));
      }
    };
    return Promise.allSettled(Array.from({ length: this.width }, worker)).then((settled) => {
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    });
  }

  private async apply(t: pg.Client, item: PostDataItem): Promise<void> {
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await t.query(item.sql);
          this.counts.built += 1;
          break;
        } catch (err) {
          const code = (err as { code?: string }).code ?? '';
          if (ALREADY_THERE.has(code)) {
            this.counts.found += 1;
            break;
          }
          if (code === '40P01' && attempt < 5) continue;
          throw new Error(`building ${item.type.toLowerCase()} ${item.name} on the target failed: ${(err as Error).message}`);
        }
      }
    } catch (err) {
      // Whoever waits for keys or for the pool to go quiet learns of it at once.
      this.failure ??= err;
      this.wakeAll();
      throw err;
    }
    this.beat();
  }
}

/** `… FOREIGN KEY (…) REFERENCES …;` as `… NOT VALID;` (a key the source holds NOT VALID stays as it is). */
function notValid(sql: string): string {
  return /\bNOT VALID;\s*$/.test(sql) ? sql : sql.replace(/;\s*$/, ' NOT VALID;');
}

/**
 * Validates the target's foreign keys that the copy added NOT VALID and that are valid on the source: it
 * reads their rows with a lock (SHARE UPDATE EXCLUSIVE) that lets replication write on. Idempotent: a
 * validated key is no longer listed. Together with fresh statistics (ANALYZE, same kind of lock).
 */
async function validateAndAnalyze(src: string, dst: string, tables: CopyTable[]): Promise<number> {
  const keys = (c: pg.Client, validated: boolean) =>
    c
      .query<{ t: string; n: string }>(
        `select conrelid::regclass::text as t, conname as n from pg_constraint where contype = 'f' and convalidated = $1 and connamespace = 'public'::regnamespace`,
        [validated],
      )
      .then((r) => r.rows);
  const valid = new Set((await withClient(src, (c) => keys(c, true))).map((k) => `${k.t} ${k.n}`));
  const pending = (await withClient(dst, (c) => keys(c, false))).filter((k) => valid.has(`${k.t} ${k.n}`));
  const queue = [...pending];
  await Promise.all([
    ...Array.from({ length: Math.min(pgJobs(), queue.length) }, () =>
      withClient(dst, async (c) => {
        for (let k = queue.shift(); k; k = queue.shift()) {
          heartbeat({ phase: 'validating foreign keys', key: k.n });
          await c.query(`alter table ${k.t} validate constraint ${c.escapeIdentifier(k.n)}`);
        }
      }),
    ),
    analyzeAll(dst, tables),
  ]);
  return pending.length;
}

/** Fresh planner statistics on the target, as after a restore, for the tables that have none yet. */
async function analyzeAll(dst: string, tables: CopyTable[]): Promise<void> {
  const queue = await withClient(dst, async (c) =>
    (
      await c.query<{ t: string }>(
        `select relname as t from pg_stat_user_tables where schemaname = 'public' and relname = any($1::text[]) and last_analyze is null and last_autoanalyze is null`,
        [tables.map((t) => t.table)],
      )
    ).rows.map((r) => r.t),
  );
  await Promise.all(
    Array.from({ length: Math.min(pgJobs(), queue.length) }, () =>
      withClient(dst, async (c) => {
        for (let t = queue.shift(); t; t = queue.shift()) {
          heartbeat({ phase: 'analyzing', table: t });
          await c.query(`analyze ${c.escapeIdentifier(t)}`);
        }
      }),
    ),
  );
}
