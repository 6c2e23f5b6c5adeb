// PostgreSQL Flexible Server through ARM: the runbooks' `az postgres flexible-server update`,
// `parameter set`, `backup create`, `replica create` and promotion. Every change is a long-running
// operation run through the journal (resumed, never re-sent, after a crash), and nothing is sent while
// the server is busy with another operation.
import { PostgreSQLManagementFlexibleServerClient, type Server, type ServerForPatch } from '@azure/arm-postgresql-flexible';
import { ApplicationFailure } from '@temporalio/activity';
import type { BackupStep, DataStep, FinalizeStep, InfraStep } from '../../plan/types';
import type { AzurePostgres, AzureInfraStep } from './provider';
import type { Figures } from '../../contract/status';
import type { Json, StepInput, StepOutcome, UndoInput } from '../types';
import { runKey } from '../backup-key';
import { armScope, azureCall, azureFind, Journal, resourceOf, runOperation, waitFor, type AzureContext } from './common';

/** What an infra step may change, and what its compensation puts back. */
export interface ServerShape {
  sku?: { name: string; tier: string };
  storageGb?: number;
  highAvailability?: boolean;
  backupRetentionDays?: number;
  settings: Record<string, string>;
}

/** States that end by themselves: wait. Any other state than Ready needs a person. */
const BUSY = new Set(['Updating', 'Starting', 'Restarting', 'Provisioning', 'Stopping']);

interface Target {
  resource: AzurePostgres;
  client: PostgreSQLManagementFlexibleServerClient;
  resourceGroup: string;
  server: string;
  subscription: string;
}

function target(az: AzureContext, resource: AzurePostgres): Target {
  const { subscription, resourceGroup } = armScope(resource);
  if (!resource.server) throw ApplicationFailure.nonRetryable(`${resource.name} names no Flexible Server; add server: to it in the plan`, 'NonRetryable');
  return {
    resource,
    client: new PostgreSQLManagementFlexibleServerClient(az.credential(), subscription, az.clientOptions()),
    resourceGroup,
    server: resource.server,
    subscription,
  };
}

export const serverId = (t: Pick<Target, 'subscription' | 'resourceGroup' | 'server'>) =>
  `/subscriptions/${t.subscription}/resourceGroups/${t.resourceGroup}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${t.server}`;

const getServer = (t: Target) => azureCall(`reading server ${t.server}`, () => t.client.servers.get(t.resourceGroup, t.server));

/** Waits until the server is Ready: ARM refuses (409) a change while another operation runs on it. */
async function ready(az: AzureContext, t: Target): Promise<Server> {
  return waitFor(
    az,
    `server ${t.server} Ready`,
    () => t.client.servers.get(t.resourceGroup, t.server),
    (s) => s.state === 'Ready',
    (s) => (s.state && !BUSY.has(s.state) ? `server ${t.server} is ${s.state}, not Ready; bring it back (e.g. \`az postgres flexible-server start\`) and resume` : undefined),
    (s) => ({ state: s.state ?? 'unknown' }),
  );
}

const haOn = (s: Server) => s.highAvailability?.mode !== undefined && s.highAvailability.mode !== 'Disabled';

function shapeOf(s: Server, settings: Record<string, string>): ServerShape {
  return {
    ...(s.sku ? { sku: { name: s.sku.name, tier: s.sku.tier } } : {}),
    ...(s.storage?.storageSizeGB !== undefined ? { storageGb: s.storage.storageSizeGB } : {}),
    highAvailability: haOn(s),
    ...(s.backup?.backupRetentionDays !== undefined ? { backupRetentionDays: s.backup.backupRetentionDays } : {}),
    settings,
  };
}

async function readSettings(t: Target, names: string[]): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  for (const name of names) {
    const c = await azureFind(`reading parameter ${name} of ${t.server}`, () => t.client.configurations.get(t.resourceGroup, t.server, name));
    if (!c) throw ApplicationFailure.nonRetryable(`server ${t.server} has no parameter named ${name}; fix the plan's infra settings`, 'NonRetryable');
    found[name] = c.value ?? '';
  }
  return found;
}

const same = (a: string | number | boolean, b: string) => String(a).trim().toLowerCase() === b.trim().toLowerCase();
const wantText = (v: string | number | boolean) => (typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v));

/**
 * Brings the server to `want`, one long-running operation at a time: compute, storage and backup in one
 * PATCH, high availability in its own (turned off before a scale down, on after a scale up, since
 * Burstable has none), then each parameter, then a restart if a static parameter changed.
 */
async function converge(az: AzureContext, t: Target, journal: Journal, want: ServerShape, phase: string): Promise<{ changed: string[]; resumed: boolean; storageKept?: number }> {
  // An operation a killed attempt left running keeps the server Updating: resume it rather than wait for Ready.
  const resuming = journal.state.pending?.op.startsWith(`${phase}:`) ?? false;
  let server = resuming ? await getServer(t) : await ready(az, t);
  const changed: string[] = [];
  let resumed = false;
  let storageKept: number | undefined;

  const currentGb = server.storage?.storageSizeGB;
  let storageGb = want.storageGb;
  if (storageGb !== undefined && currentGb !== undefined && storageGb < currentGb) {
    // Only compensation asks for less; a plan asking for less was refused before anything changed.
    storageKept = currentGb;
    storageGb = undefined;
  }

  const compute: ServerForPatch = {};
  if (want.sku && (server.sku?.name !== want.sku.name || server.sku?.tier !== want.sku.tier)) compute.sku = { name: want.sku.name, tier: want.sku.tier as 'GeneralPurpose' };
  if (storageGb !== undefined && storageGb !== currentGb) compute.storage = { storageSizeGB: storageGb };
  if (want.backupRetentionDays !== undefined && server.backup?.backupRetentionDays !== want.backupRetentionDays) compute.backup = { backupRetentionDays: want.backupRetentionDays };
  const haChange = want.highAvailability !== undefined && want.highAvailability !== haOn(server);

  const patch = async (op: string, body: ServerForPatch, label: string) => {
    if (!Object.keys(body).length && !journal.isPending(op)) return;
    if (!journal.isPending(op) && !journal.isDone(op)) await ready(az, t);
    const r = await runOperation(az, journal, op, `updating ${label} of server ${t.server}`, (o) => t.client.servers.beginUpdate(t.resourceGroup, t.server, body, o));
    if (!r.skipped) changed.push(label);
    resumed ||= r.resumed;
    server = await ready(az, t);
  };
  const patchHa = () =>
    patch(`${phase}:ha`, haChange ? { highAvailability: { mode: want.highAvailability ? 'ZoneRedundant' : 'Disabled' } } : {}, 'high availability');

  if (haChange && !want.highAvailability) await patchHa();
  await patch(`${phase}:compute`, compute, [compute.sku && 'SKU', compute.storage && 'storage', compute.backup && 'backup retention'].filter(Boolean).join(', ') || 'compute');
  if (haChange && want.highAvailability) await patchHa();

  let restart = false;
  for (const [name, value] of Object.entries(want.settings)) {
    const op = `${phase}:param:${name}`;
    const c = await azureCall(`reading parameter ${name} of ${t.server}`, () => t.client.configurations.get(t.resourceGroup, t.server, name));
    if (same(value, c.value ?? '') && !journal.isPending(op)) continue;
    if (c.isReadOnly) throw ApplicationFailure.nonRetryable(`parameter ${name} of server ${t.server} is read-only in Azure; remove it from the plan's infra settings`, 'NonRetryable');
    if (!journal.isPending(op) && !journal.isDone(op)) await ready(az, t);
    const r = await runOperation(az, journal, op, `setting ${name} on server ${t.server}`, (o) =>
      t.client.configurations.beginPut(t.resourceGroup, t.server, name, { value: wantText(value), source: 'user-override' }, o),
    );
    resumed ||= r.resumed;
    if (!r.skipped) changed.push(name);
    if (c.isDynamicConfig === false) restart = true;
  }
  if (restart || journal.isPending(`${phase}:restart`)) {
    if (!journal.isPending(`${phase}:restart`)) await ready(az, t);
    const r = await runOperation(az, journal, `${phase}:restart`, `restarting server ${t.server} for its static parameters`, (o) => t.client.servers.beginRestart(t.resourceGroup, t.server, o));
    resumed ||= r.resumed;
  }
  return { changed, resumed, storageKept };
}

/** Reads back what the server runs with; anything other than `want` fails the attempt (Temporal retries). */
async function verify(az: AzureContext, t: Target, want: ServerShape, storageKept?: number): Promise<Server> {
  const s = await ready(az, t);
  const wrong: string[] = [];
  if (want.sku && (s.sku?.name !== want.sku.name || s.sku?.tier !== want.sku.tier)) wrong.push(`SKU ${s.sku?.tier}/${s.sku?.name}`);
  if (want.storageGb !== undefined && storageKept === undefined && s.storage?.storageSizeGB !== want.storageGb) wrong.push(`storage ${s.storage?.storageSizeGB} GB`);
  if (want.highAvailability !== undefined && haOn(s) !== want.highAvailability) wrong.push(`high availability ${s.highAvailability?.mode}`);
  if (want.backupRetentionDays !== undefined && s.backup?.backupRetentionDays !== want.backupRetentionDays) wrong.push(`backup retention ${s.backup?.backupRetentionDays} days`);
  const now = await readSettings(t, Object.keys(want.settings));
  for (const [k, v] of Object.entries(want.settings)) if (!same(v, now[k]!)) wrong.push(`${k}=${now[k]}`);
  if (wrong.length) throw new Error(`server ${t.server} still reports ${wrong.join(', ')} after the update; retrying`);
  return s;
}

const describeShape = (w: Partial<ServerShape>) =>
  [
    w.sku && `${w.sku.tier} ${w.sku.name}`,
    w.storageGb !== undefined && `${w.storageGb} GB storage`,
    w.highAvailability !== undefined && `high availability ${w.highAvailability ? 'on' : 'off'}`,
    w.backupRetentionDays !== undefined && `${w.backupRetentionDays}-day backups`,
    ...Object.entries(w.settings ?? {}).map(([k, v]) => `${k}=${v}`),
  ]
    .filter(Boolean)
    .join(', ');

export async function prepareInfra(az: AzureContext, { step, resources }: StepInput<AzureInfraStep>): Promise<StepOutcome> {
  const t = target(az, resourceOf(resources, step.resource, 'postgres', 'infra resource'));
  const journal = new Journal();
  const names = Object.keys(step.settings);
  const server = await getServer(t);
  const before = await journal.before(async () => shapeOf(server, await readSettings(t, names)) as unknown as Json) as unknown as ServerShape;

  if (step.storageGb !== undefined && server.storage?.storageSizeGB !== undefined && step.storageGb < server.storage.storageSizeGB) {
    throw ApplicationFailure.nonRetryable(
      `server ${t.server} has ${server.storage.storageSizeGB} GB of storage and Azure cannot shrink it, but the plan asks for ${step.storageGb} GB; set storageGb to at least ${server.storage.storageSizeGB}`,
      'NonRetryable',
    );
  }
  if (step.sku && !step.tier && !server.sku?.tier) throw ApplicationFailure.nonRetryable(`the plan changes the SKU of ${t.server} without a tier; add tier: to the infra step`, 'NonRetryable');
  const want: ServerShape = {
    ...(step.sku ? { sku: { name: step.sku, tier: step.tier ?? server.sku!.tier } } : {}),
    ...(step.storageGb !== undefined ? { storageGb: step.storageGb } : {}),
    ...(step.highAvailability !== undefined ? { highAvailability: step.highAvailability } : {}),
    ...(step.backupRetentionDays !== undefined ? { backupRetentionDays: step.backupRetentionDays } : {}),
    settings: Object.fromEntries(Object.entries(step.settings).map(([k, v]) => [k, wantText(v)])),
  };
  const result = await converge(az, t, journal, want, 'do');
  const s = await verify(az, t, want);
  return {
    summary: result.changed.length
      ? `${t.server} now runs with ${describeShape(want)} (changed: ${result.changed.join(', ')}${result.resumed ? '; resumed an operation a previous attempt started' : ''})`
      : `${t.server} already runs with ${describeShape(want)}; nothing changed`,
    figures: {
      [`${step.resource}.sku`]: s.sku?.name ?? '',
      [`${step.resource}.tier`]: s.sku?.tier ?? '',
      [`${step.resource}.storageGb`]: s.storage?.storageSizeGB ?? 0,
      [`${step.resource}.highAvailability`]: haOn(s),
      [`${step.resource}.changes`]: result.changed.length,
    },
    undo: { before: before as unknown as Json },
  };
}

/** Read-only: the server's SKU, storage, HA, retention and the step's parameters now (what undo restores). */
export async function observeInfra(az: AzureContext, { step, resources }: StepInput<InfraStep>): Promise<Json> {
  const t = target(az, resourceOf(resources, step.resource, 'postgres', 'infra resource'));
  return { before: shapeOf(await getServer(t), await readSettings(t, Object.keys(step.settings))) as unknown as Json };
}

/** Back to the recorded SKU, HA, retention and parameters; storage only grows, which the summary says. */
export async function undoInfra(az: AzureContext, { step: anyStep, resources, undo, before: observed }: UndoInput): Promise<StepOutcome> {
  if (anyStep.kind !== 'infra') throw new Error(`undoInfra got a ${anyStep.kind} step`);
  const step = anyStep as AzureInfraStep;
  const t = target(az, resourceOf(resources, step.resource, 'postgres', 'infra resource'));
  // Observed before the step's first attempt; the step's own record only for workflows older than that.
  const before = (observed as { before?: ServerShape } | undefined)?.before ?? (undo as { before?: ServerShape } | undefined)?.before;
  if (!before) return { summary: `${t.server}: the infra step recorded nothing to restore`, figures: {} };
  // Only what the step touched goes back: a field the plan left alone may have been changed by someone since.
  const want: ServerShape = {
    ...(step.sku && before.sku ? { sku: before.sku } : {}),
    ...(step.storageGb !== undefined && before.storageGb !== undefined ? { storageGb: before.storageGb } : {}),
    ...(step.highAvailability !== undefined ? { highAvailability: before.highAvailability } : {}),
    ...(step.backupRetentionDays !== undefined && before.backupRetentionDays !== undefined ? { backupRetentionDays: before.backupRetentionDays } : {}),
    settings: before.settings ?? {},
  };
  const journal = new Journal();
  const result = await converge(az, t, journal, want, 'undo');
  await verify(az, t, want, result.storageKept);
  const { storageGb: _storage, ...restored } = want;
  const storageNote =
    result.storageKept !== undefined
      ? `; storage stays at ${result.storageKept} GB because Azure cannot shrink a Flexible Server's storage (it was ${before.storageGb} GB before the migration)`
      : '';
  return {
    summary: `${t.server} restored to ${describeShape(result.storageKept === undefined ? want : restored) || 'its previous settings'}${storageNote}`,
    figures: {
      [`${step.resource}.restoredChanges`]: result.changed.length,
      ...(result.storageKept !== undefined ? { [`${step.resource}.storageNotRestoredGb`]: result.storageKept } : {}),
    },
  };
}

/** Drift: parameters that no longer hold what an earlier infra step set. */
export async function settingsDrift(az: AzureContext, resource: AzurePostgres, expected: Record<string, string | number | boolean>): Promise<string[]> {
  const names = Object.keys(expected);
  if (!names.length) return [];
  const t = target(az, resource);
  const now = await readSettings(t, names);
  return names.filter((n) => !same(wantText(expected[n]!), now[n]!)).map((n) => `${resource.name}: ${n} expected ${expected[n]}, found ${now[n]}`);
}

export async function checkServer(az: AzureContext, resource: AzurePostgres): Promise<StepOutcome> {
  const t = target(az, resource);
  const s = await getServer(t);
  if (s.state !== 'Ready') throw ApplicationFailure.retryable(`server ${t.server} is ${s.state}, not Ready; waiting for it`, 'AzureTransient');
  return {
    summary: `${resource.name} healthy: Flexible Server ${t.server} Ready, PostgreSQL ${s.version}${s.minorVersion ? ` (${s.minorVersion})` : ''}, ${s.sku?.tier} ${s.sku?.name}, ${s.storage?.storageSizeGB} GB, high availability ${haOn(s) ? s.highAvailability?.state ?? 'on' : 'off'}`,
    figures: {
      [`${resource.name}.state`]: s.state,
      [`${resource.name}.sku`]: s.sku?.name ?? '',
      [`${resource.name}.storageGb`]: s.storage?.storageSizeGB ?? 0,
      [`${resource.name}.highAvailability`]: haOn(s),
    },
  };
}

/** Azure backup names: letters, digits, dashes, underscores and dots, at most 128; the run's key always fits at the end. */
function backupName(input: StepInput<BackupStep>, name: string): string {
  const run = runKey(input) ? `-${runKey(input)}` : '';
  return `ts-${input.migrationId}-${input.step.id}-${name}`.replace(/[^\w.-]/g, '-').slice(0, 128 - run.length) + run;
}

/** An on-demand backup before the change (`az postgres flexible-server backup create`), reused when it exists. */
export async function backupServer(az: AzureContext, input: StepInput<BackupStep>, resource: AzurePostgres, journal: Journal): Promise<{ line: string; figures: Figures; kept: string }> {
  const t = target(az, resource);
  const name = backupName(input, resource.name);
  const existing = journal.isPending(`backup:${resource.name}`)
    ? undefined
    : await azureFind(`reading backup ${name} of ${t.server}`, () => t.client.backupsAutomaticAndOnDemand.get(t.resourceGroup, t.server, name));
  let reused = existing !== undefined;
  if (!existing) {
    await ready(az, t);
    const r = await runOperation(az, journal, `backup:${resource.name}`, `creating backup ${name} of server ${t.server}`, (o) =>
      t.client.backupsAutomaticAndOnDemand.beginCreate(t.resourceGroup, t.server, name, o),
    );
    reused = r.skipped;
  }
  const b = await azureCall(`reading backup ${name} of ${t.server}`, () => t.client.backupsAutomaticAndOnDemand.get(t.resourceGroup, t.server, name));
  return {
    line: `${reused ? 'Kept existing' : 'Took'} on-demand backup ${name} of ${t.server}${b.completedTime ? ` (completed ${b.completedTime.toISOString()})` : ''}; restore it with \`az postgres flexible-server restore\``,
    figures: { [`${resource.name}.backup`]: name, [`${resource.name}.reused`]: reused, [`${resource.name}.restoreVerified`]: false },
    kept: `${serverId(t)}/backups/${name}`,
  };
}

// --- read replicas: the data phase between two Flexible Servers, promotion at finalize -------------

const REPLICA_BROKEN = new Set(['Broken']);

/** Creates `to` as a read replica of `from` (`az postgres flexible-server replica create`) and waits until it replicates. */
export async function syncReplica(az: AzureContext, { step, resources }: StepInput<DataStep>): Promise<StepOutcome> {
  const source = target(az, resourceOf(resources, step.from, 'postgres', 'data source'));
  const replica = target(az, resourceOf(resources, step.to, 'postgres', 'data target'));
  const journal = new Journal();
  const sourceServer = await ready(az, source);
  const existing = journal.isPending('replica:create') ? undefined : await azureFind(`reading server ${replica.server}`, () => replica.client.servers.get(replica.resourceGroup, replica.server));
  let created = journal.state.notes.created === true;
  if (existing) {
    if ((existing.sourceServerResourceId ?? '').toLowerCase() !== serverId(source).toLowerCase()) {
      throw ApplicationFailure.nonRetryable(
        `server ${replica.server} already exists and is not a read replica of ${source.server}; name a new server for the replica in the plan`,
        'NonRetryable',
      );
    }
  } else {
    await runOperation(az, journal, 'replica:create', `creating read replica ${replica.server} of ${source.server}`, (o) =>
      replica.client.servers.beginCreateOrUpdate(
        replica.resourceGroup,
        replica.server,
        { location: replica.resource.location ?? sourceServer.location, createMode: 'Replica', sourceServerResourceId: serverId(source) },
        o,
      ),
    );
    created = true;
    journal.note('created', true);
  }
  const s = await waitFor(
    az,
    `replica ${replica.server} replicating`,
    () => replica.client.servers.get(replica.resourceGroup, replica.server),
    (x) => x.state === 'Ready' && (x.replica?.replicationState === undefined || x.replica.replicationState === 'Active'),
    (x) =>
      x.replica?.replicationState && REPLICA_BROKEN.has(x.replica.replicationState)
        ? `replication from ${source.server} to ${replica.server} is ${x.replica.replicationState}; delete the replica and resume`
        : x.state && !BUSY.has(x.state) && x.state !== 'Ready'
          ? `replica ${replica.server} is ${x.state}; check it in the portal and resume`
          : undefined,
    (x) => ({ state: x.state ?? 'unknown', replication: x.replica?.replicationState ?? 'unknown' }),
  );
  return {
    summary: `${created ? 'Created' : 'Kept existing'} read replica ${replica.server} of ${source.server} in ${s.location}; replication ${s.replica?.replicationState ?? 'active'}`,
    figures: { [`${step.to}.replicationState`]: s.replica?.replicationState ?? 'Active', [`${step.to}.replicaCreated`]: created },
    undo: { created },
  };
}

/** Read-only: whether the replica's server exists before the data step (one that did is never deleted by undo). */
export async function observeReplica(az: AzureContext, { step, resources }: StepInput<DataStep>): Promise<Json> {
  const replica = target(az, resourceOf(resources, step.to, 'postgres', 'data target'));
  return { exists: (await azureFind(`reading server ${replica.server}`, () => replica.client.servers.get(replica.resourceGroup, replica.server))) !== undefined };
}

/** A replica the step created is deleted; one that was there before is left alone. The source is untouched. */
export async function undoReplica(az: AzureContext, { step, resources, undo, before }: UndoInput): Promise<StepOutcome> {
  if (step.kind !== 'data') throw new Error(`undoReplica got a ${step.kind} step`);
  const replica = target(az, resourceOf(resources, step.to, 'postgres', 'data target'));
  const journal = new Journal();
  // What was there before the first attempt decides: a step that created the replica and then failed left no record.
  const existed = (before as { exists?: boolean } | undefined)?.exists;
  const created = existed !== undefined ? !existed : ((undo as { created?: boolean } | undefined)?.created ?? journal.state.notes.created === true);
  if (!created) return { summary: `${replica.server} existed before the migration; left as it is`, figures: {} };
  const exists = journal.isPending('replica:delete') || (await azureFind(`reading server ${replica.server}`, () => replica.client.servers.get(replica.resourceGroup, replica.server)));
  if (exists) await runOperation(az, journal, 'replica:delete', `deleting replica ${replica.server}`, (o) => replica.client.servers.beginDelete(replica.resourceGroup, replica.server, o));
  return { summary: `Deleted read replica ${replica.server}; the source server is untouched`, figures: { [`${step.to}.replicaDeleted`]: true } };
}

/** Promotes a replica to a standalone server (planned: waits for it to catch up first). */
export async function promoteReplica(az: AzureContext, input: StepInput<FinalizeStep>, to: AzurePostgres): Promise<StepOutcome> {
  const replica = target(az, to);
  const journal = new Journal();
  const s = journal.isPending('promote') ? await getServer(replica) : await ready(az, replica);
  const isReplica = s.replicationRole !== undefined && s.replicationRole !== 'Primary' && s.replicationRole !== 'None';
  if (!isReplica && !journal.isPending('promote')) {
    return { summary: `${replica.server} is already a standalone server (${s.replicationRole ?? 'no replication'})`, figures: { [`${to.name}.promoted`]: true } };
  }
  await runOperation(az, journal, 'promote', `promoting replica ${replica.server}`, (o) =>
    replica.client.servers.beginUpdate(replica.resourceGroup, replica.server, { replica: { promoteMode: 'Standalone', promoteOption: 'Planned' } }, o),
  );
  const after = await ready(az, replica);
  return {
    summary: `Promoted read replica ${replica.server} to a standalone server (role ${after.replicationRole ?? 'None'}); replication from its source has ended`,
    figures: { [`${to.name}.promoted`]: true },
  };
}
