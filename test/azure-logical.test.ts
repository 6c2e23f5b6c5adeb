// Logical replication between two Azure Flexible Servers: the control plane is the fake ARM (the source's
// wal_level and replication parameters set through the configurations API, a restart for the static
// ones, put back by undo), the data plane two databases on the sandbox's clusters, reached through Key
// Vault connection strings, and replicated by the sandbox's own data phase (activities/local/pg-sync.ts).
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AzureResource } from '../activities/azure/provider';
import { withPgClient } from '../contract/pg';
import { postgresUrl } from '../contract/home';
import type { DataStep, FinalizeStep } from '../plan/types';
import { FakeArm, LOGICAL_PARAMETERS, pgId, seedServer } from './support/fake-arm';
import { attempt, azureActivities, scope, step } from './support/fake-arm-env';
import { sandbox, uniqueName } from './support/local-ops';
import { parsePlan } from '../plan/load';
import { replicationName } from '../activities/local/pg-sync';

const SOURCE = 'pg-compliance-westeurope';
const TARGET = 'pg-compliance-swedencentral';
const sourceId = pgId(SOURCE);
const targetId = pgId(TARGET);
const MIGRATION = uniqueName('azlogical');
const NAME = replicationName(MIGRATION);
const srcDb = uniqueName('azlogical_src').replace('-', '_');
const dstDb = uniqueName('azlogical_dst').replace('-', '_');
/** Stands in for the admin password in Key Vault: it must appear nowhere the step writes. */
const PASSWORD = 'Never-In-History-5c1d';
const sourceCluster = () => sandbox().postgres.source!;
const targetCluster = () => sandbox().postgres.target!;

const resources: Record<string, AzureResource> = {
  db: { name: 'db', kind: 'postgres', server: SOURCE, connection: { keyVault: { vault: 'kv-compliance', secret: 'pg-west-url' } }, ...scope },
  next: { name: 'next', kind: 'postgres', server: TARGET, replication: 'logical', connection: { keyVault: { vault: 'kv-compliance', secret: 'pg-sweden-url' } }, ...scope },
};
const data = step<DataStep>({ id: 'data', kind: 'data', from: 'db', to: 'next', verify: true });
const input = (s: DataStep | FinalizeStep, extra: Record<string, unknown> = {}) => ({ migrationId: MIGRATION, step: s, resources, ...extra }) as never;

/** An Azure host name to the local cluster (and database) that stands in for that server. */
const route = (connectionString: string): string => {
  const u = new URL(connectionString);
  const local = u.hostname.startsWith(`${SOURCE}.`) ? sourceCluster() : u.hostname.startsWith(`${TARGET}.`) ? targetCluster() : undefined;
  if (!local) return connectionString;
  u.hostname = local.host;
  u.port = String(local.port);
  return u.toString();
};

let arm: FakeArm;
let activities: ReturnType<typeof azureActivities>;

const rows = (cluster: 'source' | 'target', database: string, sql: string) =>
  withPgClient(postgresUrl(cluster === 'source' ? sourceCluster() : targetCluster(), database), async (c) => (await c.query(sql)).rows);
const dropTarget = () => withPgClient(postgresUrl(targetCluster(), 'postgres'), (c) => c.query(`drop database if exists ${dstDb} with (force)`));
const param = (name: string) => arm.get(`${sourceId}/configurations/${name}`)!.properties;

beforeAll(async () => {
  await withPgClient(postgresUrl(sourceCluster(), 'postgres'), (c) => c.query(`create database ${srcDb}`));
  await withPgClient(postgresUrl(sourceCluster(), srcDb), async (c) => {
    await c.query(`create table items (id bigint generated always as identity primary key, label text not null, price numeric(10, 2))`);
    await c.query(`insert into items (label, price) select 'item ' || g, g / 7.0 from generate_series(1, 3000) g`);
    await c.query(`create table lines (order_id int, line_no int, qty int, primary key (order_id, line_no))`);
    await c.query(`insert into lines select g / 4, g % 4, g from generate_series(1, 1200) g`);
  });
});

afterAll(async () => {
  // Whatever a failed assertion left: the subscription (its slot with it), then both databases.
  await withPgClient(postgresUrl(targetCluster(), 'postgres'), async (c) => {
    if ((await c.query(`select 1 from pg_database where datname = $1`, [dstDb])).rowCount) {
      await withPgClient(postgresUrl(targetCluster(), dstDb), async (d) => {
        if ((await d.query('select 1 from pg_subscription where subname = $1', [NAME])).rowCount) await d.query(`drop subscription ${NAME}`);
      });
    }
    await c.query(`drop database if exists ${dstDb} with (force)`);
  });
  await withPgClient(postgresUrl(sourceCluster(), 'postgres'), async (c) => {
    await c.query(`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1 and not active`, [NAME]);
    await c.query(`drop database if exists ${srcDb} with (force)`);
  });
});

beforeEach(() => {
  arm = new FakeArm();
  // Both GeneralPurpose; the source with fewer slots and WAL senders than logical replication needs.
  seedServer(arm, SOURCE, { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v5', settings: { ...LOGICAL_PARAMETERS, max_replication_slots: { ...LOGICAL_PARAMETERS.max_replication_slots, value: '5' }, max_wal_senders: { ...LOGICAL_PARAMETERS.max_wal_senders, value: '5' } } });
  seedServer(arm, TARGET, { tier: 'GeneralPurpose', sku: 'Standard_D2ds_v5', settings: LOGICAL_PARAMETERS });
  const login = (c: { user: string; port: number }, server: string, db: string) => `postgres://${c.user}:${PASSWORD}@${server}.postgres.database.azure.com:${c.port}/${db}?sslmode=disable`;
  arm.vaultSecrets.set('kv-compliance/pg-west-url', login(sourceCluster(), SOURCE, srcDb));
  arm.vaultSecrets.set('kv-compliance/pg-sweden-url', login(targetCluster(), TARGET, dstDb));
  activities = azureActivities(arm, { routePostgres: route });
});
afterEach(() => expect(arm.specViolations).toEqual([]));

describe('logical replication between two Azure Flexible Servers', () => {
  it('sets wal_level and the replication parameters with a restart, copies and verifies the rows, cuts over, and undo puts the parameters back', async () => {
    const before = await attempt(activities.observeStep, input(data));
    expect(before.result).toEqual({
      logical: true,
      settings: { wal_level: 'replica', max_replication_slots: '5', max_wal_senders: '5' },
      target: { wal_level: 'replica', max_replication_slots: '10', max_wal_senders: '10' },
    });

    const sync = await attempt(activities.syncData, input(data));
    expect(sync.error).toBeUndefined();
    // The control plane: each parameter through the configurations API, then one restart for the static
    // ones; on the target too (it publishes in a reverse sync, which must not wait for a restart).
    expect(arm.writes()).toEqual([
      `PUT ${sourceId}/configurations/wal_level`,
      `PUT ${sourceId}/configurations/max_replication_slots`,
      `PUT ${sourceId}/configurations/max_wal_senders`,
      `POST ${sourceId}/restart`,
      `PUT ${targetId}/configurations/wal_level`,
      `POST ${targetId}/restart`,
    ]);
    expect(arm.requests.find((r) => r.path.endsWith('/wal_level') && r.method === 'PUT')!.body).toEqual({ properties: { value: 'logical', source: 'user-override' } });
    expect(param('wal_level')).toMatchObject({ value: 'logical', isConfigPendingRestart: false });
    expect(param('max_replication_slots').value).toBe('10');
    // The data plane: the same data phase as the sandbox's, its rows verified at a consistent point.
    expect(sync.result!.summary).toMatch(/^set wal_level=logical, max_replication_slots=10, max_wal_senders=10 on pg-compliance-westeurope and restarted it; set wal_level=logical on pg-compliance-swedencentral and restarted it; next: 2 tables, 4200 rows replicated from db .*verified identical in \d+ chunks/);
    expect(await rows('target', dstDb, 'select count(*)::int as n from items')).toEqual([{ n: 3000 }]);
    // Replication goes on: a row written to the source now arrives on the target.
    await rows('source', srcDb, `insert into items (label, price) values ('late', 1)`);
    for (let i = 0; i < 100 && (await rows('target', dstDb, `select 1 from items where label = 'late'`)).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await rows('target', dstDb, `select label from items where label = 'late'`)).toEqual([{ label: 'late' }]);

    // Run again (a retry): the parameters hold, so nothing is sent to ARM, and the subscription is reused.
    const writes = arm.writes().length;
    const again = await attempt(activities.syncData, input(data));
    expect(again.error).toBeUndefined();
    expect(again.result!.summary).toMatch(/^pg-compliance-westeurope already ran with wal_level=logical.*existing subscription/);
    expect(arm.writes()).toHaveLength(writes);

    // No password anywhere the step writes: its outcome, its heartbeats.
    expect(JSON.stringify([sync, again, before])).not.toContain(PASSWORD);

    // The finalize of a logical data step is the sandbox's cutover: replication ends, the source turns read-only.
    const fin = step<FinalizeStep>({ id: 'fin', kind: 'finalize', resources: ['next'], syncedFrom: { next: 'db' } });
    const cut = await attempt(activities.finalizeMigration, input(fin));
    expect(cut.error).toBeUndefined();
    expect(cut.result!.summary).toMatch(/^next took over from db: replication stopped with writes paused for \d+ ms, \d+ sequences moved past the source's values.*; db is read-only/);
    // The target hands out ids past the source's.
    const [{ next: id }] = (await rows('target', dstDb, `insert into items (label) values ('on next') returning id as next`)) as [{ next: string }];
    expect(Number(id)).toBeGreaterThan(3001);

    // Past the point of no return, the rollback's reverse sync (as the workflow sends it, in two parts):
    // the source gets the row only the target has, takes writes again, and hands out ids past the target's.
    const ponr = step<FinalizeStep>({ ...fin, pointOfNoReturn: { gate: 'point-of-no-return', recovery: 'reverse-sync' } });
    const start = await attempt(activities.undoStep, input(ponr, { part: 'start' }));
    expect(start.error).toBeUndefined();
    expect(start.result!.summary).toMatch(/^reverse sync next -> db running .*db writable again.*copied back \d+ of \d+ rows compared/);
    const finish = await attempt(activities.undoStep, input(ponr, { part: 'finish' }));
    expect(finish.error).toBeUndefined();
    expect(finish.result!.summary).toMatch(/^db has every write next received: reverse sync stopped/);
    expect(await rows('source', srcDb, `select label from items where label = 'on next'`)).toEqual([{ label: 'on next' }]);
    const [{ back }] = (await rows('source', srcDb, `insert into items (label) values ('back on db') returning id as back`)) as [{ back: string }];
    expect(Number(back)).toBeGreaterThan(Number(id));
    expect(JSON.stringify([cut, start, finish])).not.toContain(PASSWORD);

    // Undo: the replication is gone already (the cutover dropped it); the parameters go back, with a restart.
    const undone = await attempt(activities.undoStep, input(data, { undo: sync.result!.undo, before: before.result }));
    expect(undone.error).toBeUndefined();
    expect(arm.writes().slice(writes)).toEqual([
      `PUT ${sourceId}/configurations/wal_level`,
      `PUT ${sourceId}/configurations/max_replication_slots`,
      `PUT ${sourceId}/configurations/max_wal_senders`,
      `POST ${sourceId}/restart`,
      `PUT ${targetId}/configurations/wal_level`,
      `POST ${targetId}/restart`,
    ]);
    expect([param('wal_level').value, param('max_replication_slots').value, param('max_wal_senders').value]).toEqual(['replica', '5', '5']);
    expect(param('wal_level').isConfigPendingRestart).toBe(false);
    expect(undone.result!.summary).toMatch(/put back wal_level=replica, max_replication_slots=5, max_wal_senders=5 on pg-compliance-westeurope and restarted it; put back wal_level=replica on pg-compliance-swedencentral and restarted it$/);
    expect(arm.get(`${targetId}/configurations/wal_level`)!.properties.value).toBe('replica');
    expect(await rows('source', 'postgres', `select slot_name from pg_replication_slots where slot_name = '${NAME}'`)).toEqual([]);
    await dropTarget();
  });

  it('finishes a restart a killed attempt left pending, and refuses a target server that does not exist in one sentence', async () => {
    // A worker that set wal_level and died before restarting: Azure reports it pending a restart.
    arm.get(`${sourceId}/configurations/wal_level`)!.properties = { ...param('wal_level'), value: 'logical', isConfigPendingRestart: true };
    const missing = { ...resources, next: { ...resources.next!, server: 'pg-compliance-nowhere' } } as Record<string, AzureResource>;
    const refused = await attempt(activities.syncData, { migrationId: MIGRATION, step: data, resources: missing } as never);
    expect(refused.error?.message).toBe(
      'server pg-compliance-nowhere does not exist, and logical replication fills a server that does; create it (in the region and major version you are moving to) and resume, or leave out replication: logical to create it as a read replica',
    );
    expect(arm.writes()).toEqual([]);

    // verify: false keeps this short; the restart is what matters here.
    const quick = step<DataStep>({ ...data, verify: false });
    const sync = await attempt(activities.syncData, input(quick));
    expect(sync.error).toBeUndefined();
    expect(arm.writes()).toEqual([
      `PUT ${sourceId}/configurations/max_replication_slots`,
      `PUT ${sourceId}/configurations/max_wal_senders`,
      `POST ${sourceId}/restart`,
      `PUT ${targetId}/configurations/wal_level`,
      `POST ${targetId}/restart`,
    ]);
    expect(param('wal_level').isConfigPendingRestart).toBe(false);
    const undone = await attempt(activities.undoStep, input(quick, { undo: sync.result!.undo }));
    expect(undone.error).toBeUndefined();
    expect(undone.result!.summary).toMatch(/^dropped subscription .* on next, slot .*, publication .* on db; next keeps its copied data/);
    // Without the observation, the attempt's own record: what it read before it changed anything.
    expect([param('wal_level').value, param('max_replication_slots').value]).toEqual(['logical', '5']);
    await dropTarget();
  });

  it('the fake ARM refuses a value outside what Azure allows, and the plan refuses replication: logical without a connection or with a switch back, and recovers it by a reverse sync', async () => {
    const put = await attempt(activities.prepareInfra, input(step({ id: 'bad', kind: 'infra', resource: 'db', settings: { wal_level: 'minimal' } } as never)));
    expect(put.error?.message).toMatch(/Invalid value given for parameter wal_level\. Specify a valid parameter value \(allowed: replica,logical\)/);

    const plan = (next: string, finalize = '') =>
      parsePlan(
        `apiVersion: tiershift/v1\nname: cross-region\nidentity: unverified\nresources:\n  db: { kind: postgres, provider: azure, subscription: s, resourceGroup: rg, server: pg1, connection: { env: DB_URL } }\n  next: { kind: postgres, provider: azure, subscription: s, resourceGroup: rg, server: pg2, ${next} }\nphases:\n  - data: { from: db, to: next }\n${finalize}`,
        'plans/cross-region.yaml',
      );
    expect(() => plan('replication: logical, connection: { env: NEXT_URL }')).not.toThrow();
    expect(() => plan('replication: logical')).toThrow(/resources\.next\.replication \(line 6\): expected a connection \(a Key Vault reference to its connection string\) with replication: logical/);
    // Its point of no return recovers by the reverse sync (the default there); a switch back is refused.
    const ponr = plan('replication: logical, connection: { env: NEXT_URL }', '  - finalize: { resources: [next], pointOfNoReturn: {} }\n');
    expect(ponr.steps.find((s) => s.kind === 'finalize')).toMatchObject({ pointOfNoReturn: { recovery: 'reverse-sync' } });
    expect(() => plan('replication: logical, connection: { env: NEXT_URL }', '  - finalize: { resources: [next], pointOfNoReturn: { recovery: switch-back } }\n')).toThrow(
      /expected a read replica \(replication: replica\) for next, whose point of no return recovers by a switch back, got replication: logical/,
    );
  });
});
