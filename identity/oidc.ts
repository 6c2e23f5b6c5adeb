// Verifying an ID token a decision carries: signed by the plan's issuer with one of its published keys,
// for tiershift's client, valid at the decision's time, and issued for this decision's statement (the
// nonce). Used by the worker and, with the key pinned in history, by an offline audit.
import { decodeJwt, decodeProtectedHeader, errors, importJWK, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { sha256Hex } from '../contract/digest';
import { TransientError, UserError } from '../contract/errors';
import type { Verification } from '../contract/identity';

/** Signature algorithms we accept: asymmetric only, so nobody who merely knows a client secret can mint a token. */
export const ALGORITHMS = ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA'] as const;
/** Clock skew allowed between the issuer and the verifier. */
const TOLERANCE_S = 60;
const FETCH_TIMEOUT_MS = 5_000;
const CACHE_MS = 5 * 60_000;

export interface IssuerKeys {
  keys: Record<string, unknown>[];
}

const keyCache = new Map<string, { at: number; value: IssuerKeys }>();

async function getJson(url: string, what: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), headers: { accept: 'application/json' } });
  } catch (err) {
    const reason = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw new TransientError(`could not reach ${what} at ${url} (${reason}); check that the identity provider is up.`);
  }
  if (!res.ok) throw new TransientError(`${what} at ${url} answered HTTP ${res.status}; check that the identity provider is up.`);
  try {
    return await res.json();
  } catch {
    throw new UserError(`${what} at ${url} is not JSON; check the plan's issuer URL.`);
  }
}

/** What the CLI and the verifier need of an issuer's discovery document. */
export interface IssuerMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
}

const discoveryCache = new Map<string, { at: number; value: IssuerMetadata }>();

/** The issuer's discovery document, whose `issuer` must be this one exactly; cached for five minutes. */
export async function discover(issuer: string): Promise<IssuerMetadata> {
  const cached = discoveryCache.get(issuer);
  if (cached && Date.now() - cached.at < CACHE_MS) return cached.value;
  const doc = (await getJson(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, `the discovery document of ${issuer}`)) as Record<string, unknown>;
  if (doc.issuer !== issuer) {
    throw new UserError(`the identity provider at ${issuer} calls itself ${String(doc.issuer)}; set the issuer to exactly that.`);
  }
  for (const field of ['authorization_endpoint', 'token_endpoint', 'jwks_uri']) {
    if (typeof doc[field] !== 'string') throw new UserError(`the discovery document of ${issuer} names no ${field}; check the issuer URL.`);
  }
  const value = doc as unknown as IssuerMetadata;
  discoveryCache.set(issuer, { at: Date.now(), value });
  return value;
}

/**
 * The issuer's signing keys: discovery, then its `jwks_uri`. Cached for five minutes per issuer (unless
 * `fresh`); an unreachable issuer throws a TransientError, for the caller to retry.
 */
export async function fetchIssuerKeys(issuer: string, opts: { fresh?: boolean } = {}): Promise<IssuerKeys> {
  const cached = keyCache.get(issuer);
  // `fresh`: a token signed with a key the cached set lacks may come from a key rotated in since.
  if (cached && !opts.fresh && Date.now() - cached.at < CACHE_MS) return cached.value;
  const { jwks_uri } = await discover(issuer);
  const jwks = (await getJson(jwks_uri, `the signing keys of ${issuer}`)) as { keys?: unknown };
  if (!Array.isArray(jwks.keys)) throw new UserError(`the signing keys of ${issuer} at ${jwks_uri} are not a JWK set; check the issuer URL.`);
  const value: IssuerKeys = { keys: jwks.keys.filter((k): k is Record<string, unknown> => !!k && typeof k === 'object') };
  keyCache.set(issuer, { at: Date.now(), value });
  return value;
}

/** The public members of a JWK: what may be pinned in history (never `d` or any other private part). */
const PUBLIC_MEMBERS = ['kty', 'kid', 'alg', 'use', 'crv', 'x', 'y', 'n', 'e'];
function publicJwk(key: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(PUBLIC_MEMBERS.filter((m) => key[m] !== undefined).map((m) => [m, key[m]]));
}

/** Which key types can verify an algorithm: a key of another type is never tried. */
function keyFits(key: Record<string, unknown>, alg: string): boolean {
  if (key.use !== undefined && key.use !== 'sig') return false;
  if (key.alg !== undefined && key.alg !== alg) return false;
  if (alg === 'RS256' || alg === 'PS256') return key.kty === 'RSA';
  if (alg === 'ES256') return key.kty === 'EC' && key.crv === 'P-256';
  if (alg === 'ES384') return key.kty === 'EC' && key.crv === 'P-384';
  return key.kty === 'OKP' && key.crv === 'Ed25519';
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();
const refuse = (refusal: string): Verification => ({ ok: false, refusal });

export interface VerifyOptions {
  issuer: string;
  /** The client id tiershift signs in as: the token's `aud` must contain it. */
  audience: string;
  /** statementNonce of the decision. */
  nonce: string;
  /** The decision's time: expiry is checked against it, not against the verifier's clock. */
  at: Date;
  groupsClaim: string;
  /** The issuer's JWK set (fetchIssuerKeys), or the key pinned in history for an offline audit. */
  keys: Record<string, unknown>[];
}

/** Who the token names, or one sentence saying why it is refused; never throws, never repeats the token. */
export async function verifyIdToken(token: string, opts: VerifyOptions): Promise<Verification> {
  let header: ReturnType<typeof decodeProtectedHeader>;
  let claims: JWTPayload;
  try {
    header = decodeProtectedHeader(token);
    claims = decodeJwt(token);
  } catch {
    return refuse('the proof is not a well-formed ID token (a signed JWT); sign in with `tiershift login` and run the command again');
  }
  const alg = header.alg ?? '';
  if (!(ALGORITHMS as readonly string[]).includes(alg)) {
    return refuse(`the token is signed with ${alg || 'no algorithm'}, but only ${ALGORITHMS.join(', ')} are accepted; check the identity provider's signing configuration`);
  }
  // The issuer first, though not yet verified: a token from elsewhere can never verify with this issuer's
  // keys, and "another issuer" says what to do where "bad signature" would not.
  if (claims.iss !== opts.issuer) {
    return refuse(`the token was issued by ${String(claims.iss ?? 'nobody')}, but this migration accepts tokens from ${opts.issuer} only; sign in with \`tiershift login\` and try again`);
  }

  const candidates = opts.keys.filter((k) => (header.kid === undefined || k.kid === header.kid) && keyFits(k, alg));
  if (!candidates.length) {
    return refuse(`the token is signed with a key ${opts.issuer} does not publish${header.kid ? ` (kid ${header.kid})` : ''}; sign in with \`tiershift login\` and run the command again`);
  }
  let verified: { key: Record<string, unknown>; payload: JWTPayload } | undefined;
  for (const candidate of candidates) {
    try {
      const key = await importJWK(publicJwk(candidate) as JWK, alg);
      // Time is checked below against `at`, with our sentences; jose checks the signature, iss and alg.
      const { payload } = await jwtVerify(token, key, { algorithms: [alg], issuer: opts.issuer, currentDate: opts.at, clockTolerance: Number.MAX_SAFE_INTEGER });
      verified = { key: candidate, payload };
      break;
    } catch (err) {
      if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JOSENotSupported) continue;
      return refuse('the token is not a valid signed ID token; sign in with `tiershift login` and run the command again');
    }
  }
  if (!verified) return refuse(`the token's signature does not verify with the keys of ${opts.issuer}; it was altered or forged, so run the command again for a fresh one`);
  const { payload } = verified;

  const audiences = Array.isArray(payload.aud) ? payload.aud : payload.aud === undefined ? [] : [payload.aud];
  // With several audiences the authorised party says whose token it is (OIDC Core 3.1.3.7).
  if (!audiences.includes(opts.audience) || (payload.azp !== undefined && payload.azp !== opts.audience)) {
    const holder = typeof payload.azp === 'string' && payload.azp !== opts.audience ? payload.azp : audiences.join(', ') || 'no audience';
    return refuse(`the token is for ${holder}, not ${opts.audience}; sign in to tiershift's client with \`tiershift login\``);
  }
  const now = Math.floor(opts.at.getTime() / 1000);
  // An invalid date would pass every time comparison below.
  if (Number.isNaN(now)) return refuse('the decision has no valid time to check the token against; this is a bug in tiershift, please report it');
  if (typeof payload.exp !== 'number') return refuse('the token carries no expiry time, so it cannot prove a decision; check the identity provider');
  if (now > payload.exp + TOLERANCE_S) return refuse(`the token expired at ${iso(payload.exp)}; run the command again for a fresh one`);
  if (typeof payload.nbf === 'number' && now < payload.nbf - TOLERANCE_S) {
    return refuse(`the token is valid only from ${iso(payload.nbf)}; check the clocks of this machine and of the identity provider, then run the command again`);
  }
  if (payload.nonce !== opts.nonce) {
    return refuse('the token was issued for another decision (another gate, run or migration, or other evidence); run the command again for this one');
  }
  if (typeof payload.sub !== 'string' || !payload.sub) return refuse(`the token names no subject (sub); check the identity provider ${opts.issuer}`);

  const name = typeof payload.name === 'string' ? payload.name : typeof payload.preferred_username === 'string' ? payload.preferred_username : undefined;
  const rawGroups = payload[opts.groupsClaim];
  const groups = Array.isArray(rawGroups) ? rawGroups.filter((g): g is string => typeof g === 'string') : [];
  return {
    ok: true,
    identity: {
      subject: payload.sub,
      ...(name !== undefined ? { name } : {}),
      groups,
      method: 'oidc',
      issuer: opts.issuer,
      key: publicJwk(verified.key),
      proofDigest: sha256Hex(token),
      ...(typeof payload.iat === 'number' ? { issuedAt: iso(payload.iat) } : {}),
      expiresAt: iso(payload.exp),
    },
  };
}
