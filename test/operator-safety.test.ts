// What the common rollout tools leave to chance, on the real sandbox: decisions bound to the plan that
// was reviewed, drift noticed before a step acts on a changed system, a resume that says what it will
// do, and gates that tell people (and then their escalation list) instead of waiting in silence.
import { WorkflowUpdateFailedError } from '@temporalio/client';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { withClient } from '../activities/local/postgres';
import { approveGate, migrationStatus, resumeMigration, startMigration } from '../client/migrations';
import { setServerWeight } from '../sandbox/haproxy';
import { postgresUrl } from '../contract/home';
import { resumePreviewQuery } from '../workflows/shared';
import { type MigrationStatus } from '../contract/status';
import { resetToBlue, sandbox, uniqueName } from './support/local-ops';
import { sandboxPlan, sandboxResources } from './support/plans';
import { eventually, sandboxTemporal, startWorker, type SandboxTemporal } from './support/temporal';

let temporal: SandboxTemporal;
let stopWorker: () => Promise<void>;

beforeAll(async () => {
  temporal = await sandboxTemporal();
  ({ stop: stopWorker } = await startWorker({ connection: temporal.connection }));
});
afterAll(async () => {
  await stopWorker?.();
  await setTargetSetting('work_mem', null);
  await resetToBlue();
  await temporal?.close();
});
beforeEach(resetToBlue);

const status = (id: string) => migrationStatus(temporal.client, id);
const until = (id: string, ok: (s: MigrationStatus) => boolean) => eventually(() => status(id), ok, 120_000);

/** What someone does by hand on the target: ALTER SYSTEM and a reload (null resets the setting). */
async function setTargetSetting(name: string, value: string | null): Promise<void> {
  const target = sandbox().postgres.target!;
  await withClient(postgresUrl(target, 'postgres'), async (c) => {
    await c.query(value === null ? `alter system reset ${name}` : `alter system set ${name} = '${value}'`);
    await c.query('select pg_reload_conf()');
  });
}

describe('operator safety on the sandbox', () => {
  it('refuses a decision made on another version of the plan, and records the evidence of the one it takes', async () => {
    const plan = sandboxPlan(
      {
        name: uniqueName('evidence'),
        resources: sandboxResources('sourceDb'),
        phases: `
  - check: { resources: [sourceDb] }
  - gate: { name: go }`,
      },
      'evidence.yaml',
    );
    const handle = await startMigration(temporal.client, plan, 'alice');
    await until(handle.workflowId, (s) => s.pendingGate?.gate === 'go');
    const refused = await approveGate(temporal.client, handle.workflowId, { gate: 'go', by: 'bob', planHash: '0'.repeat(64) }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
    expect(((refused as WorkflowUpdateFailedError).cause as Error).message).toMatch(/^this decision was made on plan sha256 000000000000, but the migration runs plan sha256 [0-9a-f]{12}/);
    await approveGate(temporal.client, handle.workflowId, { gate: 'go', by: 'bob', planHash: plan.hash, comment: 'source healthy' });
    const done = (await handle.result()) as MigrationStatus;
    expect(done.decisions).toHaveLength(1);
    expect(done.decisions[0]).toMatchObject({ by: 'bob', planHash: plan.hash, comment: 'source healthy' });
    expect(done.decisions[0]!.evidence?.['0-check']).toMatchObject({ 'sourceDb.tables': expect.any(Number), 'sourceDb.maxConnections': 50 });
  });

  it('stops on hand-made drift (a setting on the target, weights in HAProxy) with a diff, and resumes as previewed', async () => {
    const plan = sandboxPlan(
      {
        name: uniqueName('drift'),
        resources: sandboxResources('sourceDb', 'targetDb', 'shop', 'front'),
        phases: `
  - infra: { resource: targetDb, settings: { work_mem: 6MB } }
  - app: { resource: shop, version: v2, database: targetDb }
  - gate: { name: go }
  - data: { from: sourceDb, to: targetDb }
  - traffic: { resource: front, analysis: { minRequests: 0 }, steps: [ { weight: 50, bake: 1s } ] }`,
      },
      'drift.yaml',
    );
    const handle = await startMigration(temporal.client, plan, 'alice');
    const id = handle.workflowId;
    await until(id, (s) => s.pendingGate?.gate === 'go');
    // While the gate waits, someone "helps": a setting on the target, and half the users on green.
    await setTargetSetting('work_mem', '5MB');
    await setServerWeight(sandbox(), 'green', 128);
    await approveGate(temporal.client, id, { gate: 'go', by: 'bob' });

    const held = await until(id, (s) => s.state === 'awaiting-operator');
    expect(held.failure?.stepId).toBe('3-data');
    expect(held.failure?.error).toBe('drift: targetDb: work_mem expected 6MB, found 5MB; put it back as the plan expects (or roll back), then resume');
    // Nothing was replicated onto the drifted target.
    const subscriptions = await withClient(postgresUrl(sandbox().postgres.target!), async (c) => (await c.query('select 1 from pg_subscription')).rowCount);
    expect(subscriptions).toBe(0);
    const preview = await handle.query(resumePreviewQuery);
    expect(preview.steps.map((s) => s.verdict)).toEqual(['skip: done', 'skip: done', 'skip: gate passed', 'run again', 'run']);

    await setTargetSetting('work_mem', '6MB');
    await resumeMigration(temporal.client, id, 'carol');
    const heldAgain = await until(id, (s) => s.state === 'awaiting-operator' && s.failure?.stepId === '4-traffic-50');
    expect(heldAgain.failure?.error).toBe('drift: front: expected blue 256 / green 0 (0% to green), found blue 256 / green 128; put it back as the plan expects (or roll back), then resume');
    // The data step ran once the setting was back, as the preview said; the done steps did not run again.
    expect(heldAgain.steps.map((s) => [s.id, s.state, s.attempts])).toEqual([
      ['0-infra', 'done', 1],
      ['1-app', 'done', 1],
      ['2-gate', 'done', 0],
      ['3-data', 'done', 1],
      ['4-traffic-50', 'failed', 0],
    ]);

    await setServerWeight(sandbox(), 'green', 0);
    await resumeMigration(temporal.client, id, 'carol');
    const done = (await handle.result()) as MigrationStatus;
    expect(done.state).toBe('completed');
    expect(done.traffic?.weight).toBe(50);
  });

  it('notifies a webhook when a gate opens, reminds, then escalates, in order, with the commands and the evidence', async () => {
    const received: { kind: string; recipients: string[]; approve: string; evidence: Record<string, unknown>; at: number }[] = [];
    const receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ ...(JSON.parse(body) as (typeof received)[number]), at: Date.now() });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    // A webhook URL may carry a token: the plan names the variable, the worker reads it.
    process.env.TIERSHIFT_TEST_HOOK = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook?token=secret`;
    try {
      const plan = sandboxPlan(
        {
          name: uniqueName('notify'),
          head: 'approvers: [bob]',
          resources: sandboxResources('sourceDb'),
          phases: `
  - check: { resources: [sourceDb] }
  - gate:
      name: go
      notify: { webhook: { env: TIERSHIFT_TEST_HOOK }, every: 2s, escalateAfter: 5s, escalateTo: [dave] }`,
        },
        'notify.yaml',
      );
      const handle = await startMigration(temporal.client, plan, 'alice');
      const id = handle.workflowId;
      await eventually(async () => received.map((r) => r.kind), (kinds) => kinds.includes('escalation'), 60_000);
      await approveGate(temporal.client, id, { gate: 'go', by: 'dave' });
      const done = (await handle.result()) as MigrationStatus;
      expect(done.state).toBe('completed');
      expect(received.map((r) => r.kind)).toEqual(['opened', 'reminder', 'reminder', 'escalation']);
      expect(received[0]).toMatchObject({ recipients: ['bob'], approve: `tiershift approve ${id} --gate go` });
      expect(received[3]).toMatchObject({ recipients: ['dave'] });
      expect(received[3]!.evidence['0-check']).toMatchObject({ 'sourceDb.maxConnections': 50 });
      expect(received[3]!.at - received[0]!.at).toBeGreaterThanOrEqual(4_500);
      // The status records every attempt, and never the token.
      expect(done.notifications?.map((n) => `${n.kind} ${n.to} ${n.ok}`)).toEqual([
        'opened env:TIERSHIFT_TEST_HOOK true',
        'reminder env:TIERSHIFT_TEST_HOOK true',
        'reminder env:TIERSHIFT_TEST_HOOK true',
        'escalation env:TIERSHIFT_TEST_HOOK true',
      ]);
      expect(JSON.stringify(done)).not.toContain('token=secret');
    } finally {
      delete process.env.TIERSHIFT_TEST_HOOK;
      receiver.close();
    }
  });
});
