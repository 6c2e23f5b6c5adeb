// The traffic phase in Azure: Front Door origin weights, or Container App revision weights when the
// traffic resource names a Container App. The analysis probes over HTTP what users reach (the Front
// Door endpoint, or the canary revision's own address) and checks the origins and revision themselves.
import { sleep } from '@temporalio/activity';
import type { TrafficWeight } from '@azure/arm-appcontainers';
import type { TrafficStep } from '../../plan/types';
import type { AzureTraffic } from './provider';
import type { AnalysisInput, AnalysisOutcome, Json, StepInput, StepOutcome, TrafficShiftOutcome, UndoInput } from '../types';
import { Journal, progressHeartbeat, resourceOf, type AzureContext } from './common';
import { canaryRevision, currentRevisionTraffic, readRevisionWeights, restoreRevisions, shiftRevisions } from './container-apps';
import { applyFrontDoorWeights, canaryPercent, describeWeights, front, frontDoorWeightsFor, probeTarget, readWeights, type FrontDoorWeights } from './front-door';

const trafficResource = (input: StepInput): AzureTraffic => resourceOf(input.resources, (input.step as TrafficStep).resource, 'traffic', 'traffic resource');

export async function shiftTraffic(az: AzureContext, input: StepInput<TrafficStep>): Promise<TrafficShiftOutcome> {
  const r = trafficResource(input);
  const journal = new Journal();
  const percent = input.step.weight;
  const n = r.name;
  if (r.containerApp) {
    const s = await shiftRevisions(az, r, journal, percent, 'shift');
    return {
      summary: `${n}: ${s.changed ? 'now routes' : 'already routed'} ${100 - percent}% to revision ${r.stable} and ${percent}% to ${r.canary}${s.resumed ? ' (resumed the update a previous attempt started)' : ''}`,
      figures: { [`${n}.weight`]: percent, [`${n}.canaryWeight`]: percent, [`${n}.stableWeight`]: 100 - percent },
      undo: { revisions: s.before as unknown as Json },
      baseline: { at: new Date().toISOString() },
    };
  }
  const f = front(az, r);
  const want = frontDoorWeightsFor(percent, await readWeights(f));
  const s = await applyFrontDoorWeights(az, f, journal, want, 'shift');
  return {
    summary: `${n}: ${s.changed ? 'now routes' : 'already routed'} ${100 - percent}% to ${r.stable} and ${percent}% to ${r.canary} (${describeWeights(r, want)})${s.resumed ? '; resumed an update a previous attempt started' : ''}`,
    figures: {
      [`${n}.weight`]: percent,
      [`${n}.canaryWeight`]: want.canary.enabled ? want.canary.weight : 0,
      [`${n}.stableWeight`]: want.stable.enabled ? want.stable.weight : 0,
    },
    undo: { origins: s.before as unknown as Json },
    baseline: { at: new Date().toISOString() },
  };
}

/** Read-only: the origin states (or revision weights) before the step, in the shape its undo record has. */
export async function observeTraffic(az: AzureContext, input: StepInput<TrafficStep>): Promise<Json> {
  const r = trafficResource(input);
  if (r.containerApp) return { revisions: (await currentRevisionTraffic(az, r)) as unknown as Json };
  return { origins: (await readWeights(front(az, r))) as unknown as Json };
}

/** Back to the origin states or revision weights from before the first shift (rollback undoes that one). */
export async function undoTraffic(az: AzureContext, input: UndoInput): Promise<StepOutcome> {
  if (input.step.kind !== 'traffic') throw new Error(`undoTraffic got a ${input.step.kind} step`);
  const r = trafficResource(input);
  const journal = new Journal();
  // Observed before the shift's first attempt, else the shift's own record.
  const observed = (input.before ?? {}) as { origins?: FrontDoorWeights; revisions?: TrafficWeight[] };
  const recorded = (input.undo ?? {}) as { origins?: FrontDoorWeights; revisions?: TrafficWeight[] };
  const undo = { origins: observed.origins ?? recorded.origins, revisions: observed.revisions ?? recorded.revisions };
  if (r.containerApp) {
    const previous = undo.revisions ?? [{ revisionName: r.stable, weight: 100 }];
    const changed = await restoreRevisions(az, r, journal, previous);
    const list = previous.filter((t) => (t.weight ?? 0) > 0).map((t) => `${t.revisionName ?? 'latest'} ${t.weight}%`).join(', ');
    return { summary: `${r.name}: ${changed ? 'traffic restored to' : 'traffic already was'} ${list}`, figures: { [`${r.name}.weight`]: 0 } };
  }
  const f = front(az, r);
  const previous = undo.origins ?? frontDoorWeightsFor(0, await readWeights(f));
  const { changed } = await applyFrontDoorWeights(az, f, journal, previous, 'undo');
  return {
    summary: `${r.name}: ${changed ? 'origins restored to' : 'origins already were'} ${describeWeights(r, previous)}`,
    figures: { [`${r.name}.weight`]: canaryPercent(previous) },
  };
}

interface Probe {
  requests: number;
  errors: number;
  meanMs: number;
  lastError?: string;
}

/** Sends `count` GETs to `url` one after another; 5xx answers and failed connections are errors. */
async function probe(url: string, count: number): Promise<Probe> {
  let errors = 0;
  let total = 0;
  let lastError: string | undefined;
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(10_000), redirect: 'manual' });
      await res.arrayBuffer();
      if (res.status >= 500) (errors += 1), (lastError = `HTTP ${res.status}`);
    } catch (err) {
      errors += 1;
      lastError = (err as Error).message;
    }
    total += performance.now() - start;
    if (i % 10 === 9) progressHeartbeat({ probing: url, sent: i + 1, errors });
    await sleep(50);
  }
  return { requests: count, errors, meanMs: count ? Math.round(total / count) : 0, lastError };
}

const pct = (fraction: number) => `${(fraction * 100).toFixed(1)}%`;

/**
 * The verdict after the bake: the origins (or the canary revision) must be healthy and weighted as the
 * step left them, and an HTTP probe of what users reach must stay within the plan's thresholds. Without
 * an endpoint to probe there are no requests, which passes only when the plan asks for none.
 */
export async function analyseTraffic(az: AzureContext, input: AnalysisInput): Promise<AnalysisOutcome> {
  const r = trafficResource(input);
  const { analysis, weight } = input.step;
  const failures: string[] = [];
  let url: string | undefined;
  let observedWeight: number;
  const scheme = az.options.probeScheme ?? 'https';
  if (r.containerApp) {
    const w = await readRevisionWeights(az, r);
    observedWeight = w.canary;
    const { revision, probePath } = await canaryRevision(az, r);
    if (!revision) failures.push(`the canary revision ${r.canary} no longer exists`);
    else if (revision.healthState === 'Unhealthy' || (revision.runningState && !['Running', 'RunningAtMaxScale'].includes(revision.runningState))) {
      failures.push(`the canary revision ${r.canary} is ${revision.healthState ?? ''} ${revision.runningState ?? ''}`.replace(/\s+/g, ' ').trim());
    }
    if (revision?.fqdn) url = `${scheme}://${revision.fqdn}${probePath}`;
  } else {
    const f = front(az, r);
    observedWeight = canaryPercent(await readWeights(f));
    const t = await probeTarget(f);
    failures.push(...t.originsHealthy);
    if (t.host) url = `${scheme}://${t.host}${t.path}`;
  }
  if (Math.abs(observedWeight - weight) > 0.5) failures.push(`the canary gets ${observedWeight}% instead of the ${weight}% this step set (changed by hand?)`);

  const count = url ? Math.min(200, Math.max(analysis.minRequests, 20)) : 0;
  const p = url ? await probe(url, count) : { requests: 0, errors: 0, meanMs: 0 };
  const errorRate = p.requests ? p.errors / p.requests : 0;
  if (p.requests < analysis.minRequests) {
    failures.push(`not enough traffic: ${p.requests} probe requests, the plan asks for at least ${analysis.minRequests}${url ? '' : ` (give ${r.name} an endpoint to probe)`}`);
  } else {
    if (errorRate > analysis.maxErrorRate) failures.push(`${p.errors} of ${p.requests} probe requests to ${url} failed (${pct(errorRate)}, last: ${p.lastError}), above the plan's maximum of ${pct(analysis.maxErrorRate)}`);
    if (analysis.maxResponseTimeMs !== undefined && p.meanMs > analysis.maxResponseTimeMs) {
      failures.push(`${url} answered in ${p.meanMs} ms on average, above the plan's maximum of ${analysis.maxResponseTimeMs} ms`);
    }
  }
  const n = r.name;
  return {
    pass: failures.length === 0,
    reason: failures.length ? `${failures.join('; ')}.` : undefined,
    summary: `${n}: canary at ${observedWeight}%${url ? `, ${p.requests} probes of ${url} with ${pct(errorRate)} errors in ${p.meanMs} ms on average` : ', no endpoint to probe'}${failures.length ? '' : ", within the plan's limits"}`,
    figures: { [`${n}.errorRate`]: errorRate, [`${n}.requests`]: p.requests, [`${n}.rtimeMs`]: p.meanMs, [`${n}.weight`]: observedWeight },
  };
}

/** Drift: weights that are not the ones the plan's last traffic step left. */
export async function trafficDrift(az: AzureContext, resource: AzureTraffic, expectedPercent: number): Promise<string | undefined> {
  if (resource.containerApp) {
    const w = await readRevisionWeights(az, resource);
    if (w.canary === expectedPercent && w.stable === 100 - expectedPercent) return undefined;
    return `${resource.name}: expected ${resource.stable} ${100 - expectedPercent}% / ${resource.canary} ${expectedPercent}%, found ${resource.stable} ${w.stable}% / ${resource.canary} ${w.canary}%`;
  }
  const f = front(az, resource);
  const have = await readWeights(f);
  const found = canaryPercent(have);
  if (Math.abs(found - expectedPercent) <= 0.5) return undefined;
  return `${resource.name}: expected ${expectedPercent}% to ${resource.canary}, found ${describeWeights(resource, have)} (${found}%)`;
}
