// `status`, `watch` and `list` on a running migration that does not answer, against the sandbox: they
// tell apart no worker polling its task queue, a worker whose workflow task keeps failing, and a query
// that timed out, each as Temporal reports it (client/health.ts).
import type { Client } from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient } from '../client/connection';
import { loadPlan } from '../plan/load';
import { MigrationPhase, MigrationState, PlanName, TrafficWeight } from '../contract/search-attributes';
import type { MigrationStatus } from '../contract/status';
import { isOneSentence, spawnTiershift, spawnWorker, tiershift } from './support/cli';
import { eventually, sandboxTemporal, type SandboxTemporal } from './support/temporal';

const BROKEN_WORKFLOWS = fileURLToPath(new URL('./support/workflows/broken-migration.ts', import.meta.url));
const suffix = Date.now().toString(36);
// The name `list --plan` filters on: only this file's migrations.
const PLAN = `status-cases-${suffix}`;

let temporal: SandboxTemporal;
let client: Client;

beforeAll(async () => {
  temporal = await sandboxTemporal();
  // The client the CLI uses (its data converter), so what the CLI reads back is what it would have sent.
  client = (await connectClient()).client;
});

afterAll(async () => {
  await client?.connection.close();
  await temporal?.close();
});

/** A migration of the minimal plan, started as `tiershift start` does, on a task queue of the test's choosing. */
async function startOn(taskQueue: string, workflowId: string): Promise<void> {
  const plan = await loadPlan('plans/minimal.yaml');
  await client.workflow.start('migration', {
    taskQueue,
    workflowId,
    args: [{ plan, startedBy: 'alice' }],
    typedSearchAttributes: new TypedSearchAttributes([
      { key: MigrationState, value: 'running' },
      { key: MigrationPhase, value: 'check' },
      { key: PlanName, value: PLAN },
      { key: TrafficWeight, value: 0 },
    ]),
  });
}

describe('a migration that does not answer', () => {
  const idle = { queue: `status-nobody-${suffix}`, id: `migration-status-nobody-${suffix}` };
  const broken = { queue: `status-broken-${suffix}`, id: `migration-status-broken-${suffix}` };
  let brokenWorker: Worker | undefined;
  let brokenRun: Promise<void> | undefined;

  afterAll(async () => {
    brokenWorker?.shutdown();
    await brokenRun;
    for (const id of [idle.id, broken.id]) await client.workflow.getHandle(id).terminate('test cleanup').catch(() => undefined);
  });

  it('with no worker polling its task queue: status, watch and list say so, and to start one', async () => {
    await startOn(idle.queue, idle.id);
    const started = Date.now();
    const status = await tiershift(['status', idle.id], { TIERSHIFT_QUERY_TIMEOUT: '20' });
    expect(status.code).toBe(5);
    expect(status.stderr).toBe(
      `tiershift: no worker is polling task queue "${idle.queue}" (Temporal has seen none in the last 90 s), so ${idle.id} cannot answer; start one with \`tiershift worker\`.\n`,
    );
    expect(isOneSentence(status.stderr)).toBe(true);
    // Temporal's task queue says it at once: the query's 20 s timeout is not waited out.
    expect(Date.now() - started).toBeLessThan(15_000);

    const watch = spawnTiershift(['watch', idle.id]);
    try {
      const out = await watch.waitFor(/no worker is polling task queue "status-nobody-[^"]+".*start one with `tiershift worker`; still watching/, 30_000);
      expect(out).not.toMatch(/did not answer its status query|keeps failing/);
    } finally {
      await watch.stop();
    }

    const list = await eventually(() => tiershift(['list', '--plan', PLAN]), (r) => r.stdout.includes(idle.id), 30_000);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(`! ${idle.id}: no worker is polling task queue "${idle.queue}"`);
    const json = JSON.parse((await tiershift(['list', '--plan', PLAN, '--json'])).stdout) as { id: string; problem?: { kind: string } }[];
    expect(json.find((r) => r.id === idle.id)?.problem?.kind).toBe('no-worker');
  });

  it("with a worker polling while the workflow task fails: the failure's message and the command that shows the history", async () => {
    // A worker of a buggy build: every workflow task of `migration` throws a TypeError (test/support/workflows).
    brokenWorker = await Worker.create({ connection: temporal.connection, taskQueue: broken.queue, workflowsPath: BROKEN_WORKFLOWS });
    brokenRun = brokenWorker.run();
    await startOn(broken.queue, broken.id);
    // Temporal retries a failed workflow task: the describe shows attempt 2 once the first has failed.
    await eventually(() => client.workflow.getHandle(broken.id).describe(), (d) => (d.raw.pendingWorkflowTask?.attempt ?? 0) >= 2, 30_000);

    const status = await tiershift(['status', broken.id]);
    expect(status.code).toBe(1);
    expect(status.stderr).toMatch(
      new RegExp(
        `^tiershift: a worker polls, but ${broken.id}'s workflow task keeps failing \\(attempt \\d+\\): "Cannot read properties of undefined \\(reading 'steps'\\)"; ` +
          `see the history with \`temporal workflow show -w ${broken.id}\`\\.\\n$`,
      ),
    );
    expect(status.stderr).not.toMatch(/no worker/);

    const watch = spawnTiershift(['watch', broken.id]);
    try {
      const out = await watch.waitFor(/keeps failing .*Cannot read properties of undefined .*temporal workflow show -w .*; still watching/, 30_000);
      expect(out).not.toMatch(/no worker is polling/);
    } finally {
      await watch.stop();
    }

    const list = await eventually(() => tiershift(['list', '--plan', PLAN]), (r) => r.stdout.includes(broken.id), 30_000);
    expect(list.stdout).toMatch(new RegExp(`! ${broken.id}: a worker polls, but .*keeps failing .*Cannot read properties of undefined`));
    // The other migration of this file still reads as the one no worker polls for.
    expect(list.stdout).toContain(`! ${idle.id}: no worker is polling`);
  });

  it('with a worker polling and no task failing but the query unanswered: a timed-out query, not a missing worker', async () => {
    // A real `tiershift worker` runs the migration to its gate, then is frozen (SIGSTOP): Temporal still
    // sees it polling, hands it the query, and the answer never comes.
    const worker = spawnWorker();
    const id = `migration-status-frozen-${suffix}`;
    try {
      const started = await tiershift(['start', 'plans/minimal.yaml', '--id', id, '--by', 'alice']);
      expect(started.code).toBe(0);
      await eventually(
        async () => {
          const r = await tiershift(['status', id, '--json']);
          return r.code === 0 ? (JSON.parse(r.stdout) as MigrationStatus) : undefined;
        },
        (s) => s?.pendingGate?.gate === 'go',
        90_000,
      );
      process.kill(worker.child.pid!, 'SIGSTOP');
      try {
        const status = await tiershift(['status', id], { TIERSHIFT_QUERY_TIMEOUT: '3' });
        expect(status.code, status.stderr).toBe(5);
        expect(status.stderr).toMatch(
          new RegExp(
            `^tiershift: ${id} did not answer its status query within 3 s, although a worker polled task queue "tiershift" \\d+ s ago and its workflow task is not failing; ` +
              'the worker may be busy or stuck: check its log and try again\\.\\n$',
          ),
        );

        const watch = spawnTiershift(['watch', id], { TIERSHIFT_QUERY_TIMEOUT: '2' });
        try {
          const out = await watch.waitFor(/did not answer its status query within 2 s, although a worker polled .*; still watching/, 30_000);
          expect(out).not.toMatch(/no worker is polling|keeps failing/);
        } finally {
          await watch.stop();
        }
      } finally {
        process.kill(worker.child.pid!, 'SIGCONT');
      }
      // Thawed, the worker answers again.
      const again = await eventually(() => tiershift(['status', id, '--json']), (r) => r.code === 0, 60_000);
      expect((JSON.parse(again.stdout) as MigrationStatus).pendingGate?.gate).toBe('go');
    } finally {
      await tiershift(['rollback', id, '--reason', 'test cleanup']).catch(() => undefined);
      await worker.stop();
    }
  });
});
