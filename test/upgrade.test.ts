// Upgrading tiershift while a migration waits at a gate, with Worker Versioning: the migration starts on build
// `a` of a Worker Deployment and waits; build `b` is deployed and made current and `a` is stopped; the
// approval then runs on `b` (AUTO_UPGRADE, worker/deployment.ts), and the history `a` recorded up to the gate
// replays on the current workflow code. `RECORD_HISTORIES=1` also saves that history into test/histories.
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from '@temporalio/worker';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { approveGate, migrationStatus, rollbackMigration, startMigration } from '../client/migrations';
import { findBinary } from '../sandbox/binaries';
import { migrationId, type MigrationStatus } from '../contract/status';
import { workflowBundle } from '../worker/worker';
import { workflowSpanSinks } from '../worker/tracing';
import { spawnWorker, tiershift } from './support/cli';
import { migrationSuite, uniqueName } from './support/local-ops';
import { SANDBOX_RESOURCES, sandboxPlan } from './support/plans';
import { eventually } from './support/temporal';

const { EventType } = proto.temporal.api.enums.v1;
type History = proto.temporal.api.history.v1.IHistory;

/** Two worker processes starting (each bundles the workflow code) and a migration, on a loaded 2-core machine. */
const HEAVY = 300_000;

const suite = migrationSuite();

/** `temporal` (the sandbox's CLI) against the sandbox's server: exit code and output, killed at `timeoutMs`. */
function temporalCli(args: string[], timeoutMs = 30_000): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(findBinary('temporal'), [...args, '--address', suite.temporal.address, '--namespace', 'default']);
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => (clearTimeout(timer), resolve({ code: code ?? -1, output })));
  });
}

/** What an operator runs to make a build current: retried until the server has seen that build poll. */
async function makeCurrent(deployment: string, buildId: string): Promise<void> {
  const args = ['worker', 'deployment', 'set-current-version', '--deployment-name', deployment, '--build-id', buildId, '--yes'];
  const done = await eventually(() => temporalCli(args), (r) => r.code === 0, 90_000).catch((err: Error) => err);
  if (done instanceof Error) throw new Error(`build ${buildId} never became current: ${done.message}`);
}

/** The build id and versioning behaviour of each completed workflow task, and the events it followed. */
function workflowTasks(history: History): { eventId: number; buildId: string | undefined; behavior: number | null | undefined; identity: string }[] {
  return (history.events ?? [])
    .filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    .map((e) => {
      const a = e.workflowTaskCompletedEventAttributes!;
      return { eventId: Number(e.eventId), buildId: a.deploymentVersion?.buildId ?? undefined, behavior: a.versioningBehavior, identity: a.identity ?? '' };
    });
}

const identityOf = (worker: ReturnType<typeof spawnWorker>) => `${worker.child.pid}@${hostname()}`;
const polling = (worker: ReturnType<typeof spawnWorker>) => eventually(async () => worker.output(), (out) => out.includes(`worker ${identityOf(worker)} polling task queue`), 120_000);

describe('upgrading a worker while a migration waits at a gate', () => {
  it('runs the approval on build b once b is current and a is stopped, and replays what a recorded', async () => {
    const deployment = uniqueName('upgrade');
    const env = { TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address };
    const plan = sandboxPlan({
      name: uniqueName('upgrade'),
      resources: { sourceDb: SANDBOX_RESOURCES.sourceDb, targetDb: SANDBOX_RESOURCES.targetDb },
      phases: `
  - check: { resources: [sourceDb] }
  - gate: { name: go }
  - check: { resources: [targetDb] }`,
    });
    const a = spawnWorker({ ...env, TIERSHIFT_BUILD_ID: 'a', TIERSHIFT_DEPLOYMENT: deployment });
    const workers = [a];
    let finished = false;
    try {
      await polling(a);
      expect(a.output()).toContain(`build a of worker deployment "${deployment}" (auto-upgrade)`);
      await makeCurrent(deployment, 'a');
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      await eventually(() => migrationStatus(suite.temporal.client, handle.workflowId), (s) => s.pendingGate?.gate === 'go', 120_000);

      // What build a recorded up to the gate: every workflow task on a, auto-upgrade; it replays on this code.
      const onA = await handle.fetchHistory();
      const tasksOnA = workflowTasks(onA);
      expect(tasksOnA.length).toBeGreaterThan(0);
      expect(tasksOnA.map((t) => t.buildId)).toEqual(tasksOnA.map(() => 'a'));
      expect(new Set(tasksOnA.map((t) => t.behavior))).toEqual(new Set([proto.temporal.api.enums.v1.VersioningBehavior.VERSIONING_BEHAVIOR_AUTO_UPGRADE]));
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle(), sinks: workflowSpanSinks() }, onA, handle.workflowId);
      if (process.env.RECORD_HISTORIES) {
        writeFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'histories', 'upgrade-gate-on-build-a.json'), historyToJSON(onA));
      }

      // Build b deployed and made current, then a retired: stopped by its pid, as a rollout stops the old pods.
      const b = spawnWorker({ ...env, TIERSHIFT_DEPLOYMENT: deployment }, ['--build-id', 'b']);
      workers.push(b);
      await polling(b);
      await makeCurrent(deployment, 'b');
      await a.stop();
      expect(a.child.exitCode ?? a.child.signalCode).not.toBeNull();

      await approveGate(suite.temporal.client, handle.workflowId, { gate: 'go', by: 'bob' });
      let timer: NodeJS.Timeout | undefined;
      const status = (await Promise.race([
        handle.result(),
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the migration did not complete on build b within 180 s')), 180_000))),
      ]).finally(() => clearTimeout(timer))) as MigrationStatus;
      finished = true;
      expect(status.state, JSON.stringify(status.failure ?? status.errors)).toBe('completed');

      // Every workflow task after a's last ran on b, by b's process; the ones before stay a's.
      const all = workflowTasks(await handle.fetchHistory());
      const afterSwitch = all.slice(tasksOnA.length);
      expect(all.slice(0, tasksOnA.length)).toEqual(tasksOnA);
      expect(afterSwitch.length).toBeGreaterThan(0);
      expect(afterSwitch.map((t) => [t.buildId, t.identity])).toEqual(afterSwitch.map(() => ['b', identityOf(b)]));

      // The server's view: the deployment's current version is b.
      const described = await temporalCli(['worker', 'deployment', 'describe', '--name', deployment, '--output', 'json']);
      expect(described.code, described.output).toBe(0);
      expect(JSON.parse(described.output)).toMatchObject({ routingConfig: { currentVersionBuildID: 'b', currentVersionDeploymentName: deployment } });
    } finally {
      if (!finished) await rollbackMigration(suite.temporal.client, migrationId(plan.name), 'alice', 'test cleanup').catch(() => undefined);
      // The sandbox's task queue back to unversioned workers, for the files that run after this one.
      const reset = await temporalCli(['worker', 'deployment', 'set-current-version', '--deployment-name', deployment, '--unversioned', '--yes', '--ignore-missing-task-queues']);
      await Promise.all(workers.map((w) => w.stop()));
      // Said here rather than as hangs in the files after this one.
      if (reset.code !== 0) throw new Error(`the task queue could not be set back to unversioned workers: ${reset.output}`);
    }
  }, HEAVY);

  it('refuses a build id or deployment Temporal would refuse, in one sentence, before connecting', async () => {
    const env = { TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: '127.0.0.1:1' };
    const bad = await tiershift(['worker', '--build-id', 'has space'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('tiershift: --build-id takes up to 255 letters, digits, ., _, + and -, starting with a letter or digit; got "has space".');
    const dotted = await tiershift(['worker', '--build-id', 'b', '--deployment', 'tiershift.prod'], env);
    expect(dotted.code).toBe(2);
    expect(dotted.stderr).toContain('--deployment takes up to 255 letters, digits, _ and - (no dots)');
    const alone = await tiershift(['worker'], { ...env, TIERSHIFT_DEPLOYMENT: 'prod' });
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain('needs --build-id (or TIERSHIFT_BUILD_ID) too');
  }, 60_000);
});
