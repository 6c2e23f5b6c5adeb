// A small, bounded HTTP load generator for the sandbox (the demo's shoppers, the traffic tests' bake
// traffic): a fixed rate, a fixed duration and a request cap, so it always stops by itself.

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
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  if (!(opts.ratePerSecond > 0) || !(opts.durationMs >= 0) || !(opts.maxRequests >= 0)) {
    throw new RangeError('runLoad needs a positive rate, a duration and a request cap');
  }
  const result: LoadResult = { sent: 0, ok: 0, failed: 0, byColor: {}, byStatus: {}, durationMs: 0 };
  const count = (map: Record<string, number>, key: string) => (map[key] = (map[key] ?? 0) + 1);
  const inFlight = new Set<Promise<void>>();
  const started = Date.now();
  const interval = 1000 / opts.ratePerSecond;

  const one = async (n: number): Promise<void> => {
    const url = typeof opts.url === 'function' ? opts.url(n) : opts.url;
    const sentAt = Date.now();
    try {
      const res = await fetch(url, {
        method: opts.method ?? 'GET',
        headers: opts.body === undefined ? undefined : { 'content-type': 'application/json' },
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 5_000),
      });
      await res.arrayBuffer();
      count(result.byStatus, String(res.status));
      count(result.byColor, res.headers.get('x-app-color') ?? 'none');
      if (res.status < 500) result.ok += 1;
      else {
        result.failed += 1;
        opts.onFailure?.(sentAt, String(res.status));
      }
    } catch (err) {
      // No answer at all: say why (a timeout, a reset, a refused connection), so a failure can be traced.
      count(result.byStatus, `error:${failureCause(err)}`);
      result.failed += 1;
      opts.onFailure?.(sentAt, `error:${failureCause(err)}`);
    }
  };

  for (let n = 0; n < opts.maxRequests; n++) {
    const due = started + n * interval;
    if (due - started >= opts.durationMs || opts.signal?.aborted) break;
    if (due > Date.now()) await pause(due - Date.now(), opts.signal);
    if (opts.signal?.aborted) break;
    if (inFlight.size >= (opts.concurrency ?? 32)) await Promise.race(inFlight);
    const request = one(n).finally(() => inFlight.delete(request));
    inFlight.add(request);
    result.sent += 1;
  }
  await Promise.all(inFlight);
  result.durationMs = Date.now() - started;
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
