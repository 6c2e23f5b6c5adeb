// Tokens for the sandbox's Temporal cluster, whose frontend runs Temporal's own JWT authorizer: the
// server verifies each call's `Authorization: Bearer` JWT against the sandbox identity provider's JWKS and
// maps its `permissions` claim (`<namespace>:<role>`) to roles. Processes that are given no token (the
// sandbox's worker and CLI, `sandbox up` itself) take one from the provider with the OAuth client
// credentials grant, as a service account of a production cluster does, and renew it before it expires.
// Nothing here prints, logs or stores a token: it lives in memory only.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { TransientError, UserError } from './errors';

/** The resource indicator (RFC 8707) and JWT audience of the Temporal frontend; the server refuses any other audience. */
export const TEMPORAL_AUDIENCE = 'urn:tiershift:temporal';
/** The scope the provider's Temporal resource server grants; what a token carries is in its `permissions` claim. */
export const TEMPORAL_SCOPE = 'temporal';
/** The claim Temporal's default claim mapper reads (`permissionsClaimName`). */
export const PERMISSIONS_CLAIM = 'permissions';

/**
 * The sandbox's confidential clients. `service` is what the sandbox's worker and CLI use when no token is
 * given (write on the namespace, as a worker needs); `admin` only registers the namespace and the search
 * attributes at `sandbox up` (`temporal-system:admin`, what those operator calls need).
 */
export const SANDBOX_CLIENTS = {
  service: { clientId: 'tiershift-sandbox', permissions: ['default:write'] },
  admin: { clientId: 'tiershift-sandbox-admin', permissions: ['temporal-system:admin'] },
} as const;
export type SandboxClient = keyof typeof SANDBOX_CLIENTS;

/** People's permissions on the namespace from their groups: sre and dba run migrations, dev reads them. */
export const GROUP_PERMISSIONS: Record<string, string[]> = {
  sre: ['default:write'],
  dba: ['default:write'],
  dev: ['default:read'],
};

export function permissionsForGroups(groups: readonly string[]): string[] {
  return [...new Set(groups.flatMap((g) => (Object.hasOwn(GROUP_PERMISSIONS, g) ? GROUP_PERMISSIONS[g]! : [])))].sort();
}

/** <home>/idp/clients.json: the confidential clients' secrets (mode 0600), made once by `sandbox up`. */
export const idpClientsFile = (home: string): string => path.join(home, 'idp', 'clients.json');
export type IdpClientSecrets = Record<string, { secret: string }>;

/** How a process reaches the sandbox cluster's token endpoint: the state file's `temporal.auth`. */
export interface SandboxAuth {
  issuer: string;
  audience: string;
  clientsFile: string;
}

/** A bearer token renewed before it expires; `current()` is what to send now. */
export interface ApiKeySource {
  current(): string;
  /** Called with each renewed token (a NativeConnection's setApiKey). */
  onRenew(apply: (token: string) => unknown): void;
  stop(): void;
}

const HTTP_TIMEOUT_MS = 10_000;
/** Renewed when this share of its lifetime has passed, so a call never carries one about to expire. */
const RENEW_AT = 0.6;
const RETRY_MS = 5_000;

function clientSecret(auth: SandboxAuth, clientId: string): string {
  const secrets: IdpClientSecrets | undefined = existsSync(auth.clientsFile) ? (JSON.parse(readFileSync(auth.clientsFile, 'utf8')) as IdpClientSecrets) : undefined;
  const secret = secrets && Object.hasOwn(secrets, clientId) ? secrets[clientId]?.secret : undefined;
  if (!secret) throw new UserError(`the sandbox has no secret for its client ${clientId} in ${auth.clientsFile}; run \`tiershift sandbox up\` again, or pass a token with --api-key.`, 2);
  return secret;
}

/** One client credentials grant: the JWT access token for the Temporal frontend and its lifetime. */
async function clientCredentials(auth: SandboxAuth, clientId: string): Promise<{ token: string; expiresInS: number }> {
  const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret(auth, clientId))}`).toString('base64');
  let res: Response;
  try {
    res = await fetch(new URL('token', `${auth.issuer}/`), {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: auth.audience, scope: TEMPORAL_SCOPE }),
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
  } catch (err) {
    const reason = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw new TransientError(`could not reach the sandbox's identity provider ${auth.issuer} for a Temporal token (${reason}); check \`tiershift sandbox status\`.`);
  }
  const body = (await res.json().catch(() => ({}))) as { access_token?: unknown; expires_in?: unknown; error?: unknown };
  if (!res.ok || typeof body.access_token !== 'string') {
    const why = typeof body.error === 'string' ? body.error : `HTTP ${res.status}`;
    throw new UserError(`the sandbox's identity provider ${auth.issuer} issued no Temporal token to ${clientId} (${why}); run \`tiershift sandbox up\` again.`);
  }
  return { token: body.access_token, expiresInS: typeof body.expires_in === 'number' ? body.expires_in : 300 };
}

/**
 * A token of the sandbox's client `which`, renewed on a timer (unref'd: it never keeps a process alive)
 * at RENEW_AT of its lifetime; a failed renewal is tried again while the current token is still valid.
 */
export async function sandboxToken(auth: SandboxAuth, which: SandboxClient, opts: { renewAfterMs?: (expiresInS: number) => number } = {}): Promise<ApiKeySource> {
  // Tests renew within a second rather than after six minutes.
  const renewAfter = opts.renewAfterMs ?? ((expiresInS: number) => expiresInS * 1000 * RENEW_AT);
  const { clientId } = SANDBOX_CLIENTS[which];
  let { token, expiresInS } = await clientCredentials(auth, clientId);
  const listeners: ((token: string) => unknown)[] = [];
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => void renew(), ms);
    timer.unref();
  };
  const renew = async () => {
    try {
      ({ token, expiresInS } = await clientCredentials(auth, clientId));
    } catch {
      return schedule(RETRY_MS);
    }
    // A connection that cannot take the new token keeps the old one until it expires; the next renewal tries again.
    for (const apply of listeners) {
      try {
        await apply(token);
      } catch {
        // (setApiKey throws at once on a connection already closed: never an unhandled rejection.)
      }
    }
    schedule(renewAfter(expiresInS));
  };
  schedule(renewAfter(expiresInS));
  return {
    current: () => token,
    onRenew: (apply) => void listeners.push(apply),
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/**
 * Who a bearer token names, for a refusal's message: its `sub`, read without verifying (the server
 * verified it; this only says whose token it was). Never the token itself.
 */
export function tokenSubject(token: string | undefined): string | undefined {
  const payload = token?.split('.')[1];
  if (!payload) return undefined;
  try {
    const sub = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub?: unknown }).sub;
    return typeof sub === 'string' && /^[\w.@:-]{1,100}$/.test(sub) ? sub : undefined;
  } catch {
    return undefined;
  }
}
