// Chaos: the migration must survive what a long night throws at it — workers killed at every phase
// boundary and in the middle of the data phase, the Temporal server restarted, every activity failing
// after it did its work — and finish with its verification intact and no side effect done twice. And
// when a step fails for good after it acted, a rollback must bring back the state from before it.
import { afterEach, describe, expect, it } from 'vitest';
import { withClient } from '../activities/local/postgres';
import { replicationName } from '../activities/local/pg-sync';
import { approveGate, migrationStatus, rejectGate, rollbackMigration, startMigration } from '../client/migrations';
import { parsePlan } from '../plan/load';
import { runtimeCommand, sandboxUp } from '../sandbox';
import { TEMPORAL_PROCESS } from '../sandbox/temporal';
import { stopProcess } from '../sandbox/process';
import { postgresUrl } from '../contract/home';
import { migrationId, type MigrationStatus } from '../contract/status';
import { spawnWorker } from './support/cli';
import { blobMd5s, containerOf, migrationSuite, sandbox, tables, uniqueName } from './support/local-ops';
import { everySandboxResource, sandboxPlan, sandboxResources } from './support/plans';
import { eventually, startWorker } from './support/temporal';
import { activeOnceCopied, createItemsDatabase, dropItemsDatabase, expectEveryRowOnce, itemsPlan } from './support/items-db';

/** Whole migrations with killed workers and restarts: bounded, but generous on a loaded 2-core machine. */
const HEAVY = 300_000;

const suite = migrationSuite();

const dumpsIn = async (container: string) => {
  const names: string[] = [];
  for await (const b of containerOf('primary', container).listBlobsFlat()) if (b.name.endsWith('.dump')) names.push(b.name);
  return names;
};

/** Backup, prep, app, both data syncs, a traffic shift and the cutover: every kind of side effect. */
function everyPhasePlan(name: string, backups: string, dr: string, extra = '') {
  return sandboxPlan({
    name,
    head: `
defaults:
  retry: { maximumAttempts: 6, initialInterval: 300ms, backoffCoefficient: 1, maximumInterval: 300ms }
  timeouts: { startToClose: 10m, heartbeat: 5s }`,
    resources: everySandboxResource({ assetsDr: dr, backups }),
    phases: `
  - backup: { resources: [sourceDb], destination: backups }
  - infra: { resource: targetDb, settings: { work_mem: 6MB } }
  - data: { from: sourceDb, to: targetDb }
  - data: { from: assets, to: assetsDr }
  - app: { resource: shop, version: v2, database: targetDb }
${extra}
  - traffic:
      resource: front
      analysis: { maxErrorRate: 0, minRequests: 0 }
      steps: [ { weight: 100, bake: 2s } ]
  - finalize: { resources: [targetDb] }
`,
  });
}

/** `attempts`: what each step's attempts must be (Temporal's retries count), else at least one each. */
async function expectVerified(status: MigrationStatus, backups: string, dr: string, attempts?: number) {
  expect(status.state, JSON.stringify(status.failure ?? status.errors)).toBe('completed');
  // Every retry happened inside the step's activity (never a second run of the step), and its attempts show them.
  if (attempts !== undefined) expect(status.steps.map((s) => s.attempts)).toEqual(status.steps.map(() => attempts));
  else expect(status.steps.every((s) => s.attempts >= 1)).toBe(true);
  expect(await tables('target')).toEqual(await tables('source'));
  expect(await blobMd5s('secondary', dr)).toEqual(await blobMd5s('primary', 'assets'));
  expect(await dumpsIn(backups)).toHaveLength(1);
  const res = await fetch(new URL('/health', suite.state.haproxy!.frontendUrl));
  expect(res.headers.get('x-app-color')).toBe('green');
}

describe('chaos', () => {
  const workers: ReturnType<typeof spawnWorker>[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
  }, HEAVY);

  it('survives a worker killed with SIGKILL at every phase boundary and in the middle of the data phase', async () => {
    const backups = uniqueName('backups');
    const dr = uniqueName('dr');
    const plan = everyPhasePlan(uniqueName('kill'), backups, dr);
    const env = { TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address };
    let worker = spawnWorker(env);
    workers.push(worker);
    const restart = () => {
      worker.child.kill('SIGKILL');
      worker = spawnWorker(env);
      workers.push(worker);
    };
    const handle = await startMigration(suite.temporal.client, plan, 'alice');
    const slot = replicationName(handle.workflowId);
    let done = 0;
    let killedInData = false;
    let kills = 0;
    let over = false;
    // The kill in the data phase watches the source itself, every 25 ms: the copy's replication slot
    // exists from the start of the copy, and a small copy can be over before a status poll (up to a
    // second while a new worker starts) would notice it.
    const killInData = withClient(postgresUrl(suite.state.postgres.source!), async (c) => {
      while (!over) {
        if ((await c.query('select 1 from pg_replication_slots where slot_name = $1', [slot])).rowCount) {
          killedInData = true;
          restart();
          kills += 1;
          return;
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    });
    // A query needs a worker: while the new one starts, there may be none to answer.
    // Short deadline: a query blocked for long would let the new worker cross several boundaries unseen.
    const poll = () =>
      suite.temporal.client.withDeadline(Date.now() + 1_000, () => migrationStatus(suite.temporal.client, handle.workflowId)).catch(() => undefined);
    let status = (await eventually(poll, (s) => s !== undefined))!;
    try {
      for (;;) {
        const latest = await poll();
        if (!latest) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        status = latest;
        if (['completed', 'rolled-back', 'aborted', 'awaiting-operator'].includes(status.state)) break;
        const finished = status.steps.filter((s) => s.state === 'done').length;
        if (finished > done) {
          done = finished;
          restart();
          kills += 1;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      over = true;
      await killInData;
    }
    expect(status.state, JSON.stringify(status.failure)).toBe('completed');
    expect(killedInData).toBe(true);
    // Quick steps (a no-op infra) may finish within one poll of the previous one: most boundaries, not all, see a kill.
    expect(kills).toBeGreaterThanOrEqual(Math.ceil(plan.steps.length / 2) + 1);
    await expectVerified((await handle.result()) as MigrationStatus, backups, dr);
  }, HEAVY);

  it('resumes a data step whose worker was killed in the middle of the index build, and again in the middle of the checksums, with nothing duplicated', async () => {
    const database = await createItemsDatabase(suite.state, 'chaos_idx', { items_sku: 'sku', items_note: 'note', items_sku_note: 'sku, note' });
    const plan = itemsPlan('kill-idx', database);
    // Small checksum chunks: the verification takes long enough to be caught in the middle.
    const env = { TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address, TIERSHIFT_CHECKSUM_CHUNK_ROWS: '3000' };
    let worker = spawnWorker(env);
    workers.push(worker);
    const killed: string[] = [];
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      // Kills the worker as soon as one of its sessions on the target runs `application` once every row is
      // in: what this test resumes is the build, not the copy.
      const killWhen = async (application: string) => {
        if (!(await activeOnceCopied(suite.state, database, handle.workflowId, [application]))) return;
        worker.child.kill('SIGKILL');
        killed.push(application);
        worker = spawnWorker(env);
        workers.push(worker);
      };
      await killWhen('tiershift: building indexes');
      await killWhen('tiershift: verifying');
      expect(killed).toEqual(['tiershift: building indexes', 'tiershift: verifying']);
      const status = (await handle.result()) as MigrationStatus;
      // The attempt after the first kill found every row and built only what was missing: the target's
      // table took each row once.
      await expectEveryRowOnce(suite.state, database, status, 'killed in the index build and the checksums');
      const onTarget = postgresUrl(suite.state.postgres.target!, database);
      const indexes = await withClient(onTarget, async (c) => (await c.query<{ i: string }>(`select indexname as i from pg_indexes where tablename = 'items' order by 1`)).rows.map((r) => r.i));
      expect(indexes).toEqual(['items_note', 'items_pkey', 'items_sku', 'items_sku_note']);
      const invalid = await withClient(onTarget, async (c) => (await c.query(`select 1 from pg_index where not indisvalid`)).rowCount);
      expect(invalid).toBe(0);
    } finally {
      await rollbackMigration(suite.temporal.client, migrationId(plan.name), 'alice', 'test cleanup').catch(() => undefined);
      await dropItemsDatabase(suite.state, database);
    }
  }, HEAVY);

  it('completes when every activity fails twice after doing its work, without doing any of it twice', async () => {
    const backups = uniqueName('backups');
    const dr = uniqueName('dr');
    const plan = everyPhasePlan(uniqueName('faults'), backups, dr);
    const { stop } = await startWorker({ connection: suite.temporal.connection, faults: { attempts: 2, when: 'after' } });
    let status: MigrationStatus;
    try {
      status = (await (await startMigration(suite.temporal.client, plan, 'alice')).result()) as MigrationStatus;
    } finally {
      await stop();
    }
    // Each activity failed twice after its work, so each step took three of Temporal's attempts.
    await expectVerified(status, backups, dr, 3);
    // The third attempt of each step found the first attempt's work and kept it.
    const figures = Object.assign({}, ...status.steps.map((s) => s.figures));
    expect(figures['sourceDb.reused']).toBe(true);
    expect(status.steps.find((s) => s.kind === 'data' && s.summary?.includes('subscription'))?.summary).toContain('existing subscription');
    expect(figures['shop.started']).toBe(false);
    // Counted across attempts (the progress travels in the heartbeat): a blob copied twice would count twice.
    const assets = Object.keys(await blobMd5s('primary', 'assets')).length;
    expect(Number(figures['assetsDr.blobsCopied']) + Number(figures['assetsDr.blobsSkipped'])).toBe(assets);
  }, HEAVY);

  it('finishes a rollback whose compensations fail transiently', async () => {
    const plan = everyPhasePlan(uniqueName('undo'), uniqueName('backups'), uniqueName('dr'), '  - gate: { name: cutover }');
    const sourceBefore = await tables('source');
    // Each compensation acts, then fails once: its retry (2 s later, the workflow's compensation policy)
    // must find its own work done. (Twice each took 6 s an action, 42 s of the suite, and proved no more.)
    const { stop } = await startWorker({ connection: suite.temporal.connection, faults: { attempts: 1, when: 'after', activities: ['undoStep'] } });
    let status: MigrationStatus;
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (s) => s.pendingGate?.gate === 'cutover', 120_000);
      await rejectGate(suite.temporal.client, handle.workflowId, { gate: 'cutover', by: 'bob', reason: 'chaos test' });
      status = (await handle.result()) as MigrationStatus;
    } finally {
      await stop();
    }
    expect(status.state).toBe('rolled-back');
    expect(status.rollback?.actions.map((a) => a.state)).toEqual(status.rollback?.actions.map(() => 'done'));
    expect(sandbox().apps.green).toBeUndefined();
    const res = await fetch(new URL('/health', suite.state.haproxy!.frontendUrl));
    expect(res.headers.get('x-app-color')).toBe('blue');
    expect(await tables('source')).toEqual(sourceBefore);
  }, HEAVY);

  it('completes a migration when the Temporal server restarts in the middle of it', async () => {
    const plan = sandboxPlan(
      {
        name: uniqueName('restart'),
        resources: sandboxResources('sourceDb', 'targetDb'),
        phases: `
  - check: { resources: [sourceDb] }
  - gate: { name: go }
  - data: { from: sourceDb, to: targetDb }
  - finalize: { resources: [targetDb] }`,
      },
      'restart.yaml',
    );
    const { stop } = await startWorker({ connection: suite.temporal.connection });
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (s) => s.pendingGate?.gate === 'go');
      const before = sandbox().temporal!;
      await stopProcess(before.pid, TEMPORAL_PROCESS);
      // Same port, same database file: the sandbox brings back what it recorded.
      const after = (await sandboxUp({ home: suite.state.home, freePorts: true })).temporal!;
      expect(after.pid).not.toBe(before.pid);
      expect(after.address).toBe(before.address);
      await eventually(
        () => approveGate(suite.temporal.client, handle.workflowId, { gate: 'go', by: 'bob' }).then(() => true, () => false),
        (ok) => ok,
        60_000,
      );
      const status = (await handle.result()) as MigrationStatus;
      expect(status.state).toBe('completed');
      expect(await tables('target')).toEqual(await tables('source'));
    } finally {
      await stop();
    }
  }, HEAVY);
});

/** A plan of the given phases on the same resources as everyPhasePlan, retried twice, quickly. */
function phasesPlan(name: string, dr: string, phases: string) {
  return parsePlan(
    `
apiVersion: tiershift/v1
identity: unverified
name: ${name}
defaults:
  retry: { maximumAttempts: 2, initialInterval: 300ms, backoffCoefficient: 1, maximumInterval: 300ms }
  timeouts: { startToClose: 10m, heartbeat: 5s }
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target }
  assets: { kind: blob, provider: local, account: primary, container: assets }
  assetsDr: { kind: blob, provider: local, account: secondary, container: ${dr} }
  shop: { kind: app, provider: local }
  front: { kind: traffic, provider: local, stable: blue, canary: green }
phases:
${phases}
`,
    `${name}.yaml`,
  );
}

const targetWorkMem = () => withClient(postgresUrl(sandbox().postgres.target!), async (c) => (await c.query<{ v: string }>('select current_setting($1) as v', ['work_mem'])).rows[0]!.v);
const weights = async () => {
  const api = sandbox().haproxy!.runtimeApi;
  const read = async (server: string) => Number(/^\d+/.exec(await runtimeCommand(api, `get weight app/${server}`))![0]);
  return { blue: await read('blue'), green: await read('green') };
};

describe('chaos: rollback after a step failed having acted', () => {
  /**
   * Every attempt of `activity` acts and then fails, so the step ends failed with no outcome recorded;
   * the operator rolls back. The rollback must be complete and leave what was there before.
   */
  async function failAfterActingThenRollBack(activity: string, phases: string, dr = uniqueName('dr')): Promise<{ status: MigrationStatus; id: string }> {
    const plan = phasesPlan(uniqueName(`after-${activity.toLowerCase()}`), dr, phases);
    const { stop } = await startWorker({ connection: suite.temporal.connection, faults: { attempts: 2, when: 'after', activities: [activity] } });
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      const failed = await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (s) => s.state === 'awaiting-operator', 180_000);
      expect(failed.failure?.error).toMatch(new RegExp(`injected fault: attempt 2 of ${activity} fails .*after it ran`));
      await rollbackMigration(suite.temporal.client, handle.workflowId, 'bob', `chaos: ${activity} failed after acting`);
      const status = (await handle.result()) as MigrationStatus;
      expect(status.state).toBe('rolled-back');
      expect(status.rollback?.actions.map((a) => `${a.stepId} ${a.state}`)).toEqual(status.rollback?.actions.map((a) => `${a.stepId} done`));
      return { status, id: handle.workflowId };
    } finally {
      await stop();
    }
  }

  it('infra: the settings from before the step are back', async () => {
    const before = await targetWorkMem();
    const wanted = before === '3MB' ? '5MB' : '3MB';
    await failAfterActingThenRollBack('prepareInfra', `  - infra: { resource: targetDb, settings: { work_mem: ${wanted} } }`);
    expect(await targetWorkMem()).toBe(before);
  }, HEAVY);

  it('app: green, which the step started, is stopped', async () => {
    expect(sandbox().apps.green).toBeUndefined();
    await failAfterActingThenRollBack('updateApp', '  - app: { resource: shop, version: v2, database: sourceDb }');
    expect(sandbox().apps.green).toBeUndefined();
  }, HEAVY);

  it('data (PostgreSQL): the subscription, slot and publication are removed, the source unchanged', async () => {
    const sourceBefore = await tables('source');
    const { id } = await failAfterActingThenRollBack('syncData', '  - data: { from: sourceDb, to: targetDb }');
    const name = replicationName(id);
    const left = await withClient(postgresUrl(suite.state.postgres.target!), async (c) => (await c.query('select 1 from pg_subscription where subname = $1', [name])).rowCount);
    const source = await withClient(postgresUrl(suite.state.postgres.source!), async (c) => ({
      slots: (await c.query('select 1 from pg_replication_slots where slot_name = $1', [name])).rowCount,
      publications: (await c.query('select 1 from pg_publication where pubname = $1', [name])).rowCount,
    }));
    expect({ subscriptions: left, ...source }).toEqual({ subscriptions: 0, slots: 0, publications: 0 });
    expect(await tables('source')).toEqual(sourceBefore);
  }, HEAVY);

  it('data (blobs): every blob the step created is deleted', async () => {
    const dr = uniqueName('dr');
    // One blob the target held before: it stays.
    await containerOf('secondary', dr).create();
    await containerOf('secondary', dr).getBlockBlobClient('was-there-before.txt').upload('mine', 4);
    const before = await blobMd5s('secondary', dr);
    await failAfterActingThenRollBack('syncData', '  - data: { from: assets, to: assetsDr }', dr);
    expect(await blobMd5s('secondary', dr)).toEqual(before);
  }, HEAVY);

  it('traffic: 100% on blue again, green stopped', async () => {
    expect(await weights()).toEqual({ blue: 256, green: 0 });
    await failAfterActingThenRollBack(
      'shiftTraffic',
      `  - app: { resource: shop, version: v2, database: sourceDb }
  - traffic:
      resource: front
      analysis: { maxErrorRate: 0, minRequests: 0 }
      steps: [ { weight: 100, bake: 2s } ]`,
    );
    expect(await weights()).toEqual({ blue: 256, green: 0 });
    expect(sandbox().apps.green).toBeUndefined();
    const res = await fetch(new URL('/health', suite.state.haproxy!.frontendUrl));
    expect(res.headers.get('x-app-color')).toBe('blue');
  }, HEAVY);
});
