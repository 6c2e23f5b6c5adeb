// The traffic phase on the sandbox: weighted routing between the stable and the canary origin through
// HAProxy's runtime API (the local twin of Front Door origin weights), and the canary analysis that
// reads HAProxy's own per-origin counters over the bake window.
import { ApplicationFailure, heartbeat, sleep } from '@temporalio/activity';
import type { Resource, TrafficStep } from '../../plan/types';
import type { LocalTraffic } from './provider';
import { originStats, runtimeCommand, setServerWeight, type HaproxyStatRow, type SandboxState } from '../../sandbox';
import { MAX_WEIGHT } from '../../sandbox/haproxy';
import type { AnalysisInput, AnalysisOutcome, StepInput, StepOutcome, TrafficShiftOutcome, UndoInput } from '../types';
import { sandboxState } from './sandbox';

type Server = 'blue' | 'green';
type Weights = { stable: number; canary: number };

type Counters = {
  /** HTTP requests (req_tot), or sessions (stot) where HAProxy does not count requests per server. */
  requests: number;
  hrsp2xx: number;
  hrsp5xx: number;
  /** Connection and response errors: the canary's failures even when HAProxy's retry hid them from the client. */
  econ: number;
  eresp: number;
};
export type TrafficBaseline = { at: string; stable: Counters; canary: Counters };

/** How long a canary may take to pass HAProxy's health checks after the app phase started it. */
const UP_TIMEOUT_MS = 30_000;

interface Route {
  name: string;
  stable: Server;
  canary: Server;
  state: SandboxState & { haproxy: NonNullable<SandboxState['haproxy']> };
}

const route = (input: StepInput): Route => routeTo(input.resources, (input.step as TrafficStep).resource);

function routeTo(resources: Record<string, Resource>, name: string): Route {
  const resource = resources[name];
  if (resource?.kind !== 'traffic') {
    throw ApplicationFailure.nonRetryable(`${name} is not a traffic resource of the plan; name a traffic resource in the traffic step`, 'NonRetryable');
  }
  const { stable, canary } = resource as LocalTraffic;
  const isServer = (s: string): s is Server => s === 'blue' || s === 'green';
  if (!isServer(stable) || !isServer(canary) || stable === canary) {
    throw ApplicationFailure.nonRetryable(`${resource.name} must name the sandbox origins blue and green as stable and canary, got ${stable} and ${canary}; fix the plan`, 'NonRetryable');
  }
  const state = sandboxState();
  if (!state.haproxy) throw ApplicationFailure.nonRetryable('the sandbox has no HAProxy running; run `tiershift sandbox up` and resume', 'NonRetryable');
  const { backend } = resource as LocalTraffic;
  if (backend !== undefined && backend !== state.haproxy.backend) {
    throw ApplicationFailure.nonRetryable(`the sandbox's HAProxy backend is ${state.haproxy.backend}, not ${backend}; fix ${resource.name} in the plan`, 'NonRetryable');
  }
  return { name: resource.name, stable, canary, state: state as Route['state'] };
}

/** Percent to the canary as HAProxy weights that add up to the maximum, so 100 leaves the stable at 0. */
export function weightsFor(percent: number): Weights {
  const canary = Math.round((MAX_WEIGHT * percent) / 100);
  return { canary, stable: MAX_WEIGHT - canary };
}

async function readWeight(r: Route, server: Server): Promise<number> {
  const answer = await runtimeCommand(r.state.haproxy.runtimeApi, `get weight ${r.state.haproxy.backend}/${server}`);
  const weight = /^(\d+)/.exec(answer.trim());
  if (!weight) throw new Error(`HAProxy did not report the weight of ${server}: ${answer.trim()}`);
  return Number(weight[1]);
}

const readWeights = async (r: Route): Promise<Weights> => ({ stable: await readWeight(r, r.stable), canary: await readWeight(r, r.canary) });

/** Sets both weights, raising one before lowering the other so there is never a moment with no origin. */
async function applyWeights(r: Route, want: Weights): Promise<{ before: Weights; changed: boolean }> {
  const before = await readWeights(r);
  if (before.stable === want.stable && before.canary === want.canary) return { before, changed: false };
  const order: [Server, number][] = [
    [r.stable, want.stable],
    [r.canary, want.canary],
  ];
  if (want.canary > before.canary) order.reverse();
  for (const [server, weight] of order) await setServerWeight(r.state, server, weight);
  const after = await readWeights(r);
  if (after.stable !== want.stable || after.canary !== want.canary) {
    throw new Error(`HAProxy reports weights ${r.stable} ${after.stable} / ${r.canary} ${after.canary} after setting ${want.stable} / ${want.canary}`);
  }
  return { before, changed: true };
}

function row(rows: HaproxyStatRow[], server: Server): HaproxyStatRow {
  const found = rows.find((x) => x.svname === server);
  if (!found) throw ApplicationFailure.nonRetryable(`the sandbox's HAProxy has no origin ${server}; run \`tiershift sandbox up\` and resume`, 'NonRetryable');
  return found;
}

const counters = (x: HaproxyStatRow): Counters => ({ requests: x.req_tot || x.stot, hrsp2xx: x.hrsp_2xx, hrsp5xx: x.hrsp_5xx, econ: x.econ, eresp: x.eresp });

/** Waits until HAProxy's health checks pass for the canary: weight sent to a DOWN origin serves nobody. */
async function waitUp(r: Route): Promise<void> {
  if (!r.state.apps[r.canary]) {
    throw ApplicationFailure.nonRetryable(`no ${r.canary} app runs in the sandbox; start it with an app phase before shifting traffic to it`, 'NonRetryable');
  }
  const deadline = Date.now() + UP_TIMEOUT_MS;
  for (;;) {
    const origin = row(await originStats(r.state), r.canary);
    if (origin.status.startsWith('UP')) return;
    if (Date.now() > deadline) throw new Error(`the canary ${r.canary} is ${origin.status} in HAProxy (${origin.check_status}); check its log and resume`);
    heartbeat({ waitingFor: `${r.canary} UP`, status: origin.status });
    await sleep(500);
  }
}

export async function shiftTraffic(input: StepInput<TrafficStep>): Promise<TrafficShiftOutcome> {
  const r = route(input);
  const want = weightsFor(input.step.weight);
  if (want.canary > 0) await waitUp(r);
  const { before, changed } = await applyWeights(r, want);
  const rows = await originStats(r.state);
  const baseline: TrafficBaseline = { at: new Date().toISOString(), stable: counters(row(rows, r.stable)), canary: counters(row(rows, r.canary)) };
  const split = `${100 - input.step.weight}% ${r.stable} (weight ${want.stable}), ${input.step.weight}% ${r.canary} (weight ${want.canary})`;
  return {
    summary: `${r.name}: ${changed ? 'now routes' : 'already routed'} ${split}`,
    figures: { [`${r.name}.weight`]: input.step.weight, [`${r.name}.canaryWeight`]: want.canary, [`${r.name}.stableWeight`]: want.stable },
    undo: before,
    baseline,
  };
}

function isBaseline(value: unknown): value is TrafficBaseline {
  const b = value as TrafficBaseline | undefined;
  return typeof b?.at === 'string' && typeof b.stable?.requests === 'number' && typeof b.canary?.requests === 'number';
}

const pct = (fraction: number) => `${(fraction * 100).toFixed(1)}%`;

/** Fewest requests in the sliding window for it to be judged on its own; below that only the bake so far counts. */
export const WINDOW_MIN_REQUESTS = 20;

/**
 * The verdict on the bake so far, from HAProxy's per-origin counters since the shift's baseline, and on
 * the sliding window alone (since `window`, the counters one `analysis.interval` ago), so a canary that starts failing late in a long bake is
 * caught within an interval. Response time is HAProxy's rtime: the canary's average over its last 1024
 * responses. Too few requests since the shift is inconclusive, not a failure.
 */
export async function analyseTraffic(input: AnalysisInput): Promise<AnalysisOutcome> {
  const r = route(input);
  if (!isBaseline(input.baseline)) {
    throw ApplicationFailure.nonRetryable(`the analysis of ${input.step.id} has no baseline from its traffic shift; resume the traffic step`, 'NonRetryable');
  }
  const { analysis } = input.step;
  const rows = await originStats(r.state);
  const canaryRow = row(rows, r.canary);
  const now: TrafficBaseline = { at: new Date().toISOString(), stable: counters(row(rows, r.stable)), canary: counters(canaryRow) };
  const total = served(now, input.baseline);
  const last = isBaseline(input.window) ? served(now, input.window) : undefined;
  const rtime = canaryRow.rtime;
  const weights = await readWeights(r);
  const weightPct = weights.canary + weights.stable ? Math.round((1000 * weights.canary) / (weights.canary + weights.stable)) / 10 : 0;

  const failures: string[] = [];
  if (weights.canary > 0 && !canaryRow.status.startsWith('UP')) failures.push(`the canary ${r.canary} is ${canaryRow.status} in HAProxy (${canaryRow.check_status})`);
  const tooFew = total.requests < analysis.minRequests;
  if (last && last.requests >= Math.max(analysis.minRequests, WINDOW_MIN_REQUESTS) && last.errorRate > analysis.maxErrorRate) {
    failures.push(`the canary ${r.canary} failed ${last.errors} of its last ${last.requests} requests (${analysis.interval ?? '10s'}), an error rate of ${pct(last.errorRate)} above the plan's maximum of ${pct(analysis.maxErrorRate)}`);
  } else if (!tooFew && total.errorRate > analysis.maxErrorRate) {
    failures.push(`the canary ${r.canary} failed ${total.errors} of ${total.requests} requests, an error rate of ${pct(total.errorRate)} above the plan's maximum of ${pct(analysis.maxErrorRate)}`);
  }
  if (!tooFew && analysis.maxResponseTimeMs !== undefined && rtime > analysis.maxResponseTimeMs) {
    failures.push(`the canary ${r.canary} answered in ${rtime} ms on average, above the plan's maximum of ${analysis.maxResponseTimeMs} ms`);
  }
  const inconclusive = failures.length === 0 && tooFew;
  if (inconclusive) failures.push(`not enough traffic: ${total.requests} requests, the plan asks for at least ${analysis.minRequests}`);
  const n = r.name;
  const observed =
    `${r.canary} served ${total.requests} requests (${pct(total.share)} of the traffic at weight ${weightPct}%) with ${pct(total.errorRate)} errors and ${rtime} ms average response time` +
    (last ? `; ${last.requests} in the last ${analysis.interval ?? '10s'} with ${pct(last.errorRate)} errors` : '');
  return {
    pass: failures.length === 0,
    reason: failures.length ? `${failures.join('; ')}.` : undefined,
    inconclusive,
    counters: now,
    summary: `${n}: ${observed}${failures.length ? '' : ", within the plan's limits"}`,
    figures: {
      [`${n}.errorRate`]: total.errorRate,
      [`${n}.requests`]: total.requests,
      [`${n}.observedCanaryShare`]: total.share,
      [`${n}.rtimeMs`]: rtime,
      [`${n}.weight`]: weightPct,
      ...(last ? { [`${n}.lastIntervalErrorRate`]: last.errorRate, [`${n}.lastIntervalRequests`]: last.requests } : {}),
    },
  };
}

/** What the canary served between two readings of the counters. */
function served(now: TrafficBaseline, then: TrafficBaseline) {
  // A counter below its earlier reading means HAProxy restarted in between: count from zero.
  const since = (a: number, b: number) => (a >= b ? a - b : a);
  const errors = since(now.canary.hrsp5xx, then.canary.hrsp5xx) + since(now.canary.econ, then.canary.econ) + since(now.canary.eresp, then.canary.eresp);
  const requests = Math.max(since(now.canary.requests, then.canary.requests), errors);
  const stableRequests = since(now.stable.requests, then.stable.requests);
  return { errors, requests, errorRate: requests ? errors / requests : 0, share: requests + stableRequests ? requests / (requests + stableRequests) : 0 };
}

/** Read-only: the weights HAProxy routes with before the step (what undoing the front's first shift restores). */
export async function observeTraffic(input: StepInput<TrafficStep>): Promise<Weights> {
  return readWeights(route(input));
}

const isWeights = (v: unknown): v is Weights =>
  typeof v === 'object' && v !== null && Number.isInteger((v as Weights).stable) && Number.isInteger((v as Weights).canary) && (v as Weights).stable + (v as Weights).canary > 0;

/** The weights from before the front's first shift (observed then), else all traffic on the stable origin. */
export async function undoTraffic(input: UndoInput): Promise<StepOutcome> {
  if (input.step.kind !== 'traffic') throw new Error(`undoTraffic got a ${input.step.kind} step`);
  const r = route(input);
  const want = isWeights(input.before) ? { stable: input.before.stable, canary: input.before.canary } : { stable: MAX_WEIGHT, canary: 0 };
  const { changed } = await applyWeights(r, want);
  const percent = Math.round((100 * want.canary) / (want.stable + want.canary));
  return {
    summary:
      want.canary === 0
        ? `${r.name}: ${changed ? 'all traffic back on' : 'all traffic was already on'} ${r.stable} (weight ${want.stable}, ${r.canary} 0)`
        : `${r.name}: ${changed ? 'weights restored to' : 'weights already were'} ${r.stable} ${want.stable} / ${r.canary} ${want.canary}, as before the migration`,
    figures: { [`${r.name}.weight`]: percent, [`${r.name}.canaryWeight`]: want.canary, [`${r.name}.stableWeight`]: want.stable },
  };
}

/** Drift: the weights HAProxy routes with are not the ones the plan's last traffic step left (someone edited them by hand). */
export async function trafficDrift(resources: Record<string, Resource>, name: string, expectedPercent: number): Promise<string | undefined> {
  const r = routeTo(resources, name);
  const want = weightsFor(expectedPercent);
  const have = await readWeights(r);
  if (have.stable === want.stable && have.canary === want.canary) return undefined;
  return `${name}: expected ${r.stable} ${want.stable} / ${r.canary} ${want.canary} (${expectedPercent}% to ${r.canary}), found ${r.stable} ${have.stable} / ${r.canary} ${have.canary}`;
}
