// Helpers of benchmarks 3 and 4: shoppers through the HAProxy front door, and reading HAProxy's view.
import { runLoad, type LoadResult } from '../client/load';
import { originStats, runtimeCommand } from '../sandbox/haproxy';
import { eventually, sandbox, type BenchContext } from './lib';

/** Order lookups and new orders through the front door, bounded in rate, count and time; stop() returns both results. */
export function shoppers(ctx: BenchContext, opts: { readsPerSecond: number; writesPerSecond: number }) {
  const abort = new AbortController();
  const front = sandbox(ctx).haproxy!.frontendUrl;
  const lookups = Math.min(1000, ctx.sizes.seedRows);
  const common = { durationMs: 20 * 60_000, signal: abort.signal, timeoutMs: 15_000 };
  const reads = runLoad({
    ...common,
    url: (n) => new URL(`/api/orders/${((n * 7919) % lookups) + 1}`, front).toString(),
    ratePerSecond: opts.readsPerSecond,
    maxRequests: opts.readsPerSecond * 20 * 60,
  });
  const writes =
    opts.writesPerSecond > 0
      ? runLoad({ ...common, url: new URL('/api/orders', front).toString(), method: 'POST', body: {}, ratePerSecond: opts.writesPerSecond, maxRequests: opts.writesPerSecond * 20 * 60 })
      : Promise.resolve<LoadResult>({ sent: 0, ok: 0, failed: 0, byColor: {}, byStatus: {}, durationMs: 0 });
  return {
    async stop(): Promise<{ reads: LoadResult; writes: LoadResult; all: LoadResult }> {
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

/** The weights HAProxy routes with now, from its runtime API (`get weight`). */
export async function weights(ctx: BenchContext): Promise<{ blue: number; green: number }> {
  const h = sandbox(ctx).haproxy!;
  const read = async (server: string) => Number(/^(\d+)/.exec((await runtimeCommand(h.runtimeApi, `get weight ${h.backend}/${server}`)).trim())?.[1] ?? NaN);
  return { blue: await read('blue'), green: await read('green') };
}

/** Waits until HAProxy's health checks mark the origin UP. */
export async function originUp(ctx: BenchContext, server: 'blue' | 'green', timeoutMs = 60_000): Promise<void> {
  await eventually(
    async () => (await originStats(sandbox(ctx))).find((r) => r.svname === server)?.status ?? 'missing',
    (status) => status.startsWith('UP'),
    timeoutMs,
    `${server} UP in HAProxy`,
    50,
  );
}

export const describeColors = (r: LoadResult): string =>
  Object.entries(r.byColor)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([color, n]) => `${n} ${color}`)
    .join(', ') || 'none';

export const describeFailures = (r: LoadResult): string => {
  const bad = Object.entries(r.byStatus).filter(([status]) => status === 'error' || Number(status) >= 500);
  return bad.length ? bad.map(([status, n]) => `${n} × ${status === 'error' ? 'no answer' : status}`).join(', ') : 'none';
};
