// Front Door as it propagates: after an origin changes, ARM's provisioningState is Succeeded long
// before the edges have the change; the origin's `deploymentStatus` says where that stands
// (NotStarted, then InProgress, then Succeeded). The fake keeps an origin that changed NotStarted for
// the first part of `propagationMs` and InProgress for the rest, counted from the PATCH.
import { afdId, type FakeArm, type FakeExtension } from './fake-arm';

/** The origin group's routing settings as Azure returns them; the defaults are the migration-ready ones. */
export function setOriginGroup(arm: FakeArm, profile: string, group: string, opts: { additionalLatencyInMilliseconds?: number; sessionAffinityState?: 'Enabled' | 'Disabled' } = {}): void {
  const g = arm.get(afdId(profile, group))!;
  g.properties.loadBalancingSettings = { sampleSize: 4, successfulSamplesRequired: 3, additionalLatencyInMilliseconds: opts.additionalLatencyInMilliseconds ?? 1000 };
  g.properties.sessionAffinityState = opts.sessionAffinityState ?? 'Disabled';
}

export class FakeFrontDoorEdges implements FakeExtension {
  /** When each origin (lowercased id) last changed. */
  private readonly changedAt = new Map<string, number>();
  /** How long the edges take to pick up a change. */
  propagationMs = 0;

  constructor(private readonly arm: FakeArm) {
    arm.extensions.push(this);
  }

  handle(req: { method: string; path: string }, reply: (s: number, j?: unknown) => any) {
    // The origins of a group, as afdOrigins.listByOriginGroup pages them (one page).
    if (req.method === 'GET' && /\/originGroups\/[^/]+\/origins$/i.test(req.path)) {
      const prefix = `${req.path.toLowerCase()}/`;
      return reply(200, { value: [...this.arm.resources.entries()].filter(([id]) => id.startsWith(prefix) && !id.slice(prefix.length).includes('/')).map(([, r]) => r) });
    }
    if (!/\/providers\/Microsoft\.Cdn\/profiles\/[^/]+\/originGroups\/[^/]+\/origins\/[^/]+$/i.test(req.path)) return undefined;
    const id = req.path.toLowerCase();
    if (req.method === 'PATCH') this.changedAt.set(id, Date.now());
    else if (req.method === 'GET') {
      const origin = this.arm.get(req.path);
      const at = this.changedAt.get(id);
      if (origin && at !== undefined) {
        const elapsed = Date.now() - at;
        origin.properties.deploymentStatus = elapsed >= this.propagationMs ? 'Succeeded' : elapsed < this.propagationMs / 3 ? 'NotStarted' : 'InProgress';
      }
    }
    return undefined;
  }
}
