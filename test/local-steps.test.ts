// Runbook steps that are not cloud calls, on the sandbox's real PostgreSQL, HAProxy, app and worker
// processes: a sql step's concurrent index build cut off mid-build and resumed, a sql undo run by a
// rollback that a verify step's breached p95 started, and a run step's command never run twice after
// its worker was killed.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { createActivities } from '../activities';
import { localProvider } from '../activities/local';
import { withClient } from '../activities/local/postgres';
import { migrationStatus, resumeMigration, rollbackMigration, startMigration } from '../client/migrations';
import { postgresUrl } from '../contract/home';
import type { MigrationStatus } from '../contract/status';
import type { RunStep, SqlStep } from '../plan/types';
import { markerFile } from '../activities/command';
import { spawnWorker } from './support/cli';
import { migrationSuite, runActivity, uniqueName } from './support/local-ops';
import { sandboxPlan, sandboxResources } from './support/plans';
import { eventually, startWorker } from './support/temporal';
import { shoppers } from './support/load';
import { approveGate } from '../client/migrations';
import { parsePlan } from '../plan/load';

const HEAVY = 240_000;
/** Rows of the table whose index build a worker is killed in: a build of a few seconds on the sandbox. */
const KILL_ROWS = 2_000_000;
const suite = migrationSuite();
const sourceUrl = () => postgresUrl(suite.state.postgres.source!);
const activities = createActivities({ local: localProvider });

/** The valid flag and the relation id of an index, or undefined when there is none. */
const indexState = (name: string) =>
  withClient(sourceUrl(), async (c) => {
    const { rows } = await c.query<{ valid: boolean; oid: number }>(
      'select i.indisvalid as valid, x.oid::int as oid from pg_index i join pg_class x on x.oid = i.indexrelid where x.relname = $1',
      [name],
    );
    return rows[0];
  });

describe('a sql step', () => {
  it('resumes a concurrent index build cut off in the middle: the invalid index is dropped and built again, a valid one is kept', async () => {
    const table = uniqueName('cic').replace(/-/g, '_');
    const index = `${table}_created_at`;
    await withClient(sourceUrl(), (c) =>
      c.query(`create table ${table} (id bigint primary key, created_at timestamptz not null);
               insert into ${table} select g, now() - g * interval '1 second' from generate_series(1, 50000) g`),
    );
    const plan = sandboxPlan({
      name: uniqueName('cic'),
      resources: sandboxResources('sourceDb'),
      phases: `  - sql: { resource: sourceDb, statements: ["create index concurrently ${index} on ${table} (created_at)"] }`,
    });
    const step = plan.steps[0] as SqlStep;
    const input = (migrationId: string) => ({ migrationId, runId: 'run-1', step, resources: plan.resources });

    // A writer holds the table: the build records its (invalid) index, then waits for the writer. There
    // the build is cut off, as a crash of its server process would: the index stays behind, invalid.
    await withClient(sourceUrl(), async (writer) => {
      await writer.query(`begin; lock table ${table} in row exclusive mode`);
      const attempt = runActivity(activities.runSql, [input('migration-cic')]).then(
        () => undefined,
        (err: Error) => err,
      );
      await eventually(() => indexState(index), (s) => s !== undefined, 30_000);
      await withClient(sourceUrl(), (c) => c.query(`select pg_terminate_backend(pid) from pg_stat_activity where query ilike 'create index concurrently ${index}%'`));
      const failed = await attempt;
      expect(failed?.message).toMatch(/statement 1 of 1 on sourceDb \("create index concurrently .*"\) failed: terminating connection/);
      await writer.query('commit');
    });
    const left = await indexState(index);
    expect(left?.valid).toBe(false);

    // The retry finds the invalid index, drops it and builds it again.
    const retried = await runActivity(activities.runSql, [input('migration-cic')]);
    expect(retried.result.summary).toMatch(/1 statements run, 1 invalid index rebuilt/);
    expect(retried.result.figures['sql.do.indexesRebuilt']).toBe(1);
    const rebuilt = await indexState(index);
    expect(rebuilt?.valid).toBe(true);
    expect(rebuilt?.oid).not.toBe(left?.oid);

    // Another migration running the same statement keeps the valid index as it is.
    const again = await runActivity(activities.runSql, [input('migration-cic-2')]);
    expect(again.result.figures['sql.do.indexesKept']).toBe(1);
    expect((await indexState(index))?.oid).toBe(rebuilt?.oid);
    await withClient(sourceUrl(), (c) => c.query(`drop table ${table}`));
  }, HEAVY);
});

describe('a sql step whose worker is killed', () => {
  const workers: ReturnType<typeof spawnWorker>[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
  }, HEAVY);

  it('resumes a concurrent index build its worker was SIGKILLed in the middle of: the index ends valid, once, and the step completes', async () => {
    const table = uniqueName('kill').replace(/-/g, '_');
    const index = `${table}_created_at`;
    // Enough rows, in random order, that the build's table scan and sort take seconds: the kill lands in it.
    await withClient(sourceUrl(), (c) =>
      c.query(`create table ${table} (id bigint primary key, created_at timestamptz not null);
               insert into ${table} select g, now() - random() * interval '3 years' from generate_series(1, ${KILL_ROWS}) g;
               analyze ${table}`),
    );
    const plan = sandboxPlan({
      name: uniqueName('kill'),
      resources: sandboxResources('sourceDb'),
      phases: `  - sql: { resource: sourceDb, statements: ["create index concurrently ${index} on ${table} (created_at)"], timeouts: { heartbeat: 3s } }`,
    });
    const first = spawnWorker({ TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address });
    workers.push(first);
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      // The build's session, in pg_stat_progress_create_index's "building index" phases (scanning the
      // table, sorting, loading the tree): the worker is killed there, not while the build waits to start.
      const building = await withClient(sourceUrl(), async (c) => {
        for (const deadline = Date.now() + 120_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 20))) {
          const { rows } = await c.query<{ pid: number; phase: string }>(
            `select a.pid, p.phase from pg_stat_activity a join pg_stat_progress_create_index p using (pid)
              where a.state = 'active' and a.query ilike $1 and p.phase like 'building index%'`,
            [`create index concurrently ${index} %`],
          );
          if (rows[0]) return rows[0];
        }
        throw new Error(`the build of ${index} was not seen building within 2 minutes`);
      });
      first.child.kill('SIGKILL');
      // The server ends the build of the vanished worker (client_connection_check_interval): its index is left invalid.
      const left = await eventually(
        () => withClient(sourceUrl(), async (c) => ({ running: (await c.query('select 1 from pg_stat_activity where pid = $1', [building.pid])).rowCount, index: await indexState(index) })),
        (s) => s.running === 0,
        30_000,
      );
      expect(left.index?.valid).toBe(false);

      // A new worker takes the step up once the lost attempt's heartbeat times out: it drops the invalid index and builds it again.
      const { stop } = await startWorker({ connection: suite.temporal.connection });
      let status: MigrationStatus;
      try {
        status = (await Promise.race([
          handle.result(),
          new Promise((_, reject) => setTimeout(() => reject(new Error('the resumed migration did not end within 3 minutes')), 180_000)),
        ])) as MigrationStatus;
      } finally {
        await stop();
      }
      expect(status.state, JSON.stringify(status.failure ?? status.errors)).toBe('completed');
      const sql = status.steps.find((x) => x.kind === 'sql')!;
      expect(sql.state).toBe('done');
      expect(sql.figures['sql.do.indexesRebuilt']).toBe(1);
      const indexes = await withClient(sourceUrl(), async (c) =>
        (await c.query<{ name: string; valid: boolean }>(
          `select x.relname as name, i.indisvalid and i.indisready as valid from pg_index i join pg_class x on x.oid = i.indexrelid
            where i.indrelid = $1::regclass and not i.indisprimary`,
          [table],
        )).rows,
      );
      expect(indexes).toEqual([{ name: index, valid: true }]);
      // Nothing was left half-done by the killed attempt: no build still running, no leftover invalid index.
      const stray = await withClient(sourceUrl(), async (c) => (await c.query('select count(*)::int as n from pg_stat_progress_create_index')).rows[0].n);
      expect(stray).toBe(0);
    } finally {
      await withClient(sourceUrl(), (c) => c.query(`drop table if exists ${table}`));
    }
  }, HEAVY);
});

describe('a sql step in a transaction', () => {
  it('commits its statements together or not at all, and a retry skips a group that committed', async () => {
    const table = uniqueName('tx').replace(/-/g, '_');
    const exists = () => withClient(sourceUrl(), async (c) => (await c.query('select to_regclass($1) as t', [table])).rows[0].t !== null);
    const step = (statements: string[]) => {
      const plan = sandboxPlan({ name: uniqueName('tx'), resources: sandboxResources('sourceDb'), phases: `  - sql: { resource: sourceDb, statements: ${JSON.stringify(statements)} }` });
      return { migrationId: 'migration-tx', runId: uniqueName('run'), step: plan.steps[0] as SqlStep, resources: plan.resources };
    };
    const broken = await runActivity(activities.runSql, [step([`create table ${table} (id int primary key)`, 'insert into no_such_table values (1)'])]).then(
      () => undefined,
      (err: Error) => err,
    );
    expect(broken?.message).toMatch(/statement 2 of 2 on sourceDb \("insert into no_such_table values \(1\)"\) failed: relation "no_such_table" does not exist; fix the statement in the plan, or roll back/);
    expect(await exists()).toBe(false);

    const good = step([`create table ${table} (id int primary key)`, `insert into ${table} values (1)`]);
    expect((await runActivity(activities.runSql, [good])).result.summary).toBe('sourceDb: 2 statements run');
    // The same step again (a retry after a lost result): the journal says it committed; nothing runs twice.
    expect((await runActivity(activities.runSql, [good])).result.summary).toBe('sourceDb: 0 statements run, 2 already applied');
    await withClient(sourceUrl(), (c) => c.query(`drop table ${table}`));
  }, HEAVY);
});

describe('a verify step', () => {
  it('rolls back when its load test breaches p95, and the rollback runs the sql step\'s undo', async () => {
    const table = uniqueName('undo').replace(/-/g, '_');
    const plan = sandboxPlan({
      name: uniqueName('p95'),
      head: 'defaults: { retry: { maximumAttempts: 1 }, timeouts: { startToClose: 5m, heartbeat: 30s } }',
      resources: sandboxResources('sourceDb', 'front'),
      phases: `
  - sql: { resource: sourceDb, statements: ["create table ${table} (id int primary key)"], undo: { statements: ["drop table ${table}"] } }
  - verify: { resource: front, checks: [ { url: /health, status: 200 } ], load: { url: /api/orders/1, ratePerSecond: 20, duration: 4s, p95Ms: 300, maxErrorRate: 1 } }`,
    });
    const exists = () => withClient(sourceUrl(), async (c) => (await c.query('select to_regclass($1) as t', [table])).rows[0].t !== null);
    // The shop's database turns slow: its orders table is locked for 0.6 s at a time, over and over.
    let slow = true;
    const slowness = withClient(sourceUrl(), async (c) => {
      while (slow) await c.query(`begin; lock table orders in access exclusive mode; select pg_sleep(0.6); commit;`);
    });
    const { stop } = await startWorker({ connection: suite.temporal.connection });
    let status: MigrationStatus;
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      // The sql step ran before the verification.
      await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (s) => s.steps[0]!.state === 'done', 60_000);
      expect(await exists()).toBe(true);
      status = (await handle.result()) as MigrationStatus;
    } finally {
      slow = false;
      await slowness;
      await stop();
    }
    expect(status.state).toBe('rolled-back');
    expect(status.rollback?.trigger).toBe('analysis');
    expect(status.rollback?.reason).toMatch(/the load test's p95 was \d+ ms, above 300 ms/);
    const verify = status.steps.find((s) => s.kind === 'verify')!;
    // The figures stay as the evidence of why.
    expect(Number(verify.figures['load.p95Ms'])).toBeGreaterThan(300);
    // Measured by autocannon (activities/load-test.ts): its answers by status class, its errors and
    // timeouts, and the p99 of the histogram, over 4 s at 20/s.
    expect(verify.figures).toHaveProperty('load.timeouts');
    expect(Number(verify.figures['load.p99Ms'])).toBeGreaterThanOrEqual(Number(verify.figures['load.p95Ms']));
    const answered = ['1xx', '2xx', '3xx', '4xx', '5xx'].reduce((n, cls) => n + Number(verify.figures[`load.${cls}`] ?? 0), 0);
    expect(answered + Number(verify.figures['load.errors'])).toBe(verify.figures['load.requests']);
    expect(Number(verify.figures['load.requests'])).toBeLessThanOrEqual(80);
    expect(verify.figures['check1.status']).toBe(200);
    expect(status.steps.find((s) => s.kind === 'sql')!.state).toBe('compensated');
    expect(await exists()).toBe(false);
  }, HEAVY);
});

describe('a run step', () => {
  const workers: ReturnType<typeof spawnWorker>[] = [];
  afterEach(async () => {
    await Promise.all(workers.map((w) => w.stop()));
  }, HEAVY);

  it('passes only its secret references and PATH-like variables, masks secrets in its output, judges the exit code and stops it at its timeout', async () => {
    process.env.P22_STEP_TOKEN = 'tok-5ecret-value';
    process.env.P22_WORKER_ONLY = 'worker-secret';
    try {
      const script = "console.log('token=' + process.env.TOKEN); console.log('worker=' + (process.env.P22_WORKER_ONLY ?? 'absent')); process.exit(3)";
      const plan = sandboxPlan({
        name: uniqueName('exit'),
        resources: sandboxResources('sourceDb'),
        phases: `
  - run: { command: [${JSON.stringify(process.execPath)}, -e, ${JSON.stringify(script)}], env: { TOKEN: { env: P22_STEP_TOKEN } }, rerunnable: true }
  - run: { command: [${JSON.stringify(process.execPath)}, -e, "setTimeout(() => {}, 60000)"], timeout: 1s, rerunnable: true }`,
      });
      const input = (i: number) => ({ migrationId: 'migration-exit', runId: 'r', step: plan.steps[i] as never, resources: plan.resources });
      const beats: unknown[] = [];
      const failed = await runActivity(activities.runCommand, [input(0)], { onHeartbeat: (d) => beats.push(d) }).then(
        () => undefined,
        (err: Error) => err,
      );
      expect(failed?.message).toMatch(/exited 3; last lines:\ntoken=\*\*\*\nworker=absent$/);
      expect(failed?.message).not.toContain('tok-5ecret-value');
      // Its output streamed into the heartbeat as it came, masked too.
      expect(beats.some((d) => (d as { run?: { tail?: string } }).run?.tail?.includes('token=***'))).toBe(true);
      expect(JSON.stringify(beats)).not.toContain('tok-5ecret-value');
      const started = Date.now();
      const stopped = await runActivity(activities.runCommand, [input(1)]).then(
        () => undefined,
        (err: Error) => err,
      );
      expect(stopped?.message).toMatch(/did not finish within 1s and was stopped/);
      expect(Date.now() - started).toBeLessThan(15_000);
      // A command that never started leaves no marker behind: a resume may run it once it exists.
      const missing = sandboxPlan({ name: uniqueName('missing'), resources: sandboxResources('sourceDb'), phases: '  - run: { command: [/nonexistent/p22-tool] }' });
      const missingInput = { migrationId: 'migration-missing', runId: 'r', step: missing.steps[0] as RunStep, resources: missing.resources };
      const notStarted = await runActivity(activities.runCommand, [missingInput]).then(
        () => undefined,
        (err: Error) => err,
      );
      expect(notStarted?.message).toMatch(/could not start \/nonexistent\/p22-tool: spawn \/nonexistent\/p22-tool ENOENT; check the command's path/);
      expect(existsSync(markerFile(missingInput))).toBe(false);
    } finally {
      delete process.env.P22_STEP_TOKEN;
      delete process.env.P22_WORKER_ONLY;
    }
  }, HEAVY);

  it('does not run its command a second time after the worker running it was killed', async () => {
    const file = path.join(tmpdir(), `${uniqueName('ran')}.log`);
    // Appends a line per run, then keeps working long enough for the worker to be killed under it.
    const script = "require('fs').appendFileSync(process.argv[1], 'ran\\n'); setTimeout(() => {}, 3000)";
    const plan = sandboxPlan({
      name: uniqueName('once'),
      resources: sandboxResources('sourceDb'),
      phases: `  - run: { command: [${JSON.stringify(process.execPath)}, -e, ${JSON.stringify(script)}, ${JSON.stringify(file)}], timeouts: { heartbeat: 2s } }`,
    });
    const lines = () => {
      try {
        return readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
      } catch {
        return 0;
      }
    };
    try {
      const first = spawnWorker({ TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address });
      workers.push(first);
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      await eventually(async () => lines(), (n) => n === 1, 60_000);
      first.child.kill('SIGKILL');

      const { stop } = await startWorker({ connection: suite.temporal.connection });
      try {
        const status = () => migrationStatus(suite.temporal.client, handle.workflowId);
        // The lost attempt times out on its heartbeat; the operator resumes, and the new attempt refuses.
        await eventually(status, (s) => s.state === 'awaiting-operator', 60_000);
        await resumeMigration(suite.temporal.client, handle.workflowId, 'alice');
        const refused = await eventually(status, (s) => s.state === 'awaiting-operator' && /stopped before it reported an exit/.test(s.failure?.error ?? ''), 60_000);
        expect(refused.failure?.error).toMatch(/was started at .* by an attempt that stopped before it reported an exit \(the worker was killed or lost\); it runs at most once per migration, so check what it did, then delete .*\.json and resume/);
        // The killed worker's command finished on its own; nothing ran it again.
        await new Promise((r) => setTimeout(r, 3_500));
        expect(lines()).toBe(1);
        await rollbackMigration(suite.temporal.client, handle.workflowId, 'alice', 'test ends');
        expect(((await handle.result()) as MigrationStatus).state).toBe('rolled-back');
      } finally {
        await stop();
      }
    } finally {
      rmSync(file, { force: true });
    }
  }, HEAVY);
});

describe('the seed 002 twin', () => {
  it('completes with its indexes on both clusters, the cache warm-up and the validation before go-live, failing no shopper', async () => {
    // The shipped plan as a rehearsal: the same phases, decisions by typed name.
    // Its 20 s bakes are halved, and twice the shoppers keep what each canary step sees (the plan's
    // minRequests: 20 at 10%) as it is: half a minute of the suite's waiting, and no step left out.
    const text = readFileSync('plans/local-small-to-medium.yaml', 'utf8')
      .replace(/identity:\n  oidc: \{ issuer: sandbox \}\n/, 'identity: unverified\n')
      .replaceAll('bake: 20s', 'bake: 10s');
    expect(text).toContain('bake: 10s');
    const plan = parsePlan(text.replace('name: local-small-to-medium', `name: ${uniqueName('seed-002')}`), 'plans/local-small-to-medium.yaml');
    const { stop } = await startWorker({ connection: suite.temporal.connection });
    const load = shoppers({ front: suite.state.haproxy!.frontendUrl, readsPerSecond: 40, lookups: 20_000, durationMs: 200_000 });
    let status: MigrationStatus;
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      for (const gate of ['start', 'go-live']) {
        const s = await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (x) => x.pendingGate?.gate === gate || ['completed', 'rolled-back', 'awaiting-operator'].includes(x.state), 180_000);
        if (s.pendingGate?.gate !== gate) throw new Error(`expected gate ${gate}, got ${s.state}: ${JSON.stringify(s.failure ?? s.rollback)}`);
        await approveGate(suite.temporal.client, handle.workflowId, { gate, by: 'bob' });
      }
      status = (await handle.result()) as MigrationStatus;
    } finally {
      await stop();
    }
    const shopped = (await load.stop()).reads;
    expect(status.state, JSON.stringify(status.failure ?? status.rollback)).toBe('completed');
    expect(shopped.failed).toBe(0);
    const step = (kind: string) => status.steps.find((x) => x.kind === kind)!;
    expect(step('sql').figures['sql.do.statements']).toBe(6);
    expect(step('run').summary).toMatch(/exit 0 .*cache warm: 200 orders read on green/s);
    expect(step('verify').figures).toMatchObject({ 'check1.status': 200, 'check2.status': 200 });
    for (const cluster of ['source', 'target'] as const) {
      const valid = await withClient(postgresUrl(suite.state.postgres[cluster]!), async (c) =>
        (await c.query(`select count(*)::int as n from pg_index i join pg_class x on x.oid = i.indexrelid where x.relname like 'idx_order%' and i.indisvalid`)).rows[0].n,
      );
      expect(valid).toBe(3);
    }
  }, 400_000);
});
