// 7. Fleet: K migrations of a small plan at once on one worker (in a child process, so its resident
// memory is read from /proc), on two Temporals in one run: the bench sandbox's dev server, and the real
// server (the cluster: PostgreSQL persistence, mutual TLS) of a second sandbox brought up for it. Beside
// them the way without an orchestrator: one plain-script process per migration, all alive at once.
import type { Client } from '@temporalio/client';
import type { ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PROJECT_ROOT } from '../contract/home';
import { sandboxPlan, sandboxResources } from '../test/support/plans';
import { TEMPORAL_SERVER_VERSION } from '../sandbox/temporal-server-build';
import { completed, connectTo, cpuMsOf, failedComparison, homeEnv, median, mib, now, rssOf, sandbox, sandboxBeside, secs, spawnTracked, stamp, startOn, stopChild, table, treeCpuMsOf, type BenchContext, type FailedComparison, type Section } from './lib';

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

/** One Temporal the fleet runs on: the sandbox whose home the worker child is given, and a client of it. */
interface Server {
  kind: 'dev' | 'cluster';
  label: string;
  home: string;
  client: Client;
  /** Past this time no further K starts on this server (the first always runs). */
  deadline: number;
}

interface FleetResult {
  server: Server['kind'];
  k: number;
  runs: number[];
  idleRss: number;
  peakRss: number;
  /** The Temporal server's resident set, the largest sampled during the runs. */
  serverRss: number;
  /** CPU time over all runs, per migration: the worker process, the Temporal server, and (cluster) the PostgreSQL holding its persistence. */
  workerCpuMs: number;
  serverCpuMs: number;
  pgCpuMs?: number;
}

async function workerFleet(ctx: BenchContext, server: Server, k: number, runs: number): Promise<FleetResult> {
  const plan = smallPlan();
  const taskQueue = `bench-fleet-${k}-${stamp()}`;
  const tsx = pathToFileURL(createRequire(path.join(PROJECT_ROOT, 'package.json')).resolve('tsx')).href;
  // The child finds its Temporal (address, TLS) the way `tiershift worker` does: from the sandbox's home.
  const child = spawnTracked(process.execPath, ['--import', tsx, WORKER_ENTRY], {
    cwd: PROJECT_ROOT,
    env: { ...homeEnv(server.home), BENCH_TASK_QUEUE: taskQueue },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const state = sandbox({ home: server.home });
  const serverPid = state.temporal!.pid;
  // The dev server keeps its SQLite inside its own process; the cluster's persistence is PostgreSQL's work.
  const pgPid = server.kind === 'cluster' ? state.postgres.source?.pid : undefined;
  let sampled = 0;
  let serverRss = 0;
  const sampler = setInterval(() => {
    sampled = Math.max(sampled, rssOf(child.pid!));
    serverRss = Math.max(serverRss, rssOf(serverPid));
  }, 100);
  try {
    await waitForLine(child, 'ready', 180_000);
    // One migration first, so the worker's start-up (its first workflow sandbox) is not counted.
    await completed(await startOn(server.client, plan, taskQueue, `bench-fleet-warmup-${k}-${stamp()}`));
    const idleRss = rssOf(child.pid!);
    const times: number[] = [];
    const cpu0 = { worker: cpuMsOf(child.pid!), server: treeCpuMsOf(serverPid), pg: pgPid ? treeCpuMsOf(pgPid) : 0 };
    for (let run = 0; run < runs; run++) {
      if (run > 0 && Date.now() > server.deadline) break;
      const id = stamp();
      const t0 = now();
      const results: Promise<unknown>[] = [];
      await mapLimited(
        Array.from({ length: k }, (_, i) => i),
        START_CONCURRENCY,
        async (i) => {
          const handle = await startOn(server.client, plan, taskQueue, `bench-fleet-${k}-${id}-${i}`);
          const done = completed(handle);
          done.catch(() => undefined);
          results.push(done);
        },
      );
      await Promise.all(results);
      times.push(now() - t0);
      ctx.log(`    ${server.kind} K=${k} run ${run + 1}: ${secs(times.at(-1)!)}`);
    }
    const peakRss = Math.max(rssOf(child.pid!, 'VmHWM'), sampled);
    const migrations = k * times.length;
    return {
      server: server.kind,
      k,
      runs: times,
      idleRss,
      peakRss,
      serverRss,
      workerCpuMs: (cpuMsOf(child.pid!) - cpu0.worker) / migrations,
      serverCpuMs: (treeCpuMsOf(serverPid) - cpu0.server) / migrations,
      ...(pgPid ? { pgCpuMs: (treeCpuMsOf(pgPid) - cpu0.pg) / migrations } : {}),
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

/** Every K on one server; a K that fails is a row of the Failed table and the next K still runs. */
async function fleetOn(ctx: BenchContext, server: Server, sizes: { k: number; runs: number }[], out: { results: FleetResult[]; skipped: string[]; failed: FailedComparison[] }): Promise<void> {
  let ran = false;
  for (const { k, runs } of sizes) {
    if (ran && Date.now() > server.deadline) {
      out.skipped.push(`K=${k} on the ${server.label}`);
      continue;
    }
    ctx.log(`  fleet of ${k} on one worker, ${server.label}`);
    const t0 = Date.now();
    try {
      out.results.push(await workerFleet(ctx, server, k, runs));
    } catch (err) {
      out.failed.push(failedComparison(`K=${k}, ${server.label}`, Date.now() - t0, err));
      ctx.log(`  fleet of ${k} on the ${server.label} failed: ${(err as Error).message}`);
    }
    ran = true;
  }
}

const SERVER_LABEL = { dev: 'dev server', cluster: 'cluster' } as const;

export async function fleet(ctx: BenchContext): Promise<Section> {
  const sizes = ctx.options?.fleetK
    ? ctx.options.fleetK.map((k) => ({ k, runs: ctx.sizes.fleet.find((f) => f.k === k)?.runs ?? 1 }))
    : ctx.sizes.fleet;
  const out = { results: [] as FleetResult[], skipped: [] as string[], failed: [] as FailedComparison[] };
  // Each server gets half of the time budget; the cluster's half includes bringing its sandbox up.
  const start = Date.now();
  const half = start + (ctx.deadline - start) / 2;
  await fleetOn(ctx, { kind: 'dev', label: SERVER_LABEL.dev, home: ctx.home, client: ctx.client, deadline: half }, sizes, out);

  let clusterUpMs: number | undefined;
  const t0 = Date.now();
  try {
    ctx.log(`  bringing up a second sandbox with the Temporal cluster (${TEMPORAL_SERVER_VERSION}, PostgreSQL, mutual TLS)`);
    const beside = await sandboxBeside(ctx, 'cluster');
    try {
      clusterUpMs = Date.now() - t0;
      const { client, close } = await connectTo(beside.home);
      try {
        await fleetOn(ctx, { kind: 'cluster', label: SERVER_LABEL.cluster, home: beside.home, client, deadline: Math.max(ctx.deadline, Date.now()) }, sizes, out);
      } finally {
        await close();
      }
    } finally {
      // Down before the next benchmark, which must not share the CPU with a server it does not use.
      await beside.down();
    }
  } catch (err) {
    out.failed.push(failedComparison('the cluster (its sandbox or its connection)', Date.now() - t0, err));
    ctx.log(`  the cluster side failed: ${(err as Error).message}`);
  }

  const scripts: ScriptResult[] = [];
  for (const { k } of sizes) {
    if (k > ctx.sizes.scriptFleetMaxK) continue;
    ctx.log(`  ${k} plain-script processes`);
    scripts.push(await scriptFleet(k));
  }
  const largest = scripts.at(-1);

  const rows = (['dev', 'cluster'] as const).flatMap((kind) =>
    sizes.map(({ k }) => {
      const r = out.results.find((x) => x.server === kind && x.k === k);
      const failed = out.failed.some((f) => f.what === `K=${k}, ${SERVER_LABEL[kind]}` || (kind === 'cluster' && f.what.startsWith('the cluster')));
      const figures = r
        ? [
            `${secs(median(r.runs))} (${r.runs.length} run${r.runs.length > 1 ? 's' : ''})`,
            `${(k / (median(r.runs) / 1000)).toFixed(1)}/s`,
            `${r.workerCpuMs.toFixed(0)} ms / ${r.serverCpuMs.toFixed(0)} ms / ${r.pgCpuMs === undefined ? '—' : `${r.pgCpuMs.toFixed(0)} ms`}`,
            mib(r.peakRss, 0),
            mib(r.idleRss, 0),
            mib(r.serverRss, 0),
          ]
        : [failed ? 'failed (see Failed)' : 'not run (time budget)', '—', '—', '—', '—', '—'];
      return [SERVER_LABEL[kind], String(k), ...figures];
    }),
  );
  const scriptRows = sizes.map(({ k }) => {
    const s = scripts.find((x) => x.k === k);
    return [
      String(k),
      ...(s
        ? [secs(s.ms), mib(s.totalRss, 0)]
        : largest
          ? ['not run', `≈ ${mib(k * largest.perProcess, 0)} (estimated: ${k} × ${mib(largest.perProcess, 0)})`]
          : ['not run', '—']),
    ];
  });
  return {
    title: '7. Fleet',
    method:
      'K migrations of a three-step plan (check, data, finalize; no-op activities) started at once (at most 50 start calls in flight) on one worker with default options, ' +
      'which runs in a child process; completion is from the first start call to the last result. The same K run on two Temporals, one after the other: ' +
      '**dev server**, the bench sandbox\'s `temporal server start-dev` (one process, SQLite file, plain TCP, no authorization); ' +
      `**cluster**, the real Temporal server ${TEMPORAL_SERVER_VERSION} (\`tiershift sandbox up --temporal cluster\` in a second sandbox home: frontend, history, matching and worker services in one process, ` +
      'PostgreSQL persistence and SQL visibility on that sandbox\'s source cluster with durable commits, 4 history shards, mutual TLS). The client and the worker reach each through ' +
      'the project\'s own connection resolution (the sandbox home\'s state; contract/connection.ts), as the CLI and `tiershift worker` do. ' +
      'CPU is per migration over the measured runs: the worker process, the Temporal server process (its pid from the sandbox state) and, for the cluster, every process of ' +
      'the PostgreSQL holding its persistence (the postmaster, its backends, and those it has reaped), which the dev server does inside its own process. ' +
      'Worker memory is its resident set read from `/proc/<pid>/status` ' +
      '(VmHWM, the kernel\'s peak, checked against samples every 100 ms), so it covers Node, the Rust core and the workflow isolates; "idle" is after one warm-up migration; ' +
      'the server\'s is the largest resident set sampled every 100 ms. ' +
      'The alternative is the orchestrator-less way: one plain-script process per migration (`node -e`, the same three steps), all alive at once as they would be for the length ' +
      `of a real migration; its memory is the sum of their resident sets. Only K ≤ ${ctx.sizes.scriptFleetMaxK} processes are started; larger K are estimated from the per-process median.`,
    body: [
      ...table(
        ['Temporal', 'K', 'tiershift: completion (median)', 'migrations/s', 'CPU per migration: worker / Temporal server / its PostgreSQL', 'worker peak RSS', 'worker RSS after warm-up', 'Temporal server peak RSS'],
        rows,
      ),
      '',
      ...table(['K', 'alternative: K script processes, all done', 'their total RSS'], scriptRows),
      '',
      'The worker\'s resident set includes everything its process loads (the workflow bundle and its V8 isolates, the Rust core, tsx, both providers\' SDKs); ' +
        'a plain-script process here loads nothing, so a real runbook script importing the same SDKs would weigh more. Completion time is bounded by the Temporal server ' +
        '(and, for the cluster, its PostgreSQL, all on the same 2 CPUs) as much as by the worker: the CPU columns show where the time went. ' +
        (clusterUpMs !== undefined ? `The cluster's sandbox came up in ${secs(clusterUpMs)} (not counted). ` : '') +
        'Which Temporal to use when: the README\'s "Which Temporal to use when".',
    ],
    shortfalls: out.skipped.length ? [`Fleet ${out.skipped.join(', ')} was not run: the time budget was spent.`] : [],
    failed: out.failed,
  };
}
