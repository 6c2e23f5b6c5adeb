// A verify step: HTTP smoke checks, then a bounded load test, judged against the plan's thresholds. The
// measurements are the step's figures (the next gate's evidence); a breach is a verdict, not an error:
// the workflow rolls the migration back on it, as on a failed canary analysis.
import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import { measureLoad } from './load-test';
import type { VerifyStep } from '../plan/types';
import type { Figures } from '../contract/status';
import type { StepInput, StepOutcome } from './types';

export interface VerifyOutcome extends StepOutcome {
  pass: boolean;
  /** Every breach, in one sentence. */
  reason?: string;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;

/** `base`: the address of the step's resource, from its provider, when the step names one. */
export async function verifyService(input: StepInput<VerifyStep>, base: string | undefined): Promise<VerifyOutcome> {
  const { step } = input;
  const url = (u: string) => {
    if (!u.startsWith('/')) return u;
    if (!base) throw ApplicationFailure.nonRetryable(`step ${step.id} checks ${u} but names no resource it is on; give an absolute URL`, 'NonRetryable');
    return new URL(u, base).toString();
  };
  const figures: Figures = {};
  const breaches: string[] = [];
  for (const [j, check] of step.checks.entries()) {
    const target = url(check.url);
    const started = Date.now();
    let status = 0;
    let body = '';
    try {
      const res = await fetch(target, { signal: AbortSignal.timeout(Math.max(10_000, (check.maxLatencyMs ?? 0) * 2)), redirect: 'manual' });
      status = res.status;
      body = await res.text();
    } catch (err) {
      breaches.push(`GET ${check.url} got no answer (${(err as Error).name === 'TimeoutError' ? 'timed out' : ((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message)})`);
    }
    const ms = Date.now() - started;
    figures[`check${j + 1}.status`] = status;
    figures[`check${j + 1}.ms`] = ms;
    if (!status) continue;
    if (status !== check.status) breaches.push(`GET ${check.url} answered ${status}, expected ${check.status}`);
    if (check.body && !body.includes(check.body)) breaches.push(`GET ${check.url} did not contain ${JSON.stringify(check.body)}`);
    if (check.maxLatencyMs && ms > check.maxLatencyMs) breaches.push(`GET ${check.url} took ${ms} ms, above ${check.maxLatencyMs} ms`);
    heartbeat({ verify: { checked: j + 1, of: step.checks.length } });
  }
  const load = step.load;
  if (load) {
    const target = url(load.url);
    // The plan loader allows only paths on a resource and loopback URLs; the resource's address is checked here.
    if (!LOOPBACK.test(new URL(target).hostname)) {
      throw ApplicationFailure.nonRetryable(`the load test of ${step.id} would go to ${new URL(target).host}, which is not this machine; tiershift load-tests only loopback addresses`, 'NonRetryable');
    }
    // autocannon (activities/load-test.ts), not contract/load.ts's runLoad: a verdict is measured by the library.
    const signal = Context.current().cancellationSignal;
    const total = load.maxRequests;
    heartbeat({ verify: { load: `${load.ratePerSecond}/s for ${load.duration}` } });
    const result = await measureLoad({
      url: target,
      ratePerSecond: load.ratePerSecond,
      durationMs: durationMs(load.duration),
      maxRequests: load.maxRequests,
      timeoutMs: Math.max(5_000, (load.p95Ms ?? 0) * 4),
      signal,
      // A live reading while it runs, and proof the worker is alive (a cancellation arrives with a heartbeat's answer).
      onTick: ({ requests, failed, elapsedMs }) => {
        const rate = elapsedMs > 0 ? Math.round((requests * 1000) / elapsedMs) : undefined;
        heartbeat({
          progress: { phase: 'load test', unit: 'requests', done: requests, total, ...(rate ? { rate, etaSeconds: Math.max(0, Math.round((total - requests) / rate)) } : {}), at: new Date().toISOString() },
          verify: { load: { requests, failed } },
        });
      },
    });
    // Stopped by a cancellation: what it measured is no verdict.
    if (signal.aborted) throw signal.reason;
    const errorRate = result.requests ? result.failed / result.requests : 1;
    Object.assign(figures, {
      'load.requests': result.requests,
      'load.failed': result.failed,
      'load.errors': result.errors,
      'load.timeouts': result.timeouts,
      ...Object.fromEntries(Object.entries(result.byClass).map(([cls, n]) => [`load.${cls}`, n])),
      'load.errorRate': Math.round(errorRate * 10_000) / 10_000,
      'load.p50Ms': result.p50Ms,
      'load.p95Ms': result.p95Ms,
      'load.p99Ms': result.p99Ms,
      'load.maxMs': result.maxMs,
      'load.ms': result.durationMs,
    });
    if (!result.requests) breaches.push('the load test sent no request');
    if (load.p95Ms !== undefined && result.p95Ms > load.p95Ms) breaches.push(`the load test's p95 was ${result.p95Ms} ms, above ${load.p95Ms} ms`);
    if (errorRate > load.maxErrorRate) breaches.push(`the load test's error rate was ${(errorRate * 100).toFixed(2)}%, above ${(load.maxErrorRate * 100).toFixed(2)}%`);
  }
  const measured = [step.checks.length ? `${step.checks.length - breaches.filter((b) => b.startsWith('GET')).length}/${step.checks.length} checks passed` : '', load ? `load p95 ${figures['load.p95Ms']} ms over ${figures['load.requests']} requests (autocannon), error rate ${figures['load.errorRate']}` : ''].filter(Boolean).join('; ');
  return breaches.length
    ? { pass: false, reason: `verification of ${step.resource ?? 'the service'} failed: ${breaches.join('; ')}`, summary: measured, figures }
    : { pass: true, summary: measured, figures };
}

function durationMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(n) * units[unit!]!;
  return total;
}
