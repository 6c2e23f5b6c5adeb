// Secret references in Azure: an environment variable of the worker, or a Key Vault secret read with the
// worker's own identity. Values stay in the worker; errors name the reference, never the value.
import { SecretClient } from '@azure/keyvault-secrets';
import { ApplicationFailure } from '@temporalio/activity';
import type { SecretRef } from '../../plan/types';
import { resolveSecret } from '../secrets';
import { azureFailure, type AzureContext } from './common';

export async function resolveAzureSecret(az: AzureContext, ref: SecretRef, what: string): Promise<string> {
  if ('env' in ref) return resolveSecret(ref, what);
  const { vault, secret } = ref.keyVault;
  const url = /^https:\/\//.test(vault) ? vault : `https://${vault}.vault.azure.net`;
  const client = new SecretClient(url, az.credential(), {
    ...(az.options.httpClient ? { httpClient: az.options.httpClient } : {}),
    ...(az.options.retryOptions ? { retryOptions: az.options.retryOptions } : {}),
  });
  try {
    const value = (await client.getSecret(secret)).value;
    if (!value) throw ApplicationFailure.nonRetryable(`${what}: Key Vault secret ${vault}/${secret} is empty; set its value and resume`, 'NonRetryable');
    return value;
  } catch (err) {
    throw azureFailure(`${what}: reading Key Vault secret ${vault}/${secret}`, err);
  }
}
