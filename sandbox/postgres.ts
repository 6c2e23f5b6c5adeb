// Two PostgreSQL clusters standing for the Flexible Server tiers: `source` (small, seeded with the
// demo shop) and `target` (medium, an empty `shop` the data phase fills). As root, initdb and the
// server run as an unprivileged user, because PostgreSQL refuses to run as root.
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { withPgClient } from '../contract/pg';
import { findBinary } from './binaries';
import { PROJECT_ROOT } from '../contract/home';
import { UserError } from '../contract/errors';
import { HOST } from './ports';
import { isOurProcess, logTail, run, stopProcess, type ProcessSpec } from './process';
import { dataDir, keepRunning, logFile, saveRecord, type Health, type Log, type UpContext } from './service';
import { postgresUrl, writeState, type PostgresCluster, type SandboxPorts, type SandboxState } from '../contract/home';

export const POSTGRES_PROCESS: ProcessSpec = { label: 'postgres', signal: 'SIGINT', group: false, match: 'postgres' };
export const DATABASE = 'shop';
const SUPERUSER = 'postgres';

export type ClusterName = PostgresCluster['name'];

/** Settings per tier; `wal_level=logical` and the slots let the data phase use logical replication. */
export const CLUSTERS: Record<ClusterName, { tier: PostgresCluster['tier']; port: keyof SandboxPorts; settings: Record<string, string | number> }> = {
  source: { tier: 'small', port: 'pgSource', settings: { max_connections: 50, shared_buffers: '32MB' } },
  target: { tier: 'medium', port: 'pgTarget', settings: { max_connections: 200, shared_buffers: '128MB' } },
};
/**
 * `wal_retrieve_retry_interval` also spaces out the launcher's starts of subscription workers (5 s by
 * default, for every subscription of the cluster): a data step would wait up to that long for the
 * subscription it just created whenever another one started shortly before.
 */
export const COMMON_SETTINGS: Record<string, string | number> = { wal_level: 'logical', max_replication_slots: 10, max_wal_senders: 10, wal_retrieve_retry_interval: '200ms' };

/** The OS account that owns the clusters when we are root; undefined when we can run them ourselves. */
interface ServerUser {
  name: string;
  uid: number;
  gid: number;
}

function lookupUser(name: string): ServerUser | undefined {
  const id = (flag: string) => spawnSync('id', [flag, name], { encoding: 'utf8' });
  const uid = id('-u');
  const gid = id('-g');
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

function serverUser(): ServerUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const existing = lookupUser('postgres') ?? lookupUser('tiershift-pg');
  if (existing) return existing;
  const created = spawnSync(findBinary('useradd'), ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', 'tiershift-pg'], { encoding: 'utf8' });
  const user = lookupUser('tiershift-pg');
  if (created.status !== 0 || !user) {
    throw new UserError(`PostgreSQL cannot run as root and no \`postgres\` user exists (creating \`tiershift-pg\` failed: ${(created.stderr || created.stdout).trim()}); create an unprivileged user named postgres.`);
  }
  return user;
}

/** Runs a PostgreSQL tool as the server user; from `/` so it never needs access to our cwd. */
function runAsServerUser(user: ServerUser | undefined, binary: string, args: string[]) {
  const [command, argv] = user ? [findBinary('runuser'), ['-u', user.name, '--', binary, ...args]] : [binary, args];
  return run(command, argv, { cwd: '/' });
}

/**
 * The server user must traverse every directory above its data dir. Inside the sandbox home we
 * grant that (x only, no listing); above it too, saying so, since a temporary home is often 0700.
 */
function makeTraversable(dir: string, user: ServerUser, log: Log): void {
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    const st = statSync(d);
    const ok = st.mode & 0o001 || (st.uid === user.uid && st.mode & 0o100) || (st.gid === user.gid && st.mode & 0o010);
    if (!ok) {
      chmodSync(d, st.mode | 0o001);
      log(`postgres: made ${d} traversable (o+x) so the ${user.name} user can reach its data directory`);
    }
    if (d === path.dirname(d)) break;
  }
}

function clusterConfig(name: ClusterName): string {
  const settings: Record<string, string | number> = {
    listen_addresses: HOST,
    // TCP only: no socket directory to own, and no clash with a system cluster's sockets.
    unix_socket_directories: '',
    ...COMMON_SETTINGS,
    ...CLUSTERS[name].settings,
  };
  const lines = Object.entries(settings).map(([k, v]) => `${k} = ${typeof v === 'number' ? v : `'${v}'`}`);
  // postgresql.conf rather than -c flags: ALTER SYSTEM (the infra phase) must be able to override these.
  return `\n# tiershift sandbox: ${name} cluster, tier ${CLUSTERS[name].tier}\n${lines.join('\n')}\n`;
}

async function initCluster(name: ClusterName, dir: string, user: ServerUser | undefined, home: string, log: Log): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (user) {
    makeTraversable(dir, user, log);
    chownSync(dir, user.uid, user.gid);
  }
  const initLog = logFile(home, `initdb-${name}`);
  const result = await runAsServerUser(user, findBinary('initdb'), ['-D', dir, '--auth=trust', `--username=${SUPERUSER}`, '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions']);
  writeFileSync(initLog, result.output);
  if (result.code !== 0) {
    throw new UserError(`initdb failed for the ${name} cluster (${logTail(initLog).slice(0, 200)}); see ${initLog}, then remove ${dir} and run \`tiershift sandbox up\` again.`);
  }
  appendFileSync(path.join(dir, 'postgresql.conf'), clusterConfig(name));
  log(`postgres: initialised the ${name} cluster in ${dir}`);
}

export function postmasterPid(dir: string): number | undefined {
  const file = path.join(dir, 'postmaster.pid');
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

const withClient = <T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> => withPgClient(url, fn, { connectTimeoutMs: 3_000 });

/** Orders in the cluster's database, or null when the schema is not there (the empty target). */
async function countOrders(client: pg.Client): Promise<number | null> {
  const { rows } = await client.query<{ exists: boolean }>(`select to_regclass('public.orders') is not null as exists`);
  if (!rows[0]?.exists) return null;
  const count = await client.query<{ n: string }>('select count(*) as n from orders');
  return Number(count.rows[0]!.n);
}

export async function postgresHealth(cluster: PostgresCluster): Promise<Health> {
  return withClient(postgresUrl(cluster, 'postgres'), async (client) => {
    const { rows } = await client.query<{ max_connections: string; shared_buffers: string; has_db: boolean }>(
      `select current_setting('max_connections') as max_connections, current_setting('shared_buffers') as shared_buffers,
              exists (select 1 from pg_database where datname = $1) as has_db`,
      [cluster.database],
    );
    const row = rows[0]!;
    if (!row.has_db) return { healthy: false, detail: `${cluster.name}: database ${cluster.database} is missing` };
    const orders = await withClient(postgresUrl(cluster), countOrders);
    const data = orders === null ? `${cluster.database} empty` : `${orders} orders`;
    // An infra phase changes the settings and reset keeps them: then they are no longer the tier's.
    const changed = await tierChanges(client, cluster.name);
    const settings = changed.length
      ? `settings changed from tier ${cluster.tier}: ${changed.join(', ')}`
      : `tier ${cluster.tier} (max_connections ${row.max_connections}, shared_buffers ${row.shared_buffers})`;
    return { healthy: true, detail: `${cluster.name}: ${settings}, ${data}, ${HOST}:${cluster.port}` };
  });
}

/** The tier's settings a cluster no longer has (an infra phase changed them): "max_connections 300 (tier medium: 200)". */
export async function tierChanges(client: pg.Client, name: ClusterName): Promise<string[]> {
  const tier = CLUSTERS[name];
  const changes: string[] = [];
  for (const [key, want] of Object.entries(tier.settings)) {
    const { rows } = await client.query<{ v: string }>('select current_setting($1) as v', [key]);
    if (rows[0]?.v !== String(want)) changes.push(`${key} ${rows[0]?.v} (tier ${tier.tier}: ${want})`);
  }
  return changes;
}

/** Starts (or keeps) a cluster; `portsFree` resolves when it may claim its port (see sandboxUp). */
export async function ensurePostgres(ctx: UpContext, name: ClusterName, portsFree: Promise<void>): Promise<void> {
  const { state } = ctx;
  const label = `postgres-${name}`;
  const spec = { ...POSTGRES_PROCESS, label };
  const existing = state.postgres[name];
  if (!(await keepRunning(ctx, existing, spec, () => postgresHealth(existing!), [CLUSTERS[name].port]))) {
    await startCluster(ctx, name, portsFree);
  }
  const cluster = state.postgres[name]!;
  await createDatabase(cluster);
  if (name === 'source') await seed(ctx, cluster);
}

async function startCluster(ctx: UpContext, name: ClusterName, portsFree: Promise<void>): Promise<void> {
  const { state } = ctx;
  const user = serverUser();
  const dir = path.join(dataDir(state.home), `pg-${name}`);
  if (!existsSync(path.join(dir, 'PG_VERSION'))) await initCluster(name, dir, user, state.home, ctx.log);

  await portsFree;
  const port = (state.ports[CLUSTERS[name].port] = await ctx.ports.claim(CLUSTERS[name].port));
  const log = logFile(state.home, `postgres-${name}`);
  const cluster: Omit<PostgresCluster, 'pid'> = { name, tier: CLUSTERS[name].tier, host: HOST, port, user: SUPERUSER, database: DATABASE, dataDir: dir, log };
  const pid = await startServer(cluster, user, (pid) => saveRecord(ctx, (s) => (s.postgres[name] = { ...cluster, pid })));
  ctx.log(`postgres-${name}: started (pid ${pid}) on ${HOST}:${port}, tier ${CLUSTERS[name].tier}`);
}

/**
 * `pg_ctl start` as the server user. The postmaster pid is handed to `record` even when pg_ctl
 * reports a failure: a postmaster may be up regardless, and `down` must be able to stop it.
 */
async function startServer(cluster: Omit<PostgresCluster, 'pid'>, user: ServerUser | undefined, record: (pid: number) => void): Promise<number> {
  const { name, dataDir: dir, port, log } = cluster;
  if (user) {
    // pg_ctl opens the server log as the server user.
    appendFileSync(log, '');
    chownSync(log, user.uid, user.gid);
  }
  const result = await runAsServerUser(user, findBinary('pg_ctl'), ['-D', dir, '-l', log, '-o', `-p ${port}`, '-w', '-t', '60', 'start']);
  const pid = postmasterPid(dir);
  if (pid !== undefined) record(pid);
  if (result.code !== 0 || pid === undefined) {
    const reason = logTail(log) || result.output.trim().split('\n').pop() || `exit code ${result.code}`;
    throw new UserError(`PostgreSQL (${name} cluster) did not start (${reason.slice(0, 200)}); see ${log}.`);
  }
  return pid;
}

/**
 * Restarts a cluster on its port and data directory, e.g. after ALTER SYSTEM changed a
 * postmaster-level setting (the infra phase); records the new pid in the state file.
 */
export async function restartPostgres(state: SandboxState, name: ClusterName): Promise<PostgresCluster> {
  const cluster = state.postgres[name];
  if (!cluster) throw new UserError(`the sandbox has no ${name} PostgreSQL cluster; run \`tiershift sandbox up\` first.`);
  const spec = { ...POSTGRES_PROCESS, label: `postgres-${name}` };
  if (isOurProcess(cluster.pid, spec)) await stopProcess(cluster.pid, spec);
  const pid = await startServer(cluster, serverUser(), (pid) => {
    state.postgres[name] = { ...cluster, pid };
    writeState(state);
  });
  return { ...cluster, pid };
}

async function createDatabase(cluster: PostgresCluster): Promise<void> {
  await withClient(postgresUrl(cluster, 'postgres'), async (client) => {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [cluster.database]);
    if (!rowCount) await client.query(`create database ${client.escapeIdentifier(cluster.database)}`);
  });
}

export const SEED_FILE = path.join(PROJECT_ROOT, 'sandbox', 'seed.sql');

/** Seeds once: the whole seed is one transaction, so an existing `orders` table means it completed. */
async function seed(ctx: UpContext, cluster: PostgresCluster): Promise<void> {
  await withClient(postgresUrl(cluster), async (client) => {
    const existing = await countOrders(client);
    if (existing !== null) {
      ctx.log(`postgres-source: already seeded (${existing} orders)`);
      return;
    }
    const started = Date.now();
    await client.query('begin');
    try {
      await client.query(`select set_config('tiershift.seed_rows', $1, true)`, [String(ctx.seedRows)]);
      await client.query(readFileSync(SEED_FILE, 'utf8'));
      await client.query('commit');
    } catch (err) {
      await client.query('rollback').catch(() => undefined);
      throw err;
    }
    ctx.log(`postgres-source: seeded ${ctx.seedRows} orders in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });
}
