// The keepalive that every activity runs under: quiet work keeps heartbeating, and never with anything
// but the latest progress, so a retry resumes from where the last attempt really was.
import { heartbeat } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { keepAlive, mergeDetails } from '../activities/heartbeat';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('keepAlive', () => {
  it('re-sends the previous attempt\'s progress until this attempt reports its own, then the latest', async () => {
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 1_500, heartbeatDetails: { page: 3 } }, { logger: new DefaultLogger('ERROR') });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    const result = await env.run(() =>
      keepAlive(async () => {
        await pause(1_200);
        heartbeat({ page: 4 });
        await pause(1_200);
        return 'done';
      }),
    );
    expect(result).toBe('done');
    const firstOwn = beats.findIndex((b) => (b as { page: number }).page === 4);
    expect(firstOwn).toBeGreaterThanOrEqual(1);
    expect(beats.slice(0, firstOwn)).toEqual(beats.slice(0, firstOwn).map(() => ({ page: 3 })));
    expect(beats.slice(firstOwn).length).toBeGreaterThanOrEqual(2);
    expect(beats.slice(firstOwn)).toEqual(beats.slice(firstOwn).map(() => ({ page: 4 })));
    // Stopped with the activity: nothing more arrives.
    const count = beats.length;
    await pause(700);
    expect(beats).toHaveLength(count);
  });

  it('merges each heartbeat into the journal so far: a progress line never erases what a retry and its undo need', async () => {
    const journal = { azure: 1, before: { revision: 'v1' }, done: ['app:revision'], notes: { created: true } };
    const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 60_000, heartbeatDetails: journal }, { logger: new DefaultLogger('ERROR') });
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));
    await env.run(() =>
      keepAlive(async () => {
        heartbeat({ azure: 1, waiting: 'revision v2 healthy', provisioning: 'Provisioning' });
        heartbeat({ copied: 2, created: ['a.png', 'b.png'] });
        heartbeat({ copying: 'big.bin' });
        heartbeat({ copied: 3, created: ['c.png'], continuationToken: undefined });
      }),
    );
    expect(beats.at(-1)).toEqual({ ...journal, waiting: 'revision v2 healthy', provisioning: 'Provisioning', copying: 'big.bin', copied: 3, created: ['a.png', 'b.png', 'c.png'], continuationToken: undefined });
    // Nested records merge too; a value that is not a record replaces.
    expect(mergeDetails({ notes: { a: 1 }, pending: { op: 'x', poller: 'p' } }, { notes: { b: 2 }, pending: undefined })).toEqual({ notes: { a: 1, b: 2 }, pending: undefined });
  });

  it('replaces a progress reading whole, so a new phase keeps no total or ETA of the last one', () => {
    const copy = { phase: 'initial copy', unit: 'rows', done: 10, total: 10, rate: 5, etaSeconds: 0, at: '2026-01-01T00:00:00.000Z' };
    const indexes = { phase: 'building indexes', unit: 'indexes', done: 0, at: '2026-01-01T00:00:05.000Z' };
    expect(mergeDetails({ lastKey: 7, progress: copy }, { progress: indexes })).toEqual({ lastKey: 7, progress: indexes });
    // A journal's note that happens to be called progress (a blob copy's position) still merges.
    expect(mergeDetails({ notes: { progress: { created: ['a'] } } }, { notes: { progress: { created: ['b'] } } })).toEqual({ notes: { progress: { created: ['a', 'b'] } } });
  });
});
