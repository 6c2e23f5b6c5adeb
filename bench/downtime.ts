// 3. Zero downtime: shoppers through HAProxy for a whole demo-like migration (backup, infra, data,
// app, traffic 10/50/100 with short bakes, finalize) on the real sandbox, beside a big-bang cutover as
// a plain runbook does it (blue stopped and HAProxy switched to green in one go while green starts),
// under the same load.
import { startApp, stopApp } from '../sandbox/app';
import { MAX_WEIGHT, setServerWeight } from '../sandbox/haproxy';
import { resetSandbox } from '../sandbox/reset';
import { createWorker } from '../worker/worker';
import { workerIdentityPolicy } from '../activities/identity';
import type { LoadResult } from '../client/load';
import { completed, int, median, now, pct, sandbox, secs, sleep, stamp, startOn, table, type BenchContext, type Section } from './lib';
import { everySandboxResource, sandboxPlan } from '../test/support/plans';
import { dumpRestore } from './pg-sync';
import { describeColors, describeFailures, originUp, shoppers } from './traffic';

export const MIGRATION_QUEUE = 'bench-migrations';

function demoLikePlan(id: string, bake: string) {
  return sandboxPlan(
    {
      name: `bench-zero-downtime-${id}`,
      head: `
defaults:
  retry: { maximumAttempts: 3, initialInterval: 2s, backoffCoefficient: 2, maximumInterval: 30s }
  timeouts: { startToClose: 30m, heartbeat: 1m }`,
      resources: everySandboxResource({ assetsDr: `assets-dr-${id}`, backups: `backups-${id}` }),
      phases: `
  - backup: { resources: [sourceDb, assets], destination: backups }
  - infra: { resource: targetDb, settings: { max_connections: 250, shared_buffers: 192MB, work_mem: 8MB } }
  - data: { from: sourceDb, to: targetDb }
  - data: { from: assets, to: assetsDr }
  - app: { resource: shop, version: v2, database: targetDb }
  - traffic:
      resource: front
      analysis: { maxErrorRate: 0.01, maxResponseTimeMs: 1000, minRequests: 3 }
      steps:
        - { weight: 10, bake: ${bake} }
        - { weight: 50, bake: ${bake} }
        - { weight: 100, bake: ${bake} }
  - finalize: { resources: [targetDb] }
`,
    },
    'bench-zero-downtime.yaml',
  );
}

interface BigBang {
  load: LoadResult;
  /** From the switch until HAProxy's checks have green UP. */
  switchToUpMs: number;
  windowMs: number;
}

/** One big-bang cutover under load; the target must already hold the data. Leaves green serving. */
async function bigBang(ctx: BenchContext): Promise<BigBang> {
  const load = shoppers(ctx, { readsPerSecond: ctx.sizes.readsPerSecond, writesPerSecond: ctx.sizes.writesPerSecond });
  const t0 = now();
  await sleep(ctx.sizes.bigBangSettleMs);
  const s = sandbox(ctx);
  const switched = now();
  // The runbook's cutover in one go: stop v1, point the front door at v2, start v2.
  await Promise.all([
    stopApp(s, 'blue'),
    (async () => {
      await setServerWeight(s, 'green', MAX_WEIGHT);
      await setServerWeight(s, 'blue', 0);
    })(),
    startApp(s, 'green', { database: 'target', version: 'v2' }),
  ]);
  await originUp(ctx, 'green');
  const switchToUpMs = now() - switched;
  await sleep(ctx.sizes.bigBangSettleMs);
  const { all } = await load.stop();
  return { load: all, switchToUpMs, windowMs: now() - t0 };
}

/** Back to blue serving on the source with green stopped; the target keeps its data. */
async function backToBlue(ctx: BenchContext): Promise<void> {
  const s = sandbox(ctx);
  if (!s.apps.blue) await startApp(s, 'blue', { database: 'source', version: 'v1' });
  await setServerWeight(s, 'blue', MAX_WEIGHT);
  await setServerWeight(s, 'green', 0);
  await stopApp(s, 'green');
  await originUp(ctx, 'blue');
}

export async function zeroDowntime(ctx: BenchContext): Promise<Section> {
  await resetSandbox(sandbox(ctx));
  await originUp(ctx, 'blue');
  const id = stamp();
  const plan = demoLikePlan(id, ctx.sizes.bake);

  // tiershift: the whole migration under load.
  const worker = await createWorker({ identityPolicy: workerIdentityPolicy({ sandbox: true }), connection: ctx.connection, taskQueue: MIGRATION_QUEUE });
  const load = shoppers(ctx, { readsPerSecond: ctx.sizes.readsPerSecond, writesPerSecond: ctx.sizes.writesPerSecond });
  const t0 = now();
  let migration: Awaited<ReturnType<typeof completed>> | undefined;
  let migrationError: unknown;
  try {
    migration = await worker.runUntil(async () => completed(await startOn(ctx.client, plan, MIGRATION_QUEUE, `bench-zero-downtime-${id}`)));
  } catch (err) {
    migrationError = err;
  }
  const migrationMs = now() - t0;
  const { all: tsLoad } = await load.stop();
  if (!migration) throw migrationError;
  ctx.log(`  migration ${secs(migrationMs)}: ${tsLoad.sent} requests, ${tsLoad.failed} failed`);

  // Alternative: the big-bang cutover, after the same data was copied to the target beforehand.
  await resetSandbox(sandbox(ctx));
  await originUp(ctx, 'blue');
  await dumpRestore(ctx);
  const bangs: BigBang[] = [];
  try {
    for (let r = 0; r < ctx.sizes.bigBangRuns; r++) {
      if (r > 0 && Date.now() > ctx.deadline) break;
      bangs.push(await bigBang(ctx));
      ctx.log(`  big bang ${r + 1}: ${bangs.at(-1)!.load.sent} requests, ${bangs.at(-1)!.load.failed} failed, green UP ${secs(bangs.at(-1)!.switchToUpMs)} after the switch`);
      await backToBlue(ctx);
    }
  } finally {
    await backToBlue(ctx).catch(() => undefined);
    await resetSandbox(sandbox(ctx));
  }

  const traffic = migration.steps.filter((s) => s.kind === 'traffic');
  const weightOf = (stepId: string) => {
    const step = plan.steps.find((s) => s.id === stepId);
    return step?.kind === 'traffic' ? step.weight : NaN;
  };
  const medianBang = (pick: (b: BigBang) => number) => median(bangs.map(pick));
  const worst = bangs.reduce((a, b) => (b.load.failed > a.load.failed ? b : a), bangs[0]!);
  const rows: (string | number)[][] = [
    ['runs', '1 migration', `${bangs.length} cutover${bangs.length > 1 ? 's' : ''} (medians)`],
    ['load window', `${secs(migrationMs)} (the whole migration)`, `${secs(medianBang((b) => b.windowMs))} (${secs(ctx.sizes.bigBangSettleMs, 0)} before the switch, until ${secs(ctx.sizes.bigBangSettleMs, 0)} after green is UP)`],
    ['requests sent through HAProxy', int(tsLoad.sent), int(medianBang((b) => b.load.sent))],
    ['**failed requests (goal 0)**', `**${int(tsLoad.failed)}**`, `**${int(medianBang((b) => b.load.failed))}** (worst run ${int(worst.load.failed)}: ${describeFailures(worst.load)})`],
    ['failed share', pct(tsLoad.failed / Math.max(1, tsLoad.sent), 2), pct(medianBang((b) => b.load.failed / Math.max(1, b.load.sent)), 2)],
    ['answered by', describeColors(tsLoad), describeColors(worst.load)],
    ['from the switch until the new version serves', 'no gap: green takes a share only once HAProxy has it UP', secs(medianBang((b) => b.switchToUpMs))],
    ...traffic.map((s) => {
      const share = Number(s.figures['front.observedCanaryShare']);
      const requests = Number(s.figures['front.requests']);
      return [`traffic step at ${weightOf(s.id)}%: green's observed share of the bake window`, `${pct(share)} of the traffic (green served ${int(requests)} requests, error rate ${pct(Number(s.figures['front.errorRate']), 2)})`, '— (0 → 100% at once)'];
    }),
  ];
  const shortfalls: string[] = [];
  if (tsLoad.failed > 0) shortfalls.push(`Zero downtime: ${tsLoad.failed} of ${tsLoad.sent} requests failed during the migration (${describeFailures(tsLoad)}); the goal is 0.`);
  for (const s of traffic) {
    const share = Number(s.figures['front.observedCanaryShare']);
    const want = weightOf(s.id) / 100;
    if (Math.abs(share - want) > 0.05) shortfalls.push(`Zero downtime: at the ${weightOf(s.id)}% step green's observed share was ${pct(share)}, more than 5 points from the configured weight.`);
  }
  return {
    title: '3. Zero downtime',
    method:
      `Shoppers go through HAProxy the whole time: ${ctx.sizes.readsPerSecond} order lookups and ${ctx.sizes.writesPerSecond} new orders per second (client/load.ts \`runLoad\`, ` +
      'loopback, bounded in rate, count and time; a failure is a 5xx or no answer within 15 s). **tiershift**: one migration of a demo-like plan on the real sandbox with one worker: ' +
      `backup (dump, restore proven), infra (target tier settings, restart), data (PostgreSQL replication, blobs), app (v2 green on the target), traffic 10/50/100 with ${ctx.sizes.bake} bakes ` +
      'and analysis, finalize (cutover). No gates, so nothing waits for a person. The observed split is the traffic analysis\' own figure: green\'s share of HAProxy\'s per-origin ' +
      'request counters over each bake window. **Alternative**: a big-bang cutover as a plain runbook does it, with the data already copied to the target (`pg_dump | pg_restore`, ' +
      'outside the window): blue stopped, HAProxy switched to green and green started, all at once, under the same load.',
    body: [
      ...table(['', 'tiershift: demo-like migration', 'alternative: big-bang cutover'], rows),
      '',
      `HAProxy in the sandbox has \`retries 2\` and \`option redispatch\`, which hides some connection failures from the shoppers in both columns; what is left failed for real.`,
    ],
    shortfalls,
  };
}
