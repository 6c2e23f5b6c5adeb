// `traffic`: users moved to the canary in weighted steps, each baked on a durable timer and judged by its
// analysis; a failed analysis rolls back.
import { z } from 'zod';
import type { TrafficResource } from '../types';
import { analysis, DEFAULT_ANALYSIS, duration, phaseKind, resourceName, retryDetail, stepCommon } from './kit';

const body = z.strictObject({
  ...stepCommon,
  resource: resourceName,
  analysis: analysis.optional(),
  /** This phase starts below the weight the front's previous traffic phase left (sending users back on purpose). */
  allowDecrease: z.boolean().optional(),
  steps: z.array(z.strictObject({ weight: z.int().min(1).max(100), bake: duration, analysis: analysis.optional() })).min(1),
});

export const traffic = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve: (b, ctx) =>
    b.steps.map((s) => ({
      ...ctx.base(`-${s.weight}`),
      kind: 'traffic' as const,
      title: ctx.title(`Shift ${s.weight}% of ${b.resource} to ${(ctx.resources[b.resource] as TrafficResource).canary}, bake ${s.bake}`),
      resource: b.resource,
      weight: s.weight,
      bake: s.bake,
      analysis: { ...DEFAULT_ANALYSIS, ...b.analysis, ...s.analysis },
    })),
  check(b, ctx) {
    ctx.ref(ctx.at('resource'), b.resource, ['traffic']);
    // Across phases too, users only move forward, unless the plan says this phase sends some back.
    const before = ctx.seen.lastWeight.get(b.resource);
    const first = b.steps[0]!;
    if (before && first.weight < before.weight && !b.allowDecrease) {
      ctx.problem(
        ctx.at('steps', 0, 'weight'),
        `expected a weight of at least ${before.weight}, which the traffic phase at phases[${before.at[1]}] leaves on ${b.resource}, got ${first.weight}; to send users back on purpose, add allowDecrease: true to this phase`,
      );
    }
    if (b.allowDecrease && !(before && first.weight < before.weight)) {
      ctx.problem(ctx.at('allowDecrease'), `expected allowDecrease only on a phase that starts below the weight an earlier traffic phase leaves on ${b.resource}; remove it`);
    }
    b.steps.forEach((s, j) => {
      const prev = b.steps[j - 1];
      if (prev && s.weight <= prev.weight) ctx.problem(ctx.at('steps', j, 'weight'), `expected a weight above the previous step's ${prev.weight}, got ${s.weight}`);
    });
    // The canary is judged over the last interval: under a second, a window holds a handful of requests.
    const judged = [
      { at: ctx.at('analysis'), a: b.analysis, merged: b.analysis },
      ...b.steps.map((s, j) => ({ at: ctx.at('steps', j, 'analysis'), a: s.analysis, merged: { ...b.analysis, ...s.analysis } })),
    ];
    for (const { at, a, merged } of judged) {
      if (a?.interval && /^(\d+ms)+$/.test(a.interval)) ctx.problem([...at, 'interval'], `expected an interval of at least 1s, got ${a.interval}`);
      if (a?.extendUpTo && merged?.inconclusive !== 'extend') ctx.problem([...at, 'extendUpTo'], 'extendUpTo applies only with inconclusive: extend; remove it or set inconclusive: extend');
    }
    const last = b.steps.at(-1)!;
    ctx.seen.lastWeight.set(b.resource, { weight: last.weight, at: ctx.at('steps', b.steps.length - 1, 'weight') });
  },
  // One undo per front, whichever of its steps ran: plan/rollback.ts sends it first.
  undo: (step) => (step.kind === 'traffic' ? `Send 100% of ${step.resource} back to the stable origin` : undefined),
  describe(step) {
    if (step.kind !== 'traffic') return '';
    const a = step.analysis;
    const limits = `error rate <= ${a.maxErrorRate}${a.maxResponseTimeMs ? `, response <= ${a.maxResponseTimeMs} ms` : ''}${a.minRequests ? `, >= ${a.minRequests} requests` : ''}`;
    const quiet = { wait: 'an operator decides', extend: `the bake goes on, up to ${a.extendUpTo ?? step.bake} more`, rollback: 'it rolls back' }[a.inconclusive ?? 'wait'];
    return `analysis during the bake over the last ${a.interval ?? '10s'} and the bake so far (rolls back at the first breach): ${limits}${a.minRequests ? `; fewer requests by the bake's end: ${quiet}` : ''}; ${retryDetail(step)}`;
  },
});
