// Signing in to the sandbox's real OpenID provider and verifying the ID tokens decisions carry: the
// happy path (alice, her groups, the key pinned), and each way a token must be refused, one sentence each.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { sha256Hex } from '../contract/digest';
import { TransientError, UserError } from '../contract/errors';
import { readState, sandboxHome } from '../contract/home';
import { statementNonce, type DecisionStatement, type Verification } from '../contract/identity';
import { findFreePort } from '../sandbox';
import { loginFile } from '../identity/config';
import { fetchIssuerKeys, verifyIdToken, type VerifyOptions } from '../identity/oidc';
import { idTokenFor, login } from '../identity/oidc-login';

const idp = readState(sandboxHome())?.idp;
if (!idp) throw new Error('the run sandbox has no identity provider');
const issuer = idp.issuer;
const users = JSON.parse(readFileSync(idp.usersFile, 'utf8')) as Record<string, { password: string }>;
const signingKey = (JSON.parse(readFileSync(path.join(path.dirname(idp.usersFile), 'jwks.json'), 'utf8')) as { keys: (JWK & { kid: string })[] }).keys[0]!;

const statement = (gate: string): DecisionStatement => ({ v: 1, migration: 'test-oidc', run: 'run-1', action: 'approve', gate, planHash: 'a'.repeat(64), evidence: 'b'.repeat(64) });
const nonceA = statementNonce(statement('cutover'));
const nonceB = statementNonce(statement('rollback-window'));

// A test never opens a browser; it plays the browser itself (browse below).
process.env.TIERSHIFT_NO_BROWSER = '1';
const dirs: string[] = [];
/** Every test signs in afresh: a config directory of its own. */
beforeEach(() => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-config-'));
  dirs.push(dir);
  process.env.TIERSHIFT_CONFIG_DIR = dir;
});
afterEach(() => vi.restoreAllMocks());
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function verify(token: string, overrides: Partial<VerifyOptions> = {}): Promise<Verification> {
  const { keys } = await fetchIssuerKeys(issuer);
  return verifyIdToken(token, { issuer, audience: 'tiershift', nonce: nonceA, at: new Date(), groupsClaim: 'groups', keys, ...overrides });
}

/** A refusal: one sentence that says what to do, and never the token itself. */
function expectRefusal(result: Verification, token: string, sentence: string | RegExp): void {
  expect(result.ok).toBe(false);
  const refusal = result.ok ? '' : result.refusal;
  if (typeof sentence === 'string') expect(refusal).toBe(sentence);
  else expect(refusal).toMatch(sentence);
  expect(refusal).not.toContain(token);
  // One sentence: no line break, no full stop inside.
  expect(refusal).not.toMatch(/\n|\.\s/);
}

/** A token minted here with the sandbox provider's own private key: what it would issue, with chosen claims. */
async function mint(claims: Record<string, unknown>, times: { iat: number; exp: number }, key: JWK = signingKey, kid = signingKey.kid): Promise<string> {
  return new SignJWT({ sub: 'alice', aud: 'tiershift', nonce: nonceA, ...claims })
    .setProtectedHeader({ alg: 'ES256', kid })
    .setIssuer(String(claims.iss ?? issuer))
    .setIssuedAt(times.iat)
    .setExpirationTime(times.exp)
    .sign(await importJWK(key, 'ES256'));
}

/** A minimal browser: follows redirects with its cookies, fills in the sign-in form, ends at the loopback callback. */
async function browse(start: URL, user: string, password: string): Promise<void> {
  const cookies = new Map<string, string>();
  let url = start;
  let init: RequestInit = {};
  for (let hops = 0; hops < 20; hops++) {
    if (url.origin !== new URL(issuer).origin) {
      // The CLI's listener: the browser delivers the code there.
      expect((await fetch(url)).status).toBe(200);
      return;
    }
    const headers = new Headers(init.headers);
    headers.set('cookie', [...cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(url, { ...init, headers, redirect: 'manual' });
    for (const line of res.headers.getSetCookie()) {
      const [pair = ''] = line.split(';');
      const eq = pair.indexOf('=');
      cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
    }
    init = {};
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.headers.get('location')!, url);
      continue;
    }
    const action = /<form\b[^>]*\baction="([^"]+)"/.exec(await res.text())?.[1];
    expect(action, `a sign-in form at ${url.pathname}`).toBeDefined();
    url = new URL(action!, url);
    init = { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ username: user, password }) };
  }
  throw new Error('the sign-in did not reach the callback');
}

describe('OpenID Connect sign-in and verification', () => {
  it('alice signs in with the sandbox password; a token for a decision verifies as her, with her groups and the key pinned', async () => {
    // No password given: the sandbox's own provider, so the CLI reads it from the sandbox's users file.
    expect(await login({ issuer, clientId: 'tiershift', user: 'alice' })).toEqual({ subject: 'alice', name: 'Alice Example' });
    const file = loginFile();
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).not.toContain(users.alice!.password);

    const token = await idTokenFor({ issuer, clientId: 'tiershift', nonce: nonceA });
    const result = await verify(token);
    if (!result.ok) throw new Error(result.refusal);
    const { d: _private, ...publicKey } = signingKey;
    expect(result.identity).toMatchObject({ subject: 'alice', name: 'Alice Example', groups: ['sre', 'dba'], method: 'oidc', issuer, key: publicKey, proofDigest: sha256Hex(token) });
    expect(result.identity.key).not.toHaveProperty('d');
    // Realistic lifetime: ten minutes.
    expect(Date.parse(result.identity.expiresAt!) - Date.parse(result.identity.issuedAt!)).toBe(600_000);
    // The pinned key alone verifies it again: what an offline audit has.
    expect((await verify(token, { keys: [result.identity.key!] })).ok).toBe(true);
  });

  it('a wrong password is refused with one sentence, and nothing is remembered', async () => {
    const wrong = `${users.bob!.password}x`;
    const error = await login({ issuer, clientId: 'tiershift', user: 'bob', password: wrong }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toBe(`${issuer} refused the user name or password for bob; check them and run \`tiershift login\` again.`);
    expect((error as Error).message).not.toContain(wrong);
    await expect(idTokenFor({ issuer, clientId: 'tiershift', nonce: nonceA })).rejects.toThrow(/you are not signed in/);
  });

  it('a token of another client (other-app) is refused for its audience', async () => {
    await login({ issuer, clientId: 'tiershift', user: 'carol' });
    // The provider session is the person's: another client of the same issuer gets a token silently.
    const token = await idTokenFor({ issuer, clientId: 'other-app', nonce: nonceA });
    expectRefusal(await verify(token), token, "the token is for other-app, not tiershift; sign in to tiershift's client with `tiershift login`");
    expect((await verify(token, { audience: 'other-app' })).ok).toBe(true);
  });

  it('an expired token is refused, judged at the decision time rather than by the wall clock', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await mint({}, { iat: now - 1200, exp: now - 600 });
    expectRefusal(await verify(token), token, `the token expired at ${new Date((now - 600) * 1000).toISOString()}; run the command again for a fresh one`);
    // Within the 60 s tolerance it still passes; at a decision time inside its lifetime, too.
    expect((await verify(token, { at: new Date((now - 600 + 50) * 1000) })).ok).toBe(true);
    expect((await verify(token, { at: new Date((now - 900) * 1000) })).ok).toBe(true);
  });

  it('a token from another issuer is refused, and one forged in the sandbox issuer name does not verify', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const foreign = await exportJWK(privateKey);
    const now = Math.floor(Date.now() / 1000);
    const elsewhere = 'http://127.0.0.1:1/elsewhere';
    const other = await mint({ iss: elsewhere }, { iat: now, exp: now + 600 }, foreign, 'foreign');
    expectRefusal(await verify(other), other, `the token was issued by ${elsewhere}, but this migration accepts tokens from ${issuer} only; sign in with \`tiershift login\` and try again`);
    // The sandbox's issuer and even its key id, but another key: the signature gives it away.
    const forged = await mint({}, { iat: now, exp: now + 600 }, foreign);
    expectRefusal(await verify(forged), forged, /^the token's signature does not verify with the keys of /);
    const unknownKid = await mint({}, { iat: now, exp: now + 600 }, foreign, 'foreign');
    expectRefusal(await verify(unknownKid), unknownKid, /^the token is signed with a key .* does not publish \(kid foreign\)/);
    expectRefusal(await verify('not.a.jwt'), 'not.a.jwt', /^the proof is not a well-formed ID token/);
  });

  it('a token issued for another decision (another nonce) is refused', async () => {
    await login({ issuer, clientId: 'tiershift', user: 'alice' });
    const token = await idTokenFor({ issuer, clientId: 'tiershift', nonce: nonceA });
    expect((await verify(token, { nonce: nonceA })).ok).toBe(true);
    expectRefusal(
      await verify(token, { nonce: nonceB }),
      token,
      'the token was issued for another decision (another gate, run or migration, or other evidence); run the command again for this one',
    );
  });

  it('idTokenFor without a sign-in is a UserError saying to run `tiershift login`', async () => {
    const error = await idTokenFor({ issuer, clientId: 'tiershift', nonce: nonceA }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
    expect((error as Error).message).toBe(`you are not signed in to ${issuer} (or your sign-in expired); run \`tiershift login\` and try again.`);
  });

  it('a second idTokenFor reuses the provider session: prompt=none, no sign-in form', async () => {
    await login({ issuer, clientId: 'tiershift', user: 'bob' });
    const requests: { url: string; method: string }[] = [];
    const realFetch = globalThis.fetch;
    vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      requests.push({ url: String(input instanceof Request ? input.url : input), method: init?.method ?? 'GET' });
      return realFetch(input, init);
    });
    const first = await idTokenFor({ issuer, clientId: 'tiershift', nonce: nonceA });
    const second = await idTokenFor({ issuer, clientId: 'tiershift', nonce: nonceB });
    expect(second).not.toBe(first);
    for (const [token, nonce] of [[first, nonceA], [second, nonceB]] as const) {
      const result = await verify(token, { nonce });
      expect(result.ok && result.identity.subject).toBe('bob');
    }
    const paths = requests.map((r) => `${r.method} ${new URL(r.url).pathname}`);
    expect(paths.filter((p) => p.includes('/interaction/'))).toEqual([]);
    const authorizations = requests.filter((r) => new URL(r.url).pathname === '/auth').map((r) => new URL(r.url).searchParams);
    expect(authorizations).toHaveLength(2);
    for (const params of authorizations) expect(params.get('prompt')).toBe('none');
    expect(paths.filter((p) => p === 'POST /token')).toHaveLength(2);
  });

  it('without a user name, signs in through the browser: the URL on stderr, the code on a loopback listener', async () => {
    let printed = '';
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      printed += String(chunk);
      return true;
    });
    const signedIn = login({ issuer, clientId: 'tiershift' });
    await vi.waitFor(() => expect(printed).toMatch(/\/auth\?/));
    const url = new URL(/(http\S+\/auth\?\S+)/.exec(printed)![1]!);
    expect(url.searchParams.get('redirect_uri')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    expect(url.searchParams.get('code_challenge_method')).toBe('S256');
    await browse(url, 'carol', users.carol!.password);
    expect(await signedIn).toEqual({ subject: 'carol', name: 'Carol Example' });
    // The browser keeps the provider session; without a terminal there is no browser to ask again.
    expect(JSON.parse(readFileSync(loginFile(), 'utf8'))[issuer]).not.toHaveProperty('cookies');
    await expect(idTokenFor({ issuer, clientId: 'tiershift', nonce: nonceA })).rejects.toThrow(/you are not signed in/);
  });

  it('fetchIssuerKeys: an unreachable issuer throws a TransientError; an issuer spelt differently is refused', async () => {
    const closed = `http://127.0.0.1:${await findFreePort()}`;
    await expect(fetchIssuerKeys(closed)).rejects.toBeInstanceOf(TransientError);
    const error = await fetchIssuerKeys(`${issuer}/`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UserError);
    expect(error).not.toBeInstanceOf(TransientError);
    expect((error as Error).message).toBe(`the identity provider at ${issuer}/ calls itself ${issuer}; set the issuer to exactly that.`);
    expect((await fetchIssuerKeys(issuer)).keys.map((k) => k.kid)).toEqual([signingKey.kid]);
  });
});
