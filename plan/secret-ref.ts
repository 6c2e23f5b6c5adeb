// Where a secret reference points, for status, reports and notifications: never its value.
import type { SecretRef } from './types';

/** `env:PG_URL`, `keyVault:kv-shop/webhook-url`: the reference's kind and what it names. */
export function describeSecretRef(ref: SecretRef): string {
  const [kind, value] = Object.entries(ref)[0] ?? ['unknown', ''];
  const names = value && typeof value === 'object' ? Object.values(value).map(String).join('/') : String(value);
  return `${kind}:${names}`;
}
