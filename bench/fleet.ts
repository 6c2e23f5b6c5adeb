// 7. Fleet: K migrations of a small plan at once on one worker (in a child process, so its resident
// memory is read from /proc), beside the way without an orchestrator: one plain-script process per
// migration, all alive at once.
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PROJECT_ROOT } from '../contract/home';
import { sandboxPlan, sandboxResources } from '../test/support/plans';
import { completed, cpuMsOf, median, mib, now, rssOf, sandbox, secs, spawnTracked, stamp, startOn, stopChild, table, type BenchContext, type Section } from './lib';

const WORKER_ENTRY = fileURLToPath(new URL('./fleet-worker.ts', import.meta.url));
const START_CONCURRENCY = 50;

const smallPlan = () =>
  sandboxPlan({
    name: 'bench-fleet',
    resources: sandboxResources('sourceDb', 'targetDb'),
    phases: `
  - check: { resources: [sourceDb] }
  - data: { from: sourceDb, to: targetDb }
  - finalize: { resources: [targetDb] }`,
  });

/** What one plain-script migration process does: the same three steps, then it waits to be told to exit. */
const SCRIPT = `
(async () => {
  for (const step of ['check', 'data', 'finalize']) await new Promise((resolve) => setImmediate(resolve, step));
  process.stdout.write('done\\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
})();
`;

async function mapLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

function waitForLine(child: ChildProcess, line: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the fleet worker did not say "${line}" within ${timeoutMs} ms: ${out.slice(-500)}`)), timeoutMs);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes(line)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the fleet worker exited (code ${code}) before saying "${line}": ${out.slice(-500)}`));
    });
  });
}

interface FleetResult {
  k: number;
  runs: number[];
  idleRss: number;
  peakRss: number;
  /** CPU time over all runs of the worker process and of the Temporal dev server, per migration. */
  workerCpuMs: number;
  serverCpuMs: number;
}

async function workerFleet(ctx: BenchContext, k: number, runs: number): Promise<FleetResult> {
  const plan = smallPlan();
  const taskQueue = `bench-fleet-${k}-${stamp()}`;
  const tsx = pathToFileURL(createRequire(path.join(PROJECT_ROOT, 'package.json')).resolve('tsx')).href;
  const child = spawnTracked(process.execPath, ['--import', tsx, WORKER_ENTRY], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, BENCH_TEMPORAL_ADDRESS: ctx.address, BENCH_TASK_QUEUE: taskQueue },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let sampled = 0;
  const sampler = setInterval(() => (sampled = Math.max(sampled, rssOf(child.pid!))), 100);
  try {
    await waitForLine(child, 'ready', 180_000);
    // One migration first, so the worker's start-up (its first workflow sandbox) is not counted.
    await completed(await startOn(ctx.client, plan, taskQueue, `bench-fleet-warmup-${k}-${stamp()}`));
    const idleRss = rssOf(child.pid!);
    const times: number[] = [];
    const serverPid = sandbox(ctx).temporal!.pid;
    const cpu0 = { worker: cpuMsOf(child.pid!), server: cpuMsOf(serverPid) };
    for (let run = 0; run < runs; run++) {
      if (run > 0 && Date.now() > ctx.deadline) break;
      const id = stamp();
      const t0 = now();
      const results: Promise<unknown>[] = [];
      await mapLimited(
        Array.from({ length: k }, (_, i) => i),
        START_CONCURRENCY,
        async (i) => {
          const handle = await startOn(ctx.client, plan, taskQueue, `bench-fleet-${k}-${id}-${i}`);
          const done = completed(handle);
          done.catch(() => undefined);
          results.push(done);
        },
      );
      await Promise.all(results);
      times.push(now() - t0);
      ctx.log(`    K=${k} run ${run + 1}: ${secs(times.at(-1)!)}`);
    }
    const peakRss = Math.max(rssOf(child.pid!, 'VmHWM'), sampled);
    const migrations = k * times.length;
    return {
      k,
      runs: times,
      idleRss,
      peakRss,
      workerCpuMs: (cpuMsOf(child.pid!) - cpu0.worker) / migrations,
      serverCpuMs: (cpuMsOf(serverPid) - cpu0.server) / migrations,
    };
  } finally {
    clearInterval(sampler);
    await stopChild(child, 30_000);
  }
}

interface ScriptResult {
  k: number;
  ms: number;
  totalRss: number;
  perProcess: number;
}

/** K plain-script processes at once; memory is the sum of their resident sets while all are alive. */
async function scriptFleet(k: number): Promise<ScriptResult> {
  const t0 = now();
  const children: ChildProcess[] = [];
  let done = 0;
  let lastDone = t0;
  const allDone = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${k - done} of ${k} script processes did not finish within 120 s`)), 120_000);
    for (let i = 0; i < k; i++) {
      const child = spawnTracked(process.execPath, ['-e', SCRIPT], { stdio: ['pipe', 'pipe', 'ignore'] });
      children.push(child);
      child.stdout!.once('data', () => {
        lastDone = now();
        if (++done === k) {
          clearTimeout(timer);
          resolve();
        }
      });
    }
  });
  try {
    await allDone;
    const rss = children.map((c) => rssOf(c.pid!));
    return { k, ms: lastDone - t0, totalRss: rss.reduce((a, b) => a + b, 0), perProcess: median(rss) };
  } finally {
    for (const c of children) c.stdin?.end();
    await Promise.all(children.map((c) => stopChild(c, 5_000)));
  }
}

export async function fleet(ctx: BenchContext): Promise<Section> {
  const results: FleetResult[] = [];
  const skipped: number[] = [];
  for (const { k, runs } of ctx.sizes.fleet) {
    if (results.length && Date.now() > ctx.deadline) {
      skipped.push(k);
      continue;
    }
    ctx.log(`  fleet of ${k} on one worker`);
    results.push(await workerFleet(ctx, k, runs));
  }
  const scripts: ScriptResult[] = [];
  for (const { k } of ctx.sizes.fleet) {
    if (k > ctx.sizes.scriptFleetMaxK) continue;
    ctx.log(`  ${k} plain-script processes`);
    scripts.push(await scriptFleet(k));
  }
  const largest = scripts.at(-1);

  const rows = ctx.sizes.fleet.map(({ k }) => {
    const r = results.find((x) => x.k === k);
    const s = scripts.find((x) => x.k === k);
    const tiershift = r
      ? [
          `${secs(median(r.runs))} (${r.runs.length} run${r.runs.length > 1 ? 's' : ''})`,
          `${(k / (median(r.runs) / 1000)).toFixed(1)}/s`,
          `${r.workerCpuMs.toFixed(0)} ms / ${r.serverCpuMs.toFixed(0)} ms`,
          mib(r.peakRss, 0),
          mib(r.idleRss, 0),
        ]
      : ['not run (time budget)', '—', '—', '—', '—'];
    const script = s
      ? [secs(s.ms), mib(s.totalRss, 0)]
      : largest
        ? ['not run', `≈ ${mib(k * largest.perProcess, 0)} (estimated: ${k} × ${mib(largest.perProcess, 0)})`]
        : ['not run', '—'];
    return [String(k), ...tiershift, ...script];
  });
  return {
    title: '7. Fleet',
    method:
      'K migrations of a three-step plan (check, data, finalize; no-op activities) started at once (at most 50 start calls in flight) on one worker with default options, ' +
      'which runs in a child process; completion is from the first start call to the last result. Worker memory is its resident set read from `/proc/<pid>/status` ' +
      '(VmHWM, the kernel\'s peak, checked against samples every 100 ms), so it covers Node, the Rust core and the workflow isolates; "idle" is after one warm-up migration. ' +
      'The alternative is the orchestrator-less way: one plain-script process per migration (`node -e`, the same three steps), all alive at once as they would be for the length ' +
      `of a real migration; its memory is the sum of their resident sets. Only K ≤ ${ctx.sizes.scriptFleetMaxK} processes are started; larger K are estimated from the per-process median.`,
    body: [
      ...table(
      ['K', 'tiershift: completion (median)', 'migrations/s', 'CPU per migration: worker / Temporal server', 'worker peak RSS', 'worker RSS after warm-up', 'alternative: K script processes, all done', 'their total RSS'],
        rows,
      ),
      '',
      'The worker\'s resident set includes everything its process loads (the workflow bundle and its V8 isolates, the Rust core, tsx, both providers\' SDKs); ' +
        'a plain-script process here loads nothing, so a real runbook script importing the same SDKs would weigh more. Completion time is bounded by the dev server ' +
        '(SQLite, on the same 2 CPUs) as much as by the worker: the CPU column shows where the time went.',
    ],
    shortfalls: skipped.length ? [`Fleet K=${skipped.join(', ')} was not run: the time budget was spent.`] : [],
  };
}
