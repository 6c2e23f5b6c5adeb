// The resource step on Azure: any resource by its ARM id, through @azure/arm-resources' `*ById` operations
// against the fake ARM (test/support/fake-arm-generic.ts): the requests it sends, what it reads before and
// after, its undo, and the drift check that a later step runs against what it left.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ResourceStep } from '../plan/types';
import { readdirSync } from 'node:fs';
import { bodyLeaves } from '../plan/phases/resource';
import { describePlan } from '../plan/describe';
import { loadPlan, parsePlan } from '../plan/load';
import { FakeArm, RG, SUB } from './support/fake-arm';
import { seedGeneric } from './support/fake-arm-generic';
import { attempt, azureActivities, lastJournal, step } from './support/fake-arm-env';

const rg = `/subscriptions/${SUB}/resourceGroups/${RG}`;
const planId = `${rg}/providers/Microsoft.Web/serverfarms/plan-teams-pilot`;
const redisId = `${rg}/providers/Microsoft.Cache/redis/redis-procgenie-prod`;
const autoscaleId = `${rg}/providers/Microsoft.Insights/autoscalesettings/autoscale-teams-prod`;
const deploymentId = `${rg}/providers/Microsoft.CognitiveServices/accounts/openai-teams-pilot/deployments/gpt-4`;

const resourceStep = (fields: Partial<ResourceStep> & Pick<ResourceStep, 'id' | 'armId' | 'apiVersion'>) =>
  step<ResourceStep>({ kind: 'resource', provider: 'azure', ...(fields.create ? {} : { method: 'PATCH' }), ...fields });

// A PUT of the plan as read: the App Service plan's PATCH model (AppServicePlanPatchResource) has no sku, so
// `az appservice plan update --sku` reads the plan and PUTs it back too.
const scaleUp = resourceStep({ id: 'app-plan', armId: planId, apiVersion: '2024-04-01', method: 'PUT', set: { 'sku.name': 'P3v3', 'sku.tier': 'PremiumV3', 'sku.capacity': 2 } });
// A Redis cache's sku is sent whole: RedisUpdateParameters requires its name, family and capacity.
const redisC3 = resourceStep({ id: 'redis', armId: redisId, apiVersion: '2024-11-01', set: { 'properties.sku.name': 'Standard', 'properties.sku.family': 'C', 'properties.sku.capacity': 3 } });
const autoscale = resourceStep({
  id: 'autoscale',
  armId: autoscaleId,
  apiVersion: '2022-10-01',
  create: {
    location: 'westeurope',
    properties: {
      enabled: true,
      targetResourceUri: planId,
      profiles: [{ name: 'cpu', capacity: { minimum: '2', maximum: '20', default: '2' }, rules: [] }],
    },
  },
});

let arm: FakeArm;
let activities: ReturnType<typeof azureActivities>;
beforeEach(() => {
  arm = new FakeArm();
  seedGeneric(arm, planId, { location: 'westeurope', sku: { name: 'B3', tier: 'Basic', capacity: 1 }, properties: { reserved: true } });
  seedGeneric(arm, redisId, { location: 'westeurope', properties: { sku: { name: 'Standard', family: 'C', capacity: 2 }, redisVersion: '6.0' } });
  seedGeneric(arm, deploymentId, { sku: { name: 'Standard', capacity: 10 }, properties: { model: { format: 'OpenAI', name: 'gpt-4', version: '0613' } } });
  activities = azureActivities(arm);
});
// Every body the resource step sent conforms to its type's REST spec (test/support/azure-specs); a test that
// sends a refused one on purpose empties the list after asserting on it.
afterEach(() => expect(arm.specViolations).toEqual([]));

/** observe -> change, as the workflow runs a resource step; the observation is what undo gets. */
async function run(s: ResourceStep) {
  const input = { migrationId: 'migration-test', step: s, resources: {} };
  const before = await attempt(activities.observeStep, input as never);
  expect(before.error).toBeUndefined();
  const changed = await attempt(activities.changeResource, { ...input, before: before.result } as never);
  return { before: before.result, ...changed };
}
const undo = (s: ResourceStep, before: unknown, recorded?: unknown) =>
  attempt(activities.undoStep, { migrationId: 'migration-test', step: s, resources: {}, before, undo: recorded } as never);
const drift = (expect: unknown) => attempt(activities.checkDrift, { migrationId: 'migration-test', step: scaleUp, resources: {}, expect: { arm: { azure: expect } } } as never);

describe('an App Service plan B3 -> P3v3', () => {
  it('reads the three properties, PUTs the plan as read with them changed as a long-running operation, reads them back, and does nothing when run again', async () => {
    const { before, result, error } = await run(scaleUp);
    expect(error).toBeUndefined();
    expect(before).toEqual({ exists: true, values: { 'sku.name': 'B3', 'sku.tier': 'Basic', 'sku.capacity': 1 } });
    expect(arm.writes()).toEqual([`PUT ${planId}`]);
    const put = arm.requests.find((r) => r.method === 'PUT')!;
    // The plan as read, less what ARM makes read-only (its provisioningState), with the step's values.
    expect(put.body).toEqual({ location: 'westeurope', sku: { name: 'P3v3', tier: 'PremiumV3', capacity: 2 }, properties: { reserved: true } });
    expect(put.apiVersion).toBe('2024-04-01');
    expect(arm.requests.some((r) => r.path.includes('/azureAsyncOperation/'))).toBe(true);
    expect(arm.get(planId)!.sku).toEqual({ name: 'P3v3', tier: 'PremiumV3', capacity: 2 });
    expect(result!.summary).toBe('Set sku.name=P3v3, sku.tier=PremiumV3, sku.capacity=2 on Microsoft.Web/serverfarms plan-teams-pilot (was sku.name=B3, sku.tier=Basic, sku.capacity=1)');

    const again = await run(scaleUp);
    expect(again.result!.summary).toMatch(/already has sku.name=P3v3, sku.tier=PremiumV3, sku.capacity=2; nothing sent/);
    expect(arm.writes()).toEqual([`PUT ${planId}`]);
  });

  it("a PATCH of the plan's sku is refused as the spec refuses it (AppServicePlanPatchResource has no sku), and changes nothing", async () => {
    const { error } = await run({ ...scaleUp, method: 'PATCH' });
    expect(error!.message).toBe(
      'setting sku.name=P3v3, sku.tier=PremiumV3, sku.capacity=2 on Microsoft.Web/serverfarms plan-teams-pilot: Azure refused the request (InvalidRequestContent: The request content was invalid and could not be deserialized: body.sku is not a property of the model); fix the plan or the resource and resume',
    );
    expect(arm.get(planId)!.sku.name).toBe('B3');
    expect(arm.specViolations).toEqual([`PATCH ${planId}: body.sku is not a property of the model`]);
    arm.specViolations.length = 0;
  });

  it('undo puts B3 and one worker back from the observation, even when the step recorded nothing', async () => {
    const { before } = await run(scaleUp);
    const { result, error } = await undo(scaleUp, before);
    expect(error).toBeUndefined();
    expect(result!.summary).toBe('Restored sku.name=B3, sku.tier=Basic, sku.capacity=1 on Microsoft.Web/serverfarms plan-teams-pilot');
    expect(arm.get(planId)!.sku).toEqual({ name: 'B3', tier: 'Basic', capacity: 1 });
    expect(arm.requests.filter((r) => r.method === 'PUT').at(-1)!.body).toEqual({ location: 'westeurope', sku: { name: 'B3', tier: 'Basic', capacity: 1 }, properties: { reserved: true } });
    // A second undo finds it restored.
    expect((await undo(scaleUp, before)).result!.summary).toMatch(/already has sku.name=B3, sku.tier=Basic, sku.capacity=1; nothing to restore/);
  });

  it('a drift check reports a hand-made change to what the step set, and nothing when it still holds', async () => {
    await run(scaleUp);
    const expectation = { [planId]: { stepId: 'app-plan', apiVersion: '2024-04-01', values: scaleUp.set } };
    expect((await drift(expectation)).result).toEqual([]);
    arm.get(planId)!.sku.name = 'P1v3';
    expect((await drift(expectation)).result).toEqual(['Microsoft.Web/serverfarms plan-teams-pilot was changed since app-plan: sku.name is P1v3, not P3v3']);
  });

  it('fails in one sentence with Azure\'s reason when Azure refuses the value, and changes nothing', async () => {
    const bad = resourceStep({ id: 'bad', armId: planId, apiVersion: '2024-04-01', method: 'PUT', set: { 'sku.name': 'P9v9' } });
    const { error } = await run(bad);
    expect(error!.message).toMatch(/^setting sku.name=P9v9 on Microsoft.Web\/serverfarms plan-teams-pilot: Azure refused the request \(InvalidSku: The pricing tier 'P9v9' is not allowed in this resource group\); fix the plan or the resource and resume$/);
    expect(arm.get(planId)!.sku.name).toBe('B3');
  });
});

describe('a worker killed while it polls the PUT', () => {
  it('the next attempt resumes the same operation from the heartbeat, without sending the PUT again', async () => {
    arm.pollsToComplete = 6;
    const input = { migrationId: 'migration-test', step: scaleUp, resources: {} };
    const before = (await attempt(activities.observeStep, input as never)).result;
    const first = await attempt(activities.changeResource, { ...input, before } as never, {
      onHeartbeat: (d, env) => {
        const op = [...arm.operations.values()][0];
        if ((d as { pending?: { op: string } } | undefined)?.pending?.op === 'resource:set' && op && op.polls >= 2) env.cancel();
      },
    });
    expect(first.error).toBeDefined();
    expect(arm.get(planId)!.properties.provisioningState).toBe('Updating');
    const journal = lastJournal(first.heartbeats) as { pending: { op: string; poller: string } };
    expect(journal.pending.op).toBe('resource:set');

    const second = await attempt(activities.changeResource, { ...input, before } as never, { resumeFrom: journal });
    expect(second.error).toBeUndefined();
    expect(arm.writes()).toEqual([`PUT ${planId}`]);
    expect(arm.operations.size).toBe(1);
    expect(arm.get(planId)!.sku.name).toBe('P3v3');
    // What undo restores is what was there before the first attempt.
    expect(second.result!.undo).toEqual({ before: { 'sku.name': 'B3', 'sku.tier': 'Basic', 'sku.capacity': 1 } });
  });
});

describe('a Redis cache Standard C2 -> C3', () => {
  it('scales, reads back, undoes to C2, and a drift check sees a hand-made scale', async () => {
    const { before, result, error } = await run(redisC3);
    expect(error).toBeUndefined();
    expect(before).toEqual({ exists: true, values: { 'properties.sku.name': 'Standard', 'properties.sku.family': 'C', 'properties.sku.capacity': 2 } });
    expect(arm.requests.find((r) => r.method === 'PATCH')!.body).toEqual({ properties: { sku: { name: 'Standard', family: 'C', capacity: 3 } } });
    expect(arm.get(redisId)!.properties.sku).toEqual({ name: 'Standard', family: 'C', capacity: 3 });
    expect(result!.undo).toEqual({ before: { 'properties.sku.name': 'Standard', 'properties.sku.family': 'C', 'properties.sku.capacity': 2 } });

    const expectation = { [redisId]: { stepId: 'redis', apiVersion: '2024-11-01', values: redisC3.set } };
    arm.get(redisId)!.properties.sku.capacity = 4;
    expect((await drift(expectation)).result).toEqual(['Microsoft.Cache/redis redis-procgenie-prod was changed since redis: properties.sku.capacity is 4, not 3']);

    expect((await undo(redisC3, before)).error).toBeUndefined();
    expect(arm.get(redisId)!.properties.sku.capacity).toBe(2);
  });

  it('an undo Azure cannot do (Premium back to Standard) fails with its reason, for an operator to decide', async () => {
    const premium = resourceStep({ id: 'premium', armId: redisId, apiVersion: '2024-11-01', set: { 'properties.sku.name': 'Premium', 'properties.sku.family': 'P', 'properties.sku.capacity': 1 } });
    const { before, error } = await run(premium);
    expect(error).toBeUndefined();
    const back = await undo(premium, before);
    expect(back.error!.message).toMatch(/Azure refused the request \(CannotScaleDown: A cache cannot be scaled from the Premium tier to the lower Standard tier\)/);
    expect(arm.get(redisId)!.properties.sku.name).toBe('Premium');
  });
});

describe('autoscale settings, created', () => {
  it('are created with the plan\'s body, deleted by undo, and a drift check notices them gone', async () => {
    const { before, result, error } = await run(autoscale);
    expect(error).toBeUndefined();
    expect(before).toEqual({ exists: false, values: {} });
    expect(arm.writes()).toEqual([`PUT ${autoscaleId}`]);
    expect(arm.requests.find((r) => r.method === 'PUT')!.body).toEqual(autoscale.create);
    expect(arm.get(autoscaleId)!.properties.profiles[0].capacity).toEqual({ minimum: '2', maximum: '20', default: '2' });
    expect(result!.summary).toBe('Created Microsoft.Insights/autoscalesettings autoscale-teams-prod (api-version 2022-10-01); undo deletes it');
    // Again: it is there as the plan creates it.
    expect((await attempt(activities.changeResource, { migrationId: 'm', step: autoscale, resources: {}, before } as never)).result!.summary).toMatch(/exists as the plan creates it; nothing sent/);

    const expectation = { [autoscaleId]: { stepId: 'autoscale', apiVersion: '2022-10-01', values: { 'properties.enabled': true }, created: true } };
    expect((await drift(expectation)).result).toEqual([]);
    arm.get(autoscaleId)!.properties.enabled = false;
    expect((await drift(expectation)).result).toEqual(['Microsoft.Insights/autoscalesettings autoscale-teams-prod was changed since autoscale: properties.enabled is false, not true']);

    const gone = await undo(autoscale, before, result!.undo);
    expect(gone.result!.summary).toBe('Deleted Microsoft.Insights/autoscalesettings autoscale-teams-prod, which the step created');
    expect(arm.get(autoscaleId)).toBeUndefined();
    expect((await drift(expectation)).result).toEqual(['Microsoft.Insights/autoscalesettings autoscale-teams-prod, which autoscale created, no longer exists']);
  });

  it('are refused in one sentence when they existed before the step, and undo leaves such ones alone', async () => {
    seedGeneric(arm, autoscaleId, { location: 'westeurope', properties: { enabled: false, targetResourceUri: planId, profiles: [] } });
    const { before, error } = await run(autoscale);
    expect(error!.message).toBe(
      'Microsoft.Insights/autoscalesettings autoscale-teams-prod existed before this step, and a create step\'s undo deletes what it creates; change the existing one with set: instead, or delete it first, then resume',
    );
    expect(arm.writes()).toEqual([]);
    expect((await undo(autoscale, before)).result!.summary).toMatch(/existed before the step; left as it is/);
    expect(arm.get(autoscaleId)).toBeDefined();
  });
});

describe('resource types without PATCH, and resource groups', () => {
  it('an Azure OpenAI deployment (PUT only) gets the resource as read, with the capacity changed, and back', async () => {
    const capacity = resourceStep({ id: 'openai', armId: deploymentId, apiVersion: '2024-10-01', set: { 'sku.capacity': 100 }, method: 'PUT' });
    const { before, error } = await run(capacity);
    expect(error).toBeUndefined();
    const put = arm.requests.find((r) => r.method === 'PUT')!;
    // The deployment as read, less its read-only provisioningState (the Deployment model refuses it in a request).
    expect(put.body).toEqual({ sku: { name: 'Standard', capacity: 100 }, properties: { model: { format: 'OpenAI', name: 'gpt-4', version: '0613' } } });
    expect((await undo(capacity, before)).error).toBeUndefined();
    expect(arm.get(deploymentId)!.sku.capacity).toBe(10);
    // With PATCH, it is refused in one sentence (the stored spec excerpt holds the deployment's PUT only, so the
    // request is refused as not one of its operations before the fake's own PUT-only rule sees it).
    const patched = await run({ ...capacity, method: 'PATCH' });
    expect(patched.error!.message).toMatch(/^setting sku.capacity=100 on .*: Azure refused the request \(InvalidRequestContent: .*PATCH .*deployments\/gpt-4 is not an operation of Microsoft\.CognitiveServices 2024-10-01/);
    expect(arm.get(deploymentId)!.sku.capacity).toBe(10);
    arm.specViolations.length = 0;
  });

  it("a Key Vault's soft-delete retention is refused by Azure after creation, which is why seed 000's step 6 stays manual", async () => {
    const vault = `${rg}/providers/Microsoft.KeyVault/vaults/kv-teams-pilot`;
    seedGeneric(arm, vault, { location: 'westeurope', properties: { tenantId: SUB, sku: { family: 'A', name: 'standard' }, softDeleteRetentionInDays: 30, enablePurgeProtection: true } });
    const retention = resourceStep({ id: 'kv', armId: vault, apiVersion: '2023-07-01', set: { 'properties.softDeleteRetentionInDays': 90 } });
    const { error } = await run(retention);
    expect(error!.message).toMatch(/Azure refused the request \(BadRequest: The soft-delete retention period of a vault is set when it is created and cannot be changed\)/);
    expect(arm.get(vault)!.properties.softDeleteRetentionInDays).toBe(30);
  });

  it('resource group tags are set (a synchronous update) and an absent tag is removed again by undo', async () => {
    seedGeneric(arm, rg, { location: 'westeurope', tags: { Environment: 'Pilot' } });
    const tags = resourceStep({ id: 'tags', armId: rg, apiVersion: '2024-03-01', set: { 'tags.Environment': 'Production', 'tags.Phase': 'Production' } });
    const { before, error } = await run(tags);
    expect(error).toBeUndefined();
    expect(before).toEqual({ exists: true, values: { 'tags.Environment': 'Pilot', 'tags.Phase': null } });
    expect(arm.get(rg)!.tags).toEqual({ Environment: 'Production', Phase: 'Production' });
    expect((await undo(tags, before)).error).toBeUndefined();
    expect(arm.get(rg)!.tags).toEqual({ Environment: 'Pilot' });
  });
});

describe('the resource step in a plan', () => {
  const plan = (provider: string, phase: string) => `apiVersion: tiershift/v1
name: resource-step
identity: unverified
resources:
  db: ${provider === 'azure' ? `{ kind: postgres, azure: { subscription: ${SUB}, resourceGroup: ${RG}, server: pg-one } }` : '{ kind: postgres, database: shop, local: { cluster: source } }'}
phases:
${phase}`;
  const steps = `  - resource: { armId: ${planId}, apiVersion: 2024-04-01, set: { sku.name: P3v3, sku.capacity: 2 } }
  - resource:
      armId: ${autoscaleId}
      apiVersion: 2022-10-01
      create: { location: westeurope, properties: { enabled: true, targetResourceUri: ${planId}, profiles: [] } }
`;

  it('the dry run shows what each step sets, how, and its rollback', () => {
    const text = describePlan(parsePlan(plan('azure', steps), 'resource.yaml'));
    expect(text).toContain('0-resource  Set sku.name=P3v3, sku.capacity=2 on Microsoft.Web/serverfarms plan-teams-pilot  [PATCH sku.name=P3v3, sku.capacity=2 at api-version 2024-04-01, then read back; rollback: the values read before it;');
    expect(text).toContain('1-resource  Create Microsoft.Insights/autoscalesettings autoscale-teams-prod  [PUT (create) at api-version 2022-10-01, then read back; rollback: DELETE it;');
    expect(text).toMatch(/Rollback order[^\n]*\n  1\. 1-resource: Delete Microsoft.Insights\/autoscalesettings autoscale-teams-prod, which the step created\n  2\. 0-resource: Put sku.name, sku.capacity of Microsoft.Web\/serverfarms plan-teams-pilot back to the values read before the step\n/);
  });

  it('is refused in one sentence on a local plan', () => {
    expect(() => parsePlan(plan('local', steps), 'local.yaml')).toThrow(
      /^local\.yaml: phases\[0\]\.resource \(line 7\): expected a plan with Azure resources \(a resource step changes an Azure resource by its ARM id\), got one whose resources are all local; leave this step out of the rehearsal, or say it is manual in a gate's instructions \(and 1 more problem/,
    );
  });

  it.each([
    ['a path outside the resource', `set: { zones: ["1"] }`, /set\.zones \(line 7\): expected a property path under sku, properties, tags, kind, identity, plan such as sku.name or properties.retentionInDays, not "zones", got a list\.$/],
    ['both set and create', `set: { sku.name: P3v3 }, create: { location: westeurope }`, /expected exactly one of set \(properties to change\) or create/],
    ['an id that is no ARM id', `set: { sku.name: P3v3 }`, /armId.*expected an ARM resource id/, 'plan-teams-pilot'],
  ])('refuses %s', (_what, fields, problem, armId = planId) => {
    expect(() => parsePlan(plan('azure', `  - resource: { armId: ${armId}, apiVersion: 2024-04-01, ${fields} }\n`), 'bad.yaml')).toThrow(problem);
  });
});

describe('every resource step of the seed plans, on the fake ARM', () => {
  /** What each type looks like before the seed plans change it (as the seeds describe the pilot or smaller tier). */
  const BEFORE: [RegExp, Record<string, unknown>][] = [
    [/\/resourceGroups\/[^/]+$/, { location: 'usgovvirginia', tags: { Environment: 'Pilot' } }],
    [/\/serverfarms\//, { location: 'usgovvirginia', sku: { name: 'B3', tier: 'Basic', capacity: 1 }, properties: { reserved: true } }],
    [/\/deployments\//, { sku: { name: 'Standard', capacity: 10 }, properties: { model: { format: 'OpenAI', name: 'gpt-4', version: '0613' } } }],
    [/\/workspaces\//, { location: 'usgovvirginia', properties: { retentionInDays: 30, sku: { name: 'PerGB2018' } } }],
    [/\/service\//, { location: 'westeurope', sku: { name: 'Developer', capacity: 1 }, properties: { publisherEmail: 'ops@example.com', publisherName: 'ops' } }],
    [/\/containerApps\//, { location: 'westeurope', properties: { configuration: { ingress: { traffic: [{ latestRevision: true, weight: 100 }] } }, template: { scale: { minReplicas: 2, maxReplicas: 20 } } } }],
    [/\/redis\//, { location: 'westeurope', properties: { sku: { name: 'Standard', family: 'C', capacity: 2 } } }],
  ];
  const plans = readdirSync('plans').filter((f) => /^azure-.*\.yaml$/.test(f));

  for (const file of plans) {
    it(`${file}: each resource step acts, reads back, holds for a drift check, and is undone`, async () => {
      const steps = loadPlan(`plans/${file}`).steps.filter((s): s is ResourceStep => s.kind === 'resource');
      expect(steps.length).toBeGreaterThan(0);
      for (const s of steps) {
        arm = new FakeArm();
        activities = azureActivities(arm);
        // What a created resource refers to (an autoscale setting's target) exists; what it creates does not.
        const target = (s.create?.properties as { targetResourceUri?: string } | undefined)?.targetResourceUri;
        for (const id of [...(s.create ? [] : [s.armId]), ...(target ? [target] : [])]) {
          const [, before] = BEFORE.find(([re]) => re.test(id)) ?? [];
          expect(before, `a before-state for ${id}`).toBeDefined();
          seedGeneric(arm, id, before!);
        }
        const original = structuredClone(arm.get(s.armId));
        const { before, result, error } = await run(s);
        expect(error, `${file} ${s.id}`).toBeUndefined();
        const want = s.create ? bodyLeaves(s.create) : s.set!;
        const expectation = { [s.armId]: { stepId: s.id, apiVersion: s.apiVersion, values: want, ...(s.create ? { created: true } : {}) } };
        expect((await drift(expectation)).result, `${file} ${s.id}`).toEqual([]);
        const back = await undo(s, before, result!.undo);
        expect(back.error, `${file} ${s.id}`).toBeUndefined();
        // Each body the step and its undo sent conforms to its type's REST spec.
        expect(arm.specViolations, `${file} ${s.id}`).toEqual([]);
        if (s.create) expect(arm.get(s.armId)).toBeUndefined();
        else for (const path of Object.keys(s.set!)) expect(JSON.stringify(path.split('.').reduce((o: any, k) => o?.[k], arm.get(s.armId)))).toBe(JSON.stringify(path.split('.').reduce((o: any, k) => o?.[k], original)));
      }
    });
  }
});

describe("request bodies checked against each type's REST spec", () => {
  /** One request straight to the fake ARM, as the SDK would send it. */
  const send = async (method: string, id: string, apiVersion: string, body?: unknown) => {
    const res = await arm.sendRequest({ url: `https://management.azure.com${id}?api-version=${apiVersion}`, method, body: body === undefined ? undefined : JSON.stringify(body), headers: { get: () => undefined } } as never);
    return { status: res.status, error: res.bodyAsText ? (JSON.parse(res.bodyAsText).error as { code: string; message: string } | undefined) : undefined };
  };
  const workspaceId = `${rg}/providers/Microsoft.OperationalInsights/workspaces/law-teams-minutes`;
  const apimId = `${rg}/providers/Microsoft.ApiManagement/service/apim-compliance-westeurope`;

  it('refuses, as ARM does, a body that does not conform, names every problem, and changes nothing', async () => {
    seedGeneric(arm, workspaceId, { location: 'westeurope', properties: { retentionInDays: 30, sku: { name: 'PerGB2018' } } });
    seedGeneric(arm, apimId, { location: 'westeurope', sku: { name: 'Developer', capacity: 1 }, properties: { publisherEmail: 'ops@example.com', publisherName: 'ops' } });
    const profile = { name: 'cpu', capacity: { minimum: '2', maximum: '20', default: '2' }, rules: [] };
    const cases: [string, string, string, unknown, string[]][] = [
      ['PATCH', planId, '2024-04-01', { sku: { name: 'P3v3' } }, ['body.sku is not a property of the model']],
      ['PUT', planId, '2024-04-01', { sku: { name: 'P3v3' }, properties: { numberOfWorkers: 2 } }, ['body.location is required', 'body.properties.numberOfWorkers is read-only and must not be sent']],
      ['PATCH', redisId, '2024-11-01', { properties: { sku: { capacity: 3 }, minimumTlsVersion: '1.3' } }, ['body.properties.sku.name is required', 'body.properties.sku.family is required', 'body.properties.minimumTlsVersion must be one of "1.0", "1.1", "1.2", got "1.3"']],
      ['PUT', autoscaleId, '2022-10-01', { location: 'westeurope', properties: { targetResourceUri: planId, profiles: Array.from({ length: 21 }, () => profile) } }, ['body.properties.profiles must have at most 20 items, got 21']],
      ['PUT', autoscaleId, '2022-10-01', { location: 'westeurope', properties: { targetResourceUri: planId, profiles: [{ ...profile, capacity: { minimum: 2, maximum: '20' }, rules: [{ metricTrigger: { metricName: 'CpuPercentage', operator: 'Above' }, scaleAction: { direction: 'Increase', type: 'ChangeCount', cooldown: 'PT5M' } }] }] } }, [
        'body.properties.profiles[0].capacity.default is required',
        'body.properties.profiles[0].capacity.minimum must be a string, got number',
        'body.properties.profiles[0].rules[0].metricTrigger.metricResourceUri is required',
        'body.properties.profiles[0].rules[0].metricTrigger.operator must be one of',
      ]],
      ['PATCH', workspaceId, '2023-09-01', { properties: { retentionInDays: '90', customerId: 'x' } }, ['body.properties.retentionInDays must be an integer, got "90"', 'body.properties.customerId is read-only and must not be sent']],
      ['PUT', deploymentId, '2024-10-01', { sku: { capacity: 100 }, properties: { provisioningState: 'Succeeded' } }, ['body.sku.name is required', 'body.properties.provisioningState is read-only and must not be sent']],
      ['PATCH', apimId, '2024-05-01', { sku: { name: 'Gold', capacity: 1 } }, ['body.sku.name must be one of "Developer", "Standard", "Premium", "Basic", "Consumption", "Isolated", "BasicV2", "StandardV2", got "Gold"']],
    ];
    for (const [method, id, apiVersion, body, problems] of cases) {
      const before = structuredClone(arm.get(id));
      const res = await send(method, id, apiVersion, body);
      expect([res.status, res.error?.code], `${method} ${id}`).toEqual([400, 'InvalidRequestContent']);
      for (const p of problems) expect(res.error!.message, `${method} ${id}`).toContain(p);
      expect(arm.get(id), `${method} ${id}`).toEqual(before);
    }
    expect(arm.specViolations).toHaveLength(cases.length);
    expect(arm.operations.size).toBe(0);
    arm.specViolations.length = 0;
  });

  it('accepts what the seed plans send: the bodies in the tests above conform, and a write the excerpt lacks is refused as such', async () => {
    // A write the stored excerpt has no operation for (here, a DELETE of a workspace) is refused until its operation is added.
    seedGeneric(arm, workspaceId, { location: 'westeurope', properties: { retentionInDays: 30 } });
    const res = await send('DELETE', workspaceId, '2023-09-01');
    expect(res.error?.message).toContain(`DELETE ${workspaceId} is not an operation of Microsoft.OperationalInsights 2023-09-01 (or the stored excerpt lacks it)`);
    expect(arm.get(workspaceId)).toBeDefined();
    arm.specViolations.length = 0;
    // A conforming body of each kind the step sends goes through.
    expect((await send('PATCH', workspaceId, '2023-09-01', { properties: { retentionInDays: 90 } })).status).toBe(202);
    expect((await send('PATCH', redisId, '2024-11-01', { properties: { sku: { name: 'Standard', family: 'C', capacity: 3 } } })).status).toBe(202);
    expect(arm.specViolations).toEqual([]);
  });
});
