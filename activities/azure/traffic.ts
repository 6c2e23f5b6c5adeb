// The traffic phase in Azure: Front Door origin weights, or Container App revision weights when the
// traffic resource names a Container App. The analysis probes over HTTP what users reach (the Front
// Door endpoint, or the canary revision's own address) as a smoke test, and judges the canary from
// Azure Monitor's metrics of its origin or revision over the bake window (monitor.ts).
import { ApplicationFailure, sleep } from '@temporalio/activity';
import type { TrafficWeight } from '@azure/arm-appcontainers';
import type { TrafficStep } from '../../plan/types';
import type { AzureTraffic } from './provider';
import type { AnalysisInput, AnalysisOutcome, Json, StepInput, StepOutcome, TrafficShiftOutcome, UndoInput } from '../types';
import { Journal, progressHeartbeat, resourceOf, type AzureContext } from './common';
import { canaryRevision, currentRevisionTraffic, readRevisionWeights, restoreRevisions, shiftRevisions } from './container-apps';
import { applyFrontDoorWeights, canaryPercent, describeWeights, front, frontDoorWeightsFor, probeTarget, profileId, readWeights, waitForEdges, weightPreconditions, type FrontDoorWeights } from './front-door';
import { frontDoorWindow, revisionWindow, type Window, type WindowMetrics } from './monitor';

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
  const wrong = await weightPreconditions(f);
  if (wrong) throw ApplicationFailure.nonRetryable(`${n}: ${wrong}.`, 'NonRetryable');
  const want = frontDoorWeightsFor(percent, await readWeights(f));
  const s = await applyFrontDoorWeights(az, f, journal, want, 'shift');
  // The bake (which starts at the baseline) measures the new weights only once the edges route by them.
  await waitForEdges(az, f);
  return {
    summary: `${n}: ${s.changed ? 'now routes' : 'already routed'} ${100 - percent}% to ${r.stable} and ${percent}% to ${r.canary} (${describeWeights(r, want)})${s.resumed ? '; resumed an update a previous attempt started' : ''}`,
    figures: {
      [`${n}.weight`]: percent,
      [`${n}.canaryWeight`]: canaryPercent(want) > 0 ? want.canary.weight : 0,
      [`${n}.stableWeight`]: canaryPercent(want) < 100 ? want.stable.weight : 0,
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
  await waitForEdges(az, f);
  return {
    summary: `${r.name}: ${changed ? 'origins restored to' : 'origins already were'} ${describeWeights(r, previous)}`,
    figures: { [`${r.name}.weight`]: canaryPercent(previous) },
  };
}

interface Probe {
  requests: number;
  errors: number;
  lastError?: string;
}

/** Sends `count` GETs to `url` one after another; 5xx answers and failed connections are errors. */
async function probe(url: string, count: number): Promise<Probe> {
  let errors = 0;
  let lastError: string | undefined;
  for (let i = 0; i < count; i++) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(10_000), redirect: 'manual' });
      await res.arrayBuffer();
      if (res.status >= 500) (errors += 1), (lastError = `HTTP ${res.status}`);
    } catch (err) {
      errors += 1;
      lastError = (err as Error).message;
    }
    progressHeartbeat({ probing: url, sent: i + 1, errors });
    await sleep(50);
  }
  return { requests: count, errors, lastError };
}

/** The smoke test: a few GETs of what users reach. It says the endpoint answers, nothing about the canary. */
const SMOKE_PROBES = 5;

const pct = (fraction: number) => `${(fraction * 100).toFixed(1)}%`;

/** The bake window: from the shift (its baseline) to now; without a baseline, the last five minutes. */
function bakeWindow(baseline: Json): Window {
  const at = Date.parse(String((baseline as { at?: string } | null)?.at ?? ''));
  const end = new Date();
  return { start: new Date(Number.isFinite(at) && at < end.getTime() ? at : end.getTime() - 5 * 60_000), end };
}

/**
 * The verdict after the bake, from Azure Monitor: the canary's requests, 5xx share and latency over the
 * bake window, per origin (Front Door) or per revision (Container Apps), against the plan's thresholds,
 * plus Front Door's own health probes of the canary origin. The weights must be as the step left them,
 * and the endpoint must answer a smoke probe; neither probe nor weights say how the canary fares.
 */
export async function analyseTraffic(az: AzureContext, input: AnalysisInput): Promise<AnalysisOutcome> {
  const r = trafficResource(input);
  const { analysis, weight } = input.step;
  const failures: string[] = [];
  let url: string | undefined;
  let observedWeight: number;
  let metrics: Record<string, WindowMetrics>;
  let unit: string;
  const window = bakeWindow(input.baseline);
  const scheme = az.options.probeScheme ?? 'https';
  if (r.containerApp) {
    const w = await readRevisionWeights(az, r);
    observedWeight = w.canary;
    const { revision, probePath, app } = await canaryRevision(az, r);
    if (!revision) failures.push(`the canary revision ${r.canary} no longer exists`);
    else if (revision.healthState === 'Unhealthy' || (revision.runningState && !['Running', 'RunningAtMaxScale'].includes(revision.runningState))) {
      failures.push(`the canary revision ${r.canary} is ${revision.healthState ?? ''} ${revision.runningState ?? ''}`.replace(/\s+/g, ' ').trim());
    }
    if (revision?.fqdn) url = `${scheme}://${revision.fqdn}${probePath}`;
    metrics = await revisionWindow(az, app.id, app.location, { stable: r.stable, canary: r.canary }, window);
    unit = `revision ${r.canary}`;
  } else {
    const f = front(az, r);
    observedWeight = canaryPercent(await readWeights(f));
    const t = await probeTarget(f);
    failures.push(...t.originsHealthy);
    if (t.host) url = `${scheme}://${t.host}${t.path}`;
    metrics = await frontDoorWindow(az, profileId(f), { stable: [r.stable, ...t.hosts.stable], canary: [r.canary, ...t.hosts.canary] }, window);
    unit = `origin ${r.canary}`;
  }
  if (Math.abs(observedWeight - weight) > 0.5) failures.push(`the canary gets ${observedWeight}% instead of the ${weight}% this step set (changed by hand?)`);

  const c = metrics.canary!;
  const s = metrics.stable!;
  const errorRate = c.requests ? c.errors / c.requests : 0;
  const minutes = Math.max(1, Math.round((window.end.getTime() - window.start.getTime()) / 60_000));
  const tooFew = c.requests < analysis.minRequests;
  if (tooFew) {
    failures.push(`not enough traffic reached the canary: Azure Monitor counts ${c.requests} requests to ${unit} over the ${minutes}-minute bake, the plan asks for at least ${analysis.minRequests} (bake longer, or lower minRequests)`);
  } else if (errorRate > analysis.maxErrorRate) {
    failures.push(`${unit} answered ${c.errors} of ${c.requests} requests with 5xx over the bake (${pct(errorRate)}), above the plan's maximum of ${pct(analysis.maxErrorRate)}`);
  }
  if (c.healthPercent !== undefined && (100 - c.healthPercent) / 100 > analysis.maxErrorRate) {
    failures.push(`Front Door's health probes of ${unit} succeeded only ${c.healthPercent.toFixed(1)}% of the time in the worst minute of the bake`);
  }
  if (analysis.maxResponseTimeMs !== undefined && c.latencyMs !== undefined && c.latencyMs > analysis.maxResponseTimeMs) {
    failures.push(`${unit} took ${Math.round(c.latencyMs)} ms on average in its slowest minute of the bake, above the plan's maximum of ${analysis.maxResponseTimeMs} ms`);
  }
  // The smoke probe fails the verdict only when the endpoint answers nothing at all: any one probe may
  // land on either origin, so its error share says nothing about the canary.
  const p = url ? await probe(url, SMOKE_PROBES) : undefined;
  if (p && p.errors === p.requests) failures.push(`${url} answered none of ${p.requests} smoke probes (last: ${p.lastError})`);

  const n = r.name;
  return {
    pass: failures.length === 0,
    // Too little traffic and nothing else wrong is no verdict: the plan's `inconclusive` decides.
    inconclusive: tooFew && failures.length === 1,
    reason: failures.length ? `${failures.join('; ')}.` : undefined,
    summary:
      `${n}: canary at ${observedWeight}%; Azure Monitor over ${minutes} min: ${unit} ${c.requests} requests, ${pct(errorRate)} 5xx` +
      `${c.latencyMs !== undefined ? `, slowest minute ${Math.round(c.latencyMs)} ms` : ''}; stable ${s.requests} requests, ${pct(s.requests ? s.errors / s.requests : 0)} 5xx` +
      `${p ? `; smoke probe of ${url}: ${p.requests - p.errors}/${p.requests} answered` : ''}${failures.length ? '' : "; within the plan's limits"}`,
    figures: {
      [`${n}.errorRate`]: errorRate,
      [`${n}.requests`]: c.requests,
      [`${n}.stableRequests`]: s.requests,
      [`${n}.stableErrorRate`]: s.requests ? s.errors / s.requests : 0,
      ...(c.latencyMs !== undefined ? { [`${n}.rtimeMs`]: Math.round(c.latencyMs) } : {}),
      ...(c.healthPercent !== undefined ? { [`${n}.originHealth`]: c.healthPercent } : {}),
      ...(p ? { [`${n}.smokeProbes`]: p.requests, [`${n}.smokeErrors`]: p.errors } : {}),
      [`${n}.weight`]: observedWeight,
    },
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
