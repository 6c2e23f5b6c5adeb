// Shoppers through the sandbox's front door (HAProxy), for the end-to-end tests and the benchmarks that
// must show a migration fails no request: order lookups spread over the seeded orders, and optionally
// new orders, each bounded in rate, time and count so they always stop by themselves.
// No vitest import: the benchmarks use it outside the test runner.
import { runLoad, type LoadResult } from '../../client/load';

export interface ShopperOptions {
  /** HAProxy's frontend URL (the sandbox state's `haproxy.frontendUrl`). */
  front: string;
  readsPerSecond: number;
  /** New orders per second (POST /api/orders); none when 0 or absent. */
  writesPerSecond?: number;
  /** Lookups spread over order ids 1..lookups, which the seed must have created. */
  lookups: number;
  /** The longest the shoppers keep going if nobody stops them; the request caps follow from it. */
  durationMs: number;
  /** Per request (runLoad's default when absent). */
  timeoutMs?: number;
}

export interface Shoppers {
  /** Stops sending; resolves once the requests in flight are answered. */
  stop(): Promise<{ reads: LoadResult; writes: LoadResult; all: LoadResult }>;
}

const NONE: LoadResult = { sent: 0, ok: 0, failed: 0, byColor: {}, byStatus: {}, durationMs: 0 };

export function shoppers(opts: ShopperOptions): Shoppers {
  const abort = new AbortController();
  const cap = (perSecond: number) => Math.ceil((perSecond * opts.durationMs) / 1000);
  const common = { durationMs: opts.durationMs, signal: abort.signal, ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) };
  const reads = runLoad({
    ...common,
    // A prime stride, so consecutive lookups hit different pages of the orders table.
    url: (n) => new URL(`/api/orders/${((n * 7919) % opts.lookups) + 1}`, opts.front).toString(),
    ratePerSecond: opts.readsPerSecond,
    maxRequests: cap(opts.readsPerSecond),
  });
  const writesPerSecond = opts.writesPerSecond ?? 0;
  const writes =
    writesPerSecond > 0
      ? runLoad({ ...common, url: new URL('/api/orders', opts.front).toString(), method: 'POST', body: {}, ratePerSecond: writesPerSecond, maxRequests: cap(writesPerSecond) })
      : Promise.resolve(NONE);
  return {
    async stop() {
      abort.abort();
      const [r, w] = await Promise.all([reads, writes]);
      return { reads: r, writes: w, all: merge(r, w) };
    },
  };
}

function merge(a: LoadResult, b: LoadResult): LoadResult {
  const add = (x: Record<string, number>, y: Record<string, number>) => {
    const out = { ...x };
    for (const [k, v] of Object.entries(y)) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  return { sent: a.sent + b.sent, ok: a.ok + b.ok, failed: a.failed + b.failed, byColor: add(a.byColor, b.byColor), byStatus: add(a.byStatus, b.byStatus), durationMs: Math.max(a.durationMs, b.durationMs) };
}
