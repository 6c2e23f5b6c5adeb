// PostgreSQL Flexible Server through ARM: the runbooks' `az postgres flexible-server update`,
// `parameter set`, `backup create`, `replica create` and promotion. Every change is a long-running
// operation run through the journal (resumed, never re-sent, after a crash), and nothing is sent while
// the server is busy with another operation. What Azure would refuse halfway (a shrink, HA or replicas
// on Burstable, a replica parameter below its primary's) is refused first, in one sentence, before any change.
import { PostgreSQLManagementFlexibleServerClient, type Server, type ServerForPatch } from '@azure/arm-postgresql-flexible';
import { ApplicationFailure } from '@temporalio/activity';
import type { BackupStep, DataStep, FinalizeStep, InfraStep } from '../../plan/types';
import { haModeOf, tierOfSku, type AzurePostgres, type AzureInfraStep, type HaMode } from './provider';
import type { Figures } from '../../contract/status';
import type { Json, StepInput, StepOutcome, UndoInput } from '../types';
import { runKey } from '../backup-key';
import { armScope, azureCall, azureFind, Journal, resourceOf, runOperation, waitFor, type AzureContext } from './common';

/** What an infra step may change, and what its compensation puts back. */
export interface ServerShape {
  sku?: { name: string; tier: string };
  storageGb?: number;
  /** The mode as a string, so undo puts back SameZone as SameZone (records before modes hold a boolean). */
  highAvailability?: HaMode | boolean;
  standbyZone?: string;
  backupRetentionDays?: number;
  settings: Record<string, string>;
  /** The step's replica-bound parameters on each read replica of the server, by replica server name. */
  replicas?: Record<string, Record<string, string>>;
}

/** States that end by themselves: wait. Any other state than Ready needs a person. */
export const BUSY = new Set(['Updating', 'Starting', 'Restarting', 'Provisioning', 'Stopping']);

/**
 * Azure requires these on a read replica to be at least its primary's: raised on the replicas before the
 * primary, lowered on the primary before the replicas.
 */
export const REPLICA_BOUND = new Set(['max_connections', 'max_worker_processes', 'max_prepared_transactions', 'max_locks_per_transaction', 'max_wal_senders']);

/** How long an HA change may take to reach a Healthy standby before the attempt fails and is retried. */
const HA_HEALTHY_WITHIN_MS = 2 * 60 * 60_000;

export interface Target {
  resource: AzurePostgres;
  client: PostgreSQLManagementFlexibleServerClient;
  resourceGroup: string;
  server: string;
  subscription: string;
}

export function target(az: AzureContext, resource: AzurePostgres): Target {
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

/** The read replicas of a server (same subscription; their own resource groups). */
async function replicasOf(t: Target): Promise<Target[]> {
  const found: Target[] = [];
  await azureCall(`listing the read replicas of ${t.server}`, async () => {
    for await (const r of t.client.replicas.listByServer(t.resourceGroup, t.server)) {
      const rg = /\/resourceGroups\/([^/]+)\//i.exec(r.id ?? '')?.[1] ?? t.resourceGroup;
      if (r.name) found.push({ ...t, resourceGroup: rg, server: r.name });
    }
  });
  return found;
}

/** Waits until the server is Ready: ARM refuses (409) a change while another operation runs on it. */
export async function ready(az: AzureContext, t: Target): Promise<Server> {
  return waitFor(
    az,
    `server ${t.server} Ready`,
    () => t.client.servers.get(t.resourceGroup, t.server),
    (s) => s.state === 'Ready',
    (s) => (s.state && !BUSY.has(s.state) ? `server ${t.server} is ${s.state}, not Ready; bring it back (e.g. \`az postgres flexible-server start\`) and resume` : undefined),
    (s) => ({ state: s.state ?? 'unknown' }),
  );
}

const haModeNow = (s: Server): HaMode => (s.highAvailability?.mode as HaMode | undefined) ?? 'Disabled';
const haOn = (s: Server) => haModeNow(s) !== 'Disabled';
const wantHa = (w: ServerShape): HaMode | undefined => (w.highAvailability === undefined ? undefined : haModeOf(w.highAvailability));

/** Waits until the standby is Healthy (it replicates its data after the HA operation itself ended). */
async function haHealthy(az: AzureContext, t: Target): Promise<Server> {
  const withinMs = az.options.haHealthyWithinMs ?? HA_HEALTHY_WITHIN_MS;
  return waitFor(
    az,
    `the standby of ${t.server} Healthy`,
    () => t.client.servers.get(t.resourceGroup, t.server),
    (s) => s.state === 'Ready' && s.highAvailability?.state === 'Healthy',
    (s) => (s.state && !BUSY.has(s.state) && s.state !== 'Ready' ? `server ${t.server} is ${s.state} while its standby is built; bring it back and resume` : undefined),
    (s) => ({ state: s.state ?? 'unknown', standby: s.highAvailability?.state ?? 'unknown' }),
    { withinMs, tooLong: (s) => `the standby of server ${t.server} is still ${s.highAvailability?.state ?? 'not reported'} after ${Math.round(withinMs / 60_000)} minutes; retrying waits again` },
  );
}

function shapeOf(s: Server, settings: Record<string, string>, replicas?: Record<string, Record<string, string>>): ServerShape {
  return {
    ...(s.sku ? { sku: { name: s.sku.name, tier: s.sku.tier } } : {}),
    ...(s.storage?.storageSizeGB !== undefined ? { storageGb: s.storage.storageSizeGB } : {}),
    highAvailability: haModeNow(s),
    ...(haModeNow(s) === 'ZoneRedundant' && s.highAvailability?.standbyAvailabilityZone ? { standbyZone: s.highAvailability.standbyAvailabilityZone } : {}),
    ...(s.backup?.backupRetentionDays !== undefined ? { backupRetentionDays: s.backup.backupRetentionDays } : {}),
    settings,
    ...(replicas && Object.keys(replicas).length ? { replicas } : {}),
  };
}

export async function readSettings(t: Target, names: string[]): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  for (const name of names) {
    const c = await azureFind(`reading parameter ${name} of ${t.server}`, () => t.client.configurations.get(t.resourceGroup, t.server, name));
    if (!c) throw ApplicationFailure.nonRetryable(`server ${t.server} has no parameter named ${name}; fix the plan's infra settings`, 'NonRetryable');
    found[name] = c.value ?? '';
  }
  return found;
}

/** The step's replica-bound parameters on each replica of the server. */
async function readReplicaSettings(t: Target, names: string[]): Promise<Record<string, Record<string, string>>> {
  const bound = names.filter((n) => REPLICA_BOUND.has(n));
  if (!bound.length) return {};
  const out: Record<string, Record<string, string>> = {};
  for (const r of await replicasOf(t)) out[r.server] = await readSettings(r, bound);
  return out;
}

const same = (a: string | number | boolean, b: string) => String(a).trim().toLowerCase() === b.trim().toLowerCase();
const wantText = (v: string | number | boolean) => (typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v));

/**
 * Brings the server to `want`, one long-running operation at a time: high availability off first when it
 * goes off or changes mode (Azure changes a mode only through Disabled), then compute, storage and backup
 * in one PATCH, then HA on (Burstable has none) and a wait for a Healthy standby; then each parameter
 * (replica-bound ones raised on the replicas before the primary, lowered on the primary before the
 * replicas), then a restart of each server where a static parameter changed.
 */
export async function converge(az: AzureContext, t: Target, journal: Journal, want: ServerShape, phase: string): Promise<{ changed: string[]; resumed: boolean; storageKept?: number }> {
  // An operation a killed attempt left running keeps the server Updating: resume it rather than wait for Ready.
  const resuming = journal.state.pending?.op.startsWith(`${phase}:`) ?? false;
  let server = resuming ? await getServer(t) : await ready(az, t);
  const changed: string[] = [];
  let resumed = false;
  let storageKept: number | undefined;

  const currentGb = server.storage?.storageSizeGB;
  let storageGb = want.storageGb;
  if (storageGb !== undefined && currentGb !== undefined && storageGb < currentGb) {
    // Only compensation (or storage autogrow, which grew it past the plan's size) asks for less.
    storageKept = currentGb;
    storageGb = undefined;
  }

  const compute: ServerForPatch = {};
  if (want.sku && (server.sku?.name !== want.sku.name || server.sku?.tier !== want.sku.tier)) compute.sku = { name: want.sku.name, tier: want.sku.tier as 'GeneralPurpose' };
  if (storageGb !== undefined && storageGb !== currentGb) compute.storage = { storageSizeGB: storageGb };
  if (want.backupRetentionDays !== undefined && server.backup?.backupRetentionDays !== want.backupRetentionDays) compute.backup = { backupRetentionDays: want.backupRetentionDays };
  const mode = wantHa(want);
  const zoneNow = server.highAvailability?.standbyAvailabilityZone || undefined;
  const haChange = mode !== undefined && (mode !== haModeNow(server) || (mode === 'ZoneRedundant' && want.standbyZone !== undefined && want.standbyZone !== zoneNow));
  // Off first when it goes off, or from one mode (or standby zone) to another.
  const haOffFirst = haChange && haOn(server);

  const patch = async (op: string, body: ServerForPatch, label: string) => {
    if (!Object.keys(body).length && !journal.isPending(op)) return;
    if (!journal.isPending(op) && !journal.isDone(op)) await ready(az, t);
    const r = await runOperation(az, journal, op, `updating ${label} of server ${t.server}`, (o) => t.client.servers.beginUpdate(t.resourceGroup, t.server, body, o));
    if (!r.skipped) changed.push(label);
    resumed ||= r.resumed;
    server = await ready(az, t);
  };

  await patch(`${phase}:ha-off`, haOffFirst ? { highAvailability: { mode: 'Disabled' } } : {}, 'high availability');
  await patch(`${phase}:compute`, compute, [compute.sku && 'SKU', compute.storage && 'storage', compute.backup && 'backup retention'].filter(Boolean).join(', ') || 'compute');
  if (mode !== undefined && mode !== 'Disabled' && (haChange || journal.isPending(`${phase}:ha`))) {
    await patch(
      `${phase}:ha`,
      { highAvailability: { mode, ...(mode === 'ZoneRedundant' && want.standbyZone ? { standbyAvailabilityZone: want.standbyZone } : {}) } },
      'high availability',
    );
  }
  if (mode !== undefined && mode !== 'Disabled') server = await haHealthy(az, t);

  // Parameters: replica-bound raises on the replicas first, then the primary, then replica-bound lowerings.
  const replicas = await replicasOf(t);
  const replicaWant = want.replicas ?? {};
  const restarts = new Set<Target>();
  const setParam = async (on: Target, name: string, value: string, op: string) => {
    const c = await azureCall(`reading parameter ${name} of ${on.server}`, () => on.client.configurations.get(on.resourceGroup, on.server, name));
    if (same(value, c.value ?? '') && !journal.isPending(op)) return;
    if (c.isReadOnly) throw ApplicationFailure.nonRetryable(`parameter ${name} of server ${on.server} is read-only in Azure; remove it from the plan's infra settings`, 'NonRetryable');
    if (!journal.isPending(op) && !journal.isDone(op)) await ready(az, on);
    const r = await runOperation(az, journal, op, `setting ${name} on server ${on.server}`, (o) =>
      on.client.configurations.beginPut(on.resourceGroup, on.server, name, { value, source: 'user-override' }, o),
    );
    resumed ||= r.resumed;
    if (!r.skipped) changed.push(on === t ? name : `${name} on replica ${on.server}`);
    if (c.isDynamicConfig === false) restarts.add(on);
  };
  const replicaSteps = async (raise: boolean) => {
    for (const r of replicas) {
      for (const [name, value] of Object.entries(replicaWant[r.server] ?? {})) {
        const now = Number((await readSettings(r, [name]))[name]);
        if (raise ? Number(value) > now : Number(value) < now) await setParam(r, name, value, `${phase}:replica:${r.server}:${name}`);
      }
    }
  };
  await replicaSteps(true);
  for (const [name, value] of Object.entries(want.settings)) {
    if (REPLICA_BOUND.has(name)) {
      // A replica a plan did not list (created since, or undo of a step that saw none) still bounds the primary.
      for (const r of replicas) {
        const now = Number((await readSettings(r, [name]))[name]);
        if (Number(value) > now && replicaWant[r.server]?.[name] === undefined) await setParam(r, name, value, `${phase}:replica:${r.server}:${name}`);
      }
    }
    await setParam(t, name, value, `${phase}:param:${name}`);
  }
  await replicaSteps(false);

  for (const on of [t, ...replicas]) {
    const op = on === t ? `${phase}:restart` : `${phase}:restart:${on.server}`;
    if (!restarts.has(on) && !journal.isPending(op)) continue;
    if (!journal.isPending(op)) await ready(az, on);
    const r = await runOperation(az, journal, op, `restarting server ${on.server} for its static parameters`, (o) => on.client.servers.beginRestart(on.resourceGroup, on.server, o));
    resumed ||= r.resumed;
  }
  return { changed, resumed, storageKept };
}

/** Reads back what the server runs with; anything other than `want` fails the attempt (Temporal retries). */
async function verify(az: AzureContext, t: Target, want: ServerShape, storageKept?: number): Promise<Server> {
  const mode = wantHa(want);
  const s = mode !== undefined && mode !== 'Disabled' ? await haHealthy(az, t) : await ready(az, t);
  const wrong: string[] = [];
  if (want.sku && (s.sku?.name !== want.sku.name || s.sku?.tier !== want.sku.tier)) wrong.push(`SKU ${s.sku?.tier}/${s.sku?.name}`);
  if (want.storageGb !== undefined && storageKept === undefined && s.storage?.storageSizeGB !== want.storageGb) wrong.push(`storage ${s.storage?.storageSizeGB} GB`);
  if (mode !== undefined && haModeNow(s) !== mode) wrong.push(`high availability ${haModeNow(s)}`);
  if (mode === 'ZoneRedundant' && want.standbyZone && s.highAvailability?.standbyAvailabilityZone !== want.standbyZone) wrong.push(`standby in zone ${s.highAvailability?.standbyAvailabilityZone}`);
  if (want.backupRetentionDays !== undefined && s.backup?.backupRetentionDays !== want.backupRetentionDays) wrong.push(`backup retention ${s.backup?.backupRetentionDays} days`);
  const now = await readSettings(t, Object.keys(want.settings));
  for (const [k, v] of Object.entries(want.settings)) if (!same(v, now[k]!)) wrong.push(`${k}=${now[k]}`);
  if (wrong.length) throw new Error(`server ${t.server} still reports ${wrong.join(', ')} after the update; retrying`);
  return s;
}

const haWords = (mode: HaMode, zone?: string) => (mode === 'Disabled' ? 'high availability off' : `${mode} high availability${zone ? ` (standby in zone ${zone})` : ''}`);

const describeShape = (w: Partial<ServerShape>) =>
  [
    w.sku && `${w.sku.tier} ${w.sku.name}`,
    w.storageGb !== undefined && `${w.storageGb} GB storage`,
    w.highAvailability !== undefined && haWords(haModeOf(w.highAvailability), w.standbyZone),
    w.backupRetentionDays !== undefined && `${w.backupRetentionDays}-day backups`,
    ...Object.entries(w.settings ?? {}).map(([k, v]) => `${k}=${v}`),
  ]
    .filter(Boolean)
    .join(', ');

/**
 * What Azure would refuse once the migration is under way, refused now in one sentence with the fix:
 * storage that would shrink, HA or read replicas on Burstable. Nothing has been sent yet.
 */
function precheck(t: Target, step: AzureInfraStep, server: Server, hasReplicas: boolean): void {
  const refuse = (sentence: string) => {
    throw ApplicationFailure.nonRetryable(sentence, 'NonRetryable');
  };
  const nowGb = server.storage?.storageSizeGB;
  const autoGrow = server.storage?.autoGrow === 'Enabled';
  if (step.storageGb !== undefined && nowGb !== undefined && step.storageGb < nowGb && !autoGrow) {
    refuse(`server ${t.server} has ${nowGb} GB of storage and Azure cannot shrink it, but the plan asks for ${step.storageGb} GB; set storageGb to at least ${nowGb}`);
  }
  const tier = step.tier ?? (step.sku ? tierOfSku(step.sku) : server.sku?.tier);
  const mode = step.highAvailability === undefined ? haModeNow(server) : haModeOf(step.highAvailability);
  if (tier === 'Burstable' && mode !== 'Disabled') {
    refuse(`server ${t.server} would be Burstable with ${mode} high availability, which Azure does not offer; set highAvailability: Disabled or a GeneralPurpose or MemoryOptimized tier in the plan`);
  }
  if (tier === 'Burstable' && hasReplicas) {
    refuse(`server ${t.server} has read replicas and Azure has none on the Burstable tier; keep a GeneralPurpose or MemoryOptimized tier in the plan, or delete the replicas first`);
  }
}

export async function prepareInfra(az: AzureContext, { step, resources }: StepInput<AzureInfraStep>): Promise<StepOutcome> {
  const t = target(az, resourceOf(resources, step.resource, 'postgres', 'infra resource'));
  const journal = new Journal();
  const names = Object.keys(step.settings);
  const server = await getServer(t);
  const replicasBefore = await readReplicaSettings(t, names);
  const before = (await journal.before(async () => shapeOf(server, await readSettings(t, names), replicasBefore) as unknown as Json)) as unknown as ServerShape;
  precheck(t, step, server, Object.keys(replicasBefore).length > 0 || (await replicasOf(t)).length > 0);

  const tier = step.tier ?? (step.sku ? tierOfSku(step.sku) : server.sku?.tier);
  const settings = Object.fromEntries(Object.entries(step.settings).map(([k, v]) => [k, wantText(v)]));
  // Replicas are raised to what the primary gets where they hold less; what they hold above it stays.
  const replicas = Object.fromEntries(
    Object.entries(replicasBefore).map(([r, vals]) => [r, Object.fromEntries(Object.entries(vals).map(([k, v]) => [k, String(Math.max(Number(v), Number(settings[k])))]))]),
  );
  const autoGrown = step.storageGb !== undefined && server.storage?.autoGrow === 'Enabled' && (server.storage.storageSizeGB ?? 0) > step.storageGb;
  const want: ServerShape = {
    ...(step.sku ? { sku: { name: step.sku, tier: tier! } } : {}),
    ...(step.storageGb !== undefined ? { storageGb: step.storageGb } : {}),
    ...(step.highAvailability !== undefined ? { highAvailability: haModeOf(step.highAvailability) } : {}),
    ...(step.standbyZone !== undefined ? { standbyZone: step.standbyZone } : {}),
    ...(step.backupRetentionDays !== undefined ? { backupRetentionDays: step.backupRetentionDays } : {}),
    settings,
    ...(Object.keys(replicas).length ? { replicas } : {}),
  };
  const result = await converge(az, t, journal, want, 'do');
  const s = await verify(az, t, want, result.storageKept);
  const growNote = autoGrown ? `; storage autogrow has it at ${server.storage!.storageSizeGB} GB already, more than the plan's ${step.storageGb} GB, so it stays` : '';
  return {
    summary: (result.changed.length
      ? `${t.server} now runs with ${describeShape(want)} (changed: ${result.changed.join(', ')}${result.resumed ? '; resumed an operation a previous attempt started' : ''})`
      : `${t.server} already runs with ${describeShape(want)}; nothing changed`) + growNote,
    figures: {
      [`${step.resource}.sku`]: s.sku?.name ?? '',
      [`${step.resource}.tier`]: s.sku?.tier ?? '',
      [`${step.resource}.storageGb`]: s.storage?.storageSizeGB ?? 0,
      [`${step.resource}.highAvailability`]: haModeNow(s),
      [`${step.resource}.standby`]: s.highAvailability?.state ?? 'NotEnabled',
      [`${step.resource}.changes`]: result.changed.length,
    },
    undo: { before: before as unknown as Json },
  };
}

/** Read-only: the server's SKU, storage, HA, retention and the step's parameters now (what undo restores). */
export async function observeInfra(az: AzureContext, { step, resources }: StepInput<InfraStep>): Promise<Json> {
  const t = target(az, resourceOf(resources, step.resource, 'postgres', 'infra resource'));
  const names = Object.keys(step.settings);
  return { before: shapeOf(await getServer(t), await readSettings(t, names), await readReplicaSettings(t, names)) as unknown as Json };
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
    // A boolean is a record from before modes: true was always ZoneRedundant.
    ...(step.highAvailability !== undefined && before.highAvailability !== undefined ? { highAvailability: haModeOf(before.highAvailability) } : {}),
    ...(step.highAvailability !== undefined && before.standbyZone !== undefined ? { standbyZone: before.standbyZone } : {}),
    ...(step.backupRetentionDays !== undefined && before.backupRetentionDays !== undefined ? { backupRetentionDays: before.backupRetentionDays } : {}),
    settings: before.settings ?? {},
    ...(before.replicas ? { replicas: before.replicas } : {}),
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
    summary: `${resource.name} healthy: Flexible Server ${t.server} Ready, PostgreSQL ${s.version}${s.minorVersion ? ` (${s.minorVersion})` : ''}, ${s.sku?.tier} ${s.sku?.name}, ${s.storage?.storageSizeGB} GB, high availability ${haOn(s) ? `${haModeNow(s)} (standby ${s.highAvailability?.state ?? 'unknown'})` : 'off'}`,
    figures: {
      [`${resource.name}.state`]: s.state,
      [`${resource.name}.sku`]: s.sku?.name ?? '',
      [`${resource.name}.storageGb`]: s.storage?.storageSizeGB ?? 0,
      [`${resource.name}.highAvailability`]: haModeNow(s),
    },
  };
}

/** Azure backup names: letters, digits, dashes, underscores and dots, at most 128; the run's key always fits at the end. */
export function backupName(input: StepInput<BackupStep>, name: string): string {
  const run = runKey(input) ? `-${runKey(input)}` : '';
  return `ts-${input.migrationId}-${input.step.id}-${name}`.replace(/[^\w.-]/g, '-').slice(0, 128 - run.length) + run;
}

/** An on-demand backup before the change (`az postgres flexible-server backup create`), reused when it exists. */
export async function backupServer(az: AzureContext, input: StepInput<BackupStep>, resource: AzurePostgres, journal: Journal): Promise<{ name: string; line: string; figures: Figures; kept: string }> {
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
  // An on-demand backup is not kept forever: Azure deletes it with the automatic ones when the retention period ends.
  const days = (await getServer(t)).backup?.backupRetentionDays;
  const expires = days !== undefined && b.completedTime ? new Date(b.completedTime.getTime() + days * 86_400_000).toISOString().slice(0, 10) : undefined;
  return {
    name,
    line:
      `${reused ? 'Kept existing' : 'Took'} on-demand backup ${name} of ${t.server}${b.completedTime ? ` (completed ${b.completedTime.toISOString()})` : ''}; restore it with \`az postgres flexible-server restore\`` +
      `; Azure keeps it for the server's ${days ?? 'configured'}-day backup retention period${expires ? ` (until about ${expires})` : ''} and then deletes it`,
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
  if (!existing && !journal.isPending('replica:create') && sourceServer.sku?.tier === 'Burstable') {
    throw ApplicationFailure.nonRetryable(
      `server ${source.server} is Burstable, and Azure has no read replicas of Burstable servers; scale it to GeneralPurpose or MemoryOptimized in an infra step before this data step`,
      'NonRetryable',
    );
  }
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
  const source = target(az, resourceOf(resources, step.from, 'postgres', 'data source'));
  if (exists && exists !== true && exists.replicationRole === 'Primary') {
    // Switched over: deleting it would delete the primary; the old primary replicates from it now.
    const old = await azureFind(`reading server ${source.server}`, () => source.client.servers.get(source.resourceGroup, source.server));
    if ((old?.sourceServerResourceId ?? '').toLowerCase() === serverId(replica).toLowerCase()) {
      throw ApplicationFailure.nonRetryable(
        `server ${replica.server} has been the primary since the switchover and ${source.server} replicates from it, so deleting it would delete the primary; switch back first (\`az postgres flexible-server replica promote -g ${source.resourceGroup} -n ${source.server} --promote-mode switchover --promote-option planned\`), then resume the rollback`,
        'NonRetryable',
      );
    }
  }
  if (exists) await runOperation(az, journal, 'replica:delete', `deleting replica ${replica.server}`, (o) => replica.client.servers.beginDelete(replica.resourceGroup, replica.server, o));
  return { summary: `Deleted read replica ${replica.server}; the source server is untouched`, figures: { [`${step.to}.replicaDeleted`]: true } };
}

/**
 * The cutover of a read replica. `switchover` (the plan's default): the replica and its primary swap roles
 * (Azure's promoteMode Switchover, Planned: it waits for the replica to catch up), through a virtual
 * endpoint whose writer host name follows the primary, so applications need no new connection string, and
 * a second switchover reverses it. `standalone` (only where the plan asks): the replica leaves the
 * replication set, which is final.
 */
export async function promoteReplica(az: AzureContext, input: StepInput<FinalizeStep>, from: AzurePostgres, to: AzurePostgres): Promise<StepOutcome> {
  const replica = target(az, to);
  const primary = target(az, from);
  const journal = new Journal();
  const mode = to.promote ?? 'switchover';
  const s = journal.isPending('promote') ? await getServer(replica) : await ready(az, replica);
  const isReplica = s.replicationRole !== undefined && s.replicationRole !== 'Primary' && s.replicationRole !== 'None';

  if (mode === 'standalone') {
    if (!isReplica && !journal.isPending('promote')) {
      return { summary: `${replica.server} is already a standalone server (${s.replicationRole ?? 'no replication'})`, figures: { [`${to.name}.promoted`]: true, [`${to.name}.promoteMode`]: 'Standalone' } };
    }
    await runOperation(az, journal, 'promote', `promoting replica ${replica.server}`, (o) =>
      replica.client.servers.beginUpdate(replica.resourceGroup, replica.server, { replica: { promoteMode: 'Standalone', promoteOption: 'Planned' } }, o),
    );
    const after = await ready(az, replica);
    return {
      summary: `Promoted read replica ${replica.server} to a standalone server (role ${after.replicationRole ?? 'None'}); replication from ${primary.server} has ended, and this cannot be undone: a standalone server never becomes a replica again`,
      figures: { [`${to.name}.promoted`]: true, [`${to.name}.promoteMode`]: 'Standalone' },
    };
  }

  // Switched over already (a retry after the operation ended): the old primary replicates from this one.
  const old = await getServer(primary);
  if (!isReplica && !journal.isPending('promote') && (old.sourceServerResourceId ?? '').toLowerCase() === serverId(replica).toLowerCase()) {
    return switchedOver(to, replica, primary, true);
  }
  if (!isReplica && !journal.isPending('promote')) {
    throw ApplicationFailure.nonRetryable(
      `server ${replica.server} is not a read replica of ${primary.server} (role ${s.replicationRole ?? 'none'}), so there is nothing to switch over; check the plan's data step and the servers in the portal, then resume`,
      'NonRetryable',
    );
  }
  await virtualEndpoint(az, primary, replica, to, journal);
  await runOperation(az, journal, 'promote', `switching over to replica ${replica.server}`, (o) =>
    replica.client.servers.beginUpdate(replica.resourceGroup, replica.server, { replica: { promoteMode: 'Switchover', promoteOption: 'Planned' } }, o),
  );
  await ready(az, replica);
  return switchedOver(to, replica, primary, false);
}

/** The primary's pair of virtual endpoints, created (or pointed at this replica) if need be; a switchover needs one. */
async function virtualEndpoint(az: AzureContext, primary: Target, replica: Target, to: AzurePostgres, journal: Journal): Promise<string> {
  const existing: { name?: string; members?: string[] }[] = [];
  if (!journal.isPending('vep:create') && !journal.isPending('vep:update')) {
    await azureCall(`reading the virtual endpoints of ${primary.server}`, async () => {
      for await (const v of primary.client.virtualEndpoints.listByServer(primary.resourceGroup, primary.server)) existing.push(v);
    });
  }
  // A server has one pair of virtual endpoints: use the one there is, whatever its name.
  const found = existing[0];
  const name = found?.name ?? (journal.state.notes.virtualEndpoint as string | undefined) ?? to.virtualEndpoint ?? `${primary.server}-vep`;
  if (!found) {
    journal.note('virtualEndpoint', name);
    await ready(az, primary);
    await runOperation(az, journal, 'vep:create', `creating virtual endpoint ${name} on ${primary.server}`, (o) =>
      primary.client.virtualEndpoints.beginCreate(primary.resourceGroup, primary.server, name, { endpointType: 'ReadWrite', members: [replica.server] }, o),
    );
  } else if (!(found.members ?? []).some((m) => m.toLowerCase() === replica.server.toLowerCase())) {
    await ready(az, primary);
    await runOperation(az, journal, 'vep:update', `pointing virtual endpoint ${name} at ${replica.server}`, (o) =>
      primary.client.virtualEndpoints.beginUpdate(primary.resourceGroup, primary.server, name, { endpointType: 'ReadWrite', members: [replica.server] }, o),
    );
  }
  return name;
}

async function switchedOver(to: AzurePostgres, replica: Target, primary: Target, already: boolean): Promise<StepOutcome> {
  const endpoints: { name?: string; virtualEndpoints?: string[] }[] = [];
  await azureCall(`reading the virtual endpoints of ${replica.server}`, async () => {
    for await (const v of replica.client.virtualEndpoints.listByServer(replica.resourceGroup, replica.server)) endpoints.push(v);
  });
  const writer = endpoints[0]?.virtualEndpoints?.find((h) => h.includes('.writer.'));
  return {
    summary:
      `${already ? 'Already switched over' : 'Switched over'}: ${replica.server} is now the primary and ${primary.server} replicates from it` +
      (writer ? `; the writer endpoint ${writer} follows the primary` : '') +
      `. To reverse it, switch over again (\`az postgres flexible-server replica promote -g ${primary.resourceGroup} -n ${primary.server} --promote-mode switchover --promote-option planned\`)`,
    figures: { [`${to.name}.promoted`]: true, [`${to.name}.promoteMode`]: 'Switchover', ...(writer ? { [`${to.name}.writerEndpoint`]: writer } : {}) },
  };
}

/**
 * The recovery past the point of no return of a cutover by switchover: a second planned switchover, to
 * `from`, which has been `to`'s physical replica since the cutover (Planned waits until it has replayed
 * every write `to` took, so nothing is lost). Idempotent: a source that is the primary again (or never
 * stopped being it) with `to` replicating from it is left as it is.
 */
export async function switchBack(az: AzureContext, from: AzurePostgres, to: AzurePostgres): Promise<StepOutcome> {
  const original = target(az, from);
  const current = target(az, to);
  const journal = new Journal();
  const figures = { [`${from.name}.primary`]: true, [`${to.name}.switchedBack`]: true };
  const s = journal.isPending('switch-back') ? await getServer(original) : await ready(az, original);
  const isReplica = s.replicationRole !== undefined && s.replicationRole !== 'Primary' && s.replicationRole !== 'None';
  if (!isReplica && !journal.isPending('switch-back')) {
    const other = await azureFind(`reading server ${current.server}`, () => current.client.servers.get(current.resourceGroup, current.server));
    if (!other || (other.sourceServerResourceId ?? '').toLowerCase() === serverId(original).toLowerCase()) {
      return { summary: `${original.server} is the primary${other ? ` and ${current.server} replicates from it` : ''}; nothing to switch back`, figures };
    }
    throw ApplicationFailure.nonRetryable(
      `server ${current.server} is no longer a replica of ${original.server} (role ${other.replicationRole ?? 'none'}), so there is no switchover to reverse; recover ${original.server} from the backup by hand`,
      'NonRetryable',
    );
  }
  if (!journal.isPending('switch-back') && (s.sourceServerResourceId ?? '').toLowerCase() !== serverId(current).toLowerCase()) {
    throw ApplicationFailure.nonRetryable(
      `server ${original.server} replicates from ${s.sourceServerResourceId?.split('/').pop() ?? 'another server'}, not from ${current.server}, so switching back would not bring back this migration's writes; check the servers in the portal, then resume the rollback`,
      'NonRetryable',
    );
  }
  // The virtual endpoint followed the primary at the cutover: the switch back needs it to name the old primary as its member.
  if (!journal.isPending('switch-back')) await virtualEndpoint(az, current, original, from, journal);
  await runOperation(az, journal, 'switch-back', `switching back to ${original.server}`, (o) =>
    original.client.servers.beginUpdate(original.resourceGroup, original.server, { replica: { promoteMode: 'Switchover', promoteOption: 'Planned' } }, o),
  );
  await ready(az, original);
  const endpoints: { virtualEndpoints?: string[] }[] = [];
  await azureCall(`reading the virtual endpoints of ${original.server}`, async () => {
    for await (const v of original.client.virtualEndpoints.listByServer(original.resourceGroup, original.server)) endpoints.push(v);
  });
  const writer = endpoints[0]?.virtualEndpoints?.find((h) => h.includes('.writer.'));
  return {
    summary: `Switched back: ${original.server} is the primary again and ${current.server} replicates from it${writer ? `; the writer endpoint ${writer} follows it` : ''}`,
    figures,
  };
}
