// The local backup on the sandbox: pg_dump of the seeded shop streamed into Azurite, proven by a
// restore into a scratch database, reused when repeated, and the assets container copied aside.
import type { BlockBlobClient, ContainerClient } from '@azure/storage-blob';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createActivities } from '../activities';
import { localProvider } from '../activities/local';
import type { LocalPostgres } from '../activities/local/provider';
import { fingerprints, withClient } from '../activities/local/postgres';
import type { StepInput } from '../activities/types';
import type { BackupStep } from '../plan/types';
import { ASSETS_CONTAINER, demoBlobs } from '../sandbox/azurite';
import { findBinary } from '../sandbox/binaries';
import { postgresUrl } from '../contract/home';
import { backupStep, blob, containerOf, runActivity, sandbox, uniqueName } from './support/local-ops';
import pg from 'pg';
import { progressOf } from '../contract/progress';
import { migrationStatusAnyState, startMigration } from '../client/migrations';
import { watchMigration } from '../client/watch';
import { formatStatus } from '../client/format';
import { container, sandboxPlan, sandboxResources } from './support/plans';
import { eventually, sandboxTemporal, startWorker } from './support/temporal';

// The dispatcher over the local provider, as a worker registers it: it loops over the step's resources.
const { backupDatabase, undoStep: undoBackup } = createActivities({ local: localProvider });
const backupsName = uniqueName('backups');
const sourceDb: LocalPostgres = { name: 'sourceDb', kind: 'postgres', provider: 'local', cluster: 'source' };
const backups: ContainerClient = containerOf('primary', backupsName);
const sourceUrl = (database?: string) => postgresUrl(sandbox().postgres.source!, database);

// Small key ranges, so the seeded tables span many chunks of the restore proof's comparison.
process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS = '1000';

afterAll(async () => {
  await backups.deleteIfExists();
});

function input(migrationId: string, resources = ['sourceDb', 'assets']): StepInput<BackupStep> {
  return {
    migrationId,
    step: backupStep('1-backup', resources, 'backups'),
    resources: {
      sourceDb,
      assets: blob('assets', 'primary', ASSETS_CONTAINER),
      backups: blob('backups', 'primary', backupsName),
    },
  };
}

const dumpBlob = (migrationId: string): BlockBlobClient => backups.getBlockBlobClient(`${migrationId}/1-backup/sourceDb.dump`);
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Scratch databases left on the source cluster: there must never be any after a backup. */
async function scratchDatabases(): Promise<string[]> {
  return withClient(sourceUrl('postgres'), async (c) =>
    (await c.query<{ datname: string }>(`select datname from pg_database where datname like 'tiershift_verify_%'`)).rows.map((r) => r.datname),
  );
}

describe('local backup', () => {
  const migrationId = uniqueName('m');

  it('dumps the database into a blob with its sha256, proves it restores and copies the assets', async () => {
    const { result, heartbeats } = await runActivity(backupDatabase, [input(migrationId)]);
    const source = await withClient(sourceUrl(), fingerprints);
    const body = await dumpBlob(migrationId).downloadToBuffer();

    expect(result.figures).toMatchObject({
      'sourceDb.bytes': body.length,
      'sourceDb.sha256': sha256(body),
      'sourceDb.tables': source.length,
      'sourceDb.rows': source.reduce((n, t) => n + t.rows, 0),
      'sourceDb.restoreVerified': true,
      'sourceDb.reused': false,
      'assets.blobsCopied': demoBlobs().length,
      'assets.blobsSkipped': 0,
    });
    expect(body.subarray(0, 5).toString()).toBe('PGDMP'); // custom format
    const { metadata } = await dumpBlob(migrationId).getProperties();
    expect(metadata).toMatchObject({ tiershiftstate: 'complete', restoreverified: 'true', sha256: sha256(body), bytes: String(body.length) });
    // The comparison ran by key ranges; the recorded rows are the ones it compared.
    expect(result.figures['sourceDb.restoreChunks']).toBeGreaterThan(source.length);
    expect(metadata).toMatchObject({ tables: String(source.length), rows: String(source.reduce((n, t) => n + t.rows, 0)) });
    expect(heartbeats.map((h) => (h as { phase?: string }).phase)).toEqual(expect.arrayContaining(['dump', 'restore', 'compare', 'copy blobs']));
    // Each phase also heartbeats a progress reading: the restore out of the dump's size, the copy out of the blobs listed.
    const readings = heartbeats.map(progressOf).filter((p) => p !== undefined);
    expect(new Set(readings.map((p) => p.phase))).toEqual(new Set(['dumping sourceDb', 'verifying the restore', 'comparing the restore with the source', 'verifying', 'copying blobs of assets']));
    expect(readings.find((p) => p.phase === 'verifying the restore')).toMatchObject({ unit: 'bytes', done: 0, total: body.length });
    const assetBytes = demoBlobs().reduce((n, b) => n + b.size, 0);
    expect(readings.filter((p) => p.phase === 'copying blobs of assets').at(-1)).toMatchObject({ unit: 'blobs', done: 20, total: 20, bytesDone: assetBytes, bytesTotal: assetBytes });
    expect(await scratchDatabases()).toEqual([]);

    const copies: string[] = [];
    for await (const b of backups.listBlobsFlat({ prefix: `${migrationId}/1-backup/assets/` })) copies.push(b.name);
    expect(copies.sort()).toEqual(demoBlobs().map((b) => `${migrationId}/1-backup/assets/${b.name}`).sort());
    expect(result.summary).toMatch(/^Dumped sourceDb \(5 tables, \d+ rows\) to tsprimary\/backups-\w+\/.+sourceDb\.dump: .* restore verified; Copied 20 blobs of assets/);
  });

  it('counts the tables the check step reports as the backup does: base tables, not the seed\'s view', async () => {
    const { checkHealth } = createActivities({ local: localProvider });
    const step = { ...backupStep('0-check', ['sourceDb'], 'backups'), kind: 'check' as const, title: 'Check sourceDb' };
    const { result } = await runActivity(checkHealth, [{ migrationId, step, resources: { sourceDb } }]);
    const source = await withClient(sourceUrl(), fingerprints);
    const views = await withClient(sourceUrl(), async (c) => (await c.query(`select 1 from information_schema.views where table_schema = 'public'`)).rowCount);
    expect(views).toBeGreaterThan(0); // the seed has a view: counting it would say one table too many
    expect(result.figures['sourceDb.tables']).toBe(source.length);
    expect(result.summary).toContain(`, ${source.length} tables,`);
  });

  it('reuses a finished, verified backup instead of dumping again', async () => {
    const before = await dumpBlob(migrationId).getProperties();
    const { result, heartbeats } = await runActivity(backupDatabase, [input(migrationId)]);
    expect(result.figures).toMatchObject({ 'sourceDb.reused': true, 'sourceDb.restoreVerified': true, 'assets.blobsCopied': 0, 'assets.blobsSkipped': demoBlobs().length });
    expect(result.figures['sourceDb.sha256']).toBe(before.metadata?.sha256);
    expect((await dumpBlob(migrationId).getProperties()).etag).toBe(before.etag);
    expect(heartbeats.some((h) => ['dump', 'restore'].includes((h as { phase?: string }).phase ?? ''))).toBe(false);

    const undo = await runActivity(undoBackup, [{ ...input(migrationId), undo: result.undo }]);
    expect(undo.result.summary).toBe(`Kept backup ${dumpBlob(migrationId).url}, ${backups.url}/${migrationId}/1-backup/assets/ (a rollback does not delete backups)`);
    expect(await dumpBlob(migrationId).exists()).toBe(true);
  });

  it('keys the backup by the run: a retry within the run reuses it, a rerun of the same migration dumps its own', async () => {
    const id = uniqueName('m');
    const inRun = (runId: string) => ({ ...input(id, ['sourceDb']), runId });
    const first = await runActivity(backupDatabase, [inRun('run-1')]);
    expect(first.result.figures).toMatchObject({ 'sourceDb.reused': false });
    expect(first.result.summary).toContain(`${id}/run-1/1-backup/sourceDb.dump`);
    expect((await runActivity(backupDatabase, [inRun('run-1')])).result.figures).toMatchObject({ 'sourceDb.reused': true });
    // Same workflow id, another run: last week's backup is not this run's.
    const rerun = await runActivity(backupDatabase, [inRun('run-2')]);
    expect(rerun.result.figures).toMatchObject({ 'sourceDb.reused': false });
    expect(rerun.result.summary).toMatch(/^Dumped sourceDb /);
    expect(rerun.result.summary).toContain(`${backupsName}/${id}/run-2/1-backup/sourceDb.dump`);
  });

  it('dumps again over an unfinished blob left by an interrupted attempt', async () => {
    const id = uniqueName('m');
    await dumpBlob(id).upload('garbage', 7, { metadata: { tiershiftstate: 'uploading' } });
    const { result } = await runActivity(backupDatabase, [input(id, ['sourceDb'])]);
    const body = await dumpBlob(id).downloadToBuffer();
    expect(result.figures).toMatchObject({ 'sourceDb.reused': false, 'sourceDb.restoreVerified': true, 'sourceDb.sha256': sha256(body) });
    expect(body.length).toBeGreaterThan(7);
  });

  it('detects a restore that does not reproduce the source and drops the scratch database', async () => {
    const id = uniqueName('m');
    const psql = (database: string, sql: string) =>
      spawnSync(findBinary('psql'), ['-Atq', '-v', 'ON_ERROR_STOP=1', '-d', sourceUrl(database), '-c', sql], { encoding: 'utf8' });
    // Corrupt the restored copy between pg_restore and the comparison (the "compare" heartbeat).
    const run = runActivity(backupDatabase, [input(id, ['sourceDb'])], {
      onHeartbeat: (details) => {
        if ((details as { phase?: string }).phase !== 'compare') return;
        const scratch = psql('postgres', `select datname from pg_database where datname like 'tiershift_verify_%'`).stdout.trim();
        expect(psql(scratch, 'drop table payments').status).toBe(0);
      },
    });
    await expect(run).rejects.toThrow(/does not reproduce the source: payments: missing/);
    expect(await scratchDatabases()).toEqual([]);
    // Not marked verified: the next attempt dumps and proves it again.
    expect((await dumpBlob(id).getProperties()).metadata).toMatchObject({ tiershiftstate: 'complete', restoreverified: 'false' });
    const retried = await runActivity(backupDatabase, [input(id, ['sourceDb'])]);
    expect(retried.result.figures).toMatchObject({ 'sourceDb.reused': false, 'sourceDb.restoreVerified': true });
  });

  it('compares a table bigger than one chunk key range by key range, naming the row that differs', async () => {
    // Chunks of 1,000 rows (set for this file's process, as a worker would): orders holds 20,000.
    const orders = Number((await withClient(sourceUrl(), (c) => c.query<{ n: string }>('select count(*) as n from orders'))).rows[0]!.n);
    expect(orders).toBeGreaterThan(Number(process.env.TIERSHIFT_CHECKSUM_CHUNK_ROWS) * 10);
    const id = uniqueName('m');
    const psql = (database: string, sql: string) =>
      spawnSync(findBinary('psql'), ['-Atq', '-v', 'ON_ERROR_STOP=1', '-d', sourceUrl(database), '-c', sql], { encoding: 'utf8' });
    // One row deep inside orders changed in the restored copy, same row count.
    const deep = (await withClient(sourceUrl(), (c) => c.query<{ id: string }>('select id from orders order by id offset 15000 limit 1'))).rows[0]!.id;
    const run = runActivity(backupDatabase, [input(id, ['sourceDb'])], {
      onHeartbeat: (details) => {
        if ((details as { phase?: string }).phase !== 'compare') return;
        const scratch = psql('postgres', `select datname from pg_database where datname like 'tiershift_verify_%'`).stdout.trim();
        expect(psql(scratch, `update orders set total_cents = total_cents + 1 where id = ${deep}`).status).toBe(0);
      },
    });
    await expect(run).rejects.toThrow(new RegExp(`does not reproduce the source: orders: rows differ at id ${deep}$`));
    expect(await scratchDatabases()).toEqual([]);

    const proven = await runActivity(backupDatabase, [input(id, ['sourceDb'])]);
    const chunks = proven.result.figures['sourceDb.restoreChunks'] as number;
    expect(chunks).toBeGreaterThanOrEqual(Math.ceil(orders / 1000));
    expect(proven.result.figures).toMatchObject({ 'sourceDb.restoreVerified': true });
  });
});

describe('a backup step run by a worker', () => {
  it("shows the running step's live progress in status, watch and the UI's current details", async () => {
    const temporal = await sandboxTemporal();
    const { stop } = await startWorker({ connection: temporal.connection });
    // pg_dump waits for a lock on every table it dumps: holding one keeps the step in its dump for as
    // long as the test looks at it, whatever the speed of the machine.
    const holder = new pg.Client({ connectionString: sourceUrl() });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('lock table payments in access exclusive mode');
      const plan = sandboxPlan({
        name: uniqueName('progress'),
        resources: { ...sandboxResources('sourceDb'), backups: container('primary', backupsName) },
        phases: '  - backup: { resources: [sourceDb], destination: backups }',
      });
      const handle = await startMigration(temporal.client, plan, 'alice');
      const lines: string[] = [];
      const watched = watchMigration(temporal.client, handle.workflowId, { out: { write: (t: string) => lines.push(t) }, live: false, intervalMs: 200 });

      const running = await eventually(
        () => migrationStatusAnyState(temporal.client, handle.workflowId),
        (s) => s.steps[0]?.progress !== undefined,
        20_000,
      );
      expect(running.steps[0]).toMatchObject({ state: 'running', progress: { phase: 'dumping sourceDb', unit: 'bytes', done: 0 } });
      expect(formatStatus(running)).toMatch(/\n {8}0 B so far \(dumping sourceDb\)/);
      const stepId = running.steps[0]!.id;
      await eventually(async () => lines.join(''), (text) => text.includes(`  ${stepId}: 0 B so far (dumping sourceDb)\n`), 10_000);
      const metadata = await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata');
      expect(metadata.currentDetails).toContain(`Live progress: Pending Activities → Heartbeat details (or \`tiershift watch ${handle.workflowId}\`)`);

      await holder.query('rollback');
      const ended = await watched;
      expect(ended.state).toBe('completed');
      // The figures a decision signs stay the workflow's own: the final status has no progress in it.
      expect(ended.steps[0]!.progress).toBeUndefined();
      expect(lines.join('')).toMatch(/✓ .*Dumped sourceDb/);
    } finally {
      await holder.end();
      await stop();
      await temporal.close();
    }
  }, 60_000);
});
