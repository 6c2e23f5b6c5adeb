// `verify`: HTTP smoke checks (status, body text, latency) and a bounded load test (rate, duration, request
// cap, p95 and error-rate thresholds) against a traffic front or an app. Its results are the step's
// figures, so the next gate's approvers decide on them; a breach rolls the migration back.
import { z } from 'zod';
import type { VerifyStep } from '../types';
import { duration, phaseKind, resourceName, retryDetail, stepCommon } from './kit';

const target = z.string().regex(/^(\/|https?:\/\/)\S*$/, { error: 'expected a path on the resource such as /health, or an http(s) URL' }).max(2000);

const body = z.strictObject({
  ...stepCommon,
  /** A traffic front or an app: paths are relative to its address. */
  resource: resourceName.optional(),
  checks: z
    .array(
      z.strictObject({
        url: target,
        status: z.int().min(100).max(599).optional(),
        /** Text the response body must contain. */
        body: z.string().min(1).max(1000).optional(),
        maxLatencyMs: z.number().positive().optional(),
      }),
    )
    .optional(),
  load: z
    .strictObject({
      url: target,
      /** Whole requests per second: autocannon spreads the rate over its connections. */
      ratePerSecond: z.int({ error: 'expected a whole number of requests per second, 1 to 1000' }).min(1, { error: 'expected a whole number of requests per second, 1 to 1000' }).max(1000),
      /** At least one of duration and maxRequests bounds it; the other follows from the rate. */
      duration: duration.optional(),
      maxRequests: z.int().min(1).max(100_000).optional(),
      p95Ms: z.number().positive().optional(),
      maxErrorRate: z.number().min(0).max(1).optional(),
    })
    .optional(),
});
type Body = z.infer<typeof body>;

/** A plan duration in ms (the schema checked its form). */
const ms = (text: string) => [...text.matchAll(/(\d+)(ms|s|m|h|d)/g)].reduce((t, [, n, u]) => t + Number(n) * { ms: 1, s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[u as 'ms']!, 0);
const MAX_LOAD_MS = 3_600_000;
const LOOPBACK = /^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(\/|$)/;

export const verify = phaseKind<Body>({
  schema: () => body,
  resolve(b, ctx) {
    const load = b.load && {
      url: b.load.url,
      ratePerSecond: b.load.ratePerSecond,
      duration: b.load.duration ?? `${Math.ceil(b.load.maxRequests! / b.load.ratePerSecond)}s`,
      maxRequests: b.load.maxRequests ?? Math.ceil((b.load.ratePerSecond * ms(b.load.duration!)) / 1000),
      ...(b.load.p95Ms !== undefined ? { p95Ms: b.load.p95Ms } : {}),
      maxErrorRate: b.load.maxErrorRate ?? 0.01,
    };
    const what = [b.checks?.length ? `${b.checks.length} smoke check${b.checks.length === 1 ? '' : 's'}` : '', load ? `a load test at ${load.ratePerSecond}/s for ${load.duration}` : ''].filter(Boolean).join(' and ');
    const step: VerifyStep = {
      ...ctx.base(),
      kind: 'verify',
      title: ctx.title(`Verify ${b.resource ?? 'the service'}: ${what}`),
      ...(b.resource ? { resource: b.resource } : {}),
      checks: (b.checks ?? []).map((c) => ({ url: c.url, status: c.status ?? 200, ...(c.body ? { body: c.body } : {}), ...(c.maxLatencyMs ? { maxLatencyMs: c.maxLatencyMs } : {}) })),
      ...(load ? { load } : {}),
    };
    return [step];
  },
  check(b, ctx) {
    if (!b.checks?.length && !b.load) ctx.problem(ctx.at(), 'expected checks or a load test (or both), got neither');
    const resource = b.resource ? ctx.ref(ctx.at('resource'), b.resource, ['traffic', 'app']) : undefined;
    if (resource && !ctx.runs(resource.provider, 'verify')) {
      ctx.problem(ctx.at('resource'), `expected a resource whose provider knows its address, got "${b.resource}" on provider ${resource.provider}, which does not yet; give each check an absolute URL and leave resource out`);
    }
    const relative = (url: string, at: (string | number)[]) => {
      if (url.startsWith('/') && !b.resource) ctx.problem(ctx.at(...at), `expected an absolute URL (or a resource the path is on), got "${url}"`);
    };
    b.checks?.forEach((c, j) => relative(c.url, ['checks', j, 'url']));
    const load = b.load;
    if (!load) return;
    relative(load.url, ['load', 'url']);
    if (!load.duration && !load.maxRequests) {
      ctx.problem(ctx.at('load'), 'expected a bound on the load test (duration, maxRequests or both), got neither; a load test without one would never stop');
    } else if (ms(load.duration ?? `${Math.ceil(load.maxRequests! / load.ratePerSecond)}s`) > MAX_LOAD_MS) {
      ctx.problem(ctx.at('load', load.duration ? 'duration' : 'maxRequests'), `expected a load test of at most 1h, got ${load.duration ?? `${load.maxRequests} requests at ${load.ratePerSecond}/s`}`);
    }
    if (!load.url.startsWith('/') && !LOOPBACK.test(load.url)) {
      ctx.problem(ctx.at('load', 'url'), `expected a path on the resource or a loopback URL (http://127.0.0.1:PORT/...) for the load test, got "${load.url}"; tiershift only load-tests what it can reach on this machine`);
    }
  },
  describe(step) {
    if (step.kind !== 'verify') return '';
    const checks = step.checks.map((c) => `GET ${c.url} -> ${c.status}${c.body ? ` containing ${JSON.stringify(c.body)}` : ''}${c.maxLatencyMs ? ` within ${c.maxLatencyMs} ms` : ''}`);
    const l = step.load;
    const load = l ? [`load GET ${l.url} at ${l.ratePerSecond}/s for ${l.duration} (at most ${l.maxRequests} requests): p95 <= ${l.p95Ms ?? 'any'} ms, error rate <= ${l.maxErrorRate}`] : [];
    return `${[...checks, ...load].join('; ')}; a breach rolls back; ${retryDetail(step)}`;
  },
  allowedAfterFinalize: true,
});
