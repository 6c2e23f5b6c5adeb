// A verify step's load test, generated and measured by autocannon (the Node load tester) instead of a
// loop of our own: its fixed-rate clients, request cap and per-request timeout are what an operator can
// look up and trust. Latency percentiles come from an HdrHistogram (hdr-histogram-js, the one autocannon
// itself uses) fed with every response's time from autocannon's `response` event, because:
// - autocannon reports p90 and p97.5 but no p95, the figure plans state ("p95 < 500 ms");
// - with a rate set, autocannon corrects for coordinated omission with an expected interval of
//   ceil(1 / rate) = 1 ms, which floods its own histogram with made-up samples; here the interval is
//   the real one between a connection's requests.
//
// contract/load.ts's runLoad stays for the demo's shoppers and the tests' background traffic: those are
// open-loop traffic (varied URLs and POST bodies, counted by the origin that answered) that must keep
// running while a migration proceeds, not a measurement a step is judged on.
import autocannon from 'autocannon';
import hdr from 'hdr-histogram-js';

export interface LoadTest {
  /** A loopback URL (the caller checks). */
  url: string;
  /** Requests per second over all connections; a whole number (autocannon's overallRate). */
  ratePerSecond: number;
  /** The run stops at whichever bound comes first. */
  durationMs: number;
  maxRequests: number;
  /** Per request; default 10 s. */
  timeoutMs?: number;
  /** Stops the run; the requests in flight are dropped, and the result is what was measured so far. */
  signal?: AbortSignal;
  /** Told every second how far the run is. */
  onTick?: (progress: { requests: number; failed: number; elapsedMs: number }) => void;
}

export interface LoadTestResult {
  /** Answered, plus sent and never answered (errors and timeouts). */
  requests: number;
  answered: number;
  /** Answered with a 5xx, or not at all: what the error rate counts. A 4xx is an answer, as in the canary analysis. */
  failed: number;
  /** Answers by status class ("2xx", "4xx", ...). */
  byClass: Record<string, number>;
  /** Requests that got no answer: a refused or reset connection, or a timeout. */
  errors: number;
  timeouts: number;
  /** Of the answered requests, from the histogram; 0 when none was answered. */
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  durationMs: number;
}

/** Connections at most: enough for a few hundred requests in flight against a slow service. */
const MAX_CONNECTIONS = 50;

export async function measureLoad(test: LoadTest): Promise<LoadTestResult> {
  const rate = Math.round(test.ratePerSecond);
  if (!(rate >= 1) || !(test.maxRequests >= 1) || !(test.durationMs > 0)) {
    throw new RangeError('measureLoad needs a rate of at least 1/s, a duration and a request cap');
  }
  // autocannon refuses more connections than requests, and gives each connection an equal share of the rate.
  const connections = Math.min(MAX_CONNECTIONS, rate, test.maxRequests);
  const intervalMs = (1000 * connections) / rate;
  const latency = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000, numberOfSignificantValueDigits: 3 });
  const byClass: Record<string, number> = {};
  let answered = 0;
  let failed = 0;
  let errors = 0;
  const started = Date.now();
  try {
    const result = await new Promise<{ timeouts: number }>((resolve, reject) => {
      let instance: ReturnType<typeof autocannon> | undefined;
      let timer: NodeJS.Timeout | undefined;
      let settled = false;
      const stop = () => instance?.stop();
      const settle = (err: Error | null, res?: { timeouts: number }) => {
        settled = true;
        clearTimeout(timer);
        test.signal?.removeEventListener('abort', stop);
        if (err || !res) reject(err ?? new Error('autocannon ended without a result'));
        else resolve(res);
      };
      try {
        instance = autocannon(
          {
            url: test.url,
            headers: { 'user-agent': 'tiershift-verify (autocannon)' },
            connections,
            overallRate: rate,
            // The cap; autocannon then ignores its duration, so the timer below bounds the time.
            amount: test.maxRequests,
            timeout: Math.max(1, Math.ceil((test.timeoutMs ?? 10_000) / 1000)),
            // autocannon acts on stop() at its next sample: every 100 ms rather than its default second, so
            // a stop (the duration's end, a cancellation) does not let another second's requests out.
            sampleInt: 100,
          },
          settle,
        );
      } catch (err) {
        settle(err as Error);
        return;
      }
      // A bad option is reported at once, before any request.
      if (settled) return;
      timer = setTimeout(stop, test.durationMs);
      test.signal?.addEventListener('abort', stop, { once: true });
      if (test.signal?.aborted) stop();
      instance.on('response', (_client, status, _bytes, ms) => {
        answered += 1;
        const cls = `${Math.floor(status / 100)}xx`;
        byClass[cls] = (byClass[cls] ?? 0) + 1;
        if (status >= 500) failed += 1;
        // A response slower than the connection's interval held back the requests due meanwhile: the
        // histogram adds them as the waits they would have seen (HdrHistogram's coordinated-omission correction).
        latency.recordValueWithExpectedInterval(Math.max(0, Math.round(ms)), intervalMs);
      });
      instance.on('reqError', () => {
        errors += 1;
        failed += 1;
      });
      instance.on('tick', () => test.onTick?.({ requests: answered + errors, failed, elapsedMs: Date.now() - started }));
    });
    const at = (p: number) => (answered ? latency.getValueAtPercentile(p) : 0);
    return {
      requests: answered + errors,
      answered,
      failed,
      byClass,
      errors,
      timeouts: result.timeouts,
      p50Ms: at(50),
      p95Ms: at(95),
      p99Ms: at(99),
      maxMs: answered ? latency.maxValue : 0,
      durationMs: Date.now() - started,
    };
  } finally {
    latency.destroy();
  }
}
