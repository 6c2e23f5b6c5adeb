// The Azure backup's restore proof: a point-in-time restore to a scratch server on the fake ARM, whose
// data is a real copy on the sandbox's source cluster, compared with the source chunk by chunk through
// the Key Vault connection string, then deleted; a worker killed mid-restore, and the undo.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AzureResource } from '../activities/azure/provider';
import { withPgClient } from '../contract/pg';
import { postgresUrl } from '../contract/home';
import type { BackupStep } from '../plan/types';
import { FakeArm, pgId, seedServer } from './support/fake-arm';
import { attempt, azureActivities, input, lastJournal, scope, step } from './support/fake-arm-env';
import { FakeRestores } from './support/fake-arm-restore';
import { FakeStorage } from './support/fake-arm-storage';
import { containerOf, sandbox, uniqueName } from './support/local-ops';

// Key ranges of 500 rows: the 5,000 items span ten of them.
process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS = '500';

const SERVER = 'pg-compliance-westeurope';
const server = pgId(SERVER);
const database = uniqueName('azrestore').replace('-', '_');
/** Stands in for the admin password in the Key Vault secret: it must appear nowhere the step writes. */
const PASSWORD = 'Never-In-History-7f3a';
const cluster = () => postgresUrl(sandbox().postgres.source!, 'postgres');
/** Where the fake's restored servers keep their copies: another cluster, so a copy's writes are not the source's. */
const scratchCluster = () => postgresUrl(sandbox().postgres.target!, 'postgres');

/** Where the optional logical dump goes: a container of the sandbox's second Azurite account. */
const dumps = uniqueName('az-dumps');
const resources: Record<string, AzureResource> = {
  db: { name: 'db', kind: 'postgres', server: SERVER, connection: { keyVault: { vault: 'kv-compliance', secret: 'pg-admin-url' } }, ...scope },
  dumps: { name: 'dumps', kind: 'blob', account: 'tssecondary', container: dumps, connection: { env: 'TS_TEST_DUMPS' }, ...scope },
};
const backup = step<BackupStep>({ id: 'backup', kind: 'backup', resources: ['db'], verifyRestore: true });

let arm: FakeArm;
let restores: FakeRestores;
let activities: ReturnType<typeof azureActivities>;

const restoredDatabases = () =>
  withPgClient(scratchCluster(), async (c) => (await c.query<{ datname: string }>(`select datname from pg_database where datname like 'restored_%'`)).rows.map((r) => r.datname));
const scratchServers = () => [...arm.resources.values()].filter((r) => /\/flexibleServers\/[^/]+-verify-[0-9a-f]+$/.test(r.id)).map((r) => r.name as string);

beforeAll(async () => {
  await withPgClient(cluster(), (c) => c.query(`create database ${database}`));
  await withPgClient(postgresUrl(sandbox().postgres.source!, database), async (c) => {
    await c.query(`create table items (id bigint primary key, label text not null, price numeric(10, 2))`);
    await c.query(`insert into items select g, 'item ' || g, g / 7.0 from generate_series(1, 5000) g`);
    await c.query(`create table lines (order_id int, line_no int, qty int, primary key (order_id, line_no))`);
    await c.query(`insert into lines select g / 4, g % 4, g from generate_series(1, 1200) g`);
    // No primary key, and duplicate rows: compared by count and a sum of row hashes.
    await c.query(`create table audit (note text)`);
    await c.query(`insert into audit values ('a'), ('a'), ('b')`);
    await c.query('analyze');
  });
});

afterAll(async () => {
  await withPgClient(cluster(), (c) => c.query(`drop database if exists ${database} with (force)`));
});

beforeEach(() => {
  arm = new FakeArm();
  seedServer(arm, SERVER);
  restores = new FakeRestores(arm, scratchCluster());
  const { user, port } = sandbox().postgres.source!;
  // The connection string as Key Vault holds it: the server's Azure host name, a password.
  arm.vaultSecrets.set('kv-compliance/pg-admin-url', `postgres://${user}:${PASSWORD}@${SERVER}.postgres.database.azure.com:${port}/${database}?sslmode=disable`);
  restores.attach(SERVER, cluster(), database);
  new FakeStorage(arm);
  process.env.TS_TEST_DUMPS = sandbox().azurite!.accounts.find((a) => a.role === 'secondary')!.connectionString;
  activities = azureActivities(arm, { routePostgres: restores.route });
});

afterEach(async () => {
  expect(arm.specViolations).toEqual([]);
  expect(await restoredDatabases()).toEqual([]);
});

describe('restore-verified backups on Azure', () => {
  it('restores the backup to a scratch server at a point, finds the same rows there chunk by chunk, and deletes the scratch server', async () => {
    const { result, error, heartbeats } = await attempt(activities.backupDatabase, input(backup, resources));
    expect(error).toBeUndefined();
    const [scratch] = restores.started;
    expect(scratch).toMatch(/^pg-compliance-westeurope-verify-[0-9a-f]{10}$/);
    expect(arm.writes()).toEqual([`PUT ${server}/backups/ts-migration-test-backup-db`, `PUT ${pgId(scratch!)}`, `DELETE ${pgId(scratch!)}`]);

    const put = arm.requests.find((r) => r.method === 'PUT' && r.path === pgId(scratch!))!;
    const at = put.body.properties.pointInTimeUTC as string;
    expect(put.body).toEqual({
      location: 'westeurope',
      tags: { 'tiershift-restore-of': server, 'tiershift-restore-point': at },
      properties: { createMode: 'PointInTimeRestore', sourceServerResourceId: server, pointInTimeUTC: at },
    });
    expect(Date.now() - Date.parse(at)).toBeLessThan(60_000);

    expect(result!.figures).toMatchObject({ 'db.restoreVerified': true, 'db.restorePoint': at, 'db.restoreRows': 5000 + 1200 + 3 });
    // items alone spans ten key ranges of 500.
    expect(result!.figures['db.restoreChunks']).toBeGreaterThanOrEqual(10 + 3);
    expect(result!.summary).toMatch(new RegExp(`; restored it to ${at.replace(/[.]/g, '\\.')} on scratch server ${scratch}, which held the same 6203 rows in 3 tables \\(\\d+ key ranges compared\\), then deleted ${scratch}$`));
    expect(scratchServers()).toEqual([]);
    // The password of the connection string is nowhere in what the attempt recorded.
    expect(JSON.stringify({ result, heartbeats })).not.toContain(PASSWORD);
  });

  it('fails the step in one sentence when the restored data differs, and deletes the scratch server', async () => {
    restores.afterCopy = (url) => withPgClient(url, (c) => c.query(`update items set label = 'tampered' where id = 4321`)).then(() => undefined);
    const { error } = await attempt(activities.backupDatabase, input(backup, resources));
    const [scratch] = restores.started;
    expect(error?.message).toMatch(
      new RegExp(
        `^the point-in-time restore of pg-compliance-westeurope to \\S+ \\(scratch server ${scratch}\\) does not hold what pg-compliance-westeurope held then \\(items: rows differ at id 4321\\); find out why before changing the server, or set verifyRestore: false to go on without the proof$`,
      ),
    );
    expect(error?.nonRetryable).toBe(true);
    expect(arm.writes()).toContain(`DELETE ${pgId(scratch!)}`);
    expect(scratchServers()).toEqual([]);
  });

  it('resumes a restore a killed worker left running, without a second scratch server, and compares it', async () => {
    restores.restoreMs = 800;
    arm.retryAfterSeconds = 0.2;
    const first = await attempt(activities.backupDatabase, input(backup, resources), {
      onHeartbeat: (d, env) => {
        // Killed once Azure accepted the restore and the poller recorded it.
        if ((d as { pending?: { op: string } }).pending?.op === 'restore:db:1:create') env.cancel();
      },
    });
    expect(first.error).toBeDefined();
    expect(scratchServers()).toHaveLength(1);
    const journal = lastJournal(first.heartbeats) as { pending: { op: string }; notes: Record<string, { server: string; at: string }> };
    expect(journal.pending.op).toBe('restore:db:1:create');
    expect(journal.notes['restore:db']!.server).toBe(restores.started[0]);

    const second = await attempt(activities.backupDatabase, input(backup, resources), { resumeFrom: journal });
    expect(second.error).toBeUndefined();
    expect(restores.started).toHaveLength(1);
    expect(arm.writes().filter((w) => w.startsWith('PUT') && w.includes('-verify-'))).toHaveLength(1);
    expect(second.result!.figures).toMatchObject({ 'db.restoreVerified': true, 'db.restorePoint': journal.notes['restore:db']!.at });
    expect(scratchServers()).toEqual([]);
  });

  it('restores anew at a new point when the source took a write after the point of a killed attempt', async () => {
    const first = await attempt(activities.backupDatabase, input(backup, resources), {
      onHeartbeat: (d, env) => {
        if ((d as { pending?: { op: string } }).pending?.op === 'restore:db:1:create') env.cancel();
      },
    });
    expect(first.error).toBeDefined();
    await withPgClient(postgresUrl(sandbox().postgres.source!, database), (c) => c.query(`insert into audit values ('written after the point')`));
    try {
      const second = await attempt(activities.backupDatabase, input(backup, resources), { resumeFrom: lastJournal(first.heartbeats) });
      expect(second.error).toBeUndefined();
      // The first scratch server (the state before the write) was deleted, a second restored at the new point.
      expect(restores.started).toHaveLength(2);
      expect(second.result!.figures).toMatchObject({ 'db.restoreVerified': true, 'db.restoreRows': 6204 });
      expect(scratchServers()).toEqual([]);
    } finally {
      await withPgClient(postgresUrl(sandbox().postgres.source!, database), (c) => c.query(`delete from audit where note = 'written after the point'`));
    }
  });

  it("deletes in the step's undo a scratch server that a cut-off attempt left, and keeps the backup", async () => {
    const first = await attempt(activities.backupDatabase, input(backup, resources), {
      onHeartbeat: (d, env) => {
        if ((d as { pending?: { op: string } }).pending?.op === 'restore:db:1:create') env.cancel();
      },
    });
    expect(first.error).toBeDefined();
    const [scratch] = restores.started;
    const undone = await attempt(activities.undoStep, input(backup, resources));
    expect(undone.error).toBeUndefined();
    expect(undone.result!.summary).toBe(`Kept backup of step backup (a rollback does not delete backups); deleted scratch server ${scratch}, left by an interrupted restore proof`);
    expect(scratchServers()).toEqual([]);
    expect(arm.get(`${server}/backups/ts-migration-test-backup-db`)).toBeDefined();
  });

  it('also writes a logical dump to the destination container when the step names one, and keeps it on a second run', async () => {
    const withDump = step<BackupStep>({ id: 'backup', kind: 'backup', resources: ['db'], destination: 'dumps', verifyRestore: true });
    const first = await attempt(activities.backupDatabase, input(withDump, resources));
    expect(first.error).toBeUndefined();
    const name = `${first.result!.summary.match(/to dumps\/(\S+\.dump)$/)?.[1]}`;
    const blob = containerOf('secondary', dumps).getBlockBlobClient(name);
    const props = await blob.getProperties();
    // A finished custom-format dump: pg_dump's magic, the recorded digest and length, and the source's rows.
    expect((await blob.downloadToBuffer(0, 5)).toString()).toBe('PGDMP');
    expect(props.metadata).toMatchObject({ tiershiftstate: 'complete', source: 'db', bytes: String(props.contentLength), sha256: first.result!.figures['db.dumpSha256'] });
    expect(first.result!.figures).toMatchObject({ 'db.restoreVerified': true, 'db.dumpRows': 5000 + 1200 + 3, 'db.dumpReused': false });
    expect(JSON.stringify(first)).not.toContain(PASSWORD);

    const again = await attempt(activities.backupDatabase, input(withDump, resources));
    expect(again.result!.figures).toMatchObject({ 'db.dumpReused': true, 'db.dumpSha256': first.result!.figures['db.dumpSha256'] });
    await containerOf('secondary', dumps).deleteIfExists();
  });

  it('refuses a dump of a database without a connection before writing anything, in one sentence', async () => {
    const withDump = step<BackupStep>({ id: 'backup', kind: 'backup', resources: ['db'], destination: 'dumps', verifyRestore: false });
    const { error } = await attempt(activities.backupDatabase, input(withDump, { ...resources, db: { ...resources.db!, connection: undefined } as AzureResource }));
    expect(error?.message).toBe('backup step backup dumps db to dumps, but db has no connection to dump it through; give it one (a Key Vault reference to its connection string) or remove destination');
    expect(arm.writes()).toEqual([]);
  });
});
