// Front Door origin weights and Container App revisions through the real SDKs against a fake ARM.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AzureAppStep, AzureResource } from '../activities/azure/provider';
import type { TrafficStep } from '../plan/types';
import { afdId, appId, FakeArm, seedContainerApp, seedFrontDoor } from './support/fake-arm';
import { attempt, azureActivities, input, lastJournal, scope, step } from './support/fake-arm-env';

let server: http.Server;
let failing = false;
let host = '';
beforeAll(async () => {
  // Stands for what the Front Door endpoint serves; the analysis probes the origin group's probe path.
  server = http.createServer((req, res) => {
    res.statusCode = req.url === '/health' && !failing ? 200 : 503;
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const front: AzureResource = { name: 'front', kind: 'traffic', profile: 'afd-compliance-global', originGroup: 'api-origins', endpoint: 'compliance-api-global', stable: 'westeurope-origin', canary: 'northeurope-origin', ...scope };
const shift = (id: string, weight: number) =>
  step<TrafficStep>({ id, kind: 'traffic', resource: 'front', weight, bake: '1s', analysis: { maxErrorRate: 0.01, maxResponseTimeMs: 1000, minRequests: 20 } });
const origin = (name: string) => afdId('afd-compliance-global', 'api-origins', name);

let arm: FakeArm;
let activities: ReturnType<typeof azureActivities>;
beforeEach(() => {
  arm = new FakeArm();
  failing = false;
  seedFrontDoor(arm, 'afd-compliance-global', 'api-origins', { 'westeurope-origin': { weight: 1000, enabled: true }, 'northeurope-origin': { weight: 1, enabled: false } }, { name: 'compliance-api-global', hostName: host });
  seedContainerApp(arm, 'ca-compliance-api');
  activities = azureActivities(arm, { probeScheme: 'http' });
});

describe('Front Door weights', () => {
  it('shifts 80/20 then 50/50 with the origin gaining traffic first, and never sends weight 0', async () => {
    const first = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    expect(first.error).toBeUndefined();
    const patches = () => arm.requests.filter((r) => r.method === 'PATCH').map((r) => [r.path.split('/').pop(), r.body.properties]);
    expect(patches()).toEqual([
      ['northeurope-origin', { weight: 200, enabledState: 'Enabled' }],
      ['westeurope-origin', { weight: 800, enabledState: 'Enabled' }],
    ]);
    expect(new Set(arm.requests.map((r) => r.apiVersion))).toEqual(new Set(['2024-02-01']));
    expect(first.result!.undo).toEqual({ origins: { stable: { weight: 1000, enabled: true }, canary: { weight: 1, enabled: false } } });

    await attempt(activities.shiftTraffic, input(shift('t50', 50), { front }));
    await attempt(activities.shiftTraffic, input(shift('t100', 100), { front }));
    expect(patches().slice(2)).toEqual([
      ['northeurope-origin', { weight: 500, enabledState: 'Enabled' }],
      ['westeurope-origin', { weight: 500, enabledState: 'Enabled' }],
      ['northeurope-origin', { weight: 1000, enabledState: 'Enabled' }],
      // Draining is "Disabled", keeping the weight Front Door accepts.
      ['westeurope-origin', { weight: 500, enabledState: 'Disabled' }],
    ]);
    expect(arm.requests.every((r) => r.body?.properties?.weight !== 0)).toBe(true);

    // Rollback restores the states the first shift recorded, the stable origin first.
    const undo = await attempt(activities.undoStep, input(shift('t20', 20), { front }, first.result!.undo));
    expect(undo.error).toBeUndefined();
    expect(arm.get(origin('westeurope-origin'))!.properties).toMatchObject({ weight: 1000, enabledState: 'Enabled' });
    expect(arm.get(origin('northeurope-origin'))!.properties).toMatchObject({ weight: 1, enabledState: 'Disabled' });
    expect(patches().at(-2)![0]).toBe('westeurope-origin');
  });

  it('restores the origin states observed before a shift that failed after acting', async () => {
    const before = await attempt(activities.observeStep, input(shift('t20', 20), { front }));
    expect(before.result).toEqual({ origins: { stable: { weight: 1000, enabled: true }, canary: { weight: 1, enabled: false } } });
    await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    expect(arm.get(origin('northeurope-origin'))!.properties).toMatchObject({ weight: 200, enabledState: 'Enabled' });
    const undo = await attempt(activities.undoStep, { ...(input(shift('t20', 20), { front }) as object), before: before.result } as never);
    expect(undo.error).toBeUndefined();
    expect(arm.get(origin('westeurope-origin'))!.properties).toMatchObject({ weight: 1000, enabledState: 'Enabled' });
    expect(arm.get(origin('northeurope-origin'))!.properties).toMatchObject({ weight: 1, enabledState: 'Disabled' });
  });

  it('Front Door refusing a weight is a non-retryable failure with its message', async () => {
    arm.fault({ method: 'PATCH', path: /origins\/northeurope-origin$/, status: 400, body: { error: { code: 'BadRequest', message: 'Weight must be between 1 and 1000.' } } });
    const { error } = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    expect(error?.type).toBe('NonRetryable');
    expect(error?.message).toMatch(/Azure refused the request \(BadRequest: Weight must be between 1 and 1000\)/);
  });

  it('a shift killed mid-poll resumes the origin update without sending it again', async () => {
    arm.pollsToComplete = 5;
    const first = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }), {
      onHeartbeat: (d, env) => {
        if ((d as { pending?: unknown })?.pending && [...arm.operations.values()][0]!.polls >= 2) env.cancel();
      },
    });
    expect(first.error).toBeDefined();
    const second = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }), { resumeFrom: lastJournal(first.heartbeats) });
    expect(second.error).toBeUndefined();
    expect(arm.writes()).toEqual([`PATCH ${origin('northeurope-origin')}`, `PATCH ${origin('westeurope-origin')}`]);
    expect(second.result!.summary).toMatch(/resumed an update a previous attempt started/);
    expect(second.result!.undo).toEqual(first.heartbeats.length ? { origins: { stable: { weight: 1000, enabled: true }, canary: { weight: 1, enabled: false } } } : undefined);
  });

  it('analysis probes the endpoint at the probe path and fails on errors or weights changed by hand', async () => {
    const shifted = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    const ok = await attempt(activities.analyseTraffic, { ...(input(shift('t20', 20), { front }) as object), baseline: shifted.result!.baseline } as never);
    expect(ok.result).toMatchObject({ pass: true });
    expect((ok.result as { figures: Record<string, number> }).figures['front.requests']).toBe(20);

    failing = true;
    arm.get(origin('northeurope-origin'))!.properties.weight = 300;
    const bad = await attempt(activities.analyseTraffic, { ...(input(shift('t20', 20), { front }) as object), baseline: shifted.result!.baseline } as never);
    const verdict = bad.result as { pass: boolean; reason: string };
    expect(verdict.pass).toBe(false);
    expect(verdict.reason).toMatch(/the canary gets 27\.3% instead of the 20% this step set/);
    expect(verdict.reason).toMatch(/20 of 20 probe requests to http:\/\/127\.0\.0\.1:\d+\/health failed/);

    const drift = await attempt(activities.checkDrift, { ...(input(shift('t50', 50), { front }) as object), expect: { weights: { front: 20 } } } as never);
    expect(drift.result).toEqual(['front: expected 20% to northeurope-origin, found westeurope-origin weight 800 / northeurope-origin weight 300 (27.3%)']);
  });
});

describe('Container Apps blue-green', () => {
  const resources: Record<string, AzureResource> = {
    api: { name: 'api', kind: 'app', containerApp: 'ca-compliance-api', ...scope },
    revisions: { name: 'revisions', kind: 'traffic', containerApp: 'ca-compliance-api', stable: 'ca-compliance-api--v1', canary: 'ca-compliance-api--v2-0-0', ...scope },
  };
  const deploy = step<AzureAppStep>({ id: 'app', kind: 'app', resource: 'api', version: 'v2.0.0', image: 'acr.azurecr.io/compliance-api:v2.0.0-medium', cpu: 1, memory: '2Gi', minReplicas: 3, maxReplicas: 10 });

  it('deploys a new revision with no traffic, splits 90/10 by revision, and rolls back to the previous revision', async () => {
    const app = await attempt(activities.updateApp, input(deploy, resources));
    expect(app.error).toBeUndefined();
    const patch = arm.requests.find((r) => r.method === 'PATCH')!;
    expect(patch.apiVersion).toBe('2026-07-01');
    expect(patch.body.properties.configuration).toMatchObject({ activeRevisionsMode: 'Multiple', ingress: { traffic: [{ revisionName: 'ca-compliance-api--v1', weight: 100 }] } });
    expect(patch.body.properties.template).toMatchObject({
      revisionSuffix: 'v2-0-0',
      containers: [{ name: 'api', image: 'acr.azurecr.io/compliance-api:v2.0.0-medium', resources: { cpu: 1, memory: '2Gi' } }],
      scale: { minReplicas: 3, maxReplicas: 10 },
    });
    expect(app.result!.summary).toMatch(/Deployed revision ca-compliance-api--v2-0-0 .* healthy with 3 replicas and no traffic yet/);

    // The same step again finds its revision: no second deployment.
    const again = await attempt(activities.updateApp, input(deploy, resources));
    expect(again.result!.summary).toMatch(/Revision already there/);
    expect(arm.writes()).toHaveLength(1);

    const t10 = step<TrafficStep>({ id: 't10', kind: 'traffic', resource: 'revisions', weight: 10, bake: '1s', analysis: { maxErrorRate: 0.01, minRequests: 0 } });
    const shifted = await attempt(activities.shiftTraffic, input(t10, resources));
    expect(shifted.error).toBeUndefined();
    expect(arm.requests.filter((r) => r.method === 'PATCH').at(-1)!.body.properties.configuration.ingress.traffic).toEqual([
      { revisionName: 'ca-compliance-api--v1', weight: 90 },
      { revisionName: 'ca-compliance-api--v2-0-0', weight: 10 },
    ]);

    const back = await attempt(activities.undoStep, input(t10, resources, shifted.result!.undo));
    expect(back.error).toBeUndefined();
    expect(arm.get(appId('ca-compliance-api'))!.properties.configuration.ingress.traffic).toEqual([expect.objectContaining({ revisionName: 'ca-compliance-api--v1', weight: 100 })]);
    const undoApp = await attempt(activities.undoStep, input(deploy, resources, app.result!.undo));
    expect(undoApp.error).toBeUndefined();
    expect(arm.writes().at(-1)).toBe(`POST ${appId('ca-compliance-api')}/revisions/ca-compliance-api--v2-0-0/deactivate`);
    expect(undoApp.result!.summary).toMatch(/traffic back on ca-compliance-api--v1, revision ca-compliance-api--v2-0-0 deactivated; revision mode left Multiple/);
  });

  it('a revision-weight shift killed mid-poll resumes the app update without sending it again', async () => {
    const deployed = await attempt(activities.updateApp, input(deploy, resources));
    expect(deployed.error).toBeUndefined();
    const t10 = step<TrafficStep>({ id: 't10', kind: 'traffic', resource: 'revisions', weight: 10, bake: '1s', analysis: { maxErrorRate: 0.01, minRequests: 0 } });
    arm.pollsToComplete = 5;
    const first = await attempt(activities.shiftTraffic, input(t10, resources), {
      onHeartbeat: (d, env) => {
        if ((d as { pending?: unknown })?.pending && [...arm.operations.values()].at(-1)!.polls >= 2) env.cancel();
      },
    });
    expect(first.error).toBeDefined();
    const second = await attempt(activities.shiftTraffic, input(t10, resources), { resumeFrom: lastJournal(first.heartbeats) });
    expect(second.error).toBeUndefined();
    // One PATCH deployed the revision, one set the weights: the retry polled the second's operation to its end.
    expect(arm.writes()).toEqual([`PATCH ${appId('ca-compliance-api')}`, `PATCH ${appId('ca-compliance-api')}`]);
    expect(second.result!.summary).toMatch(/now routes 90% to revision ca-compliance-api--v1 and 10% to ca-compliance-api--v2-0-0 \(resumed the update a previous attempt started\)/);
    expect(arm.get(appId('ca-compliance-api'))!.properties.configuration.ingress.traffic).toEqual([
      { revisionName: 'ca-compliance-api--v1', weight: 90 },
      { revisionName: 'ca-compliance-api--v2-0-0', weight: 10 },
    ]);
  });

  it('undoes a deployment that failed after creating its revision, and a retry keeps the journal a waiting heartbeat followed', async () => {
    const before = await attempt(activities.observeStep, input(deploy, resources));
    expect(before.result).toMatchObject({ revision: 'ca-compliance-api--v1', revisionExisted: false, mode: 'Single' });
    // The new revision takes a moment to provision: the attempt heartbeats "waiting" on top of its journal.
    const revision = () => arm.get(`${appId('ca-compliance-api')}/revisions/ca-compliance-api--v2-0-0`)!.properties;
    let phase = 0;
    const first = await attempt(activities.updateApp, input(deploy, resources), {
      onHeartbeat: (d) => {
        const h = d as { done?: string[]; waiting?: string };
        if (phase === 0 && !h.waiting && h.done?.includes('app:revision')) (revision().provisioningState = 'Provisioning'), (phase = 1);
        else if (phase === 1 && h.waiting) (revision().provisioningState = 'Provisioned'), (phase = 2);
      },
    });
    expect(first.error).toBeUndefined();
    expect(phase).toBe(2);
    // The attempt's last heartbeat is the one Temporal hands the retry: progress lines merge into the journal.
    const last = first.heartbeats.at(-1) as { azure?: number; done?: string[]; notes?: { created?: boolean } };
    expect(last).toMatchObject({ azure: 1, done: ['app:revision'], notes: { created: true } });
    // Its result was lost (the worker died): the retry must still know the revision is this step's.
    const retry = await attempt(activities.updateApp, input(deploy, resources), { resumeFrom: last });
    expect(retry.result!.undo).toMatchObject({ created: true, before: { revision: 'ca-compliance-api--v1' } });

    // Failed after acting: no undo record at all, only what was observed before the first attempt.
    const undo = await attempt(activities.undoStep, { ...(input(deploy, resources) as object), before: before.result } as never);
    expect(undo.error).toBeUndefined();
    expect(arm.get(`${appId('ca-compliance-api')}/revisions/ca-compliance-api--v2-0-0`)!.properties.active).toBe(false);
    expect(undo.result!.summary).toMatch(/traffic back on ca-compliance-api--v1, revision ca-compliance-api--v2-0-0 deactivated/);
  });
});
