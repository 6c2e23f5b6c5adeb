// Progress of a long step, as its heartbeat carries it: how much of what is done, how fast, and when it
// will end. Activities heartbeat `{ progress: Progress, ... }`; the CLI reads the pending activity's
// latest heartbeat and draws it (`tiershift watch`, `status`), and the Temporal UI shows the same object
// under the pending activity. One shape for every long phase: copy, index build, verification, dump,
// blob copy, reverse backfill.

export interface Progress {
  /** What the step is doing now, in a runbook's words: "initial copy", "building indexes", "verifying". */
  phase: string;
  /** What `done` and `total` count: rows, bytes, indexes, blobs. */
  unit: string;
  done: number;
  /** Absent while unknown; an estimate (planner statistics) may be passed by `done`. */
  total?: number;
  /** Bytes moved so far and expected, when the phase moves data and knows it. */
  bytesDone?: number;
  bytesTotal?: number;
  /** Units per second over the recent past. */
  rate?: number;
  /** Seconds left at that rate; absent while the rate or the total is unknown. */
  etaSeconds?: number;
  /** When this reading was taken (ISO), so a reader can tell a stale heartbeat. */
  at: string;
}

/**
 * How often a worker sends an activity's heartbeat to Temporal at most (worker/worker.ts): a reading
 * the CLI or the UI shows is up to this old even while the step is live.
 */
export const HEARTBEAT_THROTTLE_MS = 5_000;

/** A heartbeat that carries progress. */
export const progressOf = (details: unknown): Progress | undefined => {
  if (typeof details !== 'object' || details === null) return undefined;
  const p = (details as { progress?: unknown }).progress;
  if (typeof p !== 'object' || p === null) return undefined;
  const { phase, unit, done } = p as Partial<Progress>;
  return typeof phase === 'string' && typeof unit === 'string' && typeof done === 'number' ? (p as Progress) : undefined;
};

/**
 * Measures a rate over a sliding window of readings, so an ETA follows the current speed (a copy slows
 * down on big rows, speeds up on small ones) without jumping on each reading.
 */
export class ProgressMeter {
  private readonly readings: { t: number; done: number }[] = [];
  private bytesTotal?: number;

  constructor(
    private readonly phase: string,
    private readonly unit: string,
    private total?: number,
    private readonly windowMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  setTotal(total: number | undefined, bytesTotal?: number): void {
    this.total = total;
    if (bytesTotal !== undefined) this.bytesTotal = bytesTotal;
  }

  /** The progress after `done` units (and `bytesDone` bytes) in all. */
  read(done: number, bytesDone?: number): Progress {
    const t = this.now();
    this.readings.push({ t, done });
    while (this.readings.length > 2 && t - this.readings[0]!.t > this.windowMs) this.readings.shift();
    const first = this.readings[0]!;
    const elapsed = (t - first.t) / 1000;
    const rate = elapsed > 0 ? (done - first.done) / elapsed : undefined;
    const total = this.total !== undefined ? Math.max(this.total, done) : undefined;
    const eta = rate && rate > 0 && total !== undefined ? Math.round((total - done) / rate) : undefined;
    return {
      phase: this.phase,
      unit: this.unit,
      done,
      ...(total !== undefined ? { total } : {}),
      ...(bytesDone !== undefined ? { bytesDone } : {}),
      ...(this.bytesTotal !== undefined ? { bytesTotal: this.bytesTotal } : {}),
      ...(rate !== undefined ? { rate: Math.round(rate * 10) / 10 } : {}),
      ...(eta !== undefined ? { etaSeconds: eta } : {}),
      at: new Date(t).toISOString(),
    };
  }
}
