// The Azure provider's PostgreSQL Flexible Server operations, through the real SDK against a fake ARM:
// the requests it sends, ARM's long-running-operation protocol, faults, and a worker killed mid-poll.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AzureInfraStep, AzureResource } from '../activities/azure/provider';
import type { BackupStep, DataStep, FinalizeStep } from '../plan/types';
import { validateAgainstSpec } from './support/azure-specs/validate';
import { FakeArm, fakeCredential, pgId, seedServer } from './support/fake-arm';
import { attempt, azureActivities, input, lastJournal, scope, step } from './support/fake-arm-env';
import { createActivities } from '../activities';
import { createAzureProvider } from '../activities/azure';

/** The provider with a short bound on the wait for a Healthy standby. */
const createBounded = (arm: FakeArm) =>
  createActivities({ azure: createAzureProvider({ credential: fakeCredential, httpClient: arm, retryOptions: { maxRetries: 0 }, pollIntervalMs: 10, haHealthyWithinMs: 200 }) });

const resources: Record<string, AzureResource> = {
  db: { name: 'db', kind: 'postgres', server: 'pg-compliance-westeurope', ...scope },
  replica: { name: 'replica', kind: 'postgres', server: 'pg-compliance-northeurope-replica', location: 'northeurope', ...scope },
};
const server = pgId('pg-compliance-westeurope');

const mediumTier = step<AzureInfraStep>({
  id: 'infra',
  kind: 'infra',
  resource: 'db',
  sku: 'Standard_D2ds_v4',
  tier: 'GeneralPurpose',
  storageGb: 256,
  highAvailability: true,
  backupRetentionDays: 30,
  settings: { max_connections: 200, 'pgbouncer.enabled': true },
});

let arm: FakeArm;
let activities: ReturnType<typeof azureActivities>;
beforeEach(() => {
  arm = new FakeArm();
  seedServer(arm, 'pg-compliance-westeurope');
  activities = azureActivities(arm);
});
// Every body the provider sent in these tests conforms to the PostgreSQL spec of api-version 2025-08-01.
afterEach(() => expect(arm.specViolations).toEqual([]));

describe('infra prep on a Flexible Server', () => {
  it('scales up, then turns HA on, sets parameters and restarts for the static one, each as a long-running operation', async () => {
    const { result, error } = await attempt(activities.prepareInfra, input(mediumTier, resources));
    expect(error).toBeUndefined();
    expect(arm.writes()).toEqual([
      `PATCH ${server}`,
      `PATCH ${server}`,
      `PUT ${server}/configurations/max_connections`,
      `PUT ${server}/configurations/pgbouncer.enabled`,
      `POST ${server}/restart`,
    ]);
    const patches = arm.requests.filter((r) => r.method === 'PATCH');
    expect(patches[0]!.body).toEqual({ sku: { name: 'Standard_D2ds_v4', tier: 'GeneralPurpose' }, properties: { storage: { storageSizeGB: 256 }, backup: { backupRetentionDays: 30 } } });
    expect(patches[1]!.body).toEqual({ properties: { highAvailability: { mode: 'ZoneRedundant' } } });
    expect(arm.requests.find((r) => r.path.endsWith('/max_connections') && r.method === 'PUT')!.body).toEqual({ properties: { value: '200', source: 'user-override' } });
    // Every request carries the SDK's api-version, and the poller followed Azure-AsyncOperation.
    expect(new Set(arm.requests.map((r) => r.apiVersion))).toEqual(new Set(['2025-08-01']));
    expect(arm.requests.some((r) => r.path.includes('/azureAsyncOperation/'))).toBe(true);

    const s = arm.get(server)!;
    expect(s.sku).toEqual({ name: 'Standard_D2ds_v4', tier: 'GeneralPurpose' });
    expect(s.properties.highAvailability.mode).toBe('ZoneRedundant');
    expect(result!.summary).toMatch(/now runs with GeneralPurpose Standard_D2ds_v4, 256 GB storage, ZoneRedundant high availability, 30-day backups, max_connections=200/);
    expect(result!.undo).toEqual({
      before: { sku: { name: 'Standard_B2s', tier: 'Burstable' }, storageGb: 128, highAvailability: 'Disabled', backupRetentionDays: 7, settings: { max_connections: '50', 'pgbouncer.enabled': 'false' } },
    });

    // Run again: the server already matches, so nothing is sent.
    const before = arm.writes().length;
    const again = await attempt(activities.prepareInfra, input(mediumTier, resources));
    expect(again.result!.summary).toMatch(/already runs with .*nothing changed/);
    expect(arm.writes().length).toBe(before);
  });

  it('refuses to shrink storage with one clear sentence and sends nothing', async () => {
    const shrink = step<AzureInfraStep>({ id: 'shrink', kind: 'infra', resource: 'db', storageGb: 64, settings: {} });
    const { error } = await attempt(activities.prepareInfra, input(shrink, resources));
    expect(error?.message).toBe('server pg-compliance-westeurope has 128 GB of storage and Azure cannot shrink it, but the plan asks for 64 GB; set storageGb to at least 128');
    expect(error?.type).toBe('NonRetryable');
    expect(arm.writes()).toEqual([]);
  });

  it('rides out throttling (429 with Retry-After) and a 500 inside the SDK pipeline', async () => {
    arm.fault({ method: 'PATCH', path: /flexibleServers\/pg-compliance-westeurope$/, status: 429, headers: { 'retry-after': '1' }, body: { error: { code: 'TooManyRequests', message: 'Throttled' } } });
    arm.fault({ method: 'GET', path: /azureAsyncOperation/, status: 500 });
    const started = Date.now();
    const { error } = await attempt(activities.prepareInfra, input(step<AzureInfraStep>({ id: 'infra', kind: 'infra', resource: 'db', sku: 'Standard_D2ds_v4', tier: 'GeneralPurpose', settings: {} }), resources));
    expect(error).toBeUndefined();
    // The throttled PATCH was sent again after Retry-After (1 s); the accepted one is the only change.
    expect(arm.writes()).toEqual([`PATCH ${server}`, `PATCH ${server}`]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(arm.get(server)!.sku.name).toBe('Standard_D2ds_v4');
  });

  it("turns Azure's validation errors into a non-retryable failure carrying Azure's message", async () => {
    const bad = step<AzureInfraStep>({ id: 'bad', kind: 'infra', resource: 'db', sku: 'D2ds-v4', tier: 'GeneralPurpose', settings: {} });
    const { error } = await attempt(activities.prepareInfra, input(bad, resources));
    expect(error?.type).toBe('NonRetryable');
    expect(error?.message).toBe(
      "updating SKU of server pg-compliance-westeurope: Azure refused the request (InvalidSkuName: The SKU 'D2ds-v4' is invalid for tier 'GeneralPurpose'); fix the plan or the resource and resume",
    );
  });

  it('refuses HA on a Burstable server in one sentence before sending anything, not with an Azure 400 halfway', async () => {
    const haOnBurstable = step<AzureInfraStep>({ id: 'ha', kind: 'infra', resource: 'db', highAvailability: 'SameZone', backupRetentionDays: 14, settings: {} });
    const ha = await attempt(activities.prepareInfra, input(haOnBurstable, resources));
    expect(ha.error?.message).toBe(
      'server pg-compliance-westeurope would be Burstable with SameZone high availability, which Azure does not offer; set highAvailability: Disabled or a GeneralPurpose or MemoryOptimized tier in the plan',
    );
    expect(ha.error?.nonRetryable).toBe(true);
    expect(arm.writes()).toEqual([]);
  });

  it('a 409 conflict is retryable, and the retried attempt completes the change', async () => {
    arm.fault({ method: 'PATCH', path: /flexibleServers\/pg-compliance-westeurope$/, status: 409, body: { error: { code: 'ServerBusy', message: 'Server is busy with another operation.' } } });
    const s = step<AzureInfraStep>({ id: 'infra', kind: 'infra', resource: 'db', backupRetentionDays: 14, settings: {} });
    const first = await attempt(activities.prepareInfra, input(s, resources));
    expect(first.error?.type).toBe('AzureConflict');
    expect(first.error?.nonRetryable).toBeFalsy();
    const second = await attempt(activities.prepareInfra, input(s, resources), { resumeFrom: lastJournal(first.heartbeats) });
    expect(second.error).toBeUndefined();
    expect(arm.get(server)!.properties.backup.backupRetentionDays).toBe(14);
  });

  it('waits while the server is Updating instead of sending a change ARM would refuse', async () => {
    arm.get(server)!.properties.state = 'Updating';
    setTimeout(() => (arm.get(server)!.properties.state = 'Ready'), 150);
    const { error } = await attempt(activities.prepareInfra, input(step<AzureInfraStep>({ id: 'i', kind: 'infra', resource: 'db', backupRetentionDays: 21, settings: {} }), resources));
    expect(error).toBeUndefined();
    expect(arm.requests.filter((r) => r.method === 'GET' && r.path === server).length).toBeGreaterThan(2);
  });

  it('an operation Azure reports as Failed fails the step with its error', async () => {
    arm.failNextOperation = { code: 'InvalidParameterValue', message: 'The storage tier P30 is not valid for 512 GB.' };
    const { error } = await attempt(activities.prepareInfra, input(step<AzureInfraStep>({ id: 'i', kind: 'infra', resource: 'db', storageGb: 512, settings: {} }), resources));
    expect(error?.type).toBe('NonRetryable');
    expect(error?.message).toMatch(/The storage tier P30 is not valid for 512 GB/);
  });
});

describe('high availability: a mode, a standby zone, and a Healthy standby', () => {
  const gp = { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' };

  it('turns on SameZone HA where the plan says so (a region without zones), and undo puts back exactly what was there', async () => {
    seedServer(arm, 'pg-compliance-westeurope', gp);
    const sameZone = step<AzureInfraStep>({ id: 'ha', kind: 'infra', resource: 'db', highAvailability: 'SameZone', settings: {} });
    const done = await attempt(activities.prepareInfra, input(sameZone, resources));
    expect(done.error).toBeUndefined();
    expect(arm.requests.filter((r) => r.method === 'PATCH').map((r) => r.body)).toEqual([{ properties: { highAvailability: { mode: 'SameZone' } } }]);
    expect(arm.get(server)!.properties.highAvailability).toEqual({ mode: 'SameZone', state: 'Healthy', standbyAvailabilityZone: '1' });
    expect(done.result!.undo).toMatchObject({ before: { highAvailability: 'Disabled' } });
    await attempt(activities.undoStep, input(sameZone, resources, done.result!.undo));
    expect(arm.get(server)!.properties.highAvailability.mode).toBe('Disabled');
  });

  it('undoing a ZoneRedundant step on a SameZone server puts SameZone back, not ZoneRedundant', async () => {
    seedServer(arm, 'pg-compliance-westeurope', { ...gp, highAvailability: 'SameZone' });
    const zr = step<AzureInfraStep>({ id: 'ha', kind: 'infra', resource: 'db', highAvailability: 'ZoneRedundant', standbyZone: '3', settings: {} });
    const done = await attempt(activities.prepareInfra, input(zr, resources));
    expect(done.error).toBeUndefined();
    // Azure changes a mode only through Disabled.
    expect(arm.requests.filter((r) => r.method === 'PATCH').map((r) => r.body)).toEqual([
      { properties: { highAvailability: { mode: 'Disabled' } } },
      { properties: { highAvailability: { mode: 'ZoneRedundant', standbyAvailabilityZone: '3' } } },
    ]);
    expect(arm.get(server)!.properties.highAvailability).toMatchObject({ mode: 'ZoneRedundant', standbyAvailabilityZone: '3' });
    expect(done.result!.undo).toMatchObject({ before: { highAvailability: 'SameZone' } });
    const undone = await attempt(activities.undoStep, input(zr, resources, done.result!.undo));
    expect(undone.error).toBeUndefined();
    expect(arm.get(server)!.properties.highAvailability).toEqual({ mode: 'SameZone', state: 'Healthy', standbyAvailabilityZone: '1' });
    // A record from before modes (a boolean) still undoes: true was ZoneRedundant.
    const legacy = await attempt(activities.undoStep, input(zr, resources, { before: { highAvailability: true, settings: {} } }));
    expect(legacy.error).toBeUndefined();
    expect(arm.get(server)!.properties.highAvailability.mode).toBe('ZoneRedundant');
  });

  it('waits, heartbeating, until the standby is Healthy, and fails the attempt (retryable) when it takes longer than the bound', async () => {
    seedServer(arm, 'pg-compliance-westeurope', gp);
    arm.haHealthyAfterMs = 300;
    const zr = step<AzureInfraStep>({ id: 'ha', kind: 'infra', resource: 'db', highAvailability: 'ZoneRedundant', settings: {} });
    const done = await attempt(activities.prepareInfra, input(zr, resources));
    expect(done.error).toBeUndefined();
    expect(arm.get(server)!.properties.highAvailability.state).toBe('Healthy');
    expect(done.result!.figures['db.standby']).toBe('Healthy');
    expect(done.heartbeats.some((h) => (h as { standby?: string }).standby === 'ReplicatingData')).toBe(true);

    const slow = new FakeArm();
    seedServer(slow, 'pg-compliance-westeurope', gp);
    slow.haHealthyAfterMs = 60_000;
    const bounded = createBounded(slow);
    const late = await attempt(bounded.prepareInfra, input(zr, resources));
    expect(late.error?.message).toBe('the standby of server pg-compliance-westeurope is still ReplicatingData after 0 minutes; retrying waits again');
    expect(late.error?.nonRetryable).toBeFalsy();
  });
});

describe('a primary with read replicas', () => {
  const gp = { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' };
  const replicaId = pgId('pg-compliance-northeurope-replica');
  const cfg = (id: string, name: string) => arm.get(`${id}/configurations/${name}`)!.properties.value;
  beforeEach(() => {
    seedServer(arm, 'pg-compliance-westeurope', gp);
    seedServer(arm, 'pg-compliance-northeurope-replica', { ...gp, replicaOf: 'pg-compliance-westeurope' });
  });

  it('raises a replica-bound parameter on the replicas before the primary, and undo lowers the primary before the replicas', async () => {
    const up = step<AzureInfraStep>({ id: 'up', kind: 'infra', resource: 'db', settings: { max_connections: 200, work_mem: 8192 } });
    const done = await attempt(activities.prepareInfra, input(up, resources));
    expect(done.error).toBeUndefined();
    expect(arm.writes()).toEqual([
      `PUT ${replicaId}/configurations/max_connections`,
      `PUT ${server}/configurations/max_connections`,
      `PUT ${server}/configurations/work_mem`,
      `POST ${server}/restart`,
      `POST ${replicaId}/restart`,
    ]);
    expect([cfg(server, 'max_connections'), cfg(replicaId, 'max_connections')]).toEqual(['200', '200']);
    expect(done.result!.undo).toMatchObject({ before: { settings: { max_connections: '50' }, replicas: { 'pg-compliance-northeurope-replica': { max_connections: '50' } } } });

    arm.requests.length = 0;
    const undone = await attempt(activities.undoStep, input(up, resources, done.result!.undo));
    expect(undone.error).toBeUndefined();
    expect(arm.writes().filter((w) => w.startsWith('PUT'))).toEqual([
      `PUT ${server}/configurations/max_connections`,
      `PUT ${server}/configurations/work_mem`,
      `PUT ${replicaId}/configurations/max_connections`,
    ]);
    expect([cfg(server, 'max_connections'), cfg(replicaId, 'max_connections')]).toEqual(['50', '50']);
  });

  it('lowers a replica-bound parameter on the primary only: a replica may hold more than its primary', async () => {
    const down = step<AzureInfraStep>({ id: 'down', kind: 'infra', resource: 'db', settings: { max_connections: 30 } });
    const done = await attempt(activities.prepareInfra, input(down, resources));
    expect(done.error).toBeUndefined();
    expect(arm.writes().filter((w) => w.startsWith('PUT'))).toEqual([`PUT ${server}/configurations/max_connections`]);
    expect([cfg(server, 'max_connections'), cfg(replicaId, 'max_connections')]).toEqual(['30', '50']);
  });

  it('refuses to scale a primary with replicas to Burstable, in one sentence, before sending anything', async () => {
    const burst = step<AzureInfraStep>({ id: 'b', kind: 'infra', resource: 'db', sku: 'Standard_B2s', tier: 'Burstable', settings: {} });
    const { error } = await attempt(activities.prepareInfra, input(burst, resources));
    expect(error?.message).toBe(
      'server pg-compliance-westeurope has read replicas and Azure has none on the Burstable tier; keep a GeneralPurpose or MemoryOptimized tier in the plan, or delete the replicas first',
    );
    expect(arm.writes()).toEqual([]);
  });
});

describe('storage autogrow', () => {
  it('leaves storage that autogrow grew past the plan alone, says so, and neither refuses nor shrinks it', async () => {
    seedServer(arm, 'pg-compliance-westeurope', { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4', storageGb: 512, autoGrow: 'Enabled' });
    const s = step<AzureInfraStep>({ id: 'st', kind: 'infra', resource: 'db', storageGb: 256, backupRetentionDays: 14, settings: {} });
    const { result, error } = await attempt(activities.prepareInfra, input(s, resources));
    expect(error).toBeUndefined();
    expect(arm.requests.filter((r) => r.method === 'PATCH').map((r) => r.body)).toEqual([{ properties: { backup: { backupRetentionDays: 14 } } }]);
    expect(arm.get(server)!.properties.storage.storageSizeGB).toBe(512);
    expect(result!.summary).toMatch(/; storage autogrow has it at 512 GB already, more than the plan's 256 GB, so it stays$/);
  });
});

describe('409s by error code', () => {
  it('a 409 for an operation in progress is retried; ServerAlreadyExists fails for good in one sentence', async () => {
    seedServer(arm, 'pg-compliance-westeurope', { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' });
    arm.fault({ method: 'PUT', path: /northeurope-replica$/, status: 409, body: { error: { code: 'ServerAlreadyExists', message: "Specified server name 'pg-compliance-northeurope-replica' is already used." } } });
    const data = step<DataStep>({ id: 'r', kind: 'data', from: 'db', to: 'replica', verify: true });
    const { error } = await attempt(activities.syncData, input(data, resources));
    expect(error?.nonRetryable).toBe(true);
    expect(error?.message).toBe(
      "creating read replica pg-compliance-northeurope-replica of pg-compliance-westeurope: Azure refused it (ServerAlreadyExists: Specified server name 'pg-compliance-northeurope-replica' is already used); server names are unique across Azure: name another server in the plan, or delete the existing one, then resume",
    );
    arm.fault({ method: 'PUT', path: /northeurope-replica$/, status: 409, body: { error: { code: 'OperationInProgress', message: 'An operation is in progress on the server.' } } });
    const busy = await attempt(activities.syncData, input(data, resources));
    expect(busy.error?.type).toBe('AzureConflict');
    expect(busy.error?.nonRetryable).toBeFalsy();
  });
});

describe('a worker killed while it polls a long-running operation', () => {
  it('the next attempt resumes the same operation from the heartbeat, without sending the PATCH again', async () => {
    arm.pollsToComplete = 6;
    const s = step<AzureInfraStep>({ id: 'infra', kind: 'infra', resource: 'db', sku: 'Standard_D4ds_v4', tier: 'GeneralPurpose', settings: {} });
    const first = await attempt(activities.prepareInfra, input(s, resources), {
      onHeartbeat: (d, env) => {
        const j = d as { pending?: { op: string } } | undefined;
        const op = [...arm.operations.values()][0];
        // Killed after Azure accepted the PATCH and the poller has polled twice.
        if (j?.pending?.op === 'do:compute' && op && op.polls >= 2) env.cancel();
      },
    });
    expect(first.error).toBeDefined();
    expect(arm.get(server)!.properties.state).toBe('Updating');
    const journal = lastJournal(first.heartbeats) as { pending: { op: string; poller: string }; before: unknown };
    expect(journal.pending.op).toBe('do:compute');
    expect(JSON.parse(journal.pending.poller).state.config.operationLocation).toMatch(/azureAsyncOperation\/op-1/);

    const second = await attempt(activities.prepareInfra, input(s, resources), { resumeFrom: journal });
    expect(second.error).toBeUndefined();
    expect(arm.writes()).toEqual([`PATCH ${server}`]);
    expect(arm.operations.size).toBe(1);
    expect(arm.get(server)!.sku.name).toBe('Standard_D4ds_v4');
    expect(second.result!.summary).toMatch(/resumed an operation a previous attempt started/);
    // What compensation restores is what was there before the first attempt, not what the second found.
    expect((second.result!.undo as { before: { sku: unknown } }).before.sku).toEqual({ name: 'Standard_B2s', tier: 'Burstable' });
  });
});

describe('compensation', () => {
  it('restores what was observed before the first attempt of an infra step that failed after acting', async () => {
    const before = await attempt(activities.observeStep, input(mediumTier, resources));
    expect(before.result).toEqual({
      before: { sku: { name: 'Standard_B2s', tier: 'Burstable' }, storageGb: 128, highAvailability: 'Disabled', backupRetentionDays: 7, settings: { max_connections: '50', 'pgbouncer.enabled': 'false' } },
    });
    expect(arm.writes()).toEqual([]);
    await attempt(activities.prepareInfra, input(mediumTier, resources));
    // No undo record: the step never reported success.
    const { result, error } = await attempt(activities.undoStep, { ...(input(mediumTier, resources) as object), before: before.result } as never);
    expect(error).toBeUndefined();
    expect(arm.get(server)!.sku.tier).toBe('Burstable');
    expect(arm.get(server)!.properties.highAvailability.mode).toBe('Disabled');
    expect(arm.get(`${server}/configurations/max_connections`)!.properties.value).toBe('50');
    expect(result!.summary).toMatch(/^pg-compliance-westeurope restored to Burstable Standard_B2s/);
  });

  it('restores SKU, HA and parameters (HA off before the scale down) and says that storage cannot shrink', async () => {
    const done = await attempt(activities.prepareInfra, input(mediumTier, resources));
    arm.requests.length = 0;
    const { result, error } = await attempt(activities.undoStep, input(mediumTier, resources, done.result!.undo));
    expect(error).toBeUndefined();
    const patches = arm.requests.filter((r) => r.method === 'PATCH').map((r) => r.body);
    expect(patches).toEqual([
      { properties: { highAvailability: { mode: 'Disabled' } } },
      { sku: { name: 'Standard_B2s', tier: 'Burstable' }, properties: { backup: { backupRetentionDays: 7 } } },
    ]);
    const s = arm.get(server)!;
    expect(s.sku.tier).toBe('Burstable');
    expect(s.properties.storage.storageSizeGB).toBe(256);
    expect(arm.get(`${server}/configurations/max_connections`)!.properties.value).toBe('50');
    expect(result!.summary).toMatch(/storage stays at 256 GB because Azure cannot shrink a Flexible Server's storage \(it was 128 GB before the migration\)/);
    expect(result!.figures['db.storageNotRestoredGb']).toBe(256);
  });
});

describe('backups, read replicas and promotion', () => {
  it('takes an on-demand backup once and reuses it when the step runs again', async () => {
    const b = step<BackupStep>({ id: 'backup', kind: 'backup', resources: ['db'], verifyRestore: false });
    const first = await attempt(activities.backupDatabase, input(b, resources));
    expect(first.error).toBeUndefined();
    expect(arm.writes()).toEqual([`PUT ${server}/backups/ts-migration-test-backup-db`]);
    expect(first.result!.summary).toMatch(/Took on-demand backup ts-migration-test-backup-db/);
    // Not "never deleted": Azure deletes an on-demand backup when the retention period ends, and says so.
    expect(first.result!.summary).toMatch(/; Azure keeps it for the server's 7-day backup retention period \(until about \d{4}-\d\d-\d\d\) and then deletes it$/);
    const kept = await attempt(activities.undoStep, input(b, resources, first.result!.undo));
    expect(kept.result!.summary).toBe(`Kept backup ${server}/backups/ts-migration-test-backup-db (a rollback does not delete backups)`);
    const again = await attempt(activities.backupDatabase, input(b, resources));
    expect(again.result!.summary).toMatch(/Kept existing on-demand backup/);
    expect(arm.writes()).toHaveLength(1);
  });

  it('creates a read replica in the other region, switches over to it at finalize through a virtual endpoint, and a second switchover reverses it', async () => {
    seedServer(arm, 'pg-compliance-westeurope', { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' });
    const replicaId = pgId('pg-compliance-northeurope-replica');
    const data = step<DataStep>({ id: 'replica', kind: 'data', from: 'db', to: 'replica', verify: true });
    const sync = await attempt(activities.syncData, input(data, resources));
    expect(sync.error).toBeUndefined();
    const put = arm.requests.find((r) => r.method === 'PUT')!;
    expect(put.path).toBe(replicaId);
    expect(put.body).toEqual({ location: 'northeurope', properties: { createMode: 'Replica', sourceServerResourceId: server } });
    expect(sync.result!.summary).toMatch(/Created read replica pg-compliance-northeurope-replica of pg-compliance-westeurope in northeurope; replication Active/);

    arm.requests.length = 0;
    const fin = step<FinalizeStep>({ id: 'fin', kind: 'finalize', resources: ['replica'], syncedFrom: { replica: 'db' } });
    const promoted = await attempt(activities.finalizeMigration, input(fin, resources));
    expect(promoted.error).toBeUndefined();
    expect(arm.requests.filter((r) => r.method !== 'GET').map((r) => [r.method, r.path, r.body])).toEqual([
      ['PUT', `${server}/virtualendpoints/pg-compliance-westeurope-vep`, { properties: { endpointType: 'ReadWrite', members: ['pg-compliance-northeurope-replica'] } }],
      ['PATCH', replicaId, { properties: { replica: { promoteMode: 'Switchover', promoteOption: 'Planned' } } }],
    ]);
    expect(arm.get(replicaId)!.properties.replicationRole).toBe('Primary');
    expect(arm.get(server)!.properties).toMatchObject({ replicationRole: 'AsyncReplica', sourceServerResourceId: replicaId });
    expect(promoted.result!.summary).toMatch(
      /^Switched over: pg-compliance-northeurope-replica is now the primary and pg-compliance-westeurope replicates from it; the writer endpoint pg-compliance-westeurope-vep.writer.postgres.database.azure.com follows the primary\. To reverse it, switch over again/,
    );
    expect(promoted.result!.figures['replica.promoteMode']).toBe('Switchover');
    // Run again (a retry after the operation ended): nothing is sent.
    const writes = arm.writes().length;
    expect((await attempt(activities.finalizeMigration, input(fin, resources))).result!.summary).toMatch(/^Already switched over/);
    expect(arm.writes()).toHaveLength(writes);

    // Rolling the data step back now would delete the primary: refused in one sentence.
    const early = await attempt(activities.undoStep, input(data, resources, sync.result!.undo));
    expect(early.error?.message).toMatch(/^server pg-compliance-northeurope-replica has been the primary since the switchover and pg-compliance-westeurope replicates from it, so deleting it would delete the primary; switch back first/);
    expect(arm.get(replicaId)).toBeDefined();

    // The way back: a switchover the other way, through the same endpoint.
    const back = await attempt(activities.finalizeMigration, input(step<FinalizeStep>({ id: 'back', kind: 'finalize', resources: ['db'], syncedFrom: { db: 'replica' } }), resources));
    expect(back.error).toBeUndefined();
    expect(arm.writes().slice(writes)).toEqual([`PATCH ${server}`]);
    expect(arm.get(server)!.properties.replicationRole).toBe('Primary');
    expect(arm.get(replicaId)!.properties).toMatchObject({ replicationRole: 'AsyncReplica', sourceServerResourceId: server });

    const undo = await attempt(activities.undoStep, input(data, resources, sync.result!.undo));
    expect(undo.error).toBeUndefined();
    expect(arm.writes().at(-1)).toBe(`DELETE ${replicaId}`);
    expect(arm.get(replicaId)).toBeUndefined();
  });

  it('past the point of no return, rolling back switches back: the original primary is the writer again, then the replica goes', async () => {
    seedServer(arm, 'pg-compliance-westeurope', { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' });
    const replicaId = pgId('pg-compliance-northeurope-replica');
    const data = step<DataStep>({ id: 'replica', kind: 'data', from: 'db', to: 'replica', verify: true });
    const sync = await attempt(activities.syncData, input(data, resources));
    expect(sync.error).toBeUndefined();
    const fin = step<FinalizeStep>({ id: 'fin', kind: 'finalize', resources: ['replica'], syncedFrom: { replica: 'db' }, pointOfNoReturn: { gate: 'point-of-no-return', recovery: 'switch-back' } });
    expect((await attempt(activities.finalizeMigration, input(fin, resources))).error).toBeUndefined();
    expect(arm.get(replicaId)!.properties.replicationRole).toBe('Primary');
    const writerOf = (serverId: string) => [...arm.resources.values()].find((r) => r.id.toLowerCase().startsWith(`${serverId.toLowerCase()}/virtualendpoints/`));
    expect(writerOf(replicaId)?.properties.members).toEqual(['pg-compliance-westeurope']);

    // The rollback's recovery, as the workflow sends it (undoStep of the finalize, no part).
    const before = arm.writes().length;
    const back = await attempt(activities.undoStep, input(fin, resources));
    expect(back.error).toBeUndefined();
    expect(arm.writes().slice(before)).toEqual([`PATCH ${server}`]);
    expect(arm.requests.filter((r) => r.method === 'PATCH').at(-1)!.body).toEqual({ properties: { replica: { promoteMode: 'Switchover', promoteOption: 'Planned' } } });
    expect(arm.get(server)!.properties.replicationRole).toBe('Primary');
    expect(arm.get(replicaId)!.properties).toMatchObject({ replicationRole: 'AsyncReplica', sourceServerResourceId: server });
    // The writer endpoint follows the primary back.
    expect(writerOf(server)?.properties.virtualEndpoints).toContain('pg-compliance-westeurope-vep.writer.postgres.database.azure.com');
    expect(writerOf(replicaId)).toBeUndefined();
    expect(back.result!.summary).toBe(
      'Switched back: pg-compliance-westeurope is the primary again and pg-compliance-northeurope-replica replicates from it; the writer endpoint pg-compliance-westeurope-vep.writer.postgres.database.azure.com follows it',
    );

    // Run again (a retry after the operation ended): nothing is sent.
    const again = await attempt(activities.undoStep, input(fin, resources));
    expect(again.result!.summary).toBe('pg-compliance-westeurope is the primary and pg-compliance-northeurope-replica replicates from it; nothing to switch back');
    expect(arm.writes()).toHaveLength(before + 1);

    // Then the data step's undo deletes the replica it created: it is a replica again.
    const undo = await attempt(activities.undoStep, input(data, resources, sync.result!.undo));
    expect(undo.error).toBeUndefined();
    expect(arm.get(replicaId)).toBeUndefined();
  });

  it('refuses to switch back onto a replica promoted standalone, in one sentence, sending nothing', async () => {
    seedServer(arm, 'pg-compliance-westeurope', { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' });
    seedServer(arm, 'pg-compliance-northeurope-replica', { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' });
    const fin = step<FinalizeStep>({ id: 'fin', kind: 'finalize', resources: ['replica'], syncedFrom: { replica: 'db' }, pointOfNoReturn: { gate: 'point-of-no-return', recovery: 'switch-back' } });
    const back = await attempt(activities.undoStep, input(fin, resources));
    expect(back.error?.message).toBe(
      'server pg-compliance-northeurope-replica is no longer a replica of pg-compliance-westeurope (role Primary), so there is no switchover to reverse; recover pg-compliance-westeurope from the backup by hand',
    );
    expect(arm.writes()).toEqual([]);
  });

  it('promotes to a standalone server only where the plan asks, and says that it is final', async () => {
    seedServer(arm, 'pg-compliance-westeurope', { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' });
    seedServer(arm, 'pg-compliance-northeurope-replica', { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4', replicaOf: 'pg-compliance-westeurope' });
    const standalone = { ...resources, replica: { ...resources.replica!, promote: 'standalone' as const } };
    const fin = step<FinalizeStep>({ id: 'fin', kind: 'finalize', resources: ['replica'], syncedFrom: { replica: 'db' } });
    const promoted = await attempt(activities.finalizeMigration, input(fin, standalone));
    expect(promoted.error).toBeUndefined();
    expect(arm.requests.filter((r) => r.method !== 'GET').map((r) => r.body)).toEqual([{ properties: { replica: { promoteMode: 'Standalone', promoteOption: 'Planned' } } }]);
    expect(promoted.result!.summary).toMatch(/replication from pg-compliance-westeurope has ended, and this cannot be undone/);
  });

  it('refuses a read replica of a Burstable server in one sentence before creating anything', async () => {
    const { error } = await attempt(activities.syncData, input(step<DataStep>({ id: 'r', kind: 'data', from: 'db', to: 'replica', verify: true }), resources));
    expect(error?.message).toBe(
      'server pg-compliance-westeurope is Burstable, and Azure has no read replicas of Burstable servers; scale it to GeneralPurpose or MemoryOptimized in an infra step before this data step',
    );
    expect(error?.nonRetryable).toBe(true);
    expect(arm.writes()).toEqual([]);
  });

  it('deletes on rollback the replica of a data step that failed after creating it, and a retry keeps its created flag', async () => {
    seedServer(arm, 'pg-compliance-westeurope', { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' });
    const data = step<DataStep>({ id: 'replica', kind: 'data', from: 'db', to: 'replica', verify: true });
    const before = await attempt(activities.observeStep, input(data, resources));
    expect(before.result).toEqual({ exists: false });
    // Replication takes a moment to start after the create: the attempt heartbeats "waiting" on top of its journal.
    const replicaState = () => arm.get(pgId('pg-compliance-northeurope-replica'))!.properties.replica;
    let phase = 0;
    const first = await attempt(activities.syncData, input(data, resources), {
      onHeartbeat: (d) => {
        const h = d as { done?: string[]; waiting?: string };
        if (phase === 0 && !h.waiting && h.done?.includes('replica:create')) (replicaState().replicationState = 'Catchup'), (phase = 1);
        else if (phase === 1 && h.waiting) (replicaState().replicationState = 'Active'), (phase = 2);
      },
    });
    expect(first.error).toBeUndefined();
    expect(phase).toBe(2);
    // The retry starts from the attempt's last heartbeat, a "waiting for the replica" one: the journal must survive it.
    const retry = await attempt(activities.syncData, input(data, resources), { resumeFrom: first.heartbeats.at(-1) });
    expect(retry.result!.undo).toEqual({ created: true });

    // No undo record (the step never reported success): what was there before decides.
    const undo = await attempt(activities.undoStep, { ...(input(data, resources) as object), before: before.result } as never);
    expect(undo.error).toBeUndefined();
    expect(arm.writes().at(-1)).toBe(`DELETE ${pgId('pg-compliance-northeurope-replica')}`);
    expect(arm.get(pgId('pg-compliance-northeurope-replica'))).toBeUndefined();
  });

  it('says the restore is not proven where the plan asks for proof but the database has no connection to compare through', async () => {
    const b = step<BackupStep>({ id: 'backup', kind: 'backup', resources: ['db'], verifyRestore: true });
    const { result, error } = await attempt(activities.backupDatabase, input(b, resources));
    expect(error).toBeUndefined();
    expect(result!.figures).toMatchObject({ 'db.restoreVerified': false });
    expect(result!.summary).toMatch(/and then deletes it; its restore is not proven: give db a connection \(a Key Vault reference to its connection string\) for the proof$/);
    // Only the backup: no scratch server is restored without a way to compare it.
    expect(arm.writes()).toEqual([`PUT ${server}/backups/ts-migration-test-backup-db`]);
  });

  it('keys on-demand backups by the run: a rerun of the same migration takes its own', async () => {
    const b = step<BackupStep>({ id: 'backup', kind: 'backup', resources: ['db'], verifyRestore: false });
    const run1 = { ...(input(b, resources) as object), runId: '3f1c2a9e-0b7d-4c1e-9a52-7d0e6c1b2a11' } as never;
    const run2 = { ...(input(b, resources) as object), runId: '8d2e4b10-5c3f-4e2a-b8a1-0c9f7e6d5a44' } as never;
    const first = await attempt(activities.backupDatabase, run1);
    expect(first.result!.summary).toMatch(/Took on-demand backup ts-migration-test-backup-db-3f1c2a9e0b7d4c1e9a527d0e6c1b2a11 /);
    // A retry within the run reuses it.
    expect((await attempt(activities.backupDatabase, run1)).result!.summary).toMatch(/Kept existing/);
    // The next run of the same plan (same workflow id) does not pass last week's backup off as its own.
    const next = await attempt(activities.backupDatabase, run2);
    expect(next.result!.summary).toMatch(/Took on-demand backup ts-migration-test-backup-db-8d2e4b105c3f4e2ab8a10c9f7e6d5a44 /);
    expect(arm.writes()).toEqual([
      `PUT ${server}/backups/ts-migration-test-backup-db-3f1c2a9e0b7d4c1e9a527d0e6c1b2a11`,
      `PUT ${server}/backups/ts-migration-test-backup-db-8d2e4b105c3f4e2ab8a10c9f7e6d5a44`,
    ]);
  });

  it('refuses to take over a server that is not a replica of the source', async () => {
    seedServer(arm, 'pg-compliance-northeurope-replica');
    const { error } = await attempt(activities.syncData, input(step<DataStep>({ id: 'r', kind: 'data', from: 'db', to: 'replica', verify: true }), resources));
    expect(error?.message).toBe('server pg-compliance-northeurope-replica already exists and is not a read replica of pg-compliance-westeurope; name a new server for the replica in the plan');
  });
});

describe('drift', () => {
  it('reports a parameter changed by hand since the infra step', async () => {
    arm.get(`${server}/configurations/max_connections`)!.properties.value = '150';
    const drift = await attempt(activities.checkDrift, {
      migrationId: 'm',
      step: step<AzureInfraStep>({ id: 'x', kind: 'infra', resource: 'db', settings: {} }),
      resources,
      expect: { settings: { db: { max_connections: 200 } } },
    } as never);
    expect(drift.result).toEqual(['db: max_connections expected 200, found 150']);
  });
});

describe('the fake ARM behaves as ARM does, and the provider with it', () => {
  const retention = (days: number) => step<AzureInfraStep>({ id: 'ret', kind: 'infra', resource: 'db', backupRetentionDays: days, settings: {} });

  it("waits before every poll as long as Azure's last Retry-After says, not its own shorter interval", async () => {
    arm.retryAfterSeconds = 1;
    arm.pollsToComplete = 3;
    const started = Date.now();
    const { error } = await attempt(activities.prepareInfra, input(retention(14), resources));
    expect(error).toBeUndefined();
    // The provider's own interval is 10 ms. The SDK polls once as it starts the operation; each later poll
    // waits the Retry-After of the answer before it (core-lro's pollUntilDone would poll the second at once).
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    expect(arm.requests.filter((r) => r.path.includes('/azureAsyncOperation/')).length).toBe(3);
  });

  it('an operation takes the time it takes: the server stays Updating until it ends', async () => {
    arm.operationMs = 300;
    const states: string[] = [];
    const { error } = await attempt(activities.prepareInfra, input(retention(21), resources), {
      onHeartbeat: () => void states.push(arm.get(server)!.properties.state),
    });
    expect(error).toBeUndefined();
    expect(states).toContain('Updating');
    expect(arm.requests.filter((r) => r.path.includes('/azureAsyncOperation/')).length).toBeGreaterThan(2);
    expect(arm.get(server)!.properties.backup.backupRetentionDays).toBe(21);
  });

  it('an operation cancelled in Azure fails the step in one sentence, and resuming sends it again instead of re-reading "Canceled"', async () => {
    arm.cancelNextOperation = true;
    const first = await attempt(activities.prepareInfra, input(retention(14), resources));
    expect(first.error?.message).toBe(
      'updating backup retention of server pg-compliance-westeurope: the operation was canceled in Azure before it finished and nothing changed; resume to send it again',
    );
    expect(first.error?.nonRetryable).toBe(true);
    expect(arm.get(server)!.properties).toMatchObject({ state: 'Ready', backup: { backupRetentionDays: 7 } });
    const second = await attempt(activities.prepareInfra, input(retention(14), resources), { resumeFrom: lastJournal(first.heartbeats) });
    expect(second.error).toBeUndefined();
    expect(arm.writes()).toEqual([`PATCH ${server}`, `PATCH ${server}`]);
    expect(arm.get(server)!.properties.backup.backupRetentionDays).toBe(14);
  });

  it('validates request bodies against the spec: unknown and read-only properties, types, enums and required fields', () => {
    const patch = (b: unknown) => validateAgainstSpec('Microsoft.DBforPostgreSQL', 'PATCH', server, '2025-08-01', b);
    expect(patch({ sku: { name: 'Standard_D2ds_v4', tier: 'GeneralPurpose' }, properties: { highAvailability: { mode: 'SameZone', standbyAvailabilityZone: '1' } } })).toEqual([]);
    expect(patch({ properties: { highAvailability: { mode: 'ZoneRedundant', standbyZone: '2' } } })).toEqual(['body.properties.highAvailability.standbyZone is not a property of the model']);
    expect(patch({ properties: { highAvailability: { mode: 'Enabled' } } })).toEqual(['body.properties.highAvailability.mode must be one of "Disabled", "ZoneRedundant", "SameZone", got "Enabled"']);
    expect(patch({ properties: { backup: { geoRedundantBackup: 'Enabled' } } })).toEqual(['body.properties.backup.geoRedundantBackup is read-only and must not be sent']);
    expect(patch({ properties: { storage: { storageSizeGB: '256' } } })).toEqual(['body.properties.storage.storageSizeGB must be an integer, got "256"']);
    const put = validateAgainstSpec('Microsoft.DBforPostgreSQL', 'PUT', pgId('x'), '2025-08-01', { properties: { createMode: 'Replica' } });
    expect(put).toEqual(['body.location is required']);
    // Another api-version's spec is not stored: nothing is claimed about it.
    expect(validateAgainstSpec('Microsoft.DBforPostgreSQL', 'PATCH', server, '2022-12-01', { bogus: 1 })).toEqual([]);
  });

  it('answers a body the spec refuses with 400, as ARM does, before the resource provider sees it', async () => {
    const res = await arm.sendRequest({
      url: `https://management.azure.com${server}?api-version=2025-08-01`,
      method: 'PATCH',
      body: JSON.stringify({ properties: { highAvailability: { mode: 'ZoneRedundant', standbyZone: '2' } } }),
      headers: { get: () => undefined },
    } as never);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.bodyAsText!).error.code).toBe('InvalidRequestContent');
    expect(arm.get(server)!.properties.state).toBe('Ready');
    arm.specViolations.length = 0;
  });
});
