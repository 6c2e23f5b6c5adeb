// Front Door origin weights and Container App revisions through the real SDKs against a fake ARM.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AzureAppStep, AzureResource } from '../activities/azure/provider';
import type { CheckStep, FinalizeStep, TrafficStep } from '../plan/types';
import { afdId, appId, FakeArm, RG, seedContainerApp, seedFrontDoor, SUB } from './support/fake-arm';
import { FakeFrontDoorEdges, setOriginGroup } from './support/fake-arm-frontdoor';
import { FakeMonitor } from './support/fake-arm-monitor';
import { FakeContainerApps } from './support/fake-arm-apps';
import { revisionSuffix } from '../activities/azure/container-apps';
import { parsePlan } from '../plan/load';
import { readFileSync } from 'node:fs';
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

const profile = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Cdn/profiles/afd-compliance-global`;

let arm: FakeArm;
let monitor: FakeMonitor;
let edges: FakeFrontDoorEdges;
let activities: ReturnType<typeof azureActivities>;
beforeEach(() => {
  arm = new FakeArm();
  monitor = new FakeMonitor(arm);
  edges = new FakeFrontDoorEdges(arm);
  failing = false;
  seedFrontDoor(arm, 'afd-compliance-global', 'api-origins', { 'westeurope-origin': { weight: 1000, enabled: true }, 'northeurope-origin': { weight: 1, enabled: false } }, { name: 'compliance-api-global', hostName: host });
  setOriginGroup(arm, 'afd-compliance-global', 'api-origins');
  seedContainerApp(arm, 'ca-compliance-api');
  activities = azureActivities(arm, { probeScheme: 'http' });
});
// Every body the provider sent in these tests conforms to the Microsoft.Cdn 2024-02-01 and Microsoft.App
// 2026-07-01 specs (test/support/azure-specs).
afterEach(() => expect(arm.specViolations).toEqual([]));

/** One request straight to the fake ARM, as an SDK would send it. */
const send = (method: string, path: string, apiVersion: string, body?: unknown) =>
  arm.sendRequest({ url: `https://management.azure.com${path}?api-version=${apiVersion}`, method, body: body === undefined ? undefined : JSON.stringify(body), headers: { get: () => undefined } } as never);

/** What Azure Monitor counted per origin over the bake: the Origin dimension carries the origin's host name. */
function originTraffic(canary: { ok: number; errors: number; latencyMs?: number; health?: number }, stable = { ok: 4000, errors: 4 }) {
  const rows = (origin: string, t: { ok: number; errors: number }) => [
    { dimensions: { Origin: `${origin}.azure-api.net`, HttpStatusGroup: '2XX' }, value: t.ok },
    ...(t.errors ? [{ dimensions: { Origin: `${origin}.azure-api.net`, HttpStatusGroup: '5XX' }, value: t.errors }] : []),
  ];
  monitor.set(profile, 'OriginRequestCount', [...rows('westeurope-origin', stable), ...rows('northeurope-origin', canary)]);
  monitor.set(profile, 'OriginHealthPercentage', [
    { dimensions: { Origin: 'westeurope-origin.azure-api.net', OriginGroup: 'api-origins' }, value: 100 },
    { dimensions: { Origin: 'northeurope-origin.azure-api.net', OriginGroup: 'api-origins' }, value: canary.health ?? 100 },
  ]);
  monitor.set(profile, 'OriginLatency', [
    { dimensions: { Origin: 'westeurope-origin.azure-api.net', Endpoint: host }, value: 80 },
    { dimensions: { Origin: 'northeurope-origin.azure-api.net', Endpoint: host }, value: canary.latencyMs ?? 90 },
  ]);
}
const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();
const analyse = (weight: number, baseline: unknown = { at: minutesAgo(10) }) =>
  attempt(activities.analyseTraffic, { ...(input(shift(`t${weight}`, weight), { front }) as object), baseline } as never);

describe('Front Door weights', () => {
  it('shifts 80/20 then 50/50 with the origin gaining traffic first, and never sends weight 0', async () => {
    const first = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    expect(first.error).toBeUndefined();
    const patches = () => arm.requests.filter((r) => r.method === 'PATCH').map((r) => [r.path.split('/').pop(), r.body.properties]);
    expect(patches()).toEqual([
      ['northeurope-origin', { weight: 200, enabledState: 'Enabled', priority: 1 }],
      ['westeurope-origin', { weight: 800, enabledState: 'Enabled', priority: 1 }],
    ]);
    expect(new Set(arm.requests.map((r) => r.apiVersion))).toEqual(new Set(['2024-02-01']));
    expect(first.result!.undo).toEqual({ origins: { stable: { weight: 1000, enabled: true, priority: 1 }, canary: { weight: 1, enabled: false, priority: 1 } } });

    await attempt(activities.shiftTraffic, input(shift('t50', 50), { front }));
    await attempt(activities.shiftTraffic, input(shift('t100', 100), { front }));
    expect(patches().slice(2)).toEqual([
      ['northeurope-origin', { weight: 500, enabledState: 'Enabled', priority: 1 }],
      ['westeurope-origin', { weight: 500, enabledState: 'Enabled', priority: 1 }],
      ['northeurope-origin', { weight: 1000, enabledState: 'Enabled', priority: 1 }],
      // Draining demotes the stable origin one priority, enabled, keeping the weight Front Door accepts: it stays the failover.
      ['westeurope-origin', { weight: 500, enabledState: 'Enabled', priority: 2 }],
    ]);
    expect(arm.requests.every((r) => r.body?.properties?.weight !== 0)).toBe(true);

    // Rollback restores the states the first shift recorded, the stable origin first.
    const undo = await attempt(activities.undoStep, input(shift('t20', 20), { front }, first.result!.undo));
    expect(undo.error).toBeUndefined();
    expect(arm.get(origin('westeurope-origin'))!.properties).toMatchObject({ weight: 1000, enabledState: 'Enabled', priority: 1 });
    expect(arm.get(origin('northeurope-origin'))!.properties).toMatchObject({ weight: 1, enabledState: 'Disabled', priority: 1 });
    expect(patches().at(-2)![0]).toBe('westeurope-origin');
    expect(undo.result!.summary).toMatch(/origins restored to westeurope-origin weight 1000 \/ northeurope-origin disabled/);
  });

  it('restores the origin states observed before a shift that failed after acting', async () => {
    const before = await attempt(activities.observeStep, input(shift('t20', 20), { front }));
    expect(before.result).toEqual({ origins: { stable: { weight: 1000, enabled: true, priority: 1 }, canary: { weight: 1, enabled: false, priority: 1 } } });
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
    expect(second.result!.undo).toEqual(first.heartbeats.length ? { origins: { stable: { weight: 1000, enabled: true, priority: 1 }, canary: { weight: 1, enabled: false, priority: 1 } } } : undefined);
  });

  it('rolls back a canary origin that answers 5% 5xx in Azure Monitor, though every probe of the endpoint succeeds', async () => {
    const shifted = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    expect(shifted.error).toBeUndefined();
    originTraffic({ ok: 950, errors: 50 });
    const bad = await analyse(20);
    const verdict = bad.result as { pass: boolean; reason: string; figures: Record<string, number> };
    expect(verdict.pass).toBe(false);
    expect(verdict.reason).toBe("origin northeurope-origin answered 50 of 1000 requests with 5xx over the bake (5.0%), above the plan's maximum of 1.0%.");
    expect(verdict.figures).toMatchObject({ 'front.requests': 1000, 'front.errorRate': 0.05, 'front.stableRequests': 4004, 'front.smokeProbes': 5, 'front.smokeErrors': 0 });
    // Asked of Azure Monitor for the profile, split by origin and status group, over the bake window.
    const q = monitor.queries.find((x) => x.metric === 'OriginRequestCount')!;
    expect(q).toMatchObject({ host: 'global.metrics.monitor.azure.com', namespace: 'Microsoft.Cdn/profiles', filter: "Origin eq '*' and HttpStatusGroup eq '*'", aggregation: 'total', resources: [profile] });
    expect(Date.parse(q.end) - Date.parse(q.start)).toBeGreaterThanOrEqual(10 * 60_000 - 1000);

    // The workflow answers a failed analysis with the rollback: the origins as they were.
    const undo = await attempt(activities.undoStep, input(shift('t20', 20), { front }, shifted.result!.undo));
    expect(undo.error).toBeUndefined();
    expect(arm.get(origin('northeurope-origin'))!.properties).toMatchObject({ weight: 1, enabledState: 'Disabled' });
  });

  it('passes a healthy canary from its own numbers, though no probe of the endpoint ever reaches it', async () => {
    await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    originTraffic({ ok: 400, errors: 1 });
    const ok = await analyse(20);
    expect(ok.result).toMatchObject({ pass: true, figures: { 'front.requests': 401, 'front.rtimeMs': 90, 'front.originHealth': 100 } });
    expect((ok.result as { summary: string }).summary).toMatch(/origin northeurope-origin 401 requests, 0\.2% 5xx, slowest minute 90 ms; stable 4004 requests/);
  });

  it('calls a canary that is only too quiet inconclusive, not failed: the plan decides what follows', async () => {
    await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    originTraffic({ ok: 12, errors: 0 });
    const quiet = await analyse(20);
    expect(quiet.result).toMatchObject({ pass: false, inconclusive: true });
    expect((quiet.result as { reason: string }).reason).toMatch(/^not enough traffic reached the canary: Azure Monitor counts 12 requests/);
  });

  it('fails a canary on too little traffic, failing health probes, slowness, weights changed by hand, or an endpoint that answers nothing', async () => {
    await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    originTraffic({ ok: 12, errors: 0, health: 50, latencyMs: 2500 });
    failing = true;
    arm.get(origin('northeurope-origin'))!.properties.weight = 300;
    const bad = await analyse(20);
    // Too little traffic beside real failures is a failure.
    expect(bad.result).toMatchObject({ pass: false, inconclusive: false });
    const reason = (bad.result as { reason: string }).reason;
    expect(reason).toMatch(/the canary gets 27\.3% instead of the 20% this step set/);
    expect(reason).toMatch(/not enough traffic reached the canary: Azure Monitor counts 12 requests to origin northeurope-origin over the 10-minute bake, the plan asks for at least 20/);
    expect(reason).toMatch(/Front Door's health probes of origin northeurope-origin succeeded only 50\.0% of the time/);
    expect(reason).toMatch(/origin northeurope-origin took 2500 ms on average in its slowest minute of the bake, above the plan's maximum of 1000 ms/);
    expect(reason).toMatch(/http:\/\/127\.0\.0\.1:\d+\/health answered none of 5 smoke probes \(last: HTTP 503\)/);

    const drift = await attempt(activities.checkDrift, { ...(input(shift('t50', 50), { front }) as object), expect: { weights: { front: 20 } } } as never);
    expect(drift.result).toEqual(['front: expected 20% to northeurope-origin, found westeurope-origin weight 800 / northeurope-origin weight 300 (27.3%)']);
  });

  it('starts the bake only once every edge has the new weights (deploymentStatus Succeeded)', async () => {
    edges.propagationMs = 600;
    const sent = Date.now();
    const shifted = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    expect(shifted.error).toBeUndefined();
    expect(Date.now() - sent).toBeGreaterThanOrEqual(600);
    expect(Date.parse((shifted.result!.baseline as { at: string }).at) - sent).toBeGreaterThanOrEqual(600);
    // It said what it waited for, through NotStarted and InProgress.
    const waited = shifted.heartbeats.map((h) => (h as { deploymentStatus?: string }).deploymentStatus).filter(Boolean);
    expect(waited).toContain('NotStarted');
    expect(waited).toContain('InProgress');
  });

  it('refuses to shift, with the fix in one sentence, when priority, latency band or session affinity would override the weights', async () => {
    setOriginGroup(arm, 'afd-compliance-global', 'api-origins', { sessionAffinityState: 'Enabled' });
    let r = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    expect(r.error?.type).toBe('NonRetryable');
    expect(r.error?.message).toBe(
      'front: origin group afd-compliance-global/api-origins has session affinity on, so clients keep going to the origin they first reached whatever the weights; turn it off (az afd origin-group update --session-state Disabled) for the migration, or shift with Container App revisions instead.',
    );
    setOriginGroup(arm, 'afd-compliance-global', 'api-origins', { additionalLatencyInMilliseconds: 50 });
    r = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    expect(r.error?.message).toMatch(/^front: origin group afd-compliance-global\/api-origins has a latency sensitivity of 50 ms, .*; set it to 1000 ms \(az afd origin-group update --additional-latency-in-milliseconds 1000\) for the migration\.$/);
    setOriginGroup(arm, 'afd-compliance-global', 'api-origins');
    arm.put(origin('eastus-origin'), { type: 'Microsoft.Cdn/profiles/originGroups/origins', properties: { hostName: 'eastus-origin.azure-api.net', priority: 1, weight: 1000, enabledState: 'Enabled', provisioningState: 'Succeeded', deploymentStatus: 'Succeeded' } });
    r = await attempt(activities.shiftTraffic, input(shift('t20', 20), { front }));
    expect(r.error?.message).toMatch(/also routes to origin eastus-origin at priority 1, .*; disable eastus-origin or give it a priority above 1 \(a higher number\) for the migration\.$/);
    expect(arm.writes()).toEqual([]);
    // The check phase says it before the migration starts.
    const check = await attempt(activities.checkHealth, input(step<CheckStep>({ id: 'check', kind: 'check', resources: ['front'] }), { front }));
    expect(check.error?.message).toMatch(/^front: origin group .* also routes to origin eastus-origin/);
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

  it('judges the canary revision from Azure Monitor requests by revision and status category', async () => {
    await attempt(activities.updateApp, input(deploy, resources));
    // The smoke probe goes to the revision's own address and the app's liveness path: here, the local server.
    arm.get(`${appId('ca-compliance-api')}/revisions/ca-compliance-api--v2-0-0`)!.properties.fqdn = host;
    arm.get(appId('ca-compliance-api'))!.properties.template.containers[0].probes = [{ type: 'Liveness', httpGet: { path: '/health', port: 8080 } }];
    const t10 = step<TrafficStep>({ id: 't10', kind: 'traffic', resource: 'revisions', weight: 10, bake: '1s', analysis: { maxErrorRate: 0.01, maxResponseTimeMs: 500, minRequests: 100 } });
    const shifted = await attempt(activities.shiftTraffic, input(t10, resources));
    const rows = (revision: string, ok: number, errors: number) => [
      { dimensions: { revisionName: revision, statusCodeCategory: '2xx' }, value: ok },
      { dimensions: { revisionName: revision, statusCodeCategory: '5xx' }, value: errors },
    ];
    monitor.set(appId('ca-compliance-api'), 'Requests', [...rows('ca-compliance-api--v1', 9000, 9), ...rows('ca-compliance-api--v2-0-0', 950, 50)]);
    monitor.set(appId('ca-compliance-api'), 'ResponseTime', [{ dimensions: { revisionName: 'ca-compliance-api--v2-0-0' }, value: 120 }]);
    const run = () => attempt(activities.analyseTraffic, { ...(input(t10, resources) as object), baseline: { at: minutesAgo(5) } } as never);
    const bad = (await run()).result as { pass: boolean; reason: string };
    expect(bad.pass).toBe(false);
    expect(bad.reason).toBe("revision ca-compliance-api--v2-0-0 answered 50 of 1000 requests with 5xx over the bake (5.0%), above the plan's maximum of 1.0%.");
    expect(monitor.queries.find((q) => q.metric === 'Requests')).toMatchObject({ host: 'westeurope.metrics.monitor.azure.com', namespace: 'Microsoft.App/containerApps', filter: "revisionName eq '*' and statusCodeCategory eq '*'" });

    monitor.set(appId('ca-compliance-api'), 'Requests', [...rows('ca-compliance-api--v1', 9000, 9), ...rows('ca-compliance-api--v2-0-0', 1000, 0)]);
    const ok = (await run()).result as { pass: boolean; figures: Record<string, number> };
    expect(ok).toMatchObject({ pass: true, figures: { 'revisions.requests': 1000, 'revisions.errorRate': 0, 'revisions.rtimeMs': 120, 'revisions.stableRequests': 9009 } });
    // Where Azure has no latency metric, the verdict stands on the requests alone.
    monitor.unsupported.add('ResponseTime');
    const noLatency = (await run()).result as { pass: boolean; figures: Record<string, number> };
    expect(noLatency.pass).toBe(true);
    expect(noLatency.figures['revisions.rtimeMs']).toBeUndefined();
    expect(shifted.error).toBeUndefined();
  });

  it('sends the secrets and registries back on every update, so Azure keeps them, and never lets a value out', async () => {
    const apps = new FakeContainerApps(arm);
    const id = appId('ca-compliance-api');
    const secrets = [
      { name: 'registry-password', value: 'pa55-w0rd-for-acr' },
      { name: 'db-url', keyVaultUrl: 'https://kv-compliance.vault.azure.net/secrets/db-url', identity: 'system' },
    ];
    apps.seed(id, secrets, [{ server: 'acr.azurecr.io', username: 'acr', passwordSecretRef: 'registry-password' }]);
    const app = await attempt(activities.updateApp, input(deploy, resources));
    expect(app.error).toBeUndefined();
    const t10 = step<TrafficStep>({ id: 't10', kind: 'traffic', resource: 'revisions', weight: 10, bake: '1s', analysis: { maxErrorRate: 0.01, minRequests: 0 } });
    const shifted = await attempt(activities.shiftTraffic, input(t10, resources));
    expect(shifted.error).toBeUndefined();
    const back = await attempt(activities.undoStep, input(t10, resources, shifted.result!.undo));
    expect(back.error).toBeUndefined();
    const patches = arm.requests.filter((r) => r.method === 'PATCH');
    expect(patches).toHaveLength(3);
    for (const p of patches) {
      expect(p.body.properties.configuration.secrets).toEqual([secrets[0], secrets[1]]);
      expect(p.body.properties.configuration.registries).toEqual([{ server: 'acr.azurecr.io', username: 'acr', passwordSecretRef: 'registry-password' }]);
    }
    expect(apps.secretsOf(id)).toEqual(secrets);
    expect(arm.get(id)!.properties.configuration.registries).toHaveLength(1);
    // The value travels in the PATCH only: not in a heartbeat, result or summary.
    expect(JSON.stringify([app, shifted, back])).not.toContain('pa55-w0rd-for-acr');
  });

  it('names a revision as Azure allows: no "--" in the suffix, at most 54 characters with the app name', async () => {
    const long = step<AzureAppStep>({ ...deploy, id: 'app-rc', version: 'v2.0.0--release-candidate.1+build.20261201.abcdef' } as AzureAppStep);
    const app = await attempt(activities.updateApp, input(long, resources));
    expect(app.error).toBeUndefined();
    const name = String(app.result!.figures['api.revision']);
    expect(name).toMatch(/^ca-compliance-api--v2-0-0-release-candidate-1-b-[0-9a-f]{6}$/);
    expect(name.length).toBeLessThanOrEqual(54);
    expect(revisionSuffix('v2.0.0--rc.1', 'ca-compliance-api')).toBe('v2-0-0-rc-1');

    // A plan naming a revision Azure would refuse is refused when it loads.
    const text = readFileSync('plans/azure-small-to-medium.yaml', 'utf8').replace('canary: ca-compliance-api-westeurope--v2-0-0-medium', 'canary: ca-compliance-api-westeurope--v2--rc');
    expect(() => parsePlan(text, 'plan.yaml')).toThrow(/expected a revision suffix of lowercase letters, digits and single dashes, starting with a letter and ending with a letter or digit, got "v2--rc"/);
  });

  it('waits out a Degraded revision up to the bound, then fails with what to do', async () => {
    const slow = azureActivities(arm, { probeScheme: 'http', degradedWaitMs: 400 });
    const revision = () => arm.get(`${appId('ca-compliance-api')}/revisions/ca-compliance-api--v2-0-0`)!.properties;
    let polls = 0;
    const ok = await attempt(slow.updateApp, input(deploy, resources), {
      onHeartbeat: (d) => {
        // Degraded once created (replicas still starting) for a few polls, then Running.
        if (!arm.get(`${appId('ca-compliance-api')}/revisions/ca-compliance-api--v2-0-0`)) return;
        if ((d as { waiting?: string }).waiting) polls += 1;
        revision().runningState = polls < 5 ? 'Degraded' : 'Running';
      },
    });
    expect(ok.error).toBeUndefined();
    expect(polls).toBeGreaterThanOrEqual(5);

    const stuck = step<AzureAppStep>({ ...deploy, id: 'app-3', version: 'v3.0.0' } as AzureAppStep);
    const r3 = () => arm.get(`${appId('ca-compliance-api')}/revisions/ca-compliance-api--v3-0-0`);
    const bad = await attempt(slow.updateApp, input(stuck, resources), {
      onHeartbeat: () => {
        if (r3()) r3()!.properties.runningState = 'Degraded';
      },
    });
    expect(bad.error?.type).toBe('NonRetryable');
    expect(bad.error?.message).toMatch(/^revision ca-compliance-api--v3-0-0 of ca-compliance-api stayed Degraded for 400 ms \(some replicas are not ready\); look at its replicas' logs, fix the image or its settings and resume$/);
  });

  it('deactivates blue at finalize once green has everything, and the rollback reactivates it before traffic goes back', async () => {
    new FakeContainerApps(arm);
    await attempt(activities.updateApp, input(deploy, resources));
    const fin = step<FinalizeStep>({ id: 'finalize', kind: 'finalize', resources: ['revisions'], syncedFrom: {} });
    const early = await attempt(activities.finalizeMigration, input(fin, resources));
    expect(early.error?.message).toBe('revisions: revision ca-compliance-api--v1 still gets 100% of the traffic, so finalize cannot deactivate it; shift everything to ca-compliance-api--v2-0-0 (a traffic step at 100) or roll back, then resume');

    const t100 = step<TrafficStep>({ id: 't100', kind: 'traffic', resource: 'revisions', weight: 100, bake: '1s', analysis: { maxErrorRate: 0.01, minRequests: 0 } });
    const shifted = await attempt(activities.shiftTraffic, input(t100, resources));
    const done = await attempt(activities.finalizeMigration, input(fin, resources));
    expect(done.error).toBeUndefined();
    const blue = () => arm.get(`${appId('ca-compliance-api')}/revisions/ca-compliance-api--v1`)!.properties;
    expect(blue().active).toBe(false);
    expect(done.result!.summary).toMatch(/revision ca-compliance-api--v1 deactivated; ca-compliance-api--v2-0-0 serves everything/);
    const again = await attempt(activities.finalizeMigration, input(fin, resources));
    expect(again.result!.summary).toMatch(/already inactive/);

    const undo = await attempt(activities.undoStep, input(fin, resources, done.result!.undo));
    expect(undo.error).toBeUndefined();
    expect(blue()).toMatchObject({ active: true, runningState: 'Running' });
    expect(arm.writes()).toContain(`POST ${appId('ca-compliance-api')}/revisions/ca-compliance-api--v1/activate`);
    const back = await attempt(activities.undoStep, input(t100, resources, shifted.result!.undo));
    expect(back.error).toBeUndefined();
  });
  // --- what the seed runbooks' `az containerapp update` steps set: a Key Vault secret as a secretref env var,
  // revision labels, and scale rules ---------------------------------------------------------------------
  const kvUrl = 'https://kv-compliance.vault.azure.net/secrets/pg-compliance-app-url';
  const wired = step<AzureAppStep>({
    ...deploy,
    id: 'app-wired',
    secrets: [{ name: 'database-url', keyVaultUrl: kvUrl, identity: 'system' }],
    env: { DATABASE_URL: { secretRef: 'database-url' }, SCALE_TIER: 'medium' },
    scaleRules: [{ name: 'http-concurrency', http: { concurrency: 100 } }],
    labels: { stable: 'blue', canary: 'green' },
  } as AzureAppStep);
  const id = appId('ca-compliance-api');
  const revisionOf = (name: string) => arm.get(`${id}/revisions/${name}`)!.properties;

  it("wires the database connection into the new revision as a secretref env var whose secret Container Apps reads from Key Vault, and no value goes anywhere", async () => {
    const apps = new FakeContainerApps(arm);
    apps.seed(id, [{ name: 'registry-password', value: 'pa55-w0rd-for-acr' }], [{ server: 'acr.azurecr.io', username: 'acr', passwordSecretRef: 'registry-password' }]);
    const app = await attempt(activities.updateApp, input(wired, resources));
    expect(app.error).toBeUndefined();
    const patch = arm.requests.find((r) => r.method === 'PATCH')!.body.properties;
    // The Key Vault reference joins the secrets sent back; it has no value, only where Azure reads it.
    expect(patch.configuration.secrets).toEqual([{ name: 'registry-password', value: 'pa55-w0rd-for-acr' }, { name: 'database-url', keyVaultUrl: kvUrl, identity: 'system' }]);
    expect(patch.template.containers[0].env).toEqual([{ name: 'LOG_LEVEL', value: 'info' }, { name: 'DATABASE_URL', secretRef: 'database-url' }, { name: 'SCALE_TIER', value: 'medium' }]);
    expect(revisionOf('ca-compliance-api--v2-0-0').template.containers[0].env).toContainEqual({ name: 'DATABASE_URL', secretRef: 'database-url' });
    expect(apps.secretsOf(id)).toContainEqual({ name: 'database-url', keyVaultUrl: kvUrl, identity: 'system' });
    expect(app.result!.summary).toContain('DATABASE_URL from secret database-url');
    expect(JSON.stringify(app)).not.toContain('pa55-w0rd-for-acr');

    // An undo leaves the secret (v1 never reads it) and sends traffic back; a second deploy sends it again, unchanged.
    const undo = await attempt(activities.undoStep, input(wired, resources, app.result!.undo));
    expect(undo.error).toBeUndefined();
    expect(apps.secretsOf(id).map((s) => s.name)).toEqual(['registry-password', 'database-url']);
  });

  it('refuses, before sending anything, an env var whose secretRef names no secret; the fake ARM refuses such a PATCH, and a Key Vault secret read by an identity the app lacks', async () => {
    const dangling = step<AzureAppStep>({ ...deploy, id: 'app-dangling', env: { DATABASE_URL: { secretRef: 'database-url' } } } as AzureAppStep);
    const app = await attempt(activities.updateApp, input(dangling, resources));
    expect(app.error?.message).toBe("api: env DATABASE_URL refers to secret database-url, which neither Container App ca-compliance-api nor the step's secrets: has; add it under secrets: with its keyVaultUrl and identity");
    expect(app.error?.nonRetryable).toBe(true);
    expect(arm.writes()).toEqual([]);

    const body = (secrets: unknown[], env: unknown[]) => ({
      location: 'westeurope',
      properties: { configuration: { secrets }, template: { containers: [{ name: 'api', image: 'acr.azurecr.io/compliance-api:v2', env }] } },
    });
    const refused = async (b: unknown) => JSON.parse((await send('PATCH', id, '2026-07-01', b)).bodyAsText!).error;
    expect(await refused(body([], [{ name: 'DATABASE_URL', secretRef: 'database-url' }]))).toMatchObject({ code: 'ContainerAppSecretRefNotFound' });
    const userId = `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-api`;
    expect(await refused(body([{ name: 'database-url', keyVaultUrl: kvUrl, identity: userId }], []))).toMatchObject({ code: 'ContainerAppSecretIdentityNotFound' });
    expect(await refused(body([{ name: 'database-url', keyVaultUrl: kvUrl }], []))).toMatchObject({ code: 'ContainerAppSecretInvalid' });
    expect(arm.get(id)!.properties.template.containers[0].image).toBe('acr.azurecr.io/compliance-api:v1');
  });

  it('labels v1 blue and the new revision green (each its own URL), keeps the labels through a traffic shift, and undo removes them', async () => {
    const app = await attempt(activities.updateApp, input(wired, resources));
    expect(app.error).toBeUndefined();
    expect(arm.requests.find((r) => r.method === 'PATCH')!.body.properties.configuration.ingress.traffic).toEqual([
      { revisionName: 'ca-compliance-api--v1', weight: 100, label: 'blue' },
      { revisionName: 'ca-compliance-api--v2-0-0', weight: 0, label: 'green' },
    ]);
    expect(app.result!.figures).toMatchObject({ 'api.stableUrl': 'https://ca-compliance-api---blue.fake.azurecontainerapps.io', 'api.canaryUrl': 'https://ca-compliance-api---green.fake.azurecontainerapps.io' });

    const t10 = step<TrafficStep>({ id: 't10', kind: 'traffic', resource: 'revisions', weight: 10, bake: '1s', analysis: { maxErrorRate: 0.01, minRequests: 0 } });
    const shifted = await attempt(activities.shiftTraffic, input(t10, resources));
    expect(shifted.error).toBeUndefined();
    expect(arm.get(id)!.properties.configuration.ingress.traffic).toEqual([
      { revisionName: 'ca-compliance-api--v1', weight: 90, label: 'blue' },
      { revisionName: 'ca-compliance-api--v2-0-0', weight: 10, label: 'green' },
    ]);
    const back = await attempt(activities.undoStep, input(t10, resources, shifted.result!.undo));
    expect(back.error).toBeUndefined();
    expect(arm.get(id)!.properties.configuration.ingress.traffic).toEqual([
      { revisionName: 'ca-compliance-api--v1', weight: 100, label: 'blue' },
      { revisionName: 'ca-compliance-api--v2-0-0', weight: 0, label: 'green' },
    ]);
    const undo = await attempt(activities.undoStep, input(wired, resources, app.result!.undo));
    expect(undo.error).toBeUndefined();
    expect(arm.get(id)!.properties.configuration.ingress.traffic).toEqual([{ revisionName: 'ca-compliance-api--v1', weight: 100 }]);
  });

  it('undo puts back labels that were there before the step, and a label Azure would refuse is refused by the plan, the step and the fake ARM', async () => {
    // Labels left by an earlier release: v1 is "blue" and "prod".
    arm.get(id)!.properties.configuration.ingress.traffic = [{ revisionName: 'ca-compliance-api--v1', weight: 100, label: 'prod' }, { revisionName: 'ca-compliance-api--v1', weight: 0, label: 'blue' }];
    const app = await attempt(activities.updateApp, input(wired, resources));
    expect(app.error).toBeUndefined();
    // v1 has no unlabelled entry to take "blue", so "blue" stays a weight-0 entry of its own; v2 gets "green".
    expect(arm.get(id)!.properties.configuration.ingress.traffic).toEqual([
      { revisionName: 'ca-compliance-api--v1', weight: 100, label: 'prod' },
      { revisionName: 'ca-compliance-api--v1', weight: 0, label: 'blue' },
      { revisionName: 'ca-compliance-api--v2-0-0', weight: 0, label: 'green' },
    ]);
    const undo = await attempt(activities.undoStep, input(wired, resources, app.result!.undo));
    expect(undo.error).toBeUndefined();
    expect(arm.get(id)!.properties.configuration.ingress.traffic).toEqual([{ revisionName: 'ca-compliance-api--v1', weight: 100, label: 'prod' }, { revisionName: 'ca-compliance-api--v1', weight: 0, label: 'blue' }]);

    // A label that, with this app's name, makes a host name longer than 63 characters: the step says so before sending.
    const long = step<AzureAppStep>({ ...wired, id: 'app-long', version: 'v3.0.0', labels: { stable: 'blue', canary: `green-${'x'.repeat(40)}` } } as AzureAppStep);
    const refusedStep = await attempt(activities.updateApp, input(long, resources));
    expect(refusedStep.error?.message).toMatch(/^api: expected a revision label short enough for the host name ca-compliance-api---green-x+ \(at most 63 characters\), got 66; choose a shorter label in the plan$/);
    // An app without ingress has no URLs to label: said before anything is sent.
    const ingress = arm.get(id)!.properties.configuration.ingress;
    delete arm.get(id)!.properties.configuration.ingress;
    const noIngress = await attempt(activities.updateApp, input({ ...wired, id: 'app-no-ingress', version: 'v3.0.0' } as AzureAppStep, resources));
    expect(noIngress.error?.message).toBe('api: Container App ca-compliance-api has no ingress, so its revisions have no URLs to label; enable ingress on it or remove labels: from the step');
    arm.get(id)!.properties.configuration.ingress = ingress;
    const writes = arm.writes().length;
    const traffic = (t: unknown[]) => ({ location: 'westeurope', properties: { configuration: { ingress: { traffic: t } } } });
    for (const [t, code] of [
      [[{ revisionName: 'ca-compliance-api--v1', weight: 100, label: 'Blue_1' }], 'ContainerAppInvalidLabel'],
      [[{ revisionName: 'ca-compliance-api--v1', weight: 100, label: 'blue' }, { revisionName: 'ca-compliance-api--v1', weight: 0, label: 'blue' }], 'ContainerAppDuplicateLabel'],
    ] as const) expect(JSON.parse((await send('PATCH', id, '2026-07-01', traffic([...t]))).bodyAsText!).error.code).toBe(code);
    expect(arm.writes().length).toBe(writes + 2);

    // The plan is refused when it loads.
    const plan = readFileSync('plans/azure-small-to-medium.yaml', 'utf8');
    expect(() => parsePlan(plan.replace('labels: { stable: blue, canary: green }', 'labels: { stable: Blue, canary: green }'), 'plan.yaml')).toThrow(/expected a revision label of lowercase letters, digits and single dashes, starting with a letter and ending with a letter or digit, got "Blue"/);
    expect(() => parsePlan(plan.replace('labels: { stable: blue, canary: green }', 'labels: { stable: blue, canary: blue }'), 'plan.yaml')).toThrow(/expected a label other than the stable one \("blue"\)/);
  });

  it('gives the new revision its replica range and HTTP scale rule; after undo v1 serves with its own scale, which the step never touched', async () => {
    const app = await attempt(activities.updateApp, input(wired, resources));
    expect(app.error).toBeUndefined();
    const scale = { minReplicas: 3, maxReplicas: 10, rules: [{ name: 'http-concurrency', http: { metadata: { concurrentRequests: '100' } } }] };
    expect(arm.requests.find((r) => r.method === 'PATCH')!.body.properties.template.scale).toEqual(scale);
    expect(revisionOf('ca-compliance-api--v2-0-0').template.scale).toEqual(scale);
    expect(app.result!.summary).toContain('scale rule http-concurrency at 100 concurrent requests');
    const undo = await attempt(activities.undoStep, input(wired, resources, app.result!.undo));
    expect(undo.error).toBeUndefined();
    // Scale is revision-scoped in Container Apps: v1 keeps 1-3 replicas and no rules, and it serves everything again.
    expect(revisionOf('ca-compliance-api--v1')).toMatchObject({ active: true, template: { scale: { minReplicas: 1, maxReplicas: 3 } } });
    expect(revisionOf('ca-compliance-api--v1').template.scale.rules).toBeUndefined();
    expect(revisionOf('ca-compliance-api--v2-0-0').active).toBe(false);
    expect(arm.get(id)!.properties.configuration.ingress.traffic).toEqual([{ revisionName: 'ca-compliance-api--v1', weight: 100 }]);
  });

  it("refuses a scale Azure would refuse: in the plan, and in the fake ARM (min above max, more than 1000 replicas, a rule of no kind or concurrency 0)", async () => {
    const scale = (s: unknown) => ({ location: 'westeurope', properties: { template: { containers: [{ name: 'api', image: 'acr.azurecr.io/compliance-api:v1' }], scale: s } } });
    for (const s of [
      { minReplicas: 5, maxReplicas: 3 },
      { minReplicas: 1, maxReplicas: 1001 },
      { minReplicas: 1, maxReplicas: 3, rules: [{ name: 'http-concurrency' }] },
      { minReplicas: 1, maxReplicas: 3, rules: [{ name: 'http-concurrency', http: { metadata: { concurrentRequests: '0' } } }] },
      { minReplicas: 1, maxReplicas: 3, rules: [{ name: 'HTTP_rule', http: { metadata: { concurrentRequests: '10' } } }] },
    ]) {
      const res = await send('PATCH', id, '2026-07-01', scale(s));
      expect([res.status, JSON.parse(res.bodyAsText!).error.code]).toEqual([400, expect.stringMatching(/^ContainerAppInvalidScale(Rule)?$/)]);
    }
    expect(arm.get(id)!.properties.template.scale).toEqual({ minReplicas: 1, maxReplicas: 3 });
    const plan = readFileSync('plans/azure-small-to-medium.yaml', 'utf8');
    expect(() => parsePlan(plan.replace('minReplicas: 3', 'minReplicas: 12'), 'plan.yaml')).toThrow(/expected at least minReplicas \(12\)/);
    expect(() => parsePlan(plan.replace('concurrency: 100', 'concurrency: 0'), 'plan.yaml')).toThrow(/concurrency/);
    // A connection string with a password is refused by the loader's credential check; any literal under a credential's name by the step's.
    expect(() => parsePlan(plan.replace('DATABASE_URL: { secretRef: database-url }', 'DATABASE_URL: postgres://app:pw@db/app'), 'plan.yaml')).toThrow(/looks like a credential; plans never hold secrets/);
    expect(() => parsePlan(plan.replace('DATABASE_URL: { secretRef: database-url }', 'DATABASE_URL: pg-compliance-westeurope'), 'plan.yaml')).toThrow(
      /expected \{ secretRef: <secret> \} for DATABASE_URL, which looks like a credential, not a literal value; add the value to Key Vault and list it under secrets: with its keyVaultUrl/,
    );
    expect(() => parsePlan(plan.replace('keyVaultUrl: "https://kv-compliance-westeurope.vault.azure.net/secrets/pg-compliance-app-url"', 'value: hunter2'), 'plan.yaml')).toThrow(/secrets\[0\]\.keyVaultUrl \(line \d+\): expected a string, got nothing \(and 1 more problem/);
  });

  it("the seed plan's app step (small -> medium) runs on the fake ARM as written", async () => {
    const plan = parsePlan(readFileSync('plans/azure-small-to-medium.yaml', 'utf8'), 'plan.yaml');
    const s = plan.steps.find((x) => x.kind === 'app') as AzureAppStep;
    seedContainerApp(arm, 'ca-compliance-api-westeurope', 'ca-compliance-api-westeurope--v1-0-0');
    const res = { api: { ...plan.resources.api, subscription: SUB, resourceGroup: RG } } as unknown as Record<string, AzureResource>;
    // The seed's REDIS_URL secret is created in Key Vault by hand (the README's runbook table says why).
    const app = await attempt(activities.updateApp, input(s, res));
    expect(app.error).toBeUndefined();
    const appProps = arm.get(appId('ca-compliance-api-westeurope'))!.properties;
    expect(appProps.configuration.secrets.map((x: { name: string }) => x.name)).toEqual(['database-url', 'redis-connection-string']);
    expect(appProps.configuration.ingress.traffic.map((t: { label?: string }) => t.label)).toEqual(['blue', 'green']);
    expect(appProps.template.scale).toMatchObject({ minReplicas: 3, maxReplicas: 10, rules: [{ name: 'http-concurrency' }] });
  });

});

describe('request bodies checked against the Azure REST API specs', () => {
  it('refuses, as ARM does, an origin PATCH that does not conform to the Front Door spec, and changes nothing', async () => {
    const res = await send('PATCH', origin('northeurope-origin'), '2024-02-01', { properties: { weight: 0, priority: 6, enabledState: 'On', originGroupName: 'api-origins', provisioningState: 'Succeeded', weigth: 10 } });
    expect(res.status).toBe(400);
    const err = JSON.parse(res.bodyAsText!).error;
    expect(err.code).toBe('InvalidRequestContent');
    for (const problem of [
      'body.properties.weight must be at least 1, got 0',
      'body.properties.priority must be at most 5, got 6',
      'body.properties.enabledState must be one of "Enabled", "Disabled", got "On"',
      'body.properties.originGroupName is read-only and must not be sent',
      // An update's properties hold no provisioning state at all (only the origin as read has one).
      'body.properties.provisioningState is not a property of the model',
      'body.properties.weigth is not a property of the model',
    ]) expect(err.message).toContain(problem);
    expect(arm.get(origin('northeurope-origin'))!.properties).toMatchObject({ weight: 1, enabledState: 'Disabled', provisioningState: 'Succeeded' });
    // An origin group is not written by the provider, so its operations are not in the stored excerpt: refused too.
    expect((await send('PATCH', afdId('afd-compliance-global', 'api-origins'), '2024-02-01', { properties: {} })).status).toBe(400);
    expect(arm.specViolations).toHaveLength(2);
    arm.specViolations.length = 0;
  });

  it('refuses, as ARM does, a Container App PATCH or revision action that does not conform to the spec, and keeps the secrets', async () => {
    const apps = new FakeContainerApps(arm);
    const id = appId('ca-compliance-api');
    apps.seed(id, [{ name: 'registry-password', value: 'pa55-w0rd-for-acr' }]);
    const patch = await send('PATCH', id, '2026-07-01', {
      location: 'westeurope',
      properties: {
        latestRevisionName: 'ca-compliance-api--v1',
        configuration: { activeRevisionsMode: 'Several', ingress: { fqdn: 'ca.fake.azurecontainerapps.io', traffic: [{ revisionName: 'ca-compliance-api--v1', weight: '100' }] }, secrets: [] },
        template: { containers: [{ name: 'api', image: 'acr.azurecr.io/compliance-api:v2', resources: { cpu: 0.5, memory: '1Gi', ephemeralStorage: '2Gi' } }] },
      },
    });
    expect(patch.status).toBe(400);
    const err = JSON.parse(patch.bodyAsText!).error;
    expect(err.code).toBe('InvalidRequestContent');
    for (const problem of [
      'body.properties.latestRevisionName is read-only and must not be sent',
      'body.properties.configuration.activeRevisionsMode must be one of "Multiple", "Single", got "Several"',
      'body.properties.configuration.ingress.fqdn is read-only and must not be sent',
      'body.properties.configuration.ingress.traffic[0].weight must be an integer, got "100"',
      'body.properties.template.containers[0].resources.ephemeralStorage is read-only and must not be sent',
    ]) expect(err.message).toContain(problem);
    // The refused PATCH carried no secrets; had it reached Container Apps it would have dropped them.
    expect(apps.secretsOf(id)).toEqual([{ name: 'registry-password', value: 'pa55-w0rd-for-acr' }]);
    expect(arm.get(id)!.properties.provisioningState).toBe('Succeeded');
    // A PATCH without its required location, and a revision action with a body, are refused too.
    expect((await send('PATCH', id, '2026-07-01', { properties: {} })).status).toBe(400);
    expect((await send('POST', `${id}/revisions/ca-compliance-api--v1/deactivate`, '2026-07-01', { force: true })).status).toBe(400);
    expect(arm.get(`${id}/revisions/ca-compliance-api--v1`)!.properties.active).toBe(true);
    expect(arm.specViolations.map((v) => v.replace(/:.*/, ''))).toEqual([`PATCH ${id}`, `PATCH ${id}`, `POST ${id}/revisions/ca-compliance-api--v1/deactivate`]);
    expect(arm.specViolations[1]).toContain('body.location is required');
    expect(arm.specViolations[2]).toContain('the request has a body, which the operation does not take');
    arm.specViolations.length = 0;
  });
});
