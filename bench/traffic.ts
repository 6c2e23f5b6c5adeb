// Helpers of benchmarks 3 and 4: shoppers through the HAProxy front door (test/support/load.ts, with the
// benchmarks' bounds), and reading HAProxy's view.
import type { LoadResult } from '../client/load';
import { originStats, runtimeCommand } from '../sandbox/haproxy';
import { shoppers as sharedShoppers } from '../test/support/load';
import { eventually, sandbox, type BenchContext } from './lib';

/** The benchmarks' shoppers: lookups over the first 1000 orders, for at most 20 minutes; stop() returns reads, writes and both. */
export const shoppers = (ctx: BenchContext, opts: { readsPerSecond: number; writesPerSecond: number }) =>
  sharedShoppers({ ...opts, front: sandbox(ctx).haproxy!.frontendUrl, lookups: Math.min(1000, ctx.sizes.seedRows), durationMs: 20 * 60_000, timeoutMs: 15_000 });

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
  const bad = Object.entries(r.byStatus).filter(([status]) => status.startsWith('error') || Number(status) >= 500);
  return bad.length ? bad.map(([status, n]) => `${n} × ${status === 'error' ? 'no answer' : status}`).join(', ') : 'none';
};
