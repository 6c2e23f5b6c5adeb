// Determinism: the current workflow code must replay the histories of migrations that ran before, or a
// worker deployment would break migrations waiting at a gate. Histories recorded by earlier versions
// live in test/histories/; `RECORD_HISTORIES=<name> npx vitest run test/replay.test.ts` adds this
// version's as test/histories/<name>.json (record one whenever the workflow's commands change).
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { Worker, type ReplayWorkerOptions } from '@temporalio/worker';
import { historyFromJSON, historyToJSON } from '@temporalio/common/lib/proto-utils';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { approveGate, resumeMigration, rollbackMigration, startMigration } from '../client/migrations';
import type { MigrationStatus } from '../contract/status';
import { parsePlan } from '../plan/load';
import { workflowBundle } from '../worker/worker';
import { workflowSpanSinks } from '../worker/tracing';
import { PREBUILT_BUNDLES } from '../worker/bundle';
import { PROJECT_ROOT } from '../contract/home';
import { distIsCurrent } from '../bin/dist.mjs';
import { RESOURCE_TASK_QUEUE } from '../workflows/migration';
import { ActivityScript } from './support/scripted-activities';
import { engineSuite, queryStatus, startWorker } from './support/temporal';

const HISTORIES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'histories');

const script = new ActivityScript();
const engine = engineSuite(script);

const PLAN = `
apiVersion: tiershift/v1
identity: unverified
name: replayed
defaults:
  retry: { maximumAttempts: 1, initialInterval: 100ms, backoffCoefficient: 1, maximumInterval: 100ms }
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target }
  front: { kind: traffic, provider: local, backend: app, stable: blue, canary: green }
phases:
  - backup: { resources: [sourceDb] }
  - gate: { name: go, notify: { webhook: 'http://127.0.0.1:9/hook', every: 1h } }
  - infra: { resource: targetDb, settings: { max_connections: 200 } }
  - data: { from: sourceDb, to: targetDb }
  - traffic: { resource: front, steps: [ { weight: 50, bake: 5m }, { weight: 100, bake: 5m } ] }
  - finalize: { resources: [targetDb], pointOfNoReturn: {} }
  - gate: { name: complete }
`;

async function until(id: string, ok: (s: MigrationStatus) => boolean) {
  for (let i = 0; i < 300; i++) {
    const status = await queryStatus(engine.env, id);
    if (ok(status)) return status;
    // Time stands still while a test polls the time-skipping server: move it on so bakes elapse.
    await engine.env.sleep('1m');
  }
  throw new Error(`${id} did not reach the expected state`);
}

/** test/histories/, each named by its file. */
function recordedHistories(): HistoryAndWorkflowId[] {
  return readdirSync(HISTORIES)
    .filter((f) => f.endsWith('.json'))
    .map((file) => ({ workflowId: file, history: historyFromJSON(JSON.parse(readFileSync(path.join(HISTORIES, file), 'utf8'))) }));
}

/**
 * Replays the histories on one replay worker (a worker per history cost most of this file's time) and
 * returns each that did not replay, as "file: error".
 */
async function replayFailures(bundle: ReplayWorkerOptions['workflowBundle'], histories: HistoryAndWorkflowId[]): Promise<string[]> {
  const failures: string[] = [];
  let replayed = 0;
  for await (const result of Worker.runReplayHistories({ workflowBundle: bundle, sinks: workflowSpanSinks() }, histories)) {
    replayed += 1;
    if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
  }
  // Every history got its turn, not only those before one the worker stopped on.
  expect(replayed).toBe(histories.length);
  return failures;
}

describe('workflow determinism', () => {
  it('replays a fresh history with gates, a failure, a resume, timers and a rollback past the point of no return', async () => {
    const plan = parsePlan(PLAN, 'replayed.yaml');
    const handle = await startMigration(engine.env.client, plan, 'alice');
    script.failures.set(`${handle.workflowId}/2-infra`, 1);
    await until(handle.workflowId, (s) => s.pendingGate?.gate === 'go');
    await approveGate(engine.env.client, handle.workflowId, { gate: 'go', by: 'bob' });
    await until(handle.workflowId, (s) => s.state === 'awaiting-operator');
    await resumeMigration(engine.env.client, handle.workflowId, 'bob');
    await until(handle.workflowId, (s) => s.pendingGate?.gate === 'point-of-no-return');
    await approveGate(engine.env.client, handle.workflowId, { gate: 'point-of-no-return', by: 'bob' });
    await until(handle.workflowId, (s) => s.pendingGate?.gate === 'complete');
    await rollbackMigration(engine.env.client, handle.workflowId, 'bob', 'rehearsal', true);
    expect((await handle.result()).state).toBe('rolled-back');

    const history = await handle.fetchHistory();
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle(), sinks: workflowSpanSinks() }, history, handle.workflowId);
    if (process.env.RECORD_HISTORIES) {
      writeFileSync(path.join(HISTORIES, `${process.env.RECORD_HISTORIES}.json`), historyToJSON(history));
    }
  });

  it('replays a fresh history past the write point: an unconfirmed rollback counted and refused, then a recovering one', async () => {
    const plan = parsePlan(
      PLAN.replace('name: replayed', 'name: replayed-writes')
        .replace('  front:', '  api: { kind: app, provider: local }\n  front:')
        .replace('  - data: { from: sourceDb, to: targetDb }\n', '  - data: { from: sourceDb, to: targetDb }\n  - app: { resource: api, version: v2, database: targetDb }\n'),
      'replayed-writes.yaml',
    );
    const handle = await startMigration(engine.env.client, plan, 'alice');
    script.targetWrites.set(handle.workflowId, { targetOnly: 3, differing: 0 });
    script.recoveries.set(handle.workflowId, { recovered: 3, atRisk: 0 });
    await until(handle.workflowId, (s) => s.pendingGate?.gate === 'go');
    await approveGate(engine.env.client, handle.workflowId, { gate: 'go', by: 'bob' });
    await until(handle.workflowId, (s) => s.pendingGate?.gate === 'point-of-no-return');
    await expect(rollbackMigration(engine.env.client, handle.workflowId, 'bob', 'rehearsal')).rejects.toThrow();
    await rollbackMigration(engine.env.client, handle.workflowId, 'bob', 'rehearsal', true);
    const status = await handle.result();
    expect(status.rollback).toMatchObject({ rowsRecovered: 6, rowsAtRisk: 0 });

    const history = await handle.fetchHistory();
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle(), sinks: workflowSpanSinks() }, history, handle.workflowId);
    if (process.env.RECORD_HISTORIES) {
      writeFileSync(path.join(HISTORIES, `${process.env.RECORD_HISTORIES}-write-point.json`), historyToJSON(history));
    }
  });

  it('replays a fresh history whose data and finalize steps run on the task queue their target pins', async () => {
    const plan = parsePlan(
      PLAN.replace('name: replayed', 'name: replayed-queues').replace('cluster: target }', 'cluster: target, taskQueue: near-db }').replace("  - gate: { name: go, notify: { webhook: 'http://127.0.0.1:9/hook', every: 1h } }\n", ''),
      'replayed-queues.yaml',
    );
    // The scripted activities, also on the pinned queue: activities only, as `tiershift worker --task-queue` runs.
    const near = await startWorker({ connection: engine.env.nativeConnection, taskQueue: 'near-db', activitiesOnly: true, activities: script.activities() });
    try {
      const handle = await startMigration(engine.env.client, plan, 'alice');
      await until(handle.workflowId, (s) => s.pendingGate?.gate === 'point-of-no-return');
      await approveGate(engine.env.client, handle.workflowId, { gate: 'point-of-no-return', by: 'bob' });
      await until(handle.workflowId, (s) => s.pendingGate?.gate === 'complete');
      await approveGate(engine.env.client, handle.workflowId, { gate: 'complete', by: 'bob' });
      expect((await handle.result()).state).toBe('completed');

      const history = await handle.fetchHistory();
      const events = history.events ?? [];
      // Every activity of the steps touching targetDb on near-db (drift checks and observations too), the rest on the workflow's queue.
      const scheduled = events.flatMap((e) => (e.activityTaskScheduledEventAttributes ? [e.activityTaskScheduledEventAttributes] : []));
      const byQueue = (queue: string) => [...new Set(scheduled.filter((a) => a.taskQueue?.name === queue).map((a) => a.activityType?.name))].sort();
      expect(byQueue('near-db')).toEqual(['checkDrift', 'finalizeMigration', 'observeStep', 'prepareInfra', 'syncData']);
      expect(byQueue('tiershift')).toEqual(expect.arrayContaining(['backupDatabase', 'shiftTraffic']));
      expect(byQueue('tiershift')).not.toEqual(expect.arrayContaining(['syncData']));
      // Recorded once the first pinned step asked, so this history keeps the routing on replay.
      const patches = events.flatMap((e) => Object.values(e.markerRecordedEventAttributes?.details ?? {}).flatMap((d) => d.payloads ?? []));
      expect(patches.some((p) => Buffer.from(p.data ?? []).toString().includes(RESOURCE_TASK_QUEUE))).toBe(true);
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle(), sinks: workflowSpanSinks() }, history, handle.workflowId);
      if (process.env.RECORD_HISTORIES) {
        writeFileSync(path.join(HISTORIES, `${process.env.RECORD_HISTORIES}-task-queues.json`), historyToJSON(history));
      }
    } finally {
      await near.stop();
    }
  });

  it('replays every history recorded by earlier versions', async () => {
    const histories = recordedHistories();
    expect(histories.length).toBeGreaterThan(0);
    expect(await replayFailures(await workflowBundle(), histories)).toEqual([]);
  });

  // What `tiershift worker` runs once `npm run build` has bundled the workflow code ahead of time. Skipped in a
  // tree edited since its build, where the worker bundles the sources at start, as the test above does.
  it.skipIf(!distIsCurrent())('the workflow bundle built ahead of time (dist/) replays them too', async () => {
    const histories = recordedHistories();
    for (const name of Object.values(PREBUILT_BUNDLES)) {
      expect(await replayFailures({ codePath: path.join(PROJECT_ROOT, 'dist', name) }, histories), name).toEqual([]);
    }
  });
});
