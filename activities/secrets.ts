// Secrets are resolved here, inside activities, from the references a plan holds; their values never
// leave the worker process (not in activity results, not in errors). `{ env: NAME }` works on every
// worker; any other kind (`{ keyVault: … }`) is resolved by the provider that declares it, whatever
// resource or gate holds the reference. The plan loader already refused kinds no provider declares.
import { ApplicationFailure } from '@temporalio/activity';
import type { SecretRef } from '../plan/types';
import type { Json, SecretResolver } from './types';

let resolvers: Record<string, SecretResolver> = {};

/** The worker's providers' resolvers (createActivities sets them; one worker process has one set). */
export function useSecretResolvers(byKind: Record<string, SecretResolver>): void {
  resolvers = byKind;
}

export async function resolveSecret(ref: SecretRef, what: string): Promise<string> {
  const [kind, value] = Object.entries(ref)[0] ?? [];
  if (kind === 'env') return envSecret(String(value), what);
  const resolve = kind === undefined ? undefined : resolvers[kind];
  if (!resolve) {
    throw ApplicationFailure.nonRetryable(
      `${what}: a ${kind ?? 'malformed'} secret reference needs a worker whose providers resolve it; run such a worker and resume`,
      'NonRetryable',
    );
  }
  return resolve(value as Json, what);
}

/** An environment variable of the worker: the one kind every worker resolves. */
function envSecret(name: string, what: string): string {
  const value = process.env[name];
  if (!value) {
    throw ApplicationFailure.nonRetryable(`${what}: environment variable ${name} is not set in the worker; set it and resume`, 'NonRetryable');
  }
  return value;
}
