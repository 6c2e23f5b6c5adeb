// The resource step in the workflow, on the time-skipping server with scripted activities: it is
// observed once before its first attempt and gets that observation, a later resource step's drift check
// expects what the earlier ones left, and a rollback undoes them in reverse with their observations.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { rejectGate, startMigration } from '../client/migrations';
import { parsePlan } from '../plan/load';
import type { ResourceInput } from '../activities/types';
import { ActivityScript } from './support/scripted-activities';
import { startWorker, statusWhen, timeSkippingEnv } from './support/temporal';

const script = new ActivityScript();
/** What each resource step's activity was given as the observation before it, by `${migrationId}/${stepId}`. */
const given = new Map<string, unknown>();
let env: TestWorkflowEnvironment;
let stop: (() => Promise<void>) | undefined;
beforeAll(async () => {
  env = await timeSkippingEnv();
  const activities = script.activities();
  const change = activities.changeResource;
  activities.changeResource = async (input: ResourceInput) => {
    given.set(`${input.migrationId}/${input.step.id}`, input.before);
    return change(input);
  };
  ({ stop } = await startWorker({ connection: env.nativeConnection, activities }));
});
afterAll(async () => {
  await stop?.();
  await env?.teardown();
});

const SUB = '00000000-0000-4000-8000-000000000001';
const farm = `/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.Web/serverfarms/plan-x`;
const autoscale = `/subscriptions/${SUB}/resourceGroups/rg/providers/Microsoft.Insights/autoscalesettings/as-x`;
const plan = (name: string) =>
  parsePlan(
    `apiVersion: tiershift/v1
name: ${name}
identity: unverified
resources:
  db: { kind: postgres, azure: { subscription: ${SUB}, resourceGroup: rg, server: pg-x } }
phases:
  - resource: { id: farm, armId: ${farm}, apiVersion: 2024-04-01, set: { sku.name: P3v3 } }
  - resource: { id: workers, armId: ${farm}, apiVersion: 2024-04-01, set: { sku.capacity: 2 } }
  - resource: { id: autoscale, armId: ${autoscale}, apiVersion: 2022-10-01, create: { location: westeurope, properties: { enabled: true } } }
  - gate: { name: done }
`,
    `${name}.yaml`,
  );

describe('resource steps in a migration', () => {
  it('are observed before they act, drift-checked against the earlier ones, and undone in reverse with what was observed', async () => {
    const handle = await startMigration(env.client, plan('resources'), 'alice');
    const id = handle.workflowId;
    await statusWhen(env, id, (s) => s.pendingGate?.gate === 'done');
    expect(script.callsOf(id)).toEqual(['changeResource:farm', 'changeResource:workers', 'changeResource:autoscale']);
    expect(script.observed.get(id)).toEqual(['farm', 'workers', 'autoscale']);
    expect(given.get(`${id}/farm`)).toEqual({ observed: 'farm' });
    expect(given.get(`${id}/autoscale`)).toEqual({ observed: 'autoscale' });
    // The first has nothing before it to check; the next ones expect what the earlier ones left, per ARM id.
    expect(script.driftChecks.has(`${id}/farm`)).toBe(false);
    expect(script.driftChecks.get(`${id}/workers`)).toEqual({ arm: { azure: { [farm]: { stepId: 'farm', apiVersion: '2024-04-01', values: { 'sku.name': 'P3v3' } } } } });
    expect(script.driftChecks.get(`${id}/autoscale`)).toEqual({ arm: { azure: { [farm]: { stepId: 'workers', apiVersion: '2024-04-01', values: { 'sku.name': 'P3v3', 'sku.capacity': 2 } } } } });

    await rejectGate(env.client, id, { gate: 'done', by: 'bob', reason: 'rehearsal' });
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(script.callsOf(id).filter((c) => c.startsWith('undoStep'))).toEqual(['undoStep:autoscale', 'undoStep:workers', 'undoStep:farm']);
    expect(script.undoInputs.get(`${id}/farm`)).toMatchObject({ before: { observed: 'farm' }, undo: { step: 'farm' } });
  });

  it('holds a resource step whose earlier change drifted until an operator resumes', async () => {
    const handle = await startMigration(env.client, plan('resources-drift'), 'alice');
    const id = handle.workflowId;
    script.drift.set(`${id}/workers`, ['Microsoft.Web/serverfarms plan-x was changed since farm: sku.name is P1v3, not P3v3']);
    const held = await statusWhen(env, id, (s) => s.state === 'awaiting-operator');
    expect(held.failure).toMatchObject({ stepId: 'workers', error: expect.stringMatching(/^drift: Microsoft.Web\/serverfarms plan-x was changed since farm: sku.name is P1v3, not P3v3; put it back/) });
    expect(script.callsOf(id)).toEqual(['changeResource:farm']);
    await handle.terminate('test over');
  });
});
