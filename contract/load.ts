// A small, bounded HTTP load generator: a fixed rate, a fixed duration and a request cap, so it always
// stops by itself. It is traffic, not a measurement: the demo's shoppers, the tests' and benchmarks'
// background traffic (open-loop, varied URLs and POST bodies, answers counted by the origin that served
// them, failures traced to the phase they fell in), which must keep flowing while a migration runs.
// A verify step's load test, whose numbers decide a rollback, is generated and measured by autocannon
// instead (activities/load-test.ts): there are two because that judgement is left to a well-kept
// library, while this traffic needs what autocannon does not do (per-request URLs, colour counts).

export interface LoadOptions {
  /** The URL to hit, or one per request (request number from 0), e.g. to spread order ids. */
  url: string | ((n: number) => string);
  method?: 'GET' | 'POST';
  /** JSON body for POST requests. */
  body?: unknown;
  ratePerSecond: number;
  durationMs: number;
  maxRequests: number;
  /** Stops sending early; requests in flight still finish (each is bounded by timeoutMs). */
  signal?: AbortSignal;
  /** Per request; default 5 s. */
  timeoutMs?: number;
  /** Requests in flight at most; when reached, sending waits (the rate drops rather than piling up). Default 32. */
  concurrency?: number;
  /** Told of each failed request: when it was sent (epoch ms) and its status or cause, e.g. to say which phase it fell in. */
  onFailure?: (sentAt: number, status: string) => void;
}

export interface LoadResult {
  sent: number;
  /** Answered below 500. */
  ok: number;
  /** Answered 5xx, or no answer at all (refused, reset, timed out). */
  failed: number;
  /** Answers by their x-app-color header (the origin that served them); "none" when absent. */
  byColor: Record<string, number>;
  byStatus: Record<string, number>;
  durationMs: number;
  /**
   * Response times of answered requests (any status), nearest-rank percentiles, in ms; 0 when none
   * was answered. Timed from when each request was due, not when it was sent, so a server that makes
   * requests queue behind the concurrency cap shows that wait too (no coordinated omission). Absent
   * from results merged from several runs (percentiles do not add up).
   */
  p50Ms?: number;
  p95Ms?: number;
  maxMs?: number;
}

/** The nearest-rank percentile `p` (0..100) of `values`; 0 for none. */
export function percentile(values: readonly number[], p: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  if (!(opts.ratePerSecond > 0) || !(opts.durationMs >= 0) || !(opts.maxRequests >= 0)) {
    throw new RangeError('runLoad needs a positive rate, a duration and a request cap');
  }
  const result: LoadResult = { sent: 0, ok: 0, failed: 0, byColor: {}, byStatus: {}, durationMs: 0, p50Ms: 0, p95Ms: 0, maxMs: 0 };
  const latencies: number[] = [];
  const count = (map: Record<string, number>, key: string) => (map[key] = (map[key] ?? 0) + 1);
  const inFlight = new Set<Promise<void>>();
  const started = Date.now();
  const interval = 1000 / opts.ratePerSecond;

  const one = async (n: number, due: number): Promise<void> => {
    const url = typeof opts.url === 'function' ? opts.url(n) : opts.url;
    try {
      const res = await fetch(url, {
        method: opts.method ?? 'GET',
        headers: opts.body === undefined ? undefined : { 'content-type': 'application/json' },
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 5_000),
      });
      await res.arrayBuffer();
      latencies.push(Date.now() - due);
      count(result.byStatus, String(res.status));
      count(result.byColor, res.headers.get('x-app-color') ?? 'none');
      if (res.status < 500) result.ok += 1;
      else {
        result.failed += 1;
        opts.onFailure?.(due, String(res.status));
      }
    } catch (err) {
      // No answer at all: say why (a timeout, a reset, a refused connection), so a failure can be traced.
      count(result.byStatus, `error:${failureCause(err)}`);
      result.failed += 1;
      opts.onFailure?.(due, `error:${failureCause(err)}`);
    }
  };

  for (let n = 0; n < opts.maxRequests; n++) {
    const due = started + n * interval;
    if (due - started >= opts.durationMs || opts.signal?.aborted) break;
    if (due > Date.now()) await pause(due - Date.now(), opts.signal);
    if (opts.signal?.aborted) break;
    if (inFlight.size >= (opts.concurrency ?? 32)) await Promise.race(inFlight);
    const request = one(n, due).finally(() => inFlight.delete(request));
    inFlight.add(request);
    result.sent += 1;
  }
  await Promise.all(inFlight);
  result.durationMs = Date.now() - started;
  result.p50Ms = percentile(latencies, 50);
  result.p95Ms = percentile(latencies, 95);
  result.maxMs = percentile(latencies, 100);
  return result;
}

/** `TimeoutError`, `ECONNRESET`, `ECONNREFUSED`, `UND_ERR_SOCKET`: what ended a request without an answer. */
function failureCause(err: unknown): string {
  const e = err as { name?: string; code?: string; cause?: { code?: string; name?: string } };
  return e.cause?.code ?? e.code ?? e.cause?.name ?? e.name ?? 'unknown';
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
