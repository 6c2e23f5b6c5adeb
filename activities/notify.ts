// Gate notifications: a JSON POST to a webhook (chat, paging, a ticket system's intake) when a gate
// opens, while it stays open, and when it escalates. The URL may carry a token, so it can be a reference.
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { SecretRef } from '../plan/types';
import { describeSecretRef } from '../plan/secret-ref';
import { resolveSecret } from './secrets';
import type { Json } from './types';

export interface NotifyInput {
  migrationId: string;
  gate: string;
  webhook: string | SecretRef;
  payload: Json;
}

/** A webhook reference resolves through the worker's providers (activities/secrets.ts). */
export async function notifyGate({ gate, webhook, payload }: NotifyInput): Promise<{ status: number }> {
  const url = typeof webhook === 'string' ? webhook : await resolveSecret(webhook, `the webhook of gate "${gate}"`);
  // The URL itself often is the credential (a token in its path): a bad one is named by where it came from, never shown.
  const from = typeof webhook === 'string' ? 'in the plan' : 'env' in webhook ? `in environment variable ${String(webhook.env)}` : `in ${describeSecretRef(webhook)}`;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    /* reported below */
  }
  if (parsed?.protocol !== 'https:' && parsed?.protocol !== 'http:') {
    throw ApplicationFailure.nonRetryable(`the webhook of gate "${gate}" ${from} is not a valid http(s) URL; fix it and resume`, 'NonRetryable');
  }
  const res = await fetch(parsed, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'tiershift' },
    body: JSON.stringify(payload),
    signal: AbortSignal.any([Context.current().cancellationSignal, AbortSignal.timeout(10_000)]),
  });
  await res.body?.cancel();
  // A receiver that refuses the request will refuse it again; one that is down or busy may not.
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
    throw ApplicationFailure.nonRetryable(`the webhook of gate "${gate}" answered ${res.status}`, 'NonRetryable');
  }
  if (!res.ok) throw new Error(`the webhook of gate "${gate}" answered ${res.status}`);
  return { status: res.status };
}
