// The keepalive that every activity runs under: quiet work keeps heartbeating, and never with anything
// but the latest progress, so a retry resumes from where the last attempt really was.
import { heartbeat } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { keepAlive } from '../activities/heartbeat';

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
});
