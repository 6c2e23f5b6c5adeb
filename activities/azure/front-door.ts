// Front Door Standard/Premium: the runbook's `az afd origin update --weight` between a stable and a
// canary origin of one origin group. Weights are 1-1000, so an origin that should get nothing is
// disabled (enabledState Disabled) rather than set to weight 0, which Front Door does not accept.
import { CdnManagementClient, type AFDOrigin } from '@azure/arm-cdn';
import { ApplicationFailure } from '@temporalio/activity';
import type { AzureTraffic } from './provider';
import type { Json } from '../types';
import { armScope, azureCall, Journal, runOperation, type AzureContext } from './common';

/** Weights out of this total, so a percent maps to whole weights within Front Door's 1-1000. */
export const FD_TOTAL = 1000;

export interface OriginState {
  weight: number;
  enabled: boolean;
}
export interface FrontDoorWeights {
  stable: OriginState;
  canary: OriginState;
}

interface Front {
  resource: AzureTraffic;
  client: CdnManagementClient;
  resourceGroup: string;
  profile: string;
  originGroup: string;
}

export function front(az: AzureContext, resource: AzureTraffic): Front {
  const { subscription, resourceGroup } = armScope(resource);
  if (!resource.profile || !resource.originGroup) {
    throw ApplicationFailure.nonRetryable(`${resource.name} needs profile and originGroup (its Front Door origin group); add them to the plan`, 'NonRetryable');
  }
  return { resource, client: new CdnManagementClient(az.credential(), subscription, az.clientOptions()), resourceGroup, profile: resource.profile, originGroup: resource.originGroup };
}

async function origin(f: Front, name: string): Promise<AFDOrigin> {
  return azureCall(`reading origin ${name} of ${f.profile}/${f.originGroup}`, () => f.client.afdOrigins.get(f.resourceGroup, f.profile, f.originGroup, name));
}

const stateOf = (o: AFDOrigin): OriginState => ({ weight: o.weight ?? 50, enabled: o.enabledState !== 'Disabled' });

export async function readWeights(f: Front): Promise<FrontDoorWeights> {
  const [stable, canary] = await Promise.all([origin(f, f.resource.stable), origin(f, f.resource.canary)]);
  return { stable: stateOf(stable), canary: stateOf(canary) };
}

/** Percent to the canary as origin states: 0 and 100 disable the origin that gets nothing, keeping its weight. */
export function frontDoorWeightsFor(percent: number, current: FrontDoorWeights): FrontDoorWeights {
  if (percent <= 0) return { stable: { weight: FD_TOTAL, enabled: true }, canary: { weight: current.canary.weight, enabled: false } };
  if (percent >= 100) return { stable: { weight: current.stable.weight, enabled: false }, canary: { weight: FD_TOTAL, enabled: true } };
  const canary = Math.round((FD_TOTAL * percent) / 100);
  return { stable: { weight: FD_TOTAL - canary, enabled: true }, canary: { weight: canary, enabled: true } };
}

/** The share of traffic the canary gets from these states, in percent. */
export function canaryPercent(w: FrontDoorWeights): number {
  const s = w.stable.enabled ? w.stable.weight : 0;
  const c = w.canary.enabled ? w.canary.weight : 0;
  return s + c ? Math.round((1000 * c) / (s + c)) / 10 : 0;
}

const sameState = (a: OriginState, b: OriginState) => a.weight === b.weight && a.enabled === b.enabled;

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
      f.client.afdOrigins.beginUpdate(f.resourceGroup, f.profile, f.originGroup, name, { weight: want[role].weight, enabledState: want[role].enabled ? 'Enabled' : 'Disabled' }, o),
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

export const describeWeights = (r: AzureTraffic, w: FrontDoorWeights) =>
  `${r.stable} ${w.stable.enabled ? `weight ${w.stable.weight}` : 'disabled'} / ${r.canary} ${w.canary.enabled ? `weight ${w.canary.weight}` : 'disabled'}`;

/** Where the analysis probes: the endpoint's host name and the origin group's own health-probe path. */
export async function probeTarget(f: Front): Promise<{ host?: string; path: string; originsHealthy: string[] }> {
  const group = await azureCall(`reading origin group ${f.originGroup}`, () => f.client.afdOriginGroups.get(f.resourceGroup, f.profile, f.originGroup));
  const path = group.healthProbeSettings?.probePath ?? '/';
  const host = f.resource.endpoint
    ? (await azureCall(`reading endpoint ${f.resource.endpoint}`, () => f.client.afdEndpoints.get(f.resourceGroup, f.profile, f.resource.endpoint!))).hostName
    : undefined;
  const problems: string[] = [];
  for (const name of [f.resource.stable, f.resource.canary]) {
    const o = await origin(f, name);
    if (o.provisioningState && o.provisioningState !== 'Succeeded') problems.push(`origin ${name} is ${o.provisioningState}`);
  }
  return { host, path, originsHealthy: problems };
}

export type FrontDoor = Front;
