// Running the Azure provider's activities, as the worker registers them, in Temporal's activity test
// environment (a real Context: heartbeats, heartbeat details of a previous attempt, cancellation),
// with the SDKs talking to a FakeArm.
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { createAzureProvider, type AzureProviderOptions } from '../../activities/azure';
import type { Resource, Step } from '../../plan/types';
import { FakeArm, fakeCredential, RG, SUB } from './fake-arm';

export function azureActivities(arm: FakeArm, opts: Omit<AzureProviderOptions, 'credential' | 'httpClient'> = {}) {
  return createActivities({
    azure: createAzureProvider({
      credential: fakeCredential,
      httpClient: arm,
      // Short, so the SDK's own retries of 429/5xx and the LRO polls take milliseconds.
      retryOptions: { maxRetries: 3, retryDelayInMs: 10, maxRetryDelayInMs: 50 },
      pollIntervalMs: 10,
      ...opts,
    }),
  });
}

export interface Attempt<R> {
  result?: R;
  error?: Error & { type?: string; nonRetryable?: boolean };
  heartbeats: unknown[];
}

/** One activity attempt; `resumeFrom` is the previous attempt's last heartbeat, as Temporal would pass it. */
export async function attempt<A, R>(
  fn: (input: A) => Promise<R>,
  input: A,
  opts: { resumeFrom?: unknown; onHeartbeat?: (details: unknown, env: MockActivityEnvironment) => void } = {},
): Promise<Attempt<R>> {
  const env = new MockActivityEnvironment(
    { heartbeatTimeoutMs: 60_000, ...(opts.resumeFrom !== undefined ? { heartbeatDetails: opts.resumeFrom, attempt: 2 } : {}) },
    { logger: new DefaultLogger('ERROR') },
  );
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (d: unknown) => {
    heartbeats.push(d);
    opts.onHeartbeat?.(d, env);
  });
  try {
    return { result: await env.run(fn, input), heartbeats };
  } catch (err) {
    return { error: err as Attempt<R>['error'], heartbeats };
  }
}

/** The last heartbeat that carried the journal (keepalives repeat it, so the last one is the newest). */
export const lastJournal = (heartbeats: unknown[]) => [...heartbeats].reverse().find((h) => (h as { azure?: number } | undefined)?.azure === 1 && Array.isArray((h as { done?: unknown }).done));

const base = {
  phaseIndex: 1,
  retry: { maximumAttempts: 3, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1s' },
  timeouts: { startToClose: '5m', heartbeat: '1m' },
};

export function step<S extends Step>(fields: Omit<S, 'phaseIndex' | 'retry' | 'timeouts' | 'title'> & { title?: string }): S {
  return { title: fields.id, ...base, ...fields } as unknown as S;
}

export const scope = { provider: 'azure' as const, subscription: SUB, resourceGroup: RG };

export function input<S extends Step>(s: S, resources: Record<string, Resource>, undo?: unknown) {
  return { migrationId: 'migration-test', step: s, resources, ...(undo !== undefined ? { undo } : {}) } as never;
}
