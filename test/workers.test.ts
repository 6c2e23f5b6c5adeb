// Several workers: two on the migration's task queue, one SIGKILLed in the middle of the data phase while
// the other finishes it; and a resource's activities routed to a task queue of their own, run by a worker
// there, with `status` saying which queue has no worker while none polls it.
import { hostname, tmpdir } from 'node:os';
import { mkdtempSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import proto from '@temporalio/proto';
import { afterEach, describe, expect, it } from 'vitest';
import { rollbackMigration, startMigration } from '../client/migrations';
import { migrationId, TASK_QUEUE, type MigrationStatus } from '../contract/status';
import { spawnTiershift, spawnWorker, tiershift } from './support/cli';
import { migrationSuite, uniqueName } from './support/local-ops';
import { SANDBOX_RESOURCES, sandboxPlan } from './support/plans';
import { eventually } from './support/temporal';
import { activeOnceCopied, createItemsDatabase, dropItemsDatabase, expectEveryRowOnce, itemsPlan } from './support/items-db';

const { EventType } = proto.temporal.api.enums.v1;

/** Whole migrations with worker processes starting (each bundles the workflow code) on a loaded 2-core machine. */
const HEAVY = 300_000;

const suite = migrationSuite();

/** `promise`, or a failure saying what did not happen within `ms`. */
function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms))),
  ]);
}

/** The identity Temporal records for a `tiershift worker` process: the SDK's `<pid>@<host>`. */
const identityOf = (worker: ReturnType<typeof spawnWorker>) => `${worker.child.pid}@${hostname()}`;

/** Who started each activity that reached the history (its last attempt), by activity type and task queue. */
async function startedBy(handle: WorkflowHandle): Promise<{ type: string; queue: string; identity: string; attempt: number }[]> {
  const events = (await handle.fetchHistory()).events ?? [];
  const scheduled = new Map(events.filter((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED).map((e) => [Number(e.eventId), e.activityTaskScheduledEventAttributes!]));
  return events
    .filter((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    .map((e) => {
      const started = e.activityTaskStartedEventAttributes!;
      const s = scheduled.get(Number(started.scheduledEventId))!;
      return { type: s.activityType!.name!, queue: s.taskQueue!.name!, identity: started.identity ?? '', attempt: started.attempt ?? 0 };
    });
}

describe('several workers', () => {
  const workers: ReturnType<typeof spawnWorker>[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.stop()));
  }, HEAVY);

  it('finishes the migration on the other worker when the one running the data step is SIGKILLed in the middle of it, with no row inserted twice', async () => {
    const database = await createItemsDatabase(suite.state, 'workers', { items_sku: 'sku', items_note: 'note' });
    const plan = itemsPlan('two-workers', database);
    // Small checksum chunks: the verification takes long enough to be caught in the middle.
    const env = { TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address, TIERSHIFT_CHECKSUM_CHUNK_ROWS: '3000' };
    const pair = [spawnWorker(env), spawnWorker(env)];
    workers.push(...pair);
    try {
      // Both poll before the migration starts, so either may take the data step.
      for (const w of pair) await eventually(async () => w.output(), (out) => out.includes(`worker ${identityOf(w)} polling task queue "${TASK_QUEUE}"`), 120_000);
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      // Killed once every row is in (the copy's marker has progress) and a session of the step's build or
      // verification runs on the target: an interrupted COPY's rows count in n_tup_ins even though they
      // are rolled back, so "no row inserted twice" is what a kill after the copy can be held to.
      const caught = await activeOnceCopied(suite.state, database, handle.workflowId, ['tiershift: building indexes', 'tiershift: verifying']);
      expect(caught, 'the data step never reached its build or verification').toBeDefined();
      // Which of the two runs it: Temporal's describe names the worker of the running attempt.
      const running = (await handle.describe()).raw.pendingActivities?.find((a) => a.activityType?.name === 'syncData');
      const victim = pair.find((w) => identityOf(w) === running?.lastWorkerIdentity);
      expect(victim, `syncData runs on ${running?.lastWorkerIdentity}, neither of ${pair.map(identityOf).join(', ')}`).toBeDefined();
      const survivor = pair.find((w) => w !== victim)!;
      victim!.child.kill('SIGKILL');

      const status = (await within(240_000, 'the migration completing on the surviving worker', handle.result())) as MigrationStatus;
      const data = await expectEveryRowOnce(suite.state, database, status, `killed while ${caught}`);
      expect(survivor.child.exitCode).toBeNull();
      expect(data.attempts).toBeGreaterThanOrEqual(2);
      // The attempt that finished the step ran on the survivor.
      const sync = (await startedBy(handle)).filter((a) => a.type === 'syncData');
      expect(sync.at(-1)).toMatchObject({ identity: identityOf(survivor) });
      expect(sync.at(-1)!.attempt).toBeGreaterThanOrEqual(2);
    } finally {
      await rollbackMigration(suite.temporal.client, migrationId(plan.name), 'alice', 'test cleanup').catch(() => undefined);
      await dropItemsDatabase(suite.state, database);
    }
  }, HEAVY);

  it('runs a resource pinned to task queue near-db on a worker there, and says which queue has no worker while none polls it', async () => {
    const queue = 'near-db';
    const plan = sandboxPlan({
      name: uniqueName('queues'),
      resources: {
        sourceDb: '{ kind: postgres, provider: local, cluster: source, taskQueue: near-db }',
        targetDb: SANDBOX_RESOURCES.targetDb,
      },
      phases: `
  - check: { resources: [targetDb] }
  - check: { resources: [sourceDb] }`,
    });
    const env = { TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address };
    const main = spawnWorker(env);
    workers.push(main);
    const handle = await startMigration(suite.temporal.client, plan, 'alice');
    // Only the default queue has a worker: the pinned step waits, and `status` says for which queue.
    const waiting = await eventually(() => tiershift(['status', handle.workflowId], env), (r) => r.stdout.includes('waiting: no worker polls task queue'), 120_000);
    expect(waiting.code, waiting.stderr).toBe(0);
    expect(waiting.stdout).toMatch(/\[✓\] 0-check .*\n(.*\n)*  \[>\] 1-check .*\n(.*\n)*\s+waiting: no worker polls task queue "near-db", where this step's resources run their activities .*; start one there with `tiershift worker --task-queue near-db`\./);

    // `watch`, piped as in a script, says it once.
    const watch = spawnTiershift(['watch', handle.workflowId], env);
    try {
      await watch.waitFor(/1-check waiting: no worker polls task queue "near-db", .*`tiershift worker --task-queue near-db`/, 60_000);
    } finally {
      await watch.stop();
    }

    const near = spawnWorker(env, ['--task-queue', queue]);
    workers.push(near);
    const status = (await within(180_000, 'the migration completing once a near-db worker polls', handle.result())) as MigrationStatus;
    expect(status.state, JSON.stringify(status.failure ?? status.errors)).toBe('completed');
    expect(near.output()).toContain(`worker ${identityOf(near)} polling task queue "near-db" for the activities of the resources pinned to it`);
    // The pinned step's activity was scheduled on near-db and run by that worker; the other step's on the default queue by the main one.
    const runs = (await startedBy(handle)).filter((a) => a.type === 'checkHealth');
    expect(runs).toEqual([
      { type: 'checkHealth', queue: TASK_QUEUE, identity: identityOf(main), attempt: 1 },
      { type: 'checkHealth', queue, identity: identityOf(near), attempt: 1 },
    ]);

    // The same server through a temporal.toml profile, as `temporal --profile` would reach it; a profile
    // elsewhere wins over the sandbox.
    const dir = mkdtempSync(path.join(tmpdir(), 'tiershift-profile-'));
    const file = path.join(dir, 'temporal.toml');
    writeFileSync(file, `[profile.sandbox]\naddress = "${suite.temporal.address}"\nnamespace = "default"\n\n[profile.elsewhere]\naddress = "127.0.0.1:1"\n`);
    const profileEnv = { TIERSHIFT_HOME: suite.state.home, TEMPORAL_CONFIG_FILE: file };
    const viaProfile = await tiershift(['--profile', 'sandbox', 'status', handle.workflowId], profileEnv);
    expect(viaProfile.stdout, viaProfile.stderr).toContain(`${handle.workflowId}  completed`);
    const elsewhere = await tiershift(['--profile', 'elsewhere', 'status', handle.workflowId], profileEnv);
    expect(elsewhere.stderr).toContain('cannot reach Temporal at 127.0.0.1:1');
  }, HEAVY);
});
