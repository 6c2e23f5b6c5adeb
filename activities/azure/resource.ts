// The resource step on Azure: any resource by its ARM id and api-version, through @azure/arm-resources'
// generic `*ById` operations. Set: the step's property paths are read, sent as one PATCH (or a PUT of the
// resource as read with them applied), waited for as a long-running operation and read back. Create: a
// PUT of the plan's body. Undo puts the values read before the step back, or deletes what it created.
import { ResourceManagementClient, restorePoller, type GenericResource } from '@azure/arm-resources';
import { ApplicationFailure } from '@temporalio/activity';
import { armName, bodyLeaves } from '../../plan/phases/resource';
import type { JsonValue, ResourceStep } from '../../plan/types';
import type { ArmExpectation, Json, ResourceInput, StepInput, StepOutcome, UndoInput } from '../types';
import { azureFind, Journal, runOperation, type AzureContext, type ResumablePoller } from './common';

/** What the observation before the step found: whether the resource exists, and each `set` path's value (null: absent). */
export interface ResourceBefore {
  exists: boolean;
  values: Record<string, JsonValue>;
}

const clients = new WeakMap<AzureContext, Map<string, ResourceManagementClient>>();
function client(az: AzureContext, armId: string): ResourceManagementClient {
  const subscription = /^\/subscriptions\/([^/]+)/i.exec(armId)![1]!;
  let bySub = clients.get(az);
  if (!bySub) clients.set(az, (bySub = new Map()));
  let c = bySub.get(subscription);
  if (!c) bySub.set(subscription, (c = new ResourceManagementClient(az.credential(), subscription, az.clientOptions())));
  return c;
}

/**
 * The id as the SDK's `*ById` operations take it: their path template is `/{resourceId}`, so an id with
 * its leading slash would be sent as `//subscriptions/...`.
 */
const byId = (armId: string) => armId.replace(/^\/+/, '');

type PollerLike<T> = ReturnType<ResourceManagementClient['resources']['updateById']> & { result?: T };

/** The SDK's deprecated SimplePollerLike, for a poller restored from a heartbeat (restorePoller returns the new kind). */
function simple<T>(poller: PollerLike<T>): ResumablePoller<T> {
  return {
    isDone: () => poller.isDone,
    getOperationState: () => poller.operationState as unknown as { status: string },
    getResult: () => poller.result as T | undefined,
    toString: () => JSON.stringify({ state: poller.operationState }),
    onProgress: (cb) => poller.onProgress(cb as never),
    poll: (o) => poller.poll(o).then(() => undefined),
    pollUntilDone: (o) => poller.pollUntilDone(o) as Promise<T>,
  };
}

/** One long-running ById operation, started afresh or resumed from the poller a previous attempt saved. */
function begin<T>(
  c: ResourceManagementClient,
  start: (o: { updateIntervalInMs?: number }) => Promise<unknown>,
  source: (...args: never[]) => unknown,
): (o: { resumeFrom?: string; updateIntervalInMs?: number }) => Promise<ResumablePoller<T>> {
  return async ({ resumeFrom, updateIntervalInMs }) => {
    if (!resumeFrom) return (await start({ updateIntervalInMs })) as ResumablePoller<T>;
    const restored = restorePoller(c, resumeFrom, source as never, { updateIntervalInMs }) as unknown as PollerLike<T>;
    await (restored as unknown as { submitted(): Promise<void> }).submitted?.();
    return simple(restored);
  };
}

const read = (az: AzureContext, step: ResourceStep) =>
  azureFind(`reading ${armName(step.armId)}`, () => client(az, step.armId).resources.getById(byId(step.armId), step.apiVersion)) as Promise<GenericResource | undefined>;

/** The value at a dotted path (`sku.name`), or null when it is absent. */
export function valueAt(resource: object | undefined, path: string): JsonValue {
  let cur: unknown = resource;
  for (const part of path.split('.')) cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[part] : undefined;
  return cur === undefined ? null : (cur as JsonValue);
}

/** A body holding only the given paths, nested: { 'sku.name': 'P3v3' } -> { sku: { name: 'P3v3' } }. */
export function nest(values: Record<string, JsonValue>, into: Record<string, unknown> = {}): Record<string, unknown> {
  const out = structuredClone(into);
  for (const [path, value] of Object.entries(values)) {
    const parts = path.split('.');
    let cur = out;
    for (const part of parts.slice(0, -1)) {
      if (!cur[part] || typeof cur[part] !== 'object') cur[part] = {};
      cur = cur[part] as Record<string, unknown>;
    }
    cur[parts.at(-1)!] = value;
  }
  return out;
}


/**
 * Whether Azure holds what was asked. Strings compare without case (ARM echoes `P3V3` for `P3v3`, and its
 * names and enums are case-insensitive); numbers sent as strings and back (`"2"`, 2) are the same value.
 */
export function sameValue(want: JsonValue, got: JsonValue): boolean {
  if (want === null || got === null) return want === got;
  if (typeof want === 'string' || typeof got === 'string') return String(want).toLowerCase() === String(got).toLowerCase();
  if (typeof want !== 'object' || typeof got !== 'object') return want === got;
  if (Array.isArray(want) !== Array.isArray(got)) return false;
  const keys = new Set([...Object.keys(want), ...Object.keys(got)]);
  return [...keys].every((k) => sameValue((want as Record<string, JsonValue>)[k] ?? null, (got as Record<string, JsonValue>)[k] ?? null));
}

/** One phrase per path whose value is not the wanted one: "sku.name is B3, not P3v3". */
function differences(resource: object | undefined, want: Record<string, JsonValue>): string[] {
  return Object.entries(want).flatMap(([path, v]) => {
    const got = valueAt(resource, path);
    return sameValue(v, got) ? [] : [`${path} is ${show(got)}, not ${show(v)}`];
  });
}
const show = (v: JsonValue) => (v === null ? 'absent' : typeof v === 'string' ? v : JSON.stringify(v));

/**
 * The writable part of a resource as read, for a PUT (a PUT replaces the resource: everything must be sent).
 * `properties.provisioningState` is left out: ARM's resource provider contract makes it read-only on every
 * type, and the type's REST spec refuses it in a request body.
 */
function writable(r: GenericResource): GenericResource {
  const { location, tags, sku, kind, identity, plan } = r;
  const { provisioningState: _state, ...properties } = (r.properties ?? {}) as Record<string, unknown>;
  const props = r.properties === undefined ? undefined : properties;
  return Object.fromEntries(Object.entries({ location, tags, sku, properties: props, kind, identity, plan }).filter(([, v]) => v !== undefined)) as GenericResource;
}

export async function observeResource(az: AzureContext, { step }: StepInput<ResourceStep>): Promise<Json> {
  const r = await read(az, step);
  const before: ResourceBefore = { exists: r !== undefined, values: Object.fromEntries(Object.keys(step.set ?? {}).map((p) => [p, valueAt(r, p)])) };
  return before as unknown as Json;
}

/**
 * Types whose PATCH body is, in their REST spec, the whole tracked resource with `location` required
 * (Microsoft.App 2026-07-01's ContainerApp): a PATCH without it is refused as invalid content.
 */
const PATCH_NEEDS_LOCATION = new Set(['microsoft.app/containerapps']);

/** `microsoft.app/containerapps` for an ARM id of a container app: the provider namespace and type, lowercased. */
const armType = (armId: string) => /\/providers\/([^/]+\/[^/]+)\/[^/]+$/i.exec(armId)?.[1]?.toLowerCase() ?? '';

/** Sends `values` (PATCH, or PUT of the resource as read with them applied) and waits for the operation. */
async function send(az: AzureContext, journal: Journal, op: string, step: ResourceStep, current: GenericResource, values: Record<string, JsonValue>, what: string): Promise<void> {
  const c = client(az, step.armId);
  if (step.method === 'PUT') {
    const body = nest(values, writable(current) as Record<string, unknown>) as GenericResource;
    await runOperation(az, journal, op, what, begin(c, (o) => c.resources.beginCreateOrUpdateById(byId(step.armId), step.apiVersion, body, o), c.resources.createOrUpdateById));
  } else {
    // Only the step's properties, plus the location where the type's REST spec requires it in a PATCH.
    const needsLocation = PATCH_NEEDS_LOCATION.has(armType(step.armId)) && current.location;
    const body = nest(values, needsLocation ? { location: current.location } : {}) as GenericResource;
    await runOperation(az, journal, op, what, begin(c, (o) => c.resources.beginUpdateById(byId(step.armId), step.apiVersion, body, o), c.resources.updateById));
  }
}

export async function applyResource(az: AzureContext, input: ResourceInput): Promise<StepOutcome> {
  const { step } = input;
  const what = armName(step.armId);
  const journal = new Journal();
  const before = input.before as unknown as ResourceBefore | undefined;
  const c = client(az, step.armId);
  if (step.create) {
    // Created by this step, or there before it: only the first is the step's to delete on undo.
    if (before?.exists && journal.state.notes.created !== true) {
      throw ApplicationFailure.nonRetryable(
        `${what} existed before this step, and a create step's undo deletes what it creates; change the existing one with set: instead, or delete it first, then resume`,
        'UserError',
      );
    }
    const found = await read(az, step);
    const want = bodyLeaves(step.create);
    if (found && !differences(found, want).length) {
      return { summary: `${what} exists as the plan creates it; nothing sent`, figures: {}, undo: { created: true } };
    }
    journal.note('created', true);
    await runOperation(az, journal, 'resource:create', `creating ${what}`, begin(c, (o) => c.resources.beginCreateOrUpdateById(byId(step.armId), step.apiVersion, step.create as GenericResource, o), c.resources.createOrUpdateById));
    const after = await read(az, step);
    const off = differences(after, want);
    if (off.length) throw ApplicationFailure.retryable(`${what} was created but reads back otherwise: ${off.join('; ')}`, 'AzureTransient');
    return { summary: `Created ${what} (api-version ${step.apiVersion}); undo deletes it`, figures: {}, undo: { created: true } };
  }
  const set = step.set!;
  const current = await read(az, step);
  if (!current) throw ApplicationFailure.nonRetryable(`${what} does not exist in Azure; check the ARM id in the plan (\`az resource show --ids ...\`), or create it with create:`, 'UserError');
  const restore = before?.values ?? (await journal.before(async () => Object.fromEntries(Object.keys(set).map((p) => [p, valueAt(current, p)])) as Json)) as Record<string, JsonValue>;
  const changes = differences(current, set);
  if (!changes.length) return { summary: `${what} already has ${describeValues(set)}; nothing sent`, figures: {}, undo: { before: restore } };
  await send(az, journal, 'resource:set', step, current, set, `setting ${describeValues(set)} on ${what}`);
  const off = differences(await read(az, step), set);
  if (off.length) throw ApplicationFailure.retryable(`${what} accepted the change but reads back otherwise: ${off.join('; ')}`, 'AzureTransient');
  return { summary: `Set ${describeValues(set)} on ${what} (was ${describeValues(restore)})`, figures: {}, undo: { before: restore } };
}

const describeValues = (values: Record<string, JsonValue>) => Object.entries(values).map(([k, v]) => `${k}=${show(v)}`).join(', ');

export async function undoResource(az: AzureContext, input: UndoInput): Promise<StepOutcome> {
  const step = input.step as ResourceStep;
  const what = armName(step.armId);
  const journal = new Journal();
  const c = client(az, step.armId);
  const observed = input.before as unknown as ResourceBefore | undefined;
  const recorded = input.undo as { before?: Record<string, JsonValue>; created?: boolean } | undefined;
  if (step.create) {
    // Only what the step created: the observation says whether it was there before.
    if (observed?.exists) return { summary: `${what} existed before the step; left as it is`, figures: {} };
    if (!(await read(az, step))) return { summary: `${what} is not there (deleted already); nothing to delete`, figures: {} };
    await runOperation(az, journal, 'undo:delete', `deleting ${what}`, begin(c, (o) => c.resources.beginDeleteById(byId(step.armId), step.apiVersion, o), c.resources.deleteById));
    return { summary: `Deleted ${what}, which the step created`, figures: {} };
  }
  // The observation before the first attempt, else what the step recorded; neither means it never ran.
  const restore = observed?.values ?? recorded?.before;
  if (!restore) return { summary: `${what}: the step never read it, so it changed nothing to restore`, figures: {} };
  const current = await read(az, step);
  if (!current) throw ApplicationFailure.nonRetryable(`${what} no longer exists in Azure, so its previous ${Object.keys(restore).join(', ')} cannot be put back; recreate it by hand, then resume`, 'NonRetryable');
  if (!differences(current, restore).length) return { summary: `${what} already has ${describeValues(restore)}; nothing to restore`, figures: {} };
  await send(az, journal, 'undo:set', step, current, restore, `restoring ${describeValues(restore)} on ${what}`);
  const off = differences(await read(az, step), restore);
  if (off.length) throw ApplicationFailure.retryable(`${what} accepted the restore but reads back otherwise: ${off.join('; ')}`, 'AzureTransient');
  return { summary: `Restored ${describeValues(restore)} on ${what}`, figures: {} };
}

/** One phrase per resource an earlier resource step changed that no longer holds what it set. */
export async function resourceDrift(az: AzureContext, expect: ArmExpectation): Promise<string[]> {
  const found: string[] = [];
  for (const [armId, e] of Object.entries(expect)) {
    const what = armName(armId);
    const r = (await azureFind(`reading ${what}`, () => client(az, armId).resources.getById(byId(armId), e.apiVersion))) as GenericResource | undefined;
    if (!r) found.push(`${what}, which ${e.stepId} ${e.created ? 'created' : 'changed'}, no longer exists`);
    else {
      const off = differences(r, e.values);
      if (off.length) found.push(`${what} was changed since ${e.stepId}: ${off.join(', ')}`);
    }
  }
  return found;
}
