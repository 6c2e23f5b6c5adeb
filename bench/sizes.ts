// How big each benchmark is: the full run (bench/RESULTS.md, about 20 minutes on 2 CPUs) and the quick
// one (`-- --quick`, tiny sizes, for checking that everything works; bench/RESULTS.quick.md).

export interface Sizes {
  /** Orders in the sandbox's shop database for benchmarks 3 and 4 (customers, items, payments scale with it). */
  seedRows: number;
  /** 1: gates per approval method. */
  gates: number;
  /** 2: measured runs of each side (after one warm-up run). */
  overheadRuns: number;
  /** 3: bake of each traffic step; read and write rates of the shoppers. */
  bake: string;
  readsPerSecond: number;
  writesPerSecond: number;
  /** 3: seconds of load around the big-bang switch (before it, and after green is up). */
  bigBangSettleMs: number;
  bigBangRuns: number;
  /** 4: bakes of the traffic step the fault hits (the reaction must not depend on them); runs of each; how long HAProxy alone is watched. */
  rollbackBakes: string[];
  rollbackRuns: number;
  haproxyAloneMs: number;
  /** 5: datasets (orders seeded; ~4.3 rows per order across the five tables), runs of each method, and the share of the benchmark's time budget. */
  pgDatasets: { label: string; orders: number; runs: number; share: number }[];
  pgWritesPerSecond: number;
  /** 6: blobs, the largest blob size, and runs. */
  blobs: number;
  blobMaxBytes: number;
  blobRuns: number;
  /** 7: concurrent migrations on one worker, and runs of each K. */
  fleet: { k: number; runs: number }[];
  /** 7: K of the one-process-per-migration alternative that are actually run (the rest are estimated). */
  scriptFleetMaxK: number;
  /** 8: orders seeded, runs of each side, orders per second the new version writes, and for how long after the cutover before the rollback. */
  reverse: { orders: number; runs: number; writesPerSecond: number; afterCutoverMs: number };
}

export const FULL: Sizes = {
  seedRows: 20_000,
  gates: 50,
  overheadRuns: 10,
  bake: '5s',
  readsPerSecond: 25,
  writesPerSecond: 2,
  bigBangSettleMs: 5_000,
  bigBangRuns: 3,
  rollbackBakes: ['10s', '60s', '1h'],
  rollbackRuns: 2,
  haproxyAloneMs: 30_000,
  pgDatasets: [
    { label: '~1M rows', orders: 250_000, runs: 3, share: 0.65 },
    { label: '~2.2M rows', orders: 500_000, runs: 1, share: 0.35 },
  ],
  pgWritesPerSecond: 10,
  blobs: 250,
  blobMaxBytes: 4 * 1024 * 1024,
  blobRuns: 3,
  fleet: [
    { k: 10, runs: 3 },
    { k: 100, runs: 2 },
    { k: 500, runs: 1 },
  ],
  scriptFleetMaxK: 100,
  reverse: { orders: 100_000, runs: 3, writesPerSecond: 10, afterCutoverMs: 5_000 },
};

export const QUICK: Sizes = {
  seedRows: 2_000,
  gates: 5,
  overheadRuns: 3,
  bake: '3s',
  readsPerSecond: 20,
  writesPerSecond: 2,
  bigBangSettleMs: 2_000,
  bigBangRuns: 1,
  rollbackBakes: ['4s', '1h'],
  rollbackRuns: 1,
  haproxyAloneMs: 5_000,
  pgDatasets: [
    { label: 'quick, small', orders: 5_000, runs: 1, share: 0.5 },
    { label: 'quick, larger', orders: 10_000, runs: 1, share: 0.5 },
  ],
  pgWritesPerSecond: 5,
  blobs: 30,
  blobMaxBytes: 256 * 1024,
  blobRuns: 1,
  fleet: [
    { k: 5, runs: 1 },
    { k: 20, runs: 1 },
    { k: 50, runs: 1 },
  ],
  scriptFleetMaxK: 20,
  reverse: { orders: 5_000, runs: 1, writesPerSecond: 5, afterCutoverMs: 2_000 },
};

/** The seed script makes about this many rows per order across the shop's five tables. */
const ROWS_PER_ORDER = 4.32;

/**
 * Benchmark 5 at the sizes `--sizes` asks for (rows): three runs of each method at up to 1M rows, one
 * above; each dataset's share of the time budget follows its size. Benchmark 8 at the largest.
 */
export function withPgSizes(sizes: Sizes, rows?: number[]): Sizes {
  if (!rows?.length) return sizes;
  const runs = (n: number) => (n <= 1e6 ? 3 : 1);
  const work = rows.reduce((a, n) => a + n * runs(n), 0);
  const label = (n: number) => `~${n >= 1e6 ? `${+(n / 1e6).toFixed(1)}M` : `${Math.round(n / 1e3)}k`} rows`;
  return {
    ...sizes,
    pgDatasets: rows.map((n) => ({ label: label(n), orders: Math.round(n / ROWS_PER_ORDER), runs: runs(n), share: (n * runs(n)) / work })),
    // Benchmark 8 (the reverse sync) at the largest of them, once.
    reverse: { ...sizes.reverse, orders: Math.round(Math.max(...rows) / ROWS_PER_ORDER), runs: 1 },
  };
}

/** Time for benchmark 5 at those sizes: on 2 cores a round of the three methods and the seed take about 25 s per million rows. */
export const pgBudgetMs = (rows: number[]): number => 120_000 + rows.reduce((a, n) => a + (n / 1e6) * 30_000 * (n <= 1e6 ? 3 : 1), 0);
