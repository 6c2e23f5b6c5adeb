// Secrets are resolved here, inside activities, from the references a plan holds; their values never
// leave the worker process (not in activity results, not in errors).
import { ApplicationFailure } from '@temporalio/activity';
import type { SecretRef } from '../plan/types';

export function resolveSecret(ref: SecretRef, what: string): string {
  if ('env' in ref) {
    const value = process.env[ref.env];
    if (!value) {
      throw ApplicationFailure.nonRetryable(
        `${what}: environment variable ${ref.env} is not set in the worker; set it and resume`,
        'NonRetryable',
      );
    }
    return value;
  }
  throw ApplicationFailure.nonRetryable(
    `${what}: Key Vault secret ${ref.keyVault.vault}/${ref.keyVault.secret} needs the azure provider's worker`,
    'NonRetryable',
  );
}
