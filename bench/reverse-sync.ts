// 8. The way back past the point of no return: after the cutover the target took writes the source never
// saw, and the new version keeps writing while the rollback starts. tiershift's reverse sync (a backfill
// from the slot's exported snapshot, logical replication target -> source, then a short pause) beside
// what a runbook does without it: dump the target and restore it over the source.
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createActivities } from '../activities';
import { localProvider } from '../activities/local';
import type { LocalPostgres } from '../activities/local/provider';
import { syncPostgres } from '../activities/local/pg-sync';
import { withClient } from '../activities/local/postgres';
import type { StepInput, StepOutcome, UndoInput } from '../activities/types';
import type { DataStep, FinalizeStep } from '../plan/types';
import { findBinary } from '../sandbox/binaries';
import { postgresUrl } from '../contract/home';
import { int, median, mib, ms, now, sandbox, secs, sleep, spawnTracked, stamp, table, failedComparison, type BenchContext, type FailedComparison, type Section } from './lib';
import { finished, reseed, resetAll } from './pg-sync';

const source: LocalPostgres = { name: 'sourceDb', kind: 'postgres', provider: 'local', cluster: 'source' };
const target: LocalPostgres = { name: 'targetDb', kind: 'postgres', provider: 'local', cluster: 'target' };
const resources = { sourceDb: source, targetDb: target };
/** The dispatcher over the local provider: what a worker registers. */
const local = createActivities({ local: localProvider });
const stepBase = {
  phaseIndex: 1,
  retry: { maximumAttempts: 1, initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '30s' },
  timeouts: { startToClose: '60m', heartbeat: '1m' },
};
const dataStep: DataStep = { ...stepBase, id: 'data', title: 'Replicate the shop database', kind: 'data', from: 'sourceDb', to: 'targetDb', verify: true };
const finalizeStep: FinalizeStep = {
  ...stepBase,
  id: 'finalize',
  title: 'Cut over',
  kind: 'finalize',
  resources: ['targetDb'],
  syncedFrom: { targetDb: 'sourceDb' },
  pointOfNoReturn: { gate: 'point-of-no-return', recovery: 'reverse-sync' },
};
const KEYS: Record<string, string> = { customers: 'id', products: 'id', orders: 'id', order_items: 'order_id, line_no', payments: 'id' };

interface Run {
  /** Time spent making the source whole: the reverse sync's two parts, or the dump and restore. */
  ms: number;
  /** How long the target's writers were held back. */
  pauseMs: number;
  rowsCopiedBack?: number;
  /** tiershift: the peak RSS of the process running the reverse sync. */
  peakRssBytes?: number;
  /** Orders the new version wrote after the cutover (before and during the rollback). */
  ordersWritten: number;
  /** Target rows the source lacks (or holds differently) afterwards. */
  missingRows: number;
}

const urls = (ctx: BenchContext) => {
  const s = sandbox(ctx);
  return { src: postgresUrl(s.postgres.source!), dst: postgresUrl(s.postgres.target!) };
};

const env = () => new MockActivityEnvironment({ heartbeatTimeoutMs: 60_000 }, { logger: new DefaultLogger('ERROR') });

/** The new version on the target: an order with a line, `perSecond` times a second, until stopped. */
function newVersionWrites(ctx: BenchContext) {
  let stop = false;
  let written = 0;
  const done = withClient(urls(ctx).dst, async (c) => {
    const customer = (await c.query<{ id: string }>(`insert into customers (email, full_name, country) values ($1, 'V2 Writer', 'NL') returning id`, [`v2-${stamp()}@example.com`])).rows[0]!.id;
    while (!stop) {
      const t0 = now();
      await c.query('begin');
      const order = (await c.query<{ id: string }>(`insert into orders (customer_id, status, total_cents) values ($1, 'pending', 1999) returning id`, [customer])).rows[0]!.id;
      await c.query('insert into order_items (order_id, line_no, product_id, quantity, unit_price_cents) values ($1, 1, 1, 1, 1999)', [order]);
      await c.query('commit');
      written += 1;
      await sleep(Math.max(0, 1000 / ctx.sizes.reverse.writesPerSecond - (now() - t0)));
    }
  });
  // A failed write surfaces when the writer is stopped, not as an unhandled rejection in between.
  done.catch(() => undefined);
  return { stop: async () => ((stop = true), await done, written) };
}

/**
 * Target rows the source lacks or holds differently, by primary key and row checksum, a page of keys at
 * a time on both sides (memory bounded by the page, whatever the tables' size).
 */
async function missingRows(ctx: BenchContext): Promise<number> {
  const { src, dst } = urls(ctx);
  const PAGE = 50_000;
  const setup = "set timezone = 'UTC'; set datestyle = 'ISO, YMD'; set extra_float_digits = 3";
  return withClient(src, (s) =>
    withClient(dst, async (t) => {
      await Promise.all([s.query(setup), t.query(setup)]);
      let missing = 0;
      for (const [table, keys] of Object.entries(KEYS)) {
        const cols = keys.split(', ');
        const keyText = `array[${cols.map((k) => `${k}::text`).join(', ')}]`;
        const marks = (from: number) => `(${cols.map((_, i) => `$${from + i}`).join(', ')})`;
        const page = (c: typeof s, where: string, params: string[], limit = '') =>
          c.query<{ key: string[]; h: string }>(`select ${keyText} as key, md5(t::text) as h from ${table} t ${where} order by ${keys} ${limit}`, params).then((r) => r.rows);
        for (let after: string[] | null = null; ; ) {
          const mine = await page(t, after ? `where (${keys}) > ${marks(1)}` : '', after ?? [], `limit ${PAGE}`);
          if (!mine.length) break;
          const last = mine[mine.length - 1]!.key;
          const theirs = await page(s, after ? `where (${keys}) > ${marks(1)} and (${keys}) <= ${marks(cols.length + 1)}` : `where (${keys}) <= ${marks(1)}`, after ? [...after, ...last] : last);
          const have = new Map(theirs.map((r) => [JSON.stringify(r.key), r.h]));
          for (const r of mine) if (have.get(JSON.stringify(r.key)) !== r.h) missing += 1;
          after = last;
        }
      }
      return missing;
    }),
  );
}

/** Sync, cut over, and let the new version write to the target for a while: where a rollback past the point of no return starts. */
async function crossed(ctx: BenchContext, migrationId: string) {
  await resetAll(ctx);
  await env().run(syncPostgres, { migrationId, step: dataStep, resources } as StepInput<DataStep>);
  await env().run(local.finalizeMigration, { migrationId, step: finalizeStep, resources });
  const writes = newVersionWrites(ctx);
  await sleep(ctx.sizes.reverse.afterCutoverMs);
  return writes;
}

async function viaReverseSync(ctx: BenchContext): Promise<Run> {
  const migrationId = `bench-reverse-${stamp()}`;
  const writes = await crossed(ctx, migrationId);
  const undo = (part: 'start' | 'finish'): UndoInput => ({ migrationId, step: finalizeStep, resources, part });
  let started: StepOutcome;
  let ordersWritten: number;
  const t0 = now();
  let startMs: number;
  // The worker's memory while it copies the target's rows back: this process runs the activity.
  let peakRssBytes = process.memoryUsage().rss;
  const sampler = setInterval(() => (peakRssBytes = Math.max(peakRssBytes, process.memoryUsage().rss)), 200);
  try {
    started = (await env().run(local.undoStep, undo('start'))) as StepOutcome;
    startMs = now() - t0;
    // The rollback moves traffic back to blue and stops v2 in between: it keeps writing until then.
    await sleep(1_000);
  } finally {
    ordersWritten = await writes.stop();
  }
  const t1 = now();
  const finishedOutcome = (await env().run(local.undoStep, undo('finish')).finally(() => clearInterval(sampler))) as StepOutcome;
  return {
    peakRssBytes,
    ms: startMs + (now() - t1),
    pauseMs: Number(finishedOutcome.figures['sourceDb.reverseQuiesceMs']),
    rowsCopiedBack: Number(started.figures['sourceDb.rowsCopiedBack']),
    ordersWritten,
    missingRows: await missingRows(ctx),
  };
}

async function viaDumpRestore(ctx: BenchContext): Promise<Run> {
  const writes = await crossed(ctx, `bench-reverse-dump-${stamp()}`);
  const { src, dst } = urls(ctx);
  const t0 = now();
  let ordersWritten: number;
  try {
    const dump = spawnTracked(findBinary('pg_dump'), ['-Fc', '--no-publications', '--no-subscriptions', '-d', dst], { stdio: ['ignore', 'pipe', 'pipe'] });
    // The cutover made the source read-only for new sessions: a runbook's restore over it lifts that for itself.
    const restore = spawnTracked(findBinary('pg_restore'), ['--clean', '--if-exists', '--no-owner', '--no-privileges', '-d', src], {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: { ...process.env, PGOPTIONS: '-c default_transaction_read_only=off' },
    });
    dump.stdout!.pipe(restore.stdin!);
    await Promise.all([finished(dump, 'pg_dump'), finished(restore, 'pg_restore')]);
  } finally {
    ordersWritten = await writes.stop();
  }
  const elapsed = now() - t0;
  // Losing nothing this way means stopping the writers for the whole copy.
  return { ms: elapsed, pauseMs: elapsed, ordersWritten, missingRows: await missingRows(ctx) };
}

export async function reverseSync(ctx: BenchContext): Promise<Section> {
  const spec = ctx.sizes.reverse;
  ctx.log(`  seeding ${spec.orders} orders`);
  const ds = await reseed(ctx, 'reverse', spec.orders);
  ctx.log(`  ${ds.rows} rows`);
  const runs: Record<'tiershift' | 'dump', Run[]> = { tiershift: [], dump: [] };
  const failedRuns: FailedComparison[] = [];
  try {
    for (let round = 0; round < spec.runs; round++) {
      if (round > 0 && Date.now() > ctx.deadline) break;
      for (const side of ['tiershift', 'dump'] as const) {
        let r: Run;
        const runStarted = Date.now();
        try {
          r = side === 'tiershift' ? await viaReverseSync(ctx) : await viaDumpRestore(ctx);
        } catch (err) {
          // One side failing must not lose the other's figures: it is a row of the failures table.
          if (side === 'tiershift') throw err;
          failedRuns.push(failedComparison(`dump and restore over the source (round ${round + 1})`, Date.now() - runStarted, err));
          ctx.log(`    ${side} failed: ${(err as Error).message}`);
          continue;
        }
        runs[side].push(r);
        ctx.log(`    ${side}: ${secs(r.ms)}, writers held ${ms(r.pauseMs, 0)}, ${r.missingRows} target rows missing on the source (${r.ordersWritten} orders written by v2)`);
      }
    }
  } finally {
    await resetAll(ctx);
    ctx.log(`  restoring the shop database to ${ctx.sizes.seedRows} orders`);
    await reseed(ctx, 'sandbox', ctx.sizes.seedRows);
  }
  const med = (side: keyof typeof runs, f: (r: Run) => number) => median(runs[side].map(f));
  const worst = (side: keyof typeof runs) => (runs[side].length ? Math.max(...runs[side].map((r) => r.missingRows)) : NaN);
  const shortfalls = worst('tiershift') > 0 ? [`Reverse sync: ${worst('tiershift')} target rows were missing on the source after a run.`] : [];
  const rss = Math.max(0, ...runs.tiershift.map((r) => r.peakRssBytes ?? 0));
  if (rss >= 500 * 1024 * 1024) shortfalls.push(`Reverse sync: the worker process peaked at ${mib(rss, 0)}, above the 500 MB goal.`);
  return {
    title: '8. The way back past the point of no return',
    method:
      `The shop database (${int(ds.rows)} rows, ${int(spec.orders)} orders) is replicated to the target and cut over; then the new version writes ${spec.writesPerSecond} orders a second to the target ` +
      `for ${secs(spec.afterCutoverMs, 0)}, and keeps writing while the rollback starts. **tiershift**: the finalize step's undo past its point of no return, run as the rollback runs it: ` +
      `\`start\` (a slot with an exported snapshot on the target, every row the source lacks or holds differently copied back, then a subscription on the source), one more second of writes (while traffic returns to blue and v2 stops), then \`finish\` ` +
      `(the target's writers paused until the source has everything, sequences moved, replication dropped). **Alternative**: \`pg_dump -Fc\` of the target piped into \`pg_restore --clean\` over the source, with the writes going on. ` +
      `Afterwards every target row is looked up on the source by primary key and row checksum. Medians of ${runs.tiershift.length} run(s) each, interleaved.`,
    body: [
      ...table(
        ['', 'tiershift: reverse sync', 'alternative: dump the target, restore over the source'],
        [
          ['time making the source whole (reverse sync start + finish; dump + restore)', secs(med('tiershift', (r) => r.ms)), secs(med('dump', (r) => r.ms))],
          ["target's writers held back", ms(med('tiershift', (r) => r.pauseMs), 0), `not at all, so writes during the copy are lost; ${secs(med('dump', (r) => r.pauseMs))} (the whole copy) to lose none`],
          ['target rows missing on the source afterwards (worst run)', int(worst('tiershift')), int(worst('dump'))],
          ['rows copied back by the backfill (median)', int(med('tiershift', (r) => r.rowsCopiedBack ?? 0)), 'every row (a full copy)'],
          ['peak RSS of the worker process during the reverse sync (median)', mib(med('tiershift', (r) => r.peakRssBytes ?? NaN), 0), 'n/a (pg_dump and pg_restore processes)'],
          ['orders v2 wrote after the cutover (median)', int(med('tiershift', (r) => r.ordersWritten)), int(med('dump', (r) => r.ordersWritten))],
        ],
      ),
      '',
      'The dump and restore also replaces the source wholesale: a row only the source had (written by v1 after the cutover) would be gone; the reverse sync keeps it.',
    ],
    shortfalls,
    failed: failedRuns,
  };
}
