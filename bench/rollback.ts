// 4. Rollback time: green starts failing (fault injected straight into the app) right after a traffic
// step sent it half the users; measured until HAProxy routes 100% to blue again. Beside it: HAProxy's
// own health checks alone, with the same weights and the same fault.
import { startApp } from '../sandbox/app';
import { setServerWeight, originStats } from '../sandbox/haproxy';
import { MAX_WEIGHT } from '../sandbox/haproxy';
import { resetSandbox } from '../sandbox/reset';
import { createWorker } from '../worker/worker';
import { workerIdentityPolicy } from '../activities/identity';
import { JUDGE_EVERY_MS } from '../activities';
import { statusQuery } from '../workflows/shared';
import { type MigrationStatus } from '../contract/status';
import type { LoadResult } from '../client/load';
import { eventually, int, median, now, sandbox, secs, sleep, stamp, startOn, table, type BenchContext, type Section } from './lib';
import { sandboxPlan, sandboxResources } from '../test/support/plans';
import { MIGRATION_QUEUE } from './downtime';
import { dumpRestore } from './pg-sync';
import { describeFailures, originUp, shoppers, weights } from './traffic';

function canaryPlan(id: string, bake: string) {
  return sandboxPlan(
    {
      name: `bench-rollback-${id}`,
      head: `
defaults:
  retry: { maximumAttempts: 3, initialInterval: 1s, backoffCoefficient: 2, maximumInterval: 10s }
  timeouts: { startToClose: 10m, heartbeat: 1m }`,
      resources: sandboxResources('sourceDb', 'targetDb', 'shop', 'front'),
      phases: `
  - data: { from: sourceDb, to: targetDb }
  - app: { resource: shop, version: v2, database: targetDb }
  - traffic:
      resource: front
      analysis: { maxErrorRate: 0.05, minRequests: 3 }
      steps: [ { weight: 50, bake: ${bake} } ]`,
    },
    'bench-rollback.yaml',
  );
}

async function injectFault(ctx: BenchContext, errorRate: number): Promise<void> {
  const green = sandbox(ctx).apps.green;
  if (!green) throw new Error('green is not running: nothing to inject a fault into');
  const res = await fetch(`http://127.0.0.1:${green.port}/admin/fault`, { method: 'POST', body: JSON.stringify({ errorRate }) });
  if (res.status !== 200) throw new Error(`green refused the fault injection: ${res.status} ${await res.text()}`);
}

const allOnBlue = (w: { blue: number; green: number }) => w.blue === MAX_WEIGHT && w.green === 0;

interface Run {
  /** Fault injected -> HAProxy weights 100% blue. */
  toBlueMs: number;
  /** Fault injected -> the migration rolled back completely (green stopped, replication removed). */
  rolledBackMs: number;
  /** When the fault went in, after the shift to 50%. */
  faultAfterShiftMs: number;
  load: LoadResult;
  reason: string;
}

async function tiershiftRun(ctx: BenchContext, bake: string): Promise<Run> {
  await resetSandbox(sandbox(ctx));
  await originUp(ctx, 'blue');
  const id = stamp();
  const plan = canaryPlan(id, bake);
  const load = shoppers(ctx, { readsPerSecond: ctx.sizes.readsPerSecond, writesPerSecond: 0 });
  try {
    const handle = await startOn(ctx.client, plan, MIGRATION_QUEUE, `bench-rollback-${id}`);
    // The moment the traffic step has sent half the users to green (its bake begins).
    const shifted = await eventually(
      () => handle.query(statusQuery),
      (s: MigrationStatus) => s.traffic?.weight === 50 || ['rolled-back', 'aborted', 'completed', 'awaiting-operator'].includes(s.state),
      180_000,
      'the traffic step at 50%',
      25,
    );
    if (shifted.traffic?.weight !== 50) throw new Error(`the migration ended ${shifted.state} before the traffic step: ${JSON.stringify(shifted.failure ?? shifted.errors)}`);
    const shiftedAt = now();
    await injectFault(ctx, 1);
    const faulted = now();
    await eventually(() => weights(ctx), allOnBlue, 120_000, '100% on blue after the fault', 20);
    const toBlueMs = now() - faulted;
    const status = await handle.result();
    const rolledBackMs = now() - faulted;
    if (status.state !== 'rolled-back') throw new Error(`the migration ended ${status.state}, not rolled back`);
    return { toBlueMs, rolledBackMs, faultAfterShiftMs: faulted - shiftedAt, load: (await load.stop()).all, reason: status.rollback?.reason ?? '' };
  } finally {
    await load.stop();
  }
}

interface Alone {
  reached: boolean;
  ms: number;
  load: LoadResult;
  greenStatus: string;
}

/** The same 50/50 split and fault with nothing but HAProxy's health checks (GET /health every second) to react. */
async function haproxyAlone(ctx: BenchContext): Promise<Alone> {
  await resetSandbox(sandbox(ctx));
  await dumpRestore(ctx);
  const s = sandbox(ctx);
  await startApp(s, 'green', { database: 'target', version: 'v2' });
  await originUp(ctx, 'green');
  await setServerWeight(s, 'green', MAX_WEIGHT / 2);
  await setServerWeight(s, 'blue', MAX_WEIGHT / 2);
  const load = shoppers(ctx, { readsPerSecond: ctx.sizes.readsPerSecond, writesPerSecond: 0 });
  try {
    await sleep(1_000);
    await injectFault(ctx, 1);
    const faulted = now();
    let reached = false;
    let greenStatus = '';
    while (now() - faulted < ctx.sizes.haproxyAloneMs) {
      const rows = await originStats(sandbox(ctx));
      const green = rows.find((r) => r.svname === 'green');
      greenStatus = `${green?.status ?? '?'} (check: ${green?.check_status ?? '?'})`;
      if (allOnBlue(await weights(ctx)) || !green?.status.startsWith('UP')) {
        reached = true;
        break;
      }
      await sleep(100);
    }
    return { reached, ms: now() - faulted, load: (await load.stop()).all, greenStatus };
  } finally {
    await load.stop();
    await injectFault(ctx, 0).catch(() => undefined);
    await resetSandbox(sandbox(ctx));
  }
}

/** The issue's goal: green failing -> 100% on blue in under this, whatever the bake's length. */
const GOAL_MS = 5_000;

export async function rollbackTime(ctx: BenchContext): Promise<Section> {
  const worker = await createWorker({ identityPolicy: workerIdentityPolicy({ sandbox: true }), connection: ctx.connection, taskQueue: MIGRATION_QUEUE });
  const runs = new Map<string, Run[]>();
  const failures: string[] = [];
  await worker.runUntil(async () => {
    for (const bake of ctx.sizes.rollbackBakes) {
      for (let r = 0; r < ctx.sizes.rollbackRuns; r++) {
        if (r > 0 && Date.now() > ctx.deadline) break;
        try {
          const run = await tiershiftRun(ctx, bake);
          runs.set(bake, [...(runs.get(bake) ?? []), run]);
          ctx.log(`  ${bake} bake, run ${r + 1}: 100% blue ${secs(run.toBlueMs, 2)} after the fault, rolled back after ${secs(run.rolledBackMs, 2)}`);
        } catch (err) {
          failures.push(`${bake} bake, run ${r + 1}: ${(err as Error).message.split('\n')[0]}`);
          ctx.log(`  ${bake} bake, run ${r + 1} failed: ${(err as Error).message}`);
        }
      }
    }
  });
  await resetSandbox(sandbox(ctx));
  const alone = await haproxyAlone(ctx);
  ctx.log(`  HAProxy alone: ${alone.reached ? `reacted after ${secs(alone.ms)}` : `no reaction within ${secs(alone.ms)}`}`);

  const all = [...runs.values()].flat();
  const shortfalls = failures.map((f) => `Rollback time: ${f}`);
  const rows: (string | number)[][] = [];
  for (const bake of ctx.sizes.rollbackBakes) {
    const rs = runs.get(bake) ?? [];
    if (!rs.length) continue;
    const med = (pick: (r: Run) => number) => median(rs.map(pick));
    const failed = rs.map((r) => r.load.failed);
    rows.push([
      `${bake} bake (${rs.length} run${rs.length > 1 ? 's' : ''}; fault ${secs(med((r) => r.faultAfterShiftMs), 1)} into it)`,
      `**${secs(med((r) => r.toBlueMs), 2)}**`,
      secs(med((r) => r.rolledBackMs), 2),
      `${int(median(failed))} of ${int(median(rs.map((r) => r.load.sent)))} (${describeFailures(rs.at(-1)!.load)})`,
    ]);
    const slowest = Math.max(...rs.map((r) => r.toBlueMs));
    if (slowest >= GOAL_MS) shortfalls.push(`Rollback time (${bake} bake): 100% on blue ${secs(slowest, 2)} after green started failing, above the ${secs(GOAL_MS, 0)} goal.`);
  }
  rows.push([
    'alternative: HAProxy health checks alone (same 50/50 weights, same fault)',
    alone.reached ? `**${secs(alone.ms, 1)}**` : `**never within the ${secs(ctx.sizes.haproxyAloneMs, 0)} watched**: green stayed ${alone.greenStatus}`,
    'nothing is rolled back',
    `${int(alone.load.failed)} of ${int(alone.load.sent)} in ${secs(alone.ms, 0)}, and counting`,
  ]);
  return {
    title: '4. Rollback time',
    method:
      `A migration (data, app, one traffic step to 50%, analysis max error rate 5% over a sliding window of the default 10 s, judged every ${JUDGE_EVERY_MS / 1000} s) runs under ${ctx.sizes.readsPerSecond} order lookups per second through HAProxy, ` +
      `once for each bake length (${ctx.sizes.rollbackBakes.join(', ')}). ` +
      'As soon as the status shows the 50% shift, green is made to fail every request (`POST /admin/fault {"errorRate":1}` straight to green\'s port); from the moment that call returns, ' +
      'HAProxy\'s weights are read through its runtime API every 20 ms until blue has them all. **Alternative**: the same 50/50 weights and the same fault with only HAProxy\'s own health ' +
      `checks (\`GET /health\` every second) to react, watched for ${secs(ctx.sizes.haproxyAloneMs, 0)}. Medians of the runs of each bake.`,
    body: [
      ...table(['bake', 'green starts failing → 100% of traffic on blue', '→ migration rolled back (green stopped, replication dropped)', 'requests failed meanwhile (median)'], rows),
      '',
      'tiershift judges the canary every few seconds during the bake, so its reaction does not depend on the bake\'s length. ' +
        'HAProxy alone never reacts: green\'s `/health` still answers 200 (the database is fine, only the requests fail), so its checks keep it UP and it keeps half of the users. ' +
        `Rollback reason recorded by the migration: "${all.at(-1)?.reason ?? ''}"`,
    ],
    shortfalls,
  };
}
