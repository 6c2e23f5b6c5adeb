// Front Door Standard/Premium: the runbook's `az afd origin update --weight` between a stable and a
// canary origin of one origin group. Front Door picks origins by priority first, then by latency band,
// then by weight, so weights split traffic only between origins of the same priority inside the group's
// latency band, with session affinity off; the shift checks that first. Weights are 1-1000, so an
// origin that should get nothing is demoted to the next priority (still enabled: Front Door fails over
// to it if the other one fails its health probes) rather than set to weight 0 or disabled. A change
// counts only once every edge has it (the origin's deploymentStatus), which the shift waits for.
import { CdnManagementClient, type AFDOrigin } from '@azure/arm-cdn';
import { ApplicationFailure } from '@temporalio/activity';
import type { AzureTraffic } from './provider';
import type { Json } from '../types';
import { armScope, azureCall, Journal, runOperation, waitFor, type AzureContext } from './common';

/** Weights out of this total, so a percent maps to whole weights within Front Door's 1-1000. */
export const FD_TOTAL = 1000;

export interface OriginState {
  weight: number;
  enabled: boolean;
  /** 1 (first choice) to 5; absent in states recorded before priorities were (read as 1). */
  priority?: number;
}
export interface FrontDoorWeights {
  stable: OriginState;
  canary: OriginState;
}

interface Front {
  resource: AzureTraffic;
  client: CdnManagementClient;
  subscription: string;
  resourceGroup: string;
  profile: string;
  originGroup: string;
}

export function front(az: AzureContext, resource: AzureTraffic): Front {
  const { subscription, resourceGroup } = armScope(resource);
  if (!resource.profile || !resource.originGroup) {
    throw ApplicationFailure.nonRetryable(`${resource.name} needs profile and originGroup (its Front Door origin group); add them to the plan`, 'NonRetryable');
  }
  return { resource, client: new CdnManagementClient(az.credential(), subscription, az.clientOptions()), subscription, resourceGroup, profile: resource.profile, originGroup: resource.originGroup };
}

async function origin(f: Front, name: string): Promise<AFDOrigin> {
  return azureCall(`reading origin ${name} of ${f.profile}/${f.originGroup}`, () => f.client.afdOrigins.get(f.resourceGroup, f.profile, f.originGroup, name));
}

const stateOf = (o: AFDOrigin): OriginState => ({ weight: o.weight ?? 50, enabled: o.enabledState !== 'Disabled', priority: o.priority ?? 1 });
const prio = (o: OriginState) => o.priority ?? 1;
/** Front Door's lowest priority (the last resort). */
const LAST_PRIORITY = 5;
/** Front Door's widest latency band: weights then apply to users wherever they are. */
export const LATENCY_BAND_MS = 1000;

export const profileId = (f: Front) => `/subscriptions/${f.subscription}/resourceGroups/${f.resourceGroup}/providers/Microsoft.Cdn/profiles/${f.profile}`;

export async function readWeights(f: Front): Promise<FrontDoorWeights> {
  const [stable, canary] = await Promise.all([origin(f, f.resource.stable), origin(f, f.resource.canary)]);
  return { stable: stateOf(stable), canary: stateOf(canary) };
}

/**
 * Percent to the canary as origin states. Between 0 and 100 both origins share the best priority and
 * split by weight; at 0 or 100 the origin that gets nothing keeps its weight and stays enabled one
 * priority lower, as the failover.
 */
export function frontDoorWeightsFor(percent: number, current: FrontDoorWeights): FrontDoorWeights {
  const best = Math.min(prio(current.stable), prio(current.canary));
  const demoted = Math.min(best + 1, LAST_PRIORITY);
  if (percent <= 0) return { stable: { weight: FD_TOTAL, enabled: true, priority: best }, canary: { weight: current.canary.weight, enabled: true, priority: demoted } };
  if (percent >= 100) return { stable: { weight: current.stable.weight, enabled: true, priority: demoted }, canary: { weight: FD_TOTAL, enabled: true, priority: best } };
  const canary = Math.round((FD_TOTAL * percent) / 100);
  return { stable: { weight: FD_TOTAL - canary, enabled: true, priority: best }, canary: { weight: canary, enabled: true, priority: best } };
}

/** The share of traffic the canary gets from these states, in percent: weights count among the enabled origins of the best priority. */
export function canaryPercent(w: FrontDoorWeights): number {
  const enabled = [w.stable, w.canary].filter((o) => o.enabled);
  if (!enabled.length) return 0;
  const best = Math.min(...enabled.map(prio));
  const share = (o: OriginState) => (o.enabled && prio(o) === best ? o.weight : 0);
  const s = share(w.stable);
  const c = share(w.canary);
  return s + c ? Math.round((1000 * c) / (s + c)) / 10 : 0;
}

const sameState = (a: OriginState, b: OriginState) => a.weight === b.weight && a.enabled === b.enabled && prio(a) === prio(b);

/**
 * What keeps weights from meaning what the plan says, as one sentence naming the fix, or undefined:
 * another enabled origin of the group at the same or a better priority (it takes its own share, or
 * everything), a latency band narrower than Front Door's widest (origins outside the fastest one's band
 * get nothing whatever their weight), and session affinity (clients stay on the origin they met first).
 */
export async function weightPreconditions(f: Front): Promise<string | undefined> {
  const group = await azureCall(`reading origin group ${f.originGroup}`, () => f.client.afdOriginGroups.get(f.resourceGroup, f.profile, f.originGroup));
  const where = `origin group ${f.profile}/${f.originGroup}`;
  if (group.sessionAffinityState === 'Enabled') {
    return `${where} has session affinity on, so clients keep going to the origin they first reached whatever the weights; turn it off (az afd origin-group update --session-state Disabled) for the migration, or shift with Container App revisions instead`;
  }
  const band = group.loadBalancingSettings?.additionalLatencyInMilliseconds;
  if (band !== undefined && band < LATENCY_BAND_MS) {
    return `${where} has a latency sensitivity of ${band} ms, so users near one origin may never reach the other whatever the weights; set it to ${LATENCY_BAND_MS} ms (az afd origin-group update --additional-latency-in-milliseconds ${LATENCY_BAND_MS}) for the migration`;
  }
  const origins: AFDOrigin[] = [];
  await azureCall(`listing the origins of ${where}`, async () => {
    for await (const o of f.client.afdOrigins.listByOriginGroup(f.resourceGroup, f.profile, f.originGroup)) origins.push(o);
  });
  const mine = origins.filter((o) => o.name === f.resource.stable || o.name === f.resource.canary);
  const best = Math.min(...mine.map((o) => o.priority ?? 1));
  const rival = origins.find((o) => o.name !== f.resource.stable && o.name !== f.resource.canary && o.enabledState !== 'Disabled' && (o.priority ?? 1) <= best);
  if (rival) {
    return `${where} also routes to origin ${rival.name} at priority ${rival.priority ?? 1}, so the weights between ${f.resource.stable} and ${f.resource.canary} do not decide where traffic goes; disable ${rival.name} or give it a priority above ${best} (a higher number) for the migration`;
  }
  return undefined;
}

/** Waits until every edge has the origins' last change (deploymentStatus Succeeded): the bake measures nothing before that. */
export async function waitForEdges(az: AzureContext, f: Front): Promise<void> {
  for (const name of [f.resource.stable, f.resource.canary]) {
    await waitFor(
      az,
      `Front Door edges to pick up origin ${name}`,
      () => f.client.afdOrigins.get(f.resourceGroup, f.profile, f.originGroup, name),
      (o) => o.deploymentStatus === undefined || o.deploymentStatus === 'Succeeded',
      (o) => (o.deploymentStatus === 'Failed' ? `Front Door failed to deploy the change of origin ${name} to its edges; look at the profile's activity log, then resume` : undefined),
      (o) => ({ deploymentStatus: o.deploymentStatus ?? 'unknown' }),
    );
  }
}

/**
 * Sets both origins, the one gaining traffic first, so there is never a moment with no enabled origin.
 * Each origin update is a long-running operation resumed from the journal after a crash.
 */
export async function applyFrontDoorWeights(
  az: AzureContext,
  f: Front,
  journal: Journal,
  want: FrontDoorWeights,
  phase: string,
): Promise<{ before: FrontDoorWeights; changed: boolean; resumed: boolean }> {
  const now = await readWeights(f);
  const before = (await journal.before(async () => now as unknown as Json)) as unknown as FrontDoorWeights;
  const gaining = canaryPercent(want) >= canaryPercent(now) ? (['canary', 'stable'] as const) : (['stable', 'canary'] as const);
  let changed = false;
  let resumed = false;
  for (const role of gaining) {
    const name = f.resource[role];
    const op = `${phase}:origin:${name}`;
    if (sameState(now[role], want[role]) && !journal.isPending(op)) continue;
    const r = await runOperation(az, journal, op, `updating origin ${name} of ${f.profile}/${f.originGroup}`, (o) =>
      f.client.afdOrigins.beginUpdate(f.resourceGroup, f.profile, f.originGroup, name, { weight: want[role].weight, enabledState: want[role].enabled ? 'Enabled' : 'Disabled', priority: prio(want[role]) }, o),
    );
    changed ||= !r.skipped;
    resumed ||= r.resumed;
  }
  const after = await readWeights(f);
  if (!sameState(after.stable, want.stable) || !sameState(after.canary, want.canary)) {
    throw new Error(`Front Door reports ${describeWeights(f.resource, after)} after setting ${describeWeights(f.resource, want)}; retrying`);
  }
  return { before, changed, resumed };
}

const describeOrigin = (o: OriginState, best: number) => (!o.enabled ? 'disabled' : prio(o) > best ? `standby at priority ${prio(o)}` : `weight ${o.weight}`);
export const describeWeights = (r: AzureTraffic, w: FrontDoorWeights) => {
  const best = Math.min(prio(w.stable), prio(w.canary));
  return `${r.stable} ${describeOrigin(w.stable, best)} / ${r.canary} ${describeOrigin(w.canary, best)}`;
};

/** Where the analysis probes (the endpoint's host name and the origin group's own health-probe path), and the origins' host names, which Azure Monitor's Origin dimension carries. */
export async function probeTarget(f: Front): Promise<{ host?: string; path: string; originsHealthy: string[]; hosts: { stable: string[]; canary: string[] } }> {
  const group = await azureCall(`reading origin group ${f.originGroup}`, () => f.client.afdOriginGroups.get(f.resourceGroup, f.profile, f.originGroup));
  const path = group.healthProbeSettings?.probePath ?? '/';
  const host = f.resource.endpoint
    ? (await azureCall(`reading endpoint ${f.resource.endpoint}`, () => f.client.afdEndpoints.get(f.resourceGroup, f.profile, f.resource.endpoint!))).hostName
    : undefined;
  const problems: string[] = [];
  const hosts: { stable: string[]; canary: string[] } = { stable: [], canary: [] };
  for (const role of ['stable', 'canary'] as const) {
    const name = f.resource[role];
    const o = await origin(f, name);
    if (o.provisioningState && o.provisioningState !== 'Succeeded') problems.push(`origin ${name} is ${o.provisioningState}`);
    if (o.hostName) hosts[role].push(o.hostName);
  }
  return { host, path, originsHealthy: problems, hosts };
}

export type FrontDoor = Front;
