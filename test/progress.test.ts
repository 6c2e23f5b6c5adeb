// Progress of a long step: the meter that measures rate and ETA, the line and bar `watch` and `status`
// draw, and how the client finds the running step's reading among the pending activities.
import { Client } from '@temporalio/client';
import { encodeToPayloads } from '@temporalio/common/lib/internal-non-workflow';
import type { temporal } from '@temporalio/proto';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { formatProgress, formatStatus, progressBar, staleAfter } from '../client/format';
import { withLiveProgress } from '../client/migrations';
import { liveFrame } from '../client/watch';
import { tiershiftDataConverter } from '../codec';
import { ProgressMeter, type Progress } from '../contract/progress';
import { evidenceOf, type MigrationStatus, type StepStatus } from '../contract/status';

const NOW = Date.parse('2026-01-01T12:00:00.000Z');
const at = (secondsAgo = 0) => new Date(NOW - secondsAgo * 1000).toISOString();
const reading = (p: Partial<Progress>): Progress => ({ phase: 'initial copy', unit: 'rows', done: 0, at: at(), ...p });

describe('the progress line', () => {
  it('draws a bar of the fraction done, clamped to empty and full', () => {
    expect(progressBar(0)).toBe(`[${'-'.repeat(20)}]`);
    expect(progressBar(0.43)).toBe('[#########-----------]');
    expect(progressBar(1.7, 10)).toBe('[##########]');
    expect(progressBar(-1, 4)).toBe('[----]');
  });

  it('shows 0% at the start, with no rate or ETA yet', () => {
    expect(formatProgress(reading({ total: 10_000_000 }), { now: NOW })).toBe(`[${'-'.repeat(20)}]   0%  0 of 10.0M rows (initial copy)`);
  });

  it('shows done of total, bytes, the rate and the ETA of a phase under way', () => {
    const p = reading({ done: 4_300_000, total: 10_000_000, bytesDone: 1.2e9, bytesTotal: 2.6e9, rate: 85_000, etaSeconds: 65 });
    expect(formatProgress(p, { now: NOW })).toBe('[#########-----------]  43%  4.3M of 10.0M rows, 1.2 GB of 2.6 GB, 85k rows/s, ETA 1m 05s (initial copy)');
  });

  it('shows what is done and how fast without a bar while the total is unknown', () => {
    expect(formatProgress(reading({ phase: 'dumping shop', unit: 'bytes', done: 1_500_000, rate: 250_000 }), { now: NOW })).toBe('1.5 MB so far, 250.0 kB/s (dumping shop)');
  });

  it('says "finishing" instead of an ETA once an estimated total is passed', () => {
    const meter = new ProgressMeter('reverse backfill', 'rows', 1_000, 30_000, () => NOW);
    const p = meter.read(1_200);
    expect(p).toMatchObject({ done: 1_200, total: 1_200 });
    expect(formatProgress({ ...p, rate: 40, etaSeconds: 0 }, { now: NOW })).toBe('[####################] 100%  1.2k of 1.2k rows, 40 rows/s, finishing (reverse backfill)');
  });

  it('says how old a stale reading is instead of passing it for live', () => {
    const p = reading({ done: 10, total: 100, at: at(42) });
    expect(formatProgress(p, { now: NOW, staleAfterMs: staleAfter(1000) })).toMatch(/\(initial copy; last reading 42s ago\)$/);
    expect(formatProgress({ ...p, at: at(4) }, { now: NOW, staleAfterMs: staleAfter(1000) })).toMatch(/\(initial copy\)$/);
    // Never staler than the heartbeat throttle allows, however fast the poll.
    expect(staleAfter(200)).toBe(15_000);
    expect(staleAfter(10_000)).toBe(30_000);
  });
});

describe('ProgressMeter', () => {
  it('measures the rate over its window and the ETA at that rate', () => {
    let t = NOW;
    const meter = new ProgressMeter('initial copy', 'rows', 10_000, 30_000, () => t);
    const first = meter.read(0, 0);
    expect(first).toEqual({ phase: 'initial copy', unit: 'rows', done: 0, total: 10_000, bytesDone: 0, at: at() });
    t += 10_000;
    expect(meter.read(1_000)).toMatchObject({ done: 1_000, rate: 100, etaSeconds: 90 });
    // The copy slows down: after the window has slid past the fast start, the rate is the recent one.
    for (let i = 0; i < 6; i++) {
      t += 10_000;
      meter.read(1_000 + (i + 1) * 100);
    }
    t += 10_000;
    const slow = meter.read(1_700);
    expect(slow.rate).toBe(10);
    expect(slow.etaSeconds).toBe(830);
  });

  it('has no ETA without a total, and takes a total and byte total when they become known', () => {
    let t = NOW;
    const meter = new ProgressMeter('copying blobs', 'blobs', undefined, 30_000, () => t);
    meter.read(0);
    t += 2_000;
    expect(meter.read(10)).toMatchObject({ rate: 5 });
    expect(meter.read(10).etaSeconds).toBeUndefined();
    meter.setTotal(30, 3_000);
    t += 2_000;
    expect(meter.read(20, 2_000)).toMatchObject({ total: 30, bytesDone: 2_000, bytesTotal: 3_000, rate: 5, etaSeconds: 2 });
  });
});

const step = (s: Partial<StepStatus>): StepStatus => ({ id: '0-data', kind: 'data', title: 'Replicate shop', state: 'running', attempts: 1, figures: {}, ...s });

function statusWith(steps: StepStatus[], rest: Partial<MigrationStatus> = {}): MigrationStatus {
  const now = at();
  return {
    migrationId: 'migration-p',
    plan: { name: 'p', hash: 'f'.repeat(64), source: 'p.yaml' },
    state: 'running',
    phase: 'data',
    currentStep: steps.find((s) => s.state === 'running')?.id,
    startedBy: 'alice',
    startedAt: now,
    updatedAt: now,
    steps,
    decisions: [],
    errors: [],
    ...rest,
  };
}

describe('the running step in status and watch', () => {
  const progress = reading({ done: 4_300_000, total: 10_000_000, rate: 85_000, etaSeconds: 65, at: new Date().toISOString() });

  it('is drawn under the running step by `status` and the live watch', () => {
    const status = statusWith([step({ id: '0-check', kind: 'check', state: 'done', figures: { ok: true } }), step({ progress, figures: { rowsCopied: 4_300_000 } })]);
    expect(formatStatus(status)).toContain('  [>] 0-data             Replicate shop\n        [#########-----------]  43%  4.3M of 10.0M rows, 85k rows/s, ETA 1m 05s (initial copy)');
    expect(liveFrame(status)).toContain('      [#########-----------]  43%  4.3M of 10.0M rows, 85k rows/s, ETA 1m 05s (initial copy)');
  });

  it('stays out of the evidence a decision signs', () => {
    const status = statusWith([step({ progress, figures: { rowsCopied: 4_300_000 } })]);
    expect(evidenceOf(status)).toEqual({ '0-data': { rowsCopied: 4_300_000 } });
    expect(evidenceOf(status)).toEqual(evidenceOf(statusWith([step({ figures: { rowsCopied: 4_300_000 } })])));
  });
});

describe('live progress from the pending activities', () => {
  // An encrypting converter: the heartbeat is decoded with the client's own codec, as Temporal stores it.
  const dataConverter = tiershiftDataConverter({ current: 'k1', keys: new Map([['k1', randomBytes(32)]]), source: 'test' });
  const client = new Client({ dataConverter });
  const pending = async (type: string, details: unknown): Promise<temporal.api.workflow.v1.IPendingActivityInfo> => ({
    activityId: String(Math.random()),
    activityType: { name: type },
    heartbeatDetails: { payloads: await encodeToPayloads(client.options.loadedDataConverter, details) },
  });
  const copy = reading({ done: 50, total: 100 });

  it("takes the running step's own activity, not a drift check or a notification beside it", async () => {
    const status = statusWith([step({ id: '0-check', kind: 'check', state: 'done' }), step({})]);
    const found = await withLiveProgress(client, status, [
      await pending('checkDrift', { progress: reading({ phase: 'drift', done: 1 }) }),
      await pending('syncData', { lastKey: 7, progress: copy }),
    ]);
    expect(found.steps.map((s) => s.progress)).toEqual([undefined, copy]);
    // The status the workflow answered is left as it was.
    expect(status.steps[1]!.progress).toBeUndefined();
  });

  it('leaves a gate, a step without progress and a heartbeat without a reading alone', async () => {
    const gate = statusWith([step({ id: '0-go', kind: 'gate' })]);
    expect((await withLiveProgress(client, gate, [await pending('notifyGate', { progress: copy })])).steps[0]!.progress).toBeUndefined();
    const quiet = statusWith([step({})]);
    expect((await withLiveProgress(client, quiet, [await pending('syncData', { lastKey: 7 })])).steps[0]!.progress).toBeUndefined();
    expect((await withLiveProgress(client, quiet, [])).steps[0]!.progress).toBeUndefined();
  });

  it("puts a rollback's reverse backfill under its running action", async () => {
    const backfill = reading({ phase: 'reverse backfill', done: 10, total: 40, at: new Date().toISOString() });
    const status = statusWith([step({ id: '0-finalize', kind: 'finalize', state: 'done' })], {
      state: 'rolling-back',
      rollback: { trigger: 'operator', reason: 'r', startedAt: at(), actions: [{ stepId: '0-finalize', action: 'reverse sync', part: 'finish', state: 'running' }] },
    });
    const found = await withLiveProgress(client, status, [await pending('undoStep', { progress: backfill })]);
    expect(found.rollback?.actions[0]?.progress).toEqual(backfill);
    expect(formatStatus(found)).toContain('  [running] 0-finalize: reverse sync\n      [#####---------------]  25%  10 of 40 rows (reverse backfill)');
  });
});
