// A database of its own on each sandbox cluster with one `items` table, big enough (300,000 rows and a few
// indexes) that a data step's index build and checksums take seconds, and the plan whose data step copies
// it: for the tests that kill a worker in the middle of a data step (chaos, workers).
import { copyMarker } from '../../activities/local/pg-copy';
import { replicationName } from '../../activities/local/pg-sync';
import { withClient } from '../../activities/local/postgres';
import { postgresUrl, type SandboxState } from '../../contract/home';
import type { MigrationStatus, StepStatus } from '../../contract/status';
import type { ResolvedPlan } from '../../plan/types';
import { expect } from 'vitest';
import { uniqueName } from './local-ops';
import { sandboxPlan } from './plans';

export const ITEMS = 300_000;

const admin = (state: SandboxState, cluster: 'source' | 'target') => postgresUrl(state.postgres[cluster]!, 'postgres');

/** Creates the source database and its table; `indexes` beyond the key, by name and columns. */
export async function createItemsDatabase(state: SandboxState, prefix: string, indexes: Record<string, string>): Promise<string> {
  const database = uniqueName(prefix).replace(/-/g, '_');
  await withClient(admin(state, 'source'), (c) => c.query(`create database ${database}`));
  await withClient(postgresUrl(state.postgres.source!, database), (c) =>
    c.query(`create table items (id bigint primary key, sku text not null, note text not null);
      insert into items select i, 'sku-' || (i::bigint * 7919 % ${ITEMS}), repeat(md5(i::text), 4) from generate_series(1, ${ITEMS}) i;
      ${Object.entries(indexes)
        .map(([name, columns]) => `create index ${name} on items (${columns});`)
        .join('\n')}
      analyze items`),
  );
  return database;
}

/** The plan copying it, retried quickly and with a short heartbeat timeout, so a killed worker's step moves on in seconds. */
export function itemsPlan(prefix: string, database: string): ResolvedPlan {
  return sandboxPlan({
    name: uniqueName(prefix),
    head: `
defaults:
  retry: { maximumAttempts: 6, initialInterval: 300ms, backoffCoefficient: 1, maximumInterval: 300ms }
  timeouts: { startToClose: 10m, heartbeat: 5s }`,
    resources: {
      itemsDb: `{ kind: postgres, provider: local, cluster: source, database: ${database} }`,
      itemsCopy: `{ kind: postgres, provider: local, cluster: target, database: ${database} }`,
    },
    phases: `
  - data: { from: itemsDb, to: itemsCopy }`,
  });
}

/** Rows the target's table took (n_tup_ins counts every insert, also those a truncate removed since). */
export async function rowsInserted(state: SandboxState, database: string): Promise<string | undefined> {
  return withClient(postgresUrl(state.postgres.target!, database), async (c) => (await c.query<{ n: string }>(`select n_tup_ins as n from pg_stat_user_tables where relname = 'items'`)).rows[0]?.n);
}

/**
 * What a migration of the items database whose worker was killed must end with: completed, its data step
 * verified with every row copied, and the target's table holding each row once, having taken each once
 * (a copy started again would have inserted them twice, truncate or not). `context` goes into the
 * message of the insert count. Returns the data step.
 */
export async function expectEveryRowOnce(state: SandboxState, database: string, status: MigrationStatus, context: string): Promise<StepStatus> {
  expect(status.state, JSON.stringify(status.failure ?? status.errors)).toBe('completed');
  const data = status.steps.find((s) => s.kind === 'data')!;
  expect(data.figures).toMatchObject({ 'itemsCopy.verified': true, 'itemsCopy.rowsCopied': ITEMS });
  expect(await rowsInserted(state, database), `${context}; the data step's summary: ${data.summary}`).toBe(String(ITEMS));
  const [n] = await withClient(postgresUrl(state.postgres.target!, database), async (c) => (await c.query<{ n: string; d: string }>('select count(*) as n, count(distinct id) as d from items')).rows);
  expect(n).toEqual({ n: String(ITEMS), d: String(ITEMS) });
  return data;
}

/** Drops the database on both clusters, with the subscription and slot a cut-short step may have left. */
export async function dropItemsDatabase(state: SandboxState, database: string): Promise<void> {
  await withClient(admin(state, 'target'), async (c) => {
    for (const { subname } of (await c.query<{ subname: string }>(`select subname from pg_subscription s join pg_database d on d.oid = s.subdbid where d.datname = $1`, [database])).rows) {
      await withClient(postgresUrl(state.postgres.target!, database), async (t) => {
        await t.query(`alter subscription ${t.escapeIdentifier(subname)} disable`);
        await t.query(`alter subscription ${t.escapeIdentifier(subname)} set (slot_name = none)`);
        await t.query(`drop subscription ${t.escapeIdentifier(subname)}`);
      });
    }
    await c.query(`drop database if exists ${database} with (force)`);
  });
  await withClient(admin(state, 'source'), async (c) => {
    for (const { slot_name } of (await c.query<{ slot_name: string }>('select slot_name from pg_replication_slots where database = $1', [database])).rows) {
      await c.query('select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1 and active_pid is not null', [slot_name]);
      await c.query('select pg_drop_replication_slot($1)', [slot_name]).catch(() => undefined);
    }
    await c.query(`drop database if exists ${database} with (force)`);
  });
}

/**
 * Waits (bounded, 2 minutes) until a session of one of `applications` (pg_stat_activity's
 * application_name) is active in the target's database once every row is in: the copy's marker has
 * progress (it has none, null, until the copy ends) or is gone. Returns which one, or undefined.
 */
export async function activeOnceCopied(state: SandboxState, database: string, migrationId: string, applications: string[]): Promise<string | undefined> {
  const marker = copyMarker(replicationName(migrationId));
  return withClient(admin(state, 'target'), async (c) => {
    for (let i = 0; i < 6000; i++) {
      const { rows } = await c.query<{ app: string }>(
        `select application_name as app from pg_stat_activity where datname = $1 and application_name = any($2::text[]) and state = 'active'
           and not exists (select 1 from pg_replication_origin where roname = $3 and coalesce(pg_replication_origin_progress(roname, true), '0/0') = '0/0') limit 1`,
        [database, applications, marker],
      );
      if (rows[0]) return rows[0].app;
      await new Promise((r) => setTimeout(r, 20));
    }
    return undefined;
  });
}
