// The sandbox itself, on real processes: a private sandbox (its own temporary home, free ports, a small
// dataset) next to the run's shared one, brought up, probed service by service, and torn down.
import { BlobServiceClient } from '@azure/storage-blob';
import { Connection } from '@temporalio/client';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { originStats, restartPostgres, runtimeCommand, sandboxDown, sandboxStatus, sandboxUp, setServerWeight, startApp, stopApp, type SandboxState } from '../sandbox';
import { ASSETS_CONTAINER, demoBlobContent, demoBlobs } from '../sandbox/azurite';
import { isAlive } from '../sandbox/process';
import { postgresHealth } from '../sandbox/postgres';
import { resetSandbox } from '../sandbox/reset';
import { postgresUrl, readState, stateFile, workersDir, type PostgresCluster } from '../contract/home';
import { spawnTiershift, tiershift } from './support/cli';
import { SEARCH_ATTRIBUTES } from '../contract/search-attributes';

const SEED_ROWS = 5_000;
const home = mkdtempSync(path.join(os.tmpdir(), 'tiershift-sandbox-test-'));
let state: SandboxState;

async function query<T extends pg.QueryResultRow>(cluster: PostgresCluster | undefined, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: postgresUrl(cluster!) });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

function allPids(s: SandboxState): number[] {
  return [s.temporal, s.azurite, s.postgres.source, s.postgres.target, s.haproxy, s.apps.blue, s.apps.green, s.idp].flatMap((r) => (r ? [r.pid] : []));
}

describe('sandbox', () => {
  beforeAll(async () => {
    state = await sandboxUp({ home, freePorts: true, seedRows: SEED_ROWS });
  }, 120_000);

  // Always: a failed test must not leave processes or a temporary home behind.
  afterAll(async () => {
    await sandboxDown({ home, purge: true });
  }, 60_000);

  it('reports every service healthy', async () => {
    const status = await sandboxStatus({ home });
    expect(status.map((s) => s.name).sort()).toEqual(['app-blue', 'azurite', 'haproxy', 'idp', 'postgres-source', 'postgres-target', 'temporal']);
    for (const s of status) expect(s, `${s.name}: ${s.detail}`).toMatchObject({ healthy: true });
    expect(status.find((s) => s.name === 'postgres-source')?.detail).toContain(`${SEED_ROWS} orders`);
    expect(state.temporal?.uiUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('serves the app through the HAProxy front door from blue', async () => {
    const res = await fetch(`${state.haproxy!.frontendUrl}/api/orders/1`);
    expect(res.status).toBe(200);
    expect(res.headers.get('x-app-color')).toBe('blue');
    const order = (await res.json()) as { id: number; items: unknown[] };
    expect(order.id).toBe(1);
    expect(order.items.length).toBeGreaterThan(0);

    const created = await fetch(`${state.haproxy!.frontendUrl}/api/orders`, { method: 'POST' });
    expect(created.status).toBe(201);
    expect(((await created.json()) as { invoiceNumber: number }).invoiceNumber).toBe(100_000 + SEED_ROWS + 1);
  });

  it('the shop app keeps serving while the database ends its sessions under load, as a cutover does', async () => {
    const blue = state.apps.blue!;
    const admin = new pg.Client({ connectionString: postgresUrl(state.postgres.source!, 'postgres') });
    await admin.connect();
    let ending = true;
    // The app's sessions ended every 20 ms for 3 s: some between two statements of an order's transaction.
    const terminator = (async () => {
      const until = Date.now() + 3_000;
      while (ending && Date.now() < until) {
        await admin.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = 'shop' and application_name <> 'tiershift-test-admin' and pid <> pg_backend_pid() and backend_type = 'client backend'`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const post = () => fetch(`http://127.0.0.1:${blue.port}/api/orders`, { method: 'POST', signal: AbortSignal.timeout(5_000) }).then((r) => r.status, () => 0);
    const statuses: number[] = [];
    try {
      for (let round = 0; round < 60; round++) statuses.push(...(await Promise.all(Array.from({ length: 8 }, post))));
    } finally {
      ending = false;
      await terminator;
      await admin.end();
    }
    // Some orders fail while their session is ended; the app itself lives on and serves again.
    expect(statuses.filter((code) => code === 0)).toEqual([]);
    expect(isAlive(blue.pid)).toBe(true);
    expect((await fetch(`http://127.0.0.1:${blue.port}/api/orders`, { method: 'POST' })).status).toBe(201);
  });

  it('seeds the source with the shop: rows, foreign keys, the invoice sequence, the small tier', async () => {
    const [counts] = await query<{ orders: number; items: number; customers: number }>(
      state.postgres.source,
      'select (select count(*) from orders)::int as orders, (select count(*) from order_items)::int as items, (select count(*) from customers)::int as customers',
    );
    expect(counts!.orders).toBeGreaterThanOrEqual(SEED_ROWS);
    expect(counts!.items / SEED_ROWS).toBeGreaterThanOrEqual(2);
    expect(counts!.items / SEED_ROWS).toBeLessThanOrEqual(3);
    expect(counts!.customers).toBe(SEED_ROWS / 10);

    const fks = await query<{ name: string }>(state.postgres.source, `select conname as name from pg_constraint where contype = 'f' order by 1`);
    expect(fks.map((f) => f.name)).toEqual(['order_items_order_id_fkey', 'order_items_product_id_fkey', 'orders_customer_id_fkey', 'payments_order_id_fkey']);
    const [seq] = await query<{ last_value: string }>(state.postgres.source, 'select last_value from invoice_number_seq');
    expect(Number(seq!.last_value)).toBeGreaterThanOrEqual(100_000 + SEED_ROWS);

    const [settings] = await query<{ max_connections: string; shared_buffers: string; wal_level: string }>(
      state.postgres.source,
      `select current_setting('max_connections') as max_connections, current_setting('shared_buffers') as shared_buffers, current_setting('wal_level') as wal_level`,
    );
    expect(settings).toEqual({ max_connections: '50', shared_buffers: '32MB', wal_level: 'logical' });
  });

  it('creates an empty shop on the medium-tier target', async () => {
    const tables = await query(state.postgres.target, `select 1 from information_schema.tables where table_schema = 'public'`);
    expect(tables).toHaveLength(0);
    const [max] = await query<{ max_connections: string }>(state.postgres.target, 'show max_connections');
    expect(max!.max_connections).toBe('200');
    const [buffers] = await query<{ shared_buffers: string }>(state.postgres.target, 'show shared_buffers');
    expect(buffers!.shared_buffers).toBe('128MB');
  });

  it('restarts a cluster so ALTER SYSTEM settings (the infra phase) take effect', async () => {
    const before = state.postgres.target!.pid;
    await query(state.postgres.target, 'alter system set max_connections = 150');
    const restarted = await restartPostgres(state, 'target');
    expect(restarted.pid).not.toBe(before);
    expect(isAlive(before)).toBe(false);
    expect(readState(home)?.postgres.target?.pid).toBe(restarted.pid);
    expect(await query(state.postgres.target, 'show max_connections')).toEqual([{ max_connections: '150' }]);
    // Reset keeps what an infra phase set: neither it nor the health line calls that the medium tier.
    expect((await postgresHealth(state.postgres.target!)).detail).toMatch(/^target: settings changed from tier medium: max_connections 150 \(tier medium: 200\), /);
    const said: string[] = [];
    await resetSandbox(state, (line) => said.push(line));
    expect(said).toContain("target settings kept as a migration left them, not the tier's: max_connections 150 (tier medium: 200)");
    await query(state.postgres.target, 'alter system reset max_connections');
    await restartPostgres(state, 'target');
    expect(await query(state.postgres.target, 'show max_connections')).toEqual([{ max_connections: '200' }]);
    expect((await postgresHealth(state.postgres.target!)).detail).toMatch(/^target: tier medium \(max_connections 200, shared_buffers 128MB\), /);
  });

  it('runs Azurite with both accounts and the demo assets in the primary', async () => {
    expect(state.azurite!.accounts.map((a) => [a.role, a.name])).toEqual([['primary', 'tsprimary'], ['secondary', 'tssecondary']]);
    for (const account of state.azurite!.accounts) {
      expect(account.blobEndpoint).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:\\d+/${account.name}$`));
      const names: string[] = [];
      for await (const c of BlobServiceClient.fromConnectionString(account.connectionString).listContainers()) names.push(c.name);
      expect(names).toEqual(account.role === 'primary' ? [ASSETS_CONTAINER] : []);
    }
    const container = BlobServiceClient.fromConnectionString(state.azurite!.accounts[0]!.connectionString).getContainerClient(ASSETS_CONTAINER);
    const sizes = new Map<string, number>();
    for await (const b of container.listBlobsFlat()) sizes.set(b.name, b.properties.contentLength ?? -1);
    expect(Object.fromEntries(sizes)).toEqual(Object.fromEntries(demoBlobs().map((b) => [b.name, b.size])));
    const first = demoBlobs()[0]!;
    expect(await container.getBlobClient(first.name).downloadToBuffer()).toEqual(demoBlobContent(first.name, first.size));
  });

  it('registers the migration search attributes in Temporal', async () => {
    const connection = await Connection.connect({ address: state.temporal!.address });
    try {
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
      expect(Object.keys(customAttributes ?? {})).toEqual(expect.arrayContaining(SEARCH_ATTRIBUTES.map((k) => k.name)));
    } finally {
      await connection.close();
    }
  });

  it('moves origin weights through the HAProxy runtime API', async () => {
    const weights = async () => Object.fromEntries((await originStats(state)).map((r) => [r.svname, r.weight]));
    expect(await weights()).toEqual({ blue: 256, green: 0 });
    await setServerWeight(state, 'blue', 128);
    expect((await weights()).blue).toBe(128);
    await setServerWeight(state, 'blue', 256);
    await expect(setServerWeight(state, 'green', 300)).rejects.toThrow(/0 to 256/);
    expect(await runtimeCommand(state.haproxy!.runtimeApi, 'show servers state app')).toMatch(/\bblue\b/);
  });

  it('injects faults only for direct loopback callers, never on /health', async () => {
    const blue = `http://127.0.0.1:${state.apps.blue!.port}`;
    const viaFront = await fetch(`${state.haproxy!.frontendUrl}/admin/fault`, { method: 'POST', body: '{"errorRate":1}' });
    expect(viaFront.status).toBe(403);
    try {
      expect((await fetch(`${blue}/admin/fault`, { method: 'POST', body: '{"errorRate":1}' })).status).toBe(200);
      expect((await fetch(`${state.haproxy!.frontendUrl}/api/stats`)).status).toBe(500);
      expect((await fetch(`${blue}/health`)).status).toBe(200);
    } finally {
      await fetch(`${blue}/admin/fault`, { method: 'POST', body: '{"errorRate":0}' });
    }
    expect((await fetch(`${state.haproxy!.frontendUrl}/api/stats`)).status).toBe(200);
  });

  it('starts and stops green on the target for the app phase', async () => {
    const green = await startApp(state, 'green', { database: 'target', version: 'v2' });
    expect(green).toMatchObject({ color: 'green', version: 'v2', database: 'target', port: state.ports.appGreen });
    const health = await fetch(`http://127.0.0.1:${green.port}/health`);
    expect(health.headers.get('x-app-color')).toBe('green');
    // The target is still empty: green is healthy (reachable) with no orders yet.
    expect(await health.json()).toMatchObject({ status: 'ok', version: 'v2', database: { ok: true, orders: null } });
    expect((await startApp(state, 'green', { database: 'target', version: 'v2' })).pid).toBe(green.pid);
    await stopApp(state, 'green');
    expect(isAlive(green.pid)).toBe(false);
    expect(readState(home)?.apps.green).toBeUndefined();
  });

  it('is idempotent: a second up keeps every process', async () => {
    const before = allPids(readState(home)!);
    const again = await sandboxUp({ home, freePorts: true, seedRows: SEED_ROWS });
    expect(allPids(again)).toEqual(before);
    expect(again.ports).toEqual(state.ports);
  });

  it('`tiershift worker` leaves its pid file; `tiershift sandbox down` stops it and leaves another program alone', async () => {
    const env = { TIERSHIFT_HOME: home };
    const worker = spawnTiershift(['worker'], env);
    // Not a worker, though its pid file says so: `down` must see from its command line that it is not one.
    const sleeper = spawn('sleep', ['300'], { stdio: 'ignore' });
    try {
      await worker.waitFor(/worker \S+ polling task queue/);
      const pidFile = path.join(workersDir(home), `${worker.child.pid}.json`);
      expect(JSON.parse(readFileSync(pidFile, 'utf8'))).toMatchObject({ pid: worker.child.pid, address: state.temporal!.address });
      const planted = path.join(workersDir(home), `${sleeper.pid}.json`);
      writeFileSync(planted, JSON.stringify({ pid: sleeper.pid, cmdline: readFileSync(`/proc/${sleeper.pid}/cmdline`, 'utf8'), address: 'x', startedAt: '' }));

      const down = await tiershift(['sandbox', 'down'], env);
      expect(down.code, down.stderr).toBe(0);
      expect(down.stderr).toContain(`worker: stopped (pid ${worker.child.pid})`);
      expect(down.stderr).toContain(`worker: pid ${sleeper.pid} is no longer a tiershift worker; left alone`);
      // The worker drained and exited on SIGTERM, removing its own pid file; the planted one is gone too.
      expect(await worker.exited).toMatchObject({ code: 0 });
      expect(existsSync(pidFile)).toBe(false);
      expect(existsSync(planted)).toBe(false);
      expect(isAlive(sleeper.pid!)).toBe(true);
      expect(existsSync(stateFile(home))).toBe(false);
    } finally {
      await worker.stop();
      sleeper.kill('SIGKILL');
    }
    // Up again for the next test, which takes the sandbox down itself.
    state = await sandboxUp({ home, freePorts: true, seedRows: SEED_ROWS });
  });

  it('down stops every recorded process and keeps the data; purge removes the home', async () => {
    const pids = allPids(readState(home)!);
    expect(pids).toHaveLength(7);
    await sandboxDown({ home });
    for (const pid of pids) expect(isAlive(pid), `pid ${pid}`).toBe(false);
    expect(existsSync(stateFile(home))).toBe(false);
    expect(existsSync(path.join(home, 'data', 'pg-source', 'PG_VERSION'))).toBe(true);
    await sandboxDown({ home }); // nothing running: a no-op
    // What `tiershift demo` leaves in the home (its people's sign-ins) is the sandbox's to remove too.
    mkdirSync(path.join(home, 'demo-logins', 'alice'), { recursive: true });
    await sandboxDown({ home, purge: true });
    expect(existsSync(home)).toBe(false);
  });
});
