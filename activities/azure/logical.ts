// The data phase between two existing Flexible Servers by logical replication: what a cross-region or
// major-version move needs, where a read replica cannot serve (a replica has its primary's major version).
// The control plane is Azure's: the server parameters logical decoding needs are set through the
// configurations API, with a restart when a static one changed (a long-running operation, heartbeating),
// and their values from before are what undo puts back. They are set on both servers: the source
// publishes now, and the target publishes in the reverse sync past the point of no return, which must not
// wait for a restart of the server then serving. The data plane is the sandbox's own data phase
// (activities/local/pg-sync.ts, reverse-sync.ts), run on connection strings the worker resolves from Key Vault.
import { ApplicationFailure } from '@temporalio/activity';
import { withPgClient } from '../../contract/pg';
import type { DataStep, FinalizeStep } from '../../plan/types';
import { cutOver, syncDatabases, undoReplication, type Ends, type PgSyncUndo } from '../local/pg-sync';
import { finishReverseSync, measureWrites, startReverseSync } from '../local/reverse-sync';
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

/** A database as the worker reaches it, through its Key Vault connection string. */
async function connect(az: AzureContext, r: AzurePostgres): Promise<string> {
  if (!r.connection) {
    throw ApplicationFailure.nonRetryable(`${r.name} has no connection, which logical replication needs to reach its database; give it connection: { keyVault: { vault, secret } } holding its connection string`, 'NonRetryable');
  }
  return dial(az, await resolveSecret(r.connection, `database ${r.name}`));
}

/** Both databases as the worker reaches them. */
async function ends(az: AzureContext, from: AzurePostgres, to: AzurePostgres): Promise<Ends> {
  return { from, to, src: await connect(az, from), dst: await connect(az, to) };
}

function servers(az: AzureContext, { step, resources }: StepInput<DataStep> | UndoInput): { from: AzurePostgres; to: AzurePostgres; source: Target; dest: Target } {
  const { from: f, to: t } = step as DataStep;
  const from = resourceOf(resources, f, 'postgres', 'data source');
  const to = resourceOf(resources, t, 'postgres', 'data target');
  return { from, to, source: target(az, from), dest: target(az, to) };
}

/** Each server's parameters, before the step or as undo puts them back, by side. */
interface Sides {
  settings: Record<string, string>;
  target?: Record<string, string>;
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

/** Read-only, before the first attempt: the parameters the step may change on each server, which undo puts back. */
export async function observeLogical(az: AzureContext, input: StepInput<DataStep>): Promise<Json> {
  const { source, dest } = servers(az, input);
  const target = (await azureFind(`reading server ${dest.server}`, () => dest.client.servers.get(dest.resourceGroup, dest.server))) ? await readSettings(dest, NAMES) : undefined;
  return { logical: true, settings: await readSettings(source, NAMES), ...(target ? { target } : {}) };
}

/** Brings one server's parameters to what logical replication needs; what changed, and whether it restarted. */
async function prepare(az: AzureContext, t: Target, journal: Journal, phase: string): Promise<{ changed: string[]; restarted: boolean; want: Record<string, string> }> {
  const want = wanted(await readSettings(t, NAMES));
  const { changed } = await converge(az, t, journal, { settings: want }, phase);
  const restarted = (await restartPending(az, t, journal, NAMES, `${phase}:restart-pending`)) || changed.length > 0;
  return { changed, restarted, want };
}

const setWords = (t: Target, p: Awaited<ReturnType<typeof prepare>>) =>
  p.changed.length ? `set ${p.changed.map((n) => `${n}=${p.want[n]}`).join(', ')} on ${t.server} and restarted it` : `${t.server} already ran with ${NAMES.map((n) => `${n}=${p.want[n]}`).join(', ')}${p.restarted ? ' (finished a pending restart)' : ''}`;

export async function syncLogical(az: AzureContext, input: StepInput<DataStep>): Promise<StepOutcome> {
  const { from, to, source, dest } = servers(az, input);
  const journal = new Journal();
  const e = await ends(az, from, to);
  if (!(await azureFind(`reading server ${dest.server}`, () => dest.client.servers.get(dest.resourceGroup, dest.server)))) {
    throw ApplicationFailure.nonRetryable(
      `server ${dest.server} does not exist, and logical replication fills a server that does; create it (in the region and major version you are moving to) and resume, or leave out replication: logical to create it as a read replica`,
      'NonRetryable',
    );
  }
  await ready(az, dest);
  const before = (await journal.before(async () => ({ settings: await readSettings(source, NAMES), target: await readSettings(dest, NAMES) }) as unknown as Json)) as unknown as Sides;
  const atSource = await prepare(az, source, journal, 'logical');
  const atTarget = await prepare(az, dest, journal, 'logical-target');
  await checkSource(e.src, from);

  const data = await syncDatabases(input, e);
  return {
    ...data,
    summary: `${setWords(source, atSource)}; ${setWords(dest, atTarget)}; ${data.summary}`,
    figures: { ...data.figures, [`${from.name}.walLevel`]: 'logical', [`${from.name}.restarted`]: atSource.restarted, [`${to.name}.restarted`]: atTarget.restarted },
    undo: { logical: before as unknown as Json, replication: data.undo ?? null },
  };
}

/** Drops the replication (subscription, slot, publication; the target keeps its rows), then puts the source's parameters back, with a restart. */
export async function undoLogical(az: AzureContext, input: UndoInput): Promise<StepOutcome> {
  const { from, to, source, dest } = servers(az, input);
  const journal = new Journal();
  const recorded = input.undo as { logical?: Sides; replication?: PgSyncUndo | null } | undefined;
  // What was there before the first attempt decides: an attempt that changed the parameters and then failed recorded nothing.
  const observed = input.before as Partial<Sides> | undefined;
  const before: Partial<Sides> | undefined = observed?.settings ? observed : (recorded?.logical ?? (journal.state.before as Partial<Sides> | undefined));
  // The slots first: PostgreSQL does not start with wal_level below logical while a logical slot exists.
  const dropped = await undoReplication({ ...input, undo: recorded?.replication ?? undefined }, await ends(az, from, to));
  const words: string[] = [];
  let restored = 0;
  for (const [t, settings, phase] of [[source, before?.settings, 'logical-undo'], [dest, before?.target, 'logical-undo-target']] as const) {
    if (!settings) {
      words.push(`no parameters of ${t.server} recorded from before the step, so none put back`);
      continue;
    }
    const { changed } = await converge(az, t, journal, { settings }, phase);
    await restartPending(az, t, journal, NAMES, `${phase}:restart-pending`);
    restored += changed.length;
    words.push(changed.length ? `put back ${changed.map((n) => `${n}=${settings[n]}`).join(', ')} on ${t.server} and restarted it` : `${t.server} already runs with its parameters from before the step`);
  }
  return { summary: `${dropped.summary}; ${words.join('; ')}`, figures: { ...dropped.figures, [`${from.name}.parametersRestored`]: restored } };
}

/** Past the point of no return (or the write point): the sandbox's reverse sync, target -> source, on the two servers' connections. */
export const reverseLogical = (az: AzureContext) => ({
  start: (input: UndoInput, from: AzurePostgres, to: AzurePostgres) => startReverseSync(input, from, to, (r) => connect(az, r)),
  finish: (input: UndoInput, from: AzurePostgres, to: AzurePostgres) => finishReverseSync(input, from, to, (r) => connect(az, r)),
});

/** What a rollback at the write point would have to copy back; reads only. */
export const measureLogical = (az: AzureContext, from: AzurePostgres, to: AzurePostgres) => measureWrites(from, to, (r) => connect(az, r));

/** The finalize of a logical data step: the same cutover as the sandbox's (writes paused, sequences moved, replication ended, the source read-only). */
export async function cutoverLogical(az: AzureContext, input: StepInput<FinalizeStep>, from: AzurePostgres, to: AzurePostgres): Promise<StepOutcome> {
  return cutOver(input, await ends(az, from, to));
}
