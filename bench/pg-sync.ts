// 5. PostgreSQL data sync: the data phase (logical replication, verified at a consistent point, then
// the finalize cutover) beside `pg_dump | pg_restore` and `pgcopydb clone`, between the same two
// sandbox clusters on the same generated data, while orders keep arriving through the blue app.
import { ApplicationFailure } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withClient } from '../activities/local/postgres';
import { cutoverPostgres, replicationName, syncPostgres } from '../activities/local/pg-sync';
import { pgJobs } from '../activities/local/pg-copy';
import type { StepInput, StepOutcome } from '../activities/types';
import { runLoad, type LoadResult } from '../client/load';
import type { LocalPostgres } from '../activities/local/provider';
import type { DataStep, FinalizeStep } from '../plan/types';
import { findBinary } from '../sandbox/binaries';
import { SEED_FILE } from '../sandbox/postgres';
import { resetSandbox } from '../sandbox/reset';
import { postgresUrl } from '../contract/home';
import { describeFailures } from './traffic';
import { eventually, int, median, mib, ms, now, sandbox, secs, sleep, spawnTracked, stamp, table, failedComparison, type BenchContext, type FailedComparison, type Section } from './lib';

type Method = 'tiershift' | 'tiershift-unverified' | 'pg_dump' | 'pgcopydb';
/** tiershift also runs with `verify: false`: the same copy and build without the checksums, to show what the verification costs. */
const METHODS: Method[] = ['tiershift', 'tiershift-unverified', 'pg_dump', 'pgcopydb'];
const isTiershift = (m: Method) => m.startsWith('tiershift');
/** pgcopydb's table and index jobs: as many as tiershift's copy sessions (TIERSHIFT_COPY_JOBS), so both use the machine alike. */
const TABLE_JOBS = pgJobs();

interface Dataset {
  label: string;
  orders: number;
  rows: number;
  bytes: number;
  seedMs: number;
}

interface RunResult {
  ms: number;
  /** tiershift: bytes and ms behind at the cutover, writes paused for it, attempts of the data activity. */
  lagBytes?: number;
  replayLagMs?: number | null;
  cutoverMs?: number;
  quiesceMs?: number;
  attempts?: number;
  /** tiershift: the data step's own figures (copy, index build, verification, its write pause) and the bench process's peak RSS meanwhile. */
  copyMs?: number;
  verifyMs?: number;
  dataQuiesceMs?: number;
  peakRssBytes?: number;
  /** Snapshot copies: orders on the source that the target does not have once the copy finished. */
  missingOrders?: number;
  writes: LoadResult & { reads: LoadResult; failedAt: number[] };
  /** tiershift: when the data phase ended and the cutover began (epoch ms). */
  cutoverAt?: number;
}

const source: LocalPostgres = { name: 'sourceDb', kind: 'postgres', provider: 'local', cluster: 'source' };
const target: LocalPostgres = { name: 'targetDb', kind: 'postgres', provider: 'local', cluster: 'target' };
const stepBase = {
  phaseIndex: 1,
  retry: { maximumAttempts: 3, initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s' },
  timeouts: { startToClose: '60m', heartbeat: '1m' },
};

const urls = (ctx: Pick<BenchContext, 'home'>) => {
  const s = sandbox(ctx);
  return { src: postgresUrl(s.postgres.source!), dst: postgresUrl(s.postgres.target!), srcAdmin: postgresUrl(s.postgres.source!, 'postgres') };
};

const count = (url: string, sql: string) => withClient(url, async (c) => Number((await c.query<{ n: string }>(sql)).rows[0]!.n));

/**
 * Replication slots left in the source's shop database (a run that failed half-way): a database with
 * a slot cannot be dropped, and a slot holds WAL. Their walsenders are ended first.
 */
async function dropLeftoverSlots(ctx: BenchContext): Promise<void> {
  const database = sandbox(ctx).postgres.source!.database;
  await withClient(urls(ctx).srcAdmin, async (c) => {
    for (let i = 0; i < 100; i++) {
      const { rows } = await c.query<{ slot_name: string; active_pid: number | null }>('select slot_name, active_pid from pg_replication_slots where database = $1', [database]);
      if (!rows.length) return;
      for (const r of rows) {
        if (r.active_pid) await c.query('select pg_terminate_backend($1)', [r.active_pid]);
        else await c.query('select pg_drop_replication_slot($1)', [r.slot_name]).catch(() => undefined);
      }
      await sleep(200);
    }
  });
}

/** The target emptied (subscriptions dropped), traffic on blue, no replication left on the source. */
export async function resetAll(ctx: BenchContext): Promise<void> {
  await resetSandbox(sandbox(ctx));
  await dropLeftoverSlots(ctx);
}

/** Replaces the source's shop database with a freshly seeded one of `orders` orders (the sandbox's own seed script). */
export async function reseed(ctx: BenchContext, label: string, orders: number): Promise<Dataset> {
  await resetAll(ctx);
  const { src, srcAdmin } = urls(ctx);
  const database = sandbox(ctx).postgres.source!.database;
  await withClient(srcAdmin, async (c) => {
    await c.query(`drop database if exists ${c.escapeIdentifier(database)} with (force)`);
    await c.query(`create database ${c.escapeIdentifier(database)}`);
  });
  const t0 = now();
  await withClient(src, async (c) => {
    await c.query('begin');
    await c.query(`select set_config('tiershift.seed_rows', $1, true)`, [String(orders)]);
    await c.query(readFileSync(SEED_FILE, 'utf8'));
    await c.query('commit');
    // Hint bits and statistics settled before any copy, so the first method does not pay for them.
    await c.query('vacuum analyze');
  });
  const seedMs = now() - t0;
  const { rows, bytes } = await withClient(src, async (c) => {
    const tables = (await c.query<{ name: string }>(`select tablename as name from pg_tables where schemaname = 'public'`)).rows.map((r) => r.name);
    let rows = 0;
    for (const t of tables) rows += Number((await c.query<{ n: string }>(`select count(*) as n from ${c.escapeIdentifier(t)}`)).rows[0]!.n);
    const size = await c.query<{ bytes: string }>(`select coalesce(sum(pg_total_relation_size(relid)), 0) as bytes from pg_stat_user_tables where schemaname = 'public'`);
    return { rows, bytes: Number(size.rows[0]!.bytes) };
  });
  // The blue app lost its connections with the old database: wait until it serves from the new one.
  const blue = sandbox(ctx).apps.blue!;
  await eventually(() => fetch(`http://127.0.0.1:${blue.port}/health`).then((r) => r.status), (s) => s === 200, 60_000, 'blue healthy after the reseed');
  return { label, orders, rows, bytes, seedMs };
}

/**
 * The demo's shoppers while a copy runs, through the blue app (on the source): order lookups at 20 a
 * second and new orders at the dataset's write rate, each bounded in count and time.
 */
function writer(ctx: BenchContext) {
  const abort = new AbortController();
  const blue = `http://127.0.0.1:${sandbox(ctx).apps.blue!.port}`;
  // When each failed request was sent, to tell the data phase's failures from the cutover's.
  const failedAt: number[] = [];
  const common = { durationMs: 60 * 60_000, signal: abort.signal, timeoutMs: 15_000, concurrency: 8, onFailure: (at: number) => failedAt.push(at) };
  const writes = runLoad({ ...common, url: `${blue}/api/orders`, method: 'POST', body: {}, ratePerSecond: ctx.sizes.pgWritesPerSecond, maxRequests: 1_000_000 });
  const reads = runLoad({ ...common, url: (n) => `${blue}/api/orders/${((n * 7919) % 1000) + 1}`, ratePerSecond: 20, maxRequests: 2_000_000 });
  return {
    stop: async (): Promise<LoadResult & { reads: LoadResult; failedAt: number[] }> => {
      abort.abort();
      return { ...(await writes), reads: await reads, failedAt };
    },
  };
}

export function finished(child: ChildProcess, what: string): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else {
        const lines = stderr.trim().split('\n').filter((l) => /error|fatal/i.test(l));
        // The first error says what went wrong; pg_restore's last line only counts them.
        reject(new Error(`${what} exited with code ${code}: ${(lines.find((l) => /error:/i.test(l)) ?? lines.at(-1) ?? stderr.trim().split('\n').at(-1) ?? '').slice(0, 300)}`));
      }
    });
  });
}

async function viaTiershift(ctx: BenchContext, migrationId: string, verify: boolean): Promise<Omit<RunResult, 'writes'>> {
  const resources = { sourceDb: source, targetDb: target };
  const data: DataStep = { ...stepBase, id: 'data', title: 'Replicate the shop database', kind: 'data', from: 'sourceDb', to: 'targetDb', verify };
  const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 60_000 }, { logger: new DefaultLogger('ERROR') });
  const t0 = now();
  // The worker's memory: this process runs the activity (and the load generator, a few MB).
  let peakRssBytes = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRssBytes = Math.max(peakRssBytes, process.memoryUsage().rss)), 200);
  // The plan's retry policy, as the worker would apply it: a retryable failure runs the activity again.
  let attempts = 0;
  let outcome: StepOutcome;
  for (;;) {
    attempts += 1;
    try {
      outcome = (await env.run(syncPostgres, { migrationId, step: data, resources } as StepInput<DataStep>)) as StepOutcome;
      clearInterval(sampler);
      break;
    } catch (err) {
      if ((err instanceof ApplicationFailure && err.nonRetryable) || attempts >= stepBase.retry.maximumAttempts) {
        clearInterval(sampler);
        throw err;
      }
      ctx.log(`    data activity attempt ${attempts} failed (${(err as Error).message}); retrying as the plan's retry policy would`);
      await sleep(2_000);
    }
  }
  const elapsed = now() - t0;
  // The lag just before the cutover, with the writes still coming in.
  const name = replicationName(migrationId);
  await sleep(1_000);
  const { lagBytes, replayLagMs } = await withClient(urls(ctx).src, async (c) => {
    const slot = await c.query<{ lag: string | null }>('select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint as lag from pg_replication_slots where slot_name = $1', [name]);
    const rep = await c.query<{ ms: string | null }>('select (extract(epoch from replay_lag) * 1000)::float8 as ms from pg_stat_replication where application_name = $1', [name]);
    return { lagBytes: Number(slot.rows[0]?.lag ?? NaN), replayLagMs: rep.rows[0]?.ms == null ? null : Number(rep.rows[0].ms) };
  });
  const finalize = { ...stepBase, id: 'finalize', title: 'Cut over', kind: 'finalize', resources: ['targetDb'], syncedFrom: { targetDb: 'sourceDb' } } as FinalizeStep;
  const c0 = now();
  const cutoverAt = Date.now();
  const cut = (await env.run((i: StepInput<FinalizeStep>) => cutoverPostgres(i, source, target), { migrationId, step: finalize, resources } as StepInput<FinalizeStep>)) as StepOutcome;
  const cutoverMs = now() - c0;
  const f = outcome.figures;
  return {
    ms: elapsed,
    cutoverAt,
    lagBytes,
    replayLagMs,
    cutoverMs,
    quiesceMs: Number(cut.figures['targetDb.quiesceMs']),
    attempts,
    copyMs: Number(f['targetDb.copyMs']),
    verifyMs: Number(f['targetDb.verifyMs']),
    dataQuiesceMs: Number(f['targetDb.quiesceMs']),
    peakRssBytes,
  };
}

/** `pg_dump -Fc | pg_restore` from the source's shop into the target's (which must be empty). */
export async function dumpRestore(ctx: Pick<BenchContext, 'home'>): Promise<void> {
  const { src, dst } = urls(ctx);
  const dump = spawnTracked(findBinary('pg_dump'), ['-Fc', '--no-publications', '--no-subscriptions', '-d', src], { stdio: ['ignore', 'pipe', 'pipe'] });
  const restore = spawnTracked(findBinary('pg_restore'), ['--no-owner', '--no-privileges', '-d', dst], { stdio: ['pipe', 'ignore', 'pipe'] });
  dump.stdout!.pipe(restore.stdin!);
  await Promise.all([finished(dump, 'pg_dump'), finished(restore, 'pg_restore')]);
}

async function viaDump(ctx: BenchContext): Promise<Omit<RunResult, 'writes'>> {
  const t0 = now();
  await dumpRestore(ctx);
  return { ms: now() - t0, missingOrders: await missing(ctx) };
}

async function viaPgcopydb(ctx: BenchContext, pgcopydb: string): Promise<Omit<RunResult, 'writes'>> {
  const { src, dst } = urls(ctx);
  // Its work directory lives outside the sandbox home (which a purge only deletes when it holds nothing foreign).
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-bench-pgcopydb-'));
  try {
    const t0 = now();
    const child = spawnTracked(
      pgcopydb,
      ['clone', '--source', src, '--target', dst, '--dir', dir, '--table-jobs', String(TABLE_JOBS), '--index-jobs', String(TABLE_JOBS), '--no-owner', '--no-acl'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TMPDIR: dir } },
    );
    await finished(child, 'pgcopydb clone');
    return { ms: now() - t0, missingOrders: await missing(ctx) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Orders the source has and the target does not, once a snapshot copy finished. */
async function missing(ctx: BenchContext): Promise<number> {
  const { src, dst } = urls(ctx);
  const [s, d] = await Promise.all([count(src, 'select count(*) as n from orders'), count(dst, 'select count(*) as n from orders')]);
  return s - d;
}

function pgcopydbBinary(): { path?: string; why?: string } {
  try {
    return { path: findBinary('pgcopydb') };
  } catch {
    return { why: 'pgcopydb is not installed and bench/setup.sh could not install it (apt-get install pgcopydb needs Debian/Ubuntu and root; see its message above)' };
  }
}

export async function pgSync(ctx: BenchContext): Promise<Section> {
  const pgcopydb = pgcopydbBinary();
  const datasets: Dataset[] = [];
  const results = new Map<string, RunResult[]>(); // `${dataset}/${method}`
  const failures = new Map<string, string>();
  const failed: FailedComparison[] = [];
  const started = Date.now();
  const budget = ctx.deadline - started;
  try {
    for (const [di, spec] of ctx.sizes.pgDatasets.entries()) {
      ctx.log(`  seeding ${spec.orders} orders`);
      const ds = await reseed(ctx, spec.label, spec.orders);
      datasets.push(ds);
      ctx.log(`  ${ds.rows} rows, ${mib(ds.bytes)} in ${secs(ds.seedMs)}`);
      // Each dataset gets its share of the budget; another round starts only if one more (as long as the
      // last) still fits in it.
      const deadline = started + budget * ctx.sizes.pgDatasets.slice(0, di + 1).reduce((sum, d) => sum + d.share, 0);
      let lastRoundMs = 0;
      for (let round = 0; round < spec.runs; round++) {
        if (round > 0 && Date.now() + lastRoundMs > deadline) break;
        const roundStarted = Date.now();
        for (const method of METHODS) {
          const key = `${ds.label}/${method}`;
          if (method === 'pgcopydb' && !pgcopydb.path) {
            failures.set(key, `unavailable: ${pgcopydb.why}`);
            continue;
          }
          await resetAll(ctx);
          const w = writer(ctx);
          let r: Omit<RunResult, 'writes'> | undefined;
          const runStarted = Date.now();
          try {
            r =
              isTiershift(method)
                ? await viaTiershift(ctx, `bench-pg-${stamp()}`, method === 'tiershift')
                : method === 'pg_dump'
                  ? await viaDump(ctx)
                  : await viaPgcopydb(ctx, pgcopydb.path!);
          } catch (err) {
            failures.set(key, (err as Error).message);
            failed.push(failedComparison(`${ds.label}, ${method} (round ${round + 1})`, Date.now() - runStarted, err));
            ctx.log(`    ${method} failed: ${(err as Error).message}`);
          } finally {
            const writes = await w.stop();
            if (r) {
              results.set(key, [...(results.get(key) ?? []), { ...r, writes }]);
              ctx.log(`    ${method}: ${secs(r.ms)}${r.missingOrders !== undefined ? `, ${r.missingOrders} orders missing` : `, lag ${r.lagBytes} bytes, paused ${r.quiesceMs} ms`} (${writes.ok} writes, ${writes.failed} failed; ${writes.reads.ok} lookups, ${writes.reads.failed} failed)`);
            }
          }
        }
        lastRoundMs = Date.now() - roundStarted;
      }
    }
  } finally {
    // Benchmarks 3 and 4 run on the sandbox's usual, smaller shop.
    ctx.log(`  restoring the shop database to ${ctx.sizes.seedRows} orders`);
    await reseed(ctx, 'sandbox', ctx.sizes.seedRows);
  }

  const rows: string[][] = [];
  const shortfalls: string[] = [];
  for (const ds of datasets) {
    const cell = (method: Method, fn: (runs: RunResult[]) => string) => {
      const runs = results.get(`${ds.label}/${method}`);
      if (!runs?.length) return failures.get(`${ds.label}/${method}`) ?? 'not run';
      return fn(runs);
    };
    const head = `${ds.label} (${int(ds.rows)} rows, ${mib(ds.bytes, 0)})`;
    const seconds = (runs: RunResult[]) => `${secs(median(runs.map((r) => r.ms)))} (${runs.length} run${runs.length > 1 ? 's' : ''})`;
    const rate = (runs: RunResult[]) => `${(ds.bytes / 1e6 / (median(runs.map((r) => r.ms)) / 1000)).toFixed(1)} MB/s`;
    // One formatter for tiershift's columns, another for the snapshot copies'.
    const row = (label: string, ts: (runs: RunResult[]) => string, snap: (runs: RunResult[]) => string) =>
      rows.push([`${head}: ${label}`, ...METHODS.map((m) => cell(m, isTiershift(m) ? ts : snap))]);
    row('seconds, median', seconds, seconds);
    row('throughput', rate, rate);
    const lagTs = (runs: RunResult[]) => {
      const r = runs.at(-1)!;
      return `${int(median(runs.map((x) => x.lagBytes ?? NaN)))} bytes behind${r.replayLagMs != null ? `, replay lag ${ms(median(runs.map((x) => x.replayLagMs ?? NaN)), 0)}` : ''}; 0 orders missing after the cutover`;
    };
    const lagSnap = (runs: RunResult[]) => `${int(median(runs.map((r) => r.missingOrders ?? NaN)))} orders written during the copy are missing`;
    row(`lag at cutover under ${ctx.sizes.pgWritesPerSecond} writes/s`, lagTs, lagSnap);
    const shoppers = (runs: RunResult[]) => {
      const sum = (pick: (r: RunResult) => number) => int(runs.reduce((n, r) => n + pick(r), 0));
      const inCutover = runs.reduce((n, r) => n + (r.cutoverAt === undefined ? 0 : r.writes.failedAt.filter((t) => t >= r.cutoverAt!).length), 0);
      return (
        `${sum((r) => r.writes.failed)} of ${sum((r) => r.writes.sent)} orders, ${sum((r) => r.writes.reads.failed)} of ${sum((r) => r.writes.reads.sent)} lookups` +
        (inCutover ? ` (${int(inCutover)} of the failed sent during the cutover, which ends the source's sessions)` : '')
      );
    };
    row("shoppers' requests failed meanwhile", shoppers, shoppers);
    const pausedTs = (runs: RunResult[]) =>
      `${ms(median(runs.map((r) => r.quiesceMs ?? NaN)), 0)} (cutover step ${secs(median(runs.map((r) => r.cutoverMs ?? NaN)))})`;
    const pausedSnap = (runs: RunResult[]) => `the whole copy, ${secs(median(runs.map((r) => r.ms)))}`;
    row('writes stopped for a consistent cutover', pausedTs, pausedSnap);
    const ts = results.get(`${ds.label}/tiershift`) ?? [];
    if (ts.length) {
      const med = (pick: (r: RunResult) => number | undefined) => median(ts.map((r) => pick(r) ?? NaN));
      rows.push([
        `${head}: tiershift's parts`,
        `copy ${secs(med((r) => r.copyMs))}, verification ${secs(med((r) => r.verifyMs))} (indexes and foreign keys built meanwhile); writes paused ${ms(med((r) => r.dataQuiesceMs), 0)} for the verification's point; peak RSS ${mib(med((r) => r.peakRssBytes), 0)}`,
        ...METHODS.slice(1).map(() => ''),
      ]);
      const pause = Math.max(...ts.map((r) => r.dataQuiesceMs ?? 0), ...ts.map((r) => r.quiesceMs ?? 0));
      if (pause >= 2_000) shortfalls.push(`PostgreSQL sync (${ds.label}): writes were paused for ${ms(pause, 0)}, above the 2 s goal.`);
      const rss = Math.max(...ts.map((r) => r.peakRssBytes ?? 0));
      if (rss >= 500 * 1024 * 1024) shortfalls.push(`PostgreSQL sync (${ds.label}): the worker's peak RSS was ${mib(rss, 0)}, above the 500 MB goal.`);
      const copydb = results.get(`${ds.label}/pgcopydb`);
      if (copydb?.length && median(ts.map((r) => r.ms)) > median(copydb.map((r) => r.ms))) {
        const unverified = results.get(`${ds.label}/tiershift-unverified`);
        shortfalls.push(
          `PostgreSQL sync (${ds.label}): the data phase, verification included, took ${secs(median(ts.map((r) => r.ms)))} against pgcopydb's ${secs(median(copydb.map((r) => r.ms)))}` +
            (unverified?.length ? ` (${secs(median(unverified.map((r) => r.ms)))} without the verification, which pgcopydb does not do).` : '.'),
        );
      }
    }
    const retried = results.get(`${ds.label}/tiershift`)?.filter((r) => (r.attempts ?? 1) > 1).length ?? 0;
    if (retried) shortfalls.push(`PostgreSQL sync (${ds.label}): the data activity needed a retry in ${retried} run(s) (see the log for why).`);
    for (const m of METHODS) {
      const runs = results.get(`${ds.label}/${m}`) ?? [];
      const failed = runs.reduce((n, r) => n + r.writes.failed, 0);
      const sent = runs.reduce((n, r) => n + r.writes.sent, 0);
      const how = runs.filter((r) => r.writes.failed).map((r) => describeFailures(r.writes)).join('; ');
      const inCutover = runs.reduce((n, r) => n + (r.cutoverAt === undefined ? 0 : r.writes.failedAt.filter((t) => t >= r.cutoverAt!).length), 0);
      const allFailed = failed + runs.reduce((n, r) => n + r.writes.reads.failed, 0);
      const when = isTiershift(m) ? `; of all ${allFailed} failed requests, orders and lookups, ${allFailed - inCutover} were sent during the data phase and ${inCutover} during the cutover` : '';
      if (failed) shortfalls.push(`PostgreSQL sync (${ds.label}, ${m}): ${failed} of the ${sent} orders written meanwhile through the blue app failed (${how}${when}).`);
      const lookupsFailed = runs.reduce((n, r) => n + r.writes.reads.failed, 0);
      const lookups = runs.reduce((n, r) => n + r.writes.reads.sent, 0);
      const lookupHow = runs.filter((r) => r.writes.reads.failed).map((r) => describeFailures(r.writes.reads)).join('; ');
      if (lookupsFailed) shortfalls.push(`PostgreSQL sync (${ds.label}, ${m}): ${lookupsFailed} of the ${lookups} order lookups meanwhile failed (${lookupHow}).`);
    }
  }
  // The failed runs themselves are rows of the failures table (bench/run.ts), which lists them among the shortfalls too.
  if (!pgcopydb.path) shortfalls.push(`PostgreSQL sync: the pgcopydb column is empty: ${pgcopydb.why}.`);
  return {
    title: '5. PostgreSQL data sync',
    method:
      'The shop database on the source cluster is reseeded with the sandbox\'s own seed script at each size (then `vacuum analyze`), and copied to an emptied `shop` on the ' +
      'target cluster four ways, interleaved round by round, while the blue app takes ' +
      `${ctx.sizes.pgWritesPerSecond} new orders per second and 20 order lookups per second on the source (\`runLoad\`, the demo's shoppers). **tiershift**: the data phase's \`syncPostgres\` activity (the publication, ` +
      `the tables without indexes, a replication slot whose exported snapshot ${TABLE_JOBS} sessions copy from by key range, the indexes and constraints built after in parallel, a subscription streaming from the slot, ` +
      'catch-up, a consistent point taken with writes paused for milliseconds, then chunked checksums of every row on both clusters after the pause), run in Temporal\'s activity test environment with the plan\'s ' +
      'retry policy, timed from start to verified; then the finalize step\'s `cutoverPostgres`. **tiershift without verification**: the same with the plan\'s `verify: false`, to show what the checksums cost. **pg_dump | pg_restore**: `pg_dump -Fc | pg_restore --no-owner` (one stream, ' +
      `so no parallel restore). **pgcopydb**: \`pgcopydb clone --table-jobs ${TABLE_JOBS} --index-jobs ${TABLE_JOBS} --no-owner --no-acl\` (Debian package). ` +
      'Size is the source\'s tables with their indexes (`pg_total_relation_size`); MB/s is that size over the seconds. Lag at cutover: for tiershift, the replication slot\'s ' +
      'distance from the source\'s WAL position and `pg_stat_replication.replay_lag` a second after the data phase ended, and the writes paused by the cutover; for the snapshot copies, the ' +
      'orders on the source that the target lacks when the copy ends.',
    body: [
      ...table(['', 'tiershift: data phase', 'tiershift without verification (`verify: false`)', 'alternative: pg_dump | pg_restore', 'alternative: pgcopydb clone'], rows),
      '',
      ...datasets.filter((d) => d.label !== 'sandbox').map((d) => `Seeding ${d.label}: ${int(d.orders)} orders → ${int(d.rows)} rows in ${secs(d.seedMs)}.`),
      '',
      'The tiershift time includes what the others do not: the verification of every row (checksums on both clusters) and waiting until the subscription caught up with the ' +
        'writes made meanwhile. The snapshot copies leave a target that is behind by every write made since they started, so a cutover with them means stopping writes for the whole copy.',
    ],
    shortfalls,
    failed,
  };
}
