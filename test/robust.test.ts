// Issue 13, scenarios 6, 7, 8, 11 and 12 on the run's sandbox: a lost database connection fails an
// attempt, never the worker; a frozen worker cannot keep the source's writers paused; odd database names
// stay names; secrets never reach history, status, the report or the worker's log; transient failures
// are retried. Workers run as child processes where the test signals or watches the process itself.
import { AccountSASPermissions, AccountSASResourceTypes, AccountSASServices, generateAccountSASQueryParameters, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { WorkflowHandle } from '@temporalio/client';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { backupDatabase } from '../activities/local/backup';
import { syncPostgres, undoPgSync } from '../activities/local/pg-sync';
import { withClient } from '../activities/local/postgres';
import { approveGate, migrationStatus, rollbackMigration, startMigration } from '../client/migrations';
import { postgresUrl, PROJECT_ROOT } from '../contract/home';
import type { MigrationStatus } from '../contract/status';
import { parsePlan } from '../plan/load';
import type { LocalPostgres } from '../activities/local/provider';
import { spawnWorker, tiershift } from './support/cli';
import { backupStep, blob, containerOf, dataStep, migrationSuite, runActivity, sandbox, uniqueName } from './support/local-ops';
import { eventually, startWorker } from './support/temporal';

const HEAVY = 300_000;
const suite = migrationSuite();
const url = (cluster: 'source' | 'target', database?: string) => postgresUrl(sandbox().postgres[cluster]!, database);
const HOLDER = 'robust-test-holder';

const workers: ReturnType<typeof spawnWorker>[] = [];
afterEach(async () => {
  for (const w of workers.splice(0)) {
    // A stopped process ignores SIGTERM until it continues: wake it first, whatever the test did.
    if (w.child.pid && w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGCONT');
    await w.stop();
  }
}, 60_000);

function childWorker(env: NodeJS.ProcessEnv = {}) {
  const w = spawnWorker({ TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address, ...env });
  workers.push(w);
  return w;
}
const alive = (w: ReturnType<typeof spawnWorker>) => w.child.exitCode === null && w.child.signalCode === null;

/** An open transaction holding a lock on a table, in a session of the test's own (not the worker's). */
async function holdLock(cluster: 'source' | 'target', table: string, mode: string): Promise<{ release: () => Promise<void> }> {
  const c = new pg.Client({ connectionString: url(cluster), application_name: HOLDER });
  c.on('error', () => undefined);
  await c.connect();
  await c.query('begin');
  await c.query(`lock table ${table} in ${mode} mode`);
  return { release: () => c.query('rollback').then(() => c.end(), () => c.end()).catch(() => undefined) };
}

/** A session (not the test's holder) waiting for a table lock: the write pause blocked by the holder. */
const waitingForLock = (cluster: 'source' | 'target') =>
  withClient(url(cluster), async (c) => {
    const { rowCount } = await c.query(
      `select 1 from pg_stat_activity where wait_event_type = 'Lock' and query ilike 'lock table%' and application_name <> $1 and pid <> pg_backend_pid()`,
      [HOLDER],
    );
    return (rowCount ?? 0) > 0;
  });

/** pg_terminate_backend on every client session of both clusters but the test's own: the worker's included. */
async function terminateSessions(): Promise<number> {
  let n = 0;
  for (const cluster of ['source', 'target'] as const) {
    n += await withClient(url(cluster, 'postgres'), async (c) => {
      const { rows } = await c.query<{ ok: boolean }>(
        `select pg_terminate_backend(pid) as ok from pg_stat_activity
          where backend_type = 'client backend' and pid <> pg_backend_pid() and application_name <> $1`,
        [HOLDER],
      );
      return rows.filter((r) => r.ok).length;
    });
  }
  return n;
}

/** Attempts of each activity type, from the ActivityTaskStarted events of the workflow's history. */
async function activityAttempts(handle: WorkflowHandle): Promise<Record<string, number[]>> {
  const { events } = await handle.fetchHistory();
  const types = new Map<string, string>();
  const attempts: Record<string, number[]> = {};
  for (const e of events ?? []) {
    if (e.activityTaskScheduledEventAttributes) types.set(String(e.eventId), e.activityTaskScheduledEventAttributes.activityType!.name!);
    if (e.activityTaskStartedEventAttributes) {
      const type = types.get(String(e.activityTaskStartedEventAttributes.scheduledEventId))!;
      (attempts[type] ??= []).push(e.activityTaskStartedEventAttributes.attempt ?? 1);
    }
  }
  return attempts;
}

const status = (id: string) => migrationStatus(suite.temporal.client, id);

describe('a lost connection fails an attempt, never a process (scenario 12)', () => {
  it('a connection terminated while idle rejects the next query instead of killing the process', async () => {
    // In a process of its own: an unhandled 'error' event is an uncaught exception, which ends that process.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-idle-'));
    const script = path.join(dir, 'idle.mts');
    writeFileSync(
      script,
      `import { withClient } from ${JSON.stringify(path.join(PROJECT_ROOT, 'activities', 'local', 'postgres.ts'))};
const url = process.argv[2]!;
await withClient(url, async (c) => {
  const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid;
  await withClient(url, (admin) => admin.query('select pg_terminate_backend($1)', [pid]));
  await new Promise((r) => setTimeout(r, 500));
  const outcome = await c.query('select 1').then(() => 'answered', () => 'rejected');
  process.stdout.write(outcome + '\\n');
});
process.stdout.write('survived\\n');
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, url('source')], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    rmSync(dir, { recursive: true, force: true });
    expect(output).toContain('rejected');
    expect(output).toContain('survived');
    expect(code, output).toBe(0);
  });

  it('survives its sessions terminated in the middle of a sync, a cutover and a reverse sync, and retries each', async () => {
    const plan = parsePlan(
      `
apiVersion: tiershift/v1
identity: unverified
name: ${uniqueName('terminate')}
defaults:
  retry: { maximumAttempts: 10, initialInterval: 500ms, backoffCoefficient: 1, maximumInterval: 500ms }
  timeouts: { startToClose: 10m, heartbeat: 15s }
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target }
phases:
  - data: { from: sourceDb, to: targetDb }
  - finalize: { resources: [targetDb], pointOfNoReturn: { gate: finalize } }
  - gate: { name: complete }
`,
      'terminate.yaml',
    );
    const worker = childWorker();
    const pid = worker.child.pid;
    // Writers in flight on the source hold the sync's write pause (verification) back: a window to cut it in.
    let holder = await holdLock('source', 'orders', 'row exclusive');
    const cut = async (cluster: 'source' | 'target', what: string) => {
      await eventually(() => waitingForLock(cluster), (w) => w, 120_000);
      expect(await terminateSessions(), `sessions to terminate during ${what}`).toBeGreaterThan(0);
      await holder.release();
      // The 'error' event of a dropped connection arrives at once; give an unguarded client time to kill the process.
      await new Promise((r) => setTimeout(r, 1_500));
      expect(alive(worker), `worker after its sessions were terminated during ${what}:\n${worker.output()}`).toBe(true);
    };
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      await cut('source', 'the sync');

      await eventually(() => status(handle.workflowId), (s) => s.pendingGate?.gate === 'finalize' || s.state !== 'running', 120_000);
      holder = await holdLock('source', 'orders', 'row exclusive');
      await approveGate(suite.temporal.client, handle.workflowId, { gate: 'finalize', by: 'bob' });
      await cut('source', 'the cutover');

      const crossed = await eventually(() => status(handle.workflowId), (s) => s.pendingGate?.gate === 'complete' || s.state !== 'running', 120_000);
      expect(crossed.pointOfNoReturn?.crossed, JSON.stringify(crossed.failure)).toBe(true);
      // The reverse sync pauses the target's writers before it stops: cut it there.
      holder = await holdLock('target', 'orders', 'row exclusive');
      await rollbackMigration(suite.temporal.client, handle.workflowId, 'carol', 'terminate test', true);
      await cut('target', 'the reverse sync');

      const final = (await handle.result()) as MigrationStatus;
      expect(final.state, JSON.stringify(final.rollback ?? final.failure)).toBe('rolled-back');
      expect(final.rollback?.actions.map((a) => a.state)).toEqual(final.rollback?.actions.map(() => 'done'));
      // Retried inside each step (the workflow saw one attempt of each), by the same worker process.
      const attempts = await activityAttempts(handle);
      expect(Math.max(...attempts.syncData!)).toBeGreaterThan(1);
      expect(Math.max(...attempts.finalizeMigration!)).toBeGreaterThan(1);
      expect(Math.max(...attempts.undoStep!)).toBeGreaterThan(1);
      expect(worker.child.pid).toBe(pid);
      expect(alive(worker)).toBe(true);
      expect(worker.output()).not.toMatch(/Emitted 'error' event|Connection terminated unexpectedly/);
    } finally {
      await holder.release();
    }
  }, HEAVY);
});

describe('the write pause is bounded (scenario 7)', () => {
  it('a worker frozen with SIGSTOP during the cutover pause blocks the source for at most the pause session limit', async () => {
    const plan = parsePlan(
      `
apiVersion: tiershift/v1
identity: unverified
name: ${uniqueName('frozen')}
defaults:
  retry: { maximumAttempts: 10, initialInterval: 500ms, backoffCoefficient: 1, maximumInterval: 500ms }
  timeouts: { startToClose: 10m, heartbeat: 5s }
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target }
phases:
  - data: { from: sourceDb, to: targetDb }
  - gate: { name: go }
  - finalize: { resources: [targetDb] }
`,
      'frozen.yaml',
    );
    const worker = childWorker();
    const handle = await startMigration(suite.temporal.client, plan, 'alice');
    await eventually(() => status(handle.workflowId), (s) => s.pendingGate?.gate === 'go' || s.state !== 'running', 120_000);
    // The target cannot apply a new order yet, so the cutover waits, writes paused, for the subscription to catch up.
    const applyBlocker = await holdLock('target', 'orders', 'access exclusive');
    let stopped = false;
    try {
      const res = await fetch(new URL('/api/orders', suite.state.haproxy!.frontendUrl), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
      expect(res.status).toBe(201);
      await approveGate(suite.temporal.client, handle.workflowId, { gate: 'go', by: 'bob' });
      await eventually(
        () =>
          withClient(url('source'), async (c) => {
            const { rowCount } = await c.query(
              `select 1 from pg_locks l join pg_stat_activity a on a.pid = l.pid
                where l.relation = 'orders'::regclass and l.mode = 'ExclusiveLock' and l.granted and a.application_name <> $1 and l.pid <> pg_backend_pid()`,
              [HOLDER],
            );
            return (rowCount ?? 0) > 0;
          }),
        (paused) => paused,
        120_000,
      );
      worker.child.kill('SIGSTOP');
      stopped = true;
      const frozenAt = Date.now();
      await applyBlocker.release();
      // A writer on the source: before the bound existed, it waited as long as the frozen worker (here: its statement timeout).
      await withClient(url('source'), async (c) => {
        await c.query(`set statement_timeout = '45s'`);
        await c.query('update orders set status = status where id = (select min(id) from orders)');
      });
      const blockedMs = Date.now() - frozenAt;
      expect(blockedMs).toBeGreaterThan(3_000);
      expect(blockedMs).toBeLessThan(15_000 + 8_000);

      // The frozen worker is gone for good; another one retries the cutover and completes it.
      worker.child.kill('SIGCONT');
      worker.child.kill('SIGKILL');
      stopped = false;
      const { stop } = await startWorker({ connection: suite.temporal.connection });
      try {
        const final = (await handle.result()) as MigrationStatus;
        expect(final.state, JSON.stringify(final.failure)).toBe('completed');
      } finally {
        await stop();
      }
    } finally {
      if (stopped) worker.child.kill('SIGCONT');
      await applyBlocker.release();
    }
  }, HEAVY);
});

describe('odd database names stay names (scenario 8)', () => {
  it('syncs and backs up a database named like a URL with parameters, without being redirected', async () => {
    const odd = 'odd?host=elsewhere&port=1#x';
    const copy = 'copy?host=elsewhere';
    const from: LocalPostgres = { name: 'oddDb', kind: 'postgres', provider: 'local', cluster: 'source', database: odd };
    const to: LocalPostgres = { name: 'copyDb', kind: 'postgres', provider: 'local', cluster: 'target', database: copy };
    const admin = (cluster: 'source' | 'target') => (fn: (c: pg.Client) => Promise<unknown>) => withClient(url(cluster, 'postgres'), fn);
    const backups = uniqueName('backups');
    await admin('source')((c) => c.query(`drop database if exists ${c.escapeIdentifier(odd)} with (force)`));
    await admin('source')((c) => c.query(`create database ${c.escapeIdentifier(odd)}`));
    const migrationId = uniqueName('odd-names');
    try {
      await withClient(url('source', odd), async (c) => {
        expect((await c.query('select current_database() as db')).rows[0].db).toBe(odd);
        await c.query('create table items (id int primary key, label text); insert into items values (1, $$one$$), (2, $$two$$), (3, $$three$$)');
      });
      const resources = { oddDb: from, copyDb: to, backups: blob('backups', 'primary', backups) };
      const sync = await runActivity(syncPostgres, [{ migrationId, step: dataStep('0-data', 'oddDb', 'copyDb'), resources }]);
      expect(sync.result.figures['copyDb.verified']).toBe(true);
      const copied = await withClient(url('target', copy), async (c) => (await c.query('select current_database() as db, (select count(*) from items)::int as n')).rows[0]);
      expect(copied).toEqual({ db: copy, n: 3 });
      const backup = await runActivity(backupDatabase, [{ migrationId, step: backupStep('1-backup', ['oddDb'], 'backups'), resources }, from]);
      expect(backup.result.figures['oddDb.tables']).toBe(1);
      expect(backup.result.figures['oddDb.restoreVerified']).toBe(true);
      await runActivity(undoPgSync, [{ migrationId, step: dataStep('0-data', 'oddDb', 'copyDb'), resources, undo: sync.result.undo }]);
    } finally {
      await admin('target')((c) => c.query(`drop database if exists ${c.escapeIdentifier(copy)} with (force)`));
      await admin('source')((c) => c.query(`drop database if exists ${c.escapeIdentifier(odd)} with (force)`));
      await containerOf('primary', backups).deleteIfExists();
    }
  }, HEAVY);
});

describe('secrets never reach text (scenario 6)', () => {
  it('a migration with SAS and connection-string secrets leaves none in history, status, the report or the worker log', async () => {
    const state = sandbox();
    const account = state.azurite!.accounts.find((a) => a.role === 'primary')!;
    const sas = generateAccountSASQueryParameters(
      {
        expiresOn: new Date(Date.now() + 3_600_000),
        permissions: AccountSASPermissions.parse('rwdlac'),
        resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
        services: AccountSASServices.parse('b').toString(),
      },
      new StorageSharedKeyCredential(account.name, account.key),
    ).toString();
    const sig = new URLSearchParams(sas).get('sig')!;
    const pgPassword = 'PgS3cretPassw0rd4Robust';
    const hookToken = 'q8Yv3LmZp2RtK9sW4dN6bH1c';
    const secrets = { ROBUST_SAS: `BlobEndpoint=${account.blobEndpoint};SharedAccessSignature=${sas}`, ROBUST_PG: `postgres://postgres:${pgPassword}@127.0.0.1:${state.postgres.source!.port}/shop`, ROBUST_HOOK: `https://hooks.example.test:99999/services/T0AB12CD3/B0XY98ZW7/${hookToken}` };
    const needles = [sig, encodeURIComponent(sig), sas, pgPassword, hookToken];
    const backups = uniqueName('backups');
    const plan = parsePlan(
      `
apiVersion: tiershift/v1
identity: unverified
name: ${uniqueName('secrets')}
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source, connection: { env: ROBUST_PG } }
  backups: { kind: blob, provider: local, account: primary, container: ${backups}, connection: { env: ROBUST_SAS } }
phases:
  - backup: { resources: [sourceDb], destination: backups }
  - gate: { name: go, notify: { webhook: { env: ROBUST_HOOK } } }
`,
      'secrets.yaml',
    );
    const worker = childWorker(secrets);
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      const atGate = await eventually(() => status(handle.workflowId), (s) => (s.notifications?.length ?? 0) > 0 || ['completed', 'rolled-back', 'aborted', 'awaiting-operator'].includes(s.state), 120_000);
      expect(atGate.notifications?.[0]).toMatchObject({ ok: false, to: 'env:ROBUST_HOOK' });
      await approveGate(suite.temporal.client, handle.workflowId, { gate: 'go', by: 'bob' });
      const final = (await handle.result()) as MigrationStatus;
      expect(final.state, JSON.stringify(final.failure)).toBe('completed');
      // The backup really went through the SAS connection string.
      const dumps: string[] = [];
      for await (const b of containerOf('primary', backups).listBlobsFlat()) dumps.push(b.name);
      expect(dumps.some((n) => n.endsWith('sourceDb.dump'))).toBe(true);

      const { events } = await handle.fetchHistory();
      // Payloads are base64 in the fetched history: decoded, so a secret inside one is found as it was written.
      const history = JSON.stringify(events, (k, v: unknown) =>
        v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : k === 'data' && typeof v === 'string' ? Buffer.from(v, 'base64').toString('utf8') : v,
      );
      const env = { TIERSHIFT_HOME: suite.state.home, TEMPORAL_ADDRESS: suite.temporal.address };
      const statusText = await tiershift(['status', handle.workflowId], env);
      const statusJson = await tiershift(['--json', 'status', handle.workflowId], env);
      const report = await tiershift(['report', handle.workflowId], env);
      expect(statusText.code, statusText.stderr).toBe(0);
      expect(report.code, report.stderr).toBe(0);
      const texts = { history, status: statusText.stdout + statusJson.stdout, report: report.stdout, workerLog: worker.output() };
      for (const [where, text] of Object.entries(texts)) {
        for (const secret of needles) expect(text.includes(secret), `${where} holds a secret (${secret.slice(0, 4)}…)`).toBe(false);
      }
      // And the texts searched are the real ones: the summary, and the notification failure naming its variable.
      expect(history.includes('Dumped sourceDb'), 'the decoded history holds the backup summary').toBe(true);
      expect(report.stdout).toContain('not a valid http(s) URL');
    } finally {
      await containerOf('primary', backups).deleteIfExists();
    }
  }, HEAVY);
});

describe('transient failures are retried (scenario 11)', () => {
  it('an app step whose port is briefly taken is retried and completes', async () => {
    const port = sandbox().ports.appGreen;
    // Whatever connects (the port probe) is hung up on at once.
    const squatter = net.createServer((socket) => socket.on('error', () => undefined).destroy());
    await new Promise<void>((resolve, reject) => squatter.once('error', reject).listen(port, '127.0.0.1', resolve));
    const plan = parsePlan(
      `
apiVersion: tiershift/v1
identity: unverified
name: ${uniqueName('port-taken')}
defaults:
  retry: { maximumAttempts: 6, initialInterval: 1s, backoffCoefficient: 1, maximumInterval: 1s }
resources:
  shop: { kind: app, provider: local }
phases:
  - app: { resource: shop, version: v2 }
`,
      'port.yaml',
    );
    const { stop } = await startWorker({ connection: suite.temporal.connection });
    try {
      const handle = await startMigration(suite.temporal.client, plan, 'alice');
      const seen = await eventually(
        async () => {
          const pending = (await handle.describe()).raw.pendingActivities?.[0];
          return { attempt: pending?.attempt ?? 0, failure: pending?.lastFailure?.message ?? '', state: (await status(handle.workflowId)).state };
        },
        (v) => v.attempt >= 2 || v.state !== 'running',
        60_000,
      );
      expect(seen.state).toBe('running');
      expect(seen.failure).toMatch(/already in use/);
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
      const final = (await handle.result()) as MigrationStatus;
      expect(final.state, JSON.stringify(final.failure)).toBe('completed');
      expect(sandbox().apps.green?.version).toBe('v2');
    } finally {
      squatter.close();
      await stop();
    }
  }, HEAVY);
});
