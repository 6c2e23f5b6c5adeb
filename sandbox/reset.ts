// Back to "before the migration", so the demo (or a rehearsal) can run again: all traffic on blue,
// no green app, an empty target database and no replication left behind. The source's data, the
// backups, the target's tier settings and the secondary region's blobs stay: a rerun verifies them.
import type pg from 'pg';
import { withPgClient } from '../contract/pg';
import { stopApp } from './app';
import { tierChanges } from './postgres';
import { MAX_WEIGHT, setServerWeight } from './haproxy';
import type { Log } from './service';
import { postgresUrl, type SandboxState } from '../contract/home';

const withClient = <T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> => withPgClient(url, fn);

/** What a previous migration left that a new one would trip over, one phrase each; empty when clean. */
export async function migrationLeftovers(state: SandboxState): Promise<string[]> {
  const found: string[] = [];
  if (state.apps.green) found.push(`green (${state.apps.green.version}) is running`);
  const target = state.postgres.target;
  if (target) {
    const tables = await withClient(postgresUrl(target, 'postgres'), async (c) => {
      const exists = (await c.query('select 1 from pg_database where datname = $1', [target.database])).rowCount;
      return exists ? withClient(postgresUrl(target), async (t) => Number((await t.query(`select count(*) as n from pg_tables where schemaname = 'public'`)).rows[0].n)) : 0;
    });
    if (tables) found.push(`the target database holds ${tables} tables`);
  }
  const source = state.postgres.source;
  if (source && (await withClient(postgresUrl(source), readOnlyDefault)).on) found.push('the source database is read-only (a cutover ran)');
  return found;
}

/** The database's own default_transaction_read_only (a cutover sets it on the source). */
async function readOnlyDefault(c: pg.Client): Promise<{ db: string; on: boolean }> {
  const { rows } = await c.query<{ db: string; on: boolean }>(
    `select current_database() as db, exists (select 1 from pg_db_role_setting r cross join unnest(r.setconfig) s
      where r.setrole = 0 and r.setdatabase = (select oid from pg_database where datname = current_database()) and s = 'default_transaction_read_only=on') as on`,
  );
  return rows[0]!;
}

export async function resetSandbox(state: SandboxState, log: Log = () => undefined): Promise<void> {
  if (state.haproxy) {
    await setServerWeight(state, 'blue', MAX_WEIGHT);
    await setServerWeight(state, 'green', 0);
    log('traffic: 100% blue');
  }
  if (state.apps.green) {
    await stopApp(state, 'green');
    log('green stopped');
  }
  const { source, target } = state.postgres;
  // Subscriptions first, on both sides (a rollback past the point of no return subscribes the source
  // to the target), detached from their slots; then the slots, which a database cannot be dropped with.
  if (source) await withClient(postgresUrl(source), dropSubscriptions);
  if (target) {
    await withClient(postgresUrl(target, 'postgres'), async (c) => {
      const exists = (await c.query('select 1 from pg_database where datname = $1', [target.database])).rowCount;
      if (exists) {
        await withClient(postgresUrl(target), dropSubscriptions);
        await dropReplication(c);
        await c.query(`drop database ${c.escapeIdentifier(target.database)} with (force)`);
      }
      await c.query(`create database ${c.escapeIdentifier(target.database)}`);
    });
    log(`target database ${target.database} emptied`);
    const changed = await withClient(postgresUrl(target, 'postgres'), (c) => tierChanges(c, 'target'));
    if (changed.length) log(`target settings kept as a migration left them, not the tier's: ${changed.join(', ')}`);
  }
  if (source) {
    const removed = await withClient(postgresUrl(source), dropReplication);
    if (removed) log(`replication removed from the source (${removed})`);
    // A completed cutover left the source read-only (so the old version cannot write past it): before a
    // migration it takes writes, and sessions opened read-only since then reconnect.
    const reopened = await withClient(postgresUrl(source), async (c) => {
      const { db, on } = await readOnlyDefault(c);
      if (!on) return false;
      await c.query('set default_transaction_read_only = off');
      await c.query(`alter database ${c.escapeIdentifier(db)} reset default_transaction_read_only`);
      await c.query(`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`);
      return true;
    });
    if (reopened) log('source database writable again');
  }
}

async function dropSubscriptions(c: pg.Client): Promise<void> {
  for (const { subname } of (await c.query<{ subname: string }>('select subname from pg_subscription where subdbid = (select oid from pg_database where datname = current_database())')).rows) {
    const sub = c.escapeIdentifier(subname);
    await c.query(`alter subscription ${sub} disable`);
    await c.query(`alter subscription ${sub} set (slot_name = none)`);
    await c.query(`drop subscription ${sub}`);
  }
}

/** Drops tiershift's slots on the cluster and publications in the connected database; says what went. */
async function dropReplication(c: pg.Client): Promise<string> {
  const slots = await c.query<{ slot_name: string; active_pid: number | null }>(`select slot_name, active_pid from pg_replication_slots where slot_name like 'tiershift\\_%'`);
  for (const { slot_name, active_pid } of slots.rows) {
    // A walsender whose subscription was just dropped lingers for a moment.
    if (active_pid) await c.query('select pg_terminate_backend($1)', [active_pid]);
    for (let tries = 0; ; tries++) {
      try {
        await c.query('select pg_drop_replication_slot($1)', [slot_name]);
        break;
      } catch (err) {
        if (tries >= 50) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  const pubs = await c.query<{ pubname: string }>(`select pubname from pg_publication where pubname like 'tiershift\\_%'`);
  for (const { pubname } of pubs.rows) await c.query(`drop publication ${c.escapeIdentifier(pubname)}`);
  return slots.rowCount || pubs.rowCount ? `${slots.rowCount} slots, ${pubs.rowCount} publications` : '';
}
