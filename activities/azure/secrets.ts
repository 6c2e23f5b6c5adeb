// Key Vault secret references (`{ keyVault: { vault, secret } }`), read with the worker's own identity, for any
// resource or gate that holds one. Values stay in the worker; errors name the reference, never the value.
import { SecretClient } from '@azure/keyvault-secrets';
import { ApplicationFailure } from '@temporalio/activity';
import type { Json } from '../types';
import { azureFailure, type AzureContext } from './common';

export async function resolveKeyVaultSecret(az: AzureContext, ref: Json, what: string): Promise<string> {
  const { vault, secret } = ref as { vault: string; secret: string };
  // A vault name is in the worker's cloud (vault.azure.net, vault.usgovcloudapi.net, vault.azure.cn).
  const url = /^https:\/\//.test(vault) ? vault : `https://${vault}.${az.cloud.keyVaultSuffix}`;
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
