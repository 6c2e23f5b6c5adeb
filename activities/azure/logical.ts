// The data phase between two existing Flexible Servers by logical replication: what a cross-region or
// major-version move needs, where a read replica cannot serve (a replica has its primary's major version).
// The control plane is Azure's: the source's server parameters logical decoding needs are set through the
// configurations API, with a restart when a static one changed (a long-running operation, heartbeating),
// and their values from before are what undo puts back. The data plane is the sandbox's own data phase
// (activities/local/pg-sync.ts), run on connection strings the worker resolves from Key Vault.
import { ApplicationFailure } from '@temporalio/activity';
import { withPgClient } from '../../contract/pg';
import type { DataStep, FinalizeStep } from '../../plan/types';
import { cutOver, syncDatabases, undoReplication, type Ends, type PgSyncUndo } from '../local/pg-sync';
import { resolveSecret } from '../secrets';
import type { Json, StepInput, StepOutcome, UndoInput } from '../types';
import { azureCall, azureFind, Journal, resourceOf, runOperation, type AzureContext } from './common';
import { converge, readSettings, ready, target, type Target } from './postgres';
import type { AzurePostgres } from './provider';

/**
 * What the source needs for native logical replication (Azure's "Logical replication and logical decoding"
 * page): wal_level logical, and a replication slot and a WAL sender for the subscription (and one more of
 * each for the copy's snapshot) besides those in use. All three are static: changing one needs a restart.
 * Native publications need no extension, so azure.extensions is left alone (pglogical would need it).
 * Integers are minimums: a server that has more keeps them.
 */
export const LOGICAL_SOURCE: Record<string, string | number> = { wal_level: 'logical', max_replication_slots: 10, max_wal_senders: 10 };
const NAMES = Object.keys(LOGICAL_SOURCE);

/** The source's settings as logical replication needs them, from what it runs with now. */
function wanted(now: Record<string, string>): Record<string, string> {
  return Object.fromEntries(NAMES.map((n) => {
    const want = LOGICAL_SOURCE[n]!;
    return [n, typeof want === 'number' ? String(Math.max(want, Number(now[n] ?? 0) || 0)) : want];
  }));
}

const dial = (az: AzureContext, url: string) => az.options.routePostgres?.(url) ?? url;

/** Both databases as the worker reaches them, through their Key Vault connection strings. */
async function ends(az: AzureContext, from: AzurePostgres, to: AzurePostgres): Promise<Ends> {
  for (const r of [from, to]) {
    if (!r.connection) {
      throw ApplicationFailure.nonRetryable(`${r.name} has no connection, which logical replication needs to reach its database; give it connection: { keyVault: { vault, secret } } holding its connection string`, 'NonRetryable');
    }
  }
  const src = dial(az, await resolveSecret(from.connection!, `database ${from.name}`));
  const dst = dial(az, await resolveSecret(to.connection!, `database ${to.name}`));
  return { from, to, src, dst };
}

function servers(az: AzureContext, { step, resources }: StepInput<DataStep> | UndoInput): { from: AzurePostgres; to: AzurePostgres; source: Target } {
  const { from: f, to: t } = step as DataStep;
  const from = resourceOf(resources, f, 'postgres', 'data source');
  const to = resourceOf(resources, t, 'postgres', 'data target');
  return { from, to, source: target(az, from) };
}

/** Restarts the server while any parameter the step set waits for one (a retry after a crash between the change and the restart). */
async function restartPending(az: AzureContext, t: Target, journal: Journal, names: string[], op: string): Promise<boolean> {
  const pending: string[] = [];
  for (const name of names) {
    const c = await azureCall(`reading parameter ${name} of ${t.server}`, () => t.client.configurations.get(t.resourceGroup, t.server, name));
    if (c.isConfigPendingRestart) pending.push(name);
  }
  if (!pending.length && !journal.isPending(op)) return false;
  if (!journal.isPending(op)) await ready(az, t);
  await runOperation(az, journal, op, `restarting server ${t.server} so that ${pending.join(', ') || 'its parameters'} take effect`, (o) => t.client.servers.beginRestart(t.resourceGroup, t.server, o));
  await ready(az, t);
  return true;
}

/** The data plane agrees with the control plane: the source runs with wal_level logical, and its login may replicate. */
async function checkSource(url: string, from: AzurePostgres): Promise<void> {
  const { level, replication } = await withPgClient(url, async (c) => {
    const { rows } = await c.query<{ level: string; replication: boolean }>(
      `select current_setting('wal_level') as level, (select rolreplication or rolsuper from pg_roles where rolname = current_user) as replication`,
    );
    return rows[0]!;
  });
  // Retryable: a restart Azure reports as done may take a moment to reach the server's sessions.
  if (level !== 'logical') throw new Error(`${from.name} still runs with wal_level ${level} after its restart; retrying`);
  if (!replication) {
    throw ApplicationFailure.nonRetryable(`the login of ${from.name}'s connection may not replicate; run \`ALTER ROLE <that login> WITH REPLICATION\` on ${from.name} (as its Azure admin) and resume`, 'NonRetryable');
  }
}

/** Read-only, before the first attempt: the source's parameters the step may change, which undo puts back. */
export async function observeLogical(az: AzureContext, input: StepInput<DataStep>): Promise<Json> {
  const { source } = servers(az, input);
  return { logical: true, settings: await readSettings(source, NAMES) };
}

export async function syncLogical(az: AzureContext, input: StepInput<DataStep>): Promise<StepOutcome> {
  const { from, to, source } = servers(az, input);
  const journal = new Journal();
  const e = await ends(az, from, to);
  const dest = target(az, to);
  if (!(await azureFind(`reading server ${dest.server}`, () => dest.client.servers.get(dest.resourceGroup, dest.server)))) {
    throw ApplicationFailure.nonRetryable(
      `server ${dest.server} does not exist, and logical replication fills a server that does; create it (in the region and major version you are moving to) and resume, or leave out replication: logical to create it as a read replica`,
      'NonRetryable',
    );
  }
  await ready(az, dest);
  const before = await journal.before(async () => (await readSettings(source, NAMES)) as unknown as Json) as unknown as Record<string, string>;
  const want = wanted(await readSettings(source, NAMES));
  const { changed } = await converge(az, source, journal, { settings: want }, 'logical');
  const restarted = await restartPending(az, source, journal, NAMES, 'logical:restart-pending');
  await checkSource(e.src, from);

  const data = await syncDatabases(input, e);
  const set = changed.length ? `set ${changed.map((n) => `${n}=${want[n]}`).join(', ')} on ${source.server} and restarted it` : `${source.server} already ran with ${NAMES.map((n) => `${n}=${want[n]}`).join(', ')}`;
  return {
    ...data,
    summary: `${set}${restarted && !changed.length ? ' (finished a pending restart)' : ''}; ${data.summary}`,
    figures: { ...data.figures, [`${from.name}.walLevel`]: 'logical', [`${from.name}.restarted`]: changed.length > 0 || restarted },
    undo: { logical: { settings: before }, replication: data.undo ?? null },
  };
}

interface LogicalUndo {
  settings?: Record<string, string>;
}

/** Drops the replication (subscription, slot, publication; the target keeps its rows), then puts the source's parameters back, with a restart. */
export async function undoLogical(az: AzureContext, input: UndoInput): Promise<StepOutcome> {
  const { from, to, source } = servers(az, input);
  const journal = new Journal();
  const recorded = input.undo as { logical?: LogicalUndo; replication?: PgSyncUndo | null } | undefined;
  // What was there before the first attempt decides: an attempt that changed the parameters and then failed recorded nothing.
  const before = (input.before as { settings?: Record<string, string> } | undefined)?.settings ?? recorded?.logical?.settings ?? (journal.state.before as Record<string, string> | undefined);
  // The slot first: PostgreSQL does not start with wal_level below logical while a logical slot exists.
  const dropped = await undoReplication({ ...input, undo: recorded?.replication ?? undefined }, await ends(az, from, to));
  if (!before) return { ...dropped, summary: `${dropped.summary}; no parameters of ${source.server} recorded from before the step, so none put back` };
  const { changed } = await converge(az, source, journal, { settings: before }, 'logical-undo');
  await restartPending(az, source, journal, NAMES, 'logical-undo:restart-pending');
  return {
    summary: `${dropped.summary}; ${changed.length ? `put back ${changed.map((n) => `${n}=${before[n]}`).join(', ')} on ${source.server} and restarted it` : `${source.server} already runs with its parameters from before the step`}`,
    figures: { ...dropped.figures, [`${from.name}.parametersRestored`]: changed.length },
  };
}

/** The finalize of a logical data step: the same cutover as the sandbox's (writes paused, sequences moved, replication ended, the source read-only). */
export async function cutoverLogical(az: AzureContext, input: StepInput<FinalizeStep>, from: AzurePostgres, to: AzurePostgres): Promise<StepOutcome> {
  return cutOver(input, await ends(az, from, to));
}
