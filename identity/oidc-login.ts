// The CLI's sign-in: the authorization code flow with PKCE (S256) as a native app (RFC 8252), driven
// over HTTP through the sandbox provider's form, or through the person's browser with a loopback
// redirect. Afterwards every decision asks for a fresh ID token whose nonce is that decision's
// statement digest, silently (`prompt=none`) on the stored provider session.
// Tokens, passwords and cookies are never printed or put into an error message.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { TransientError, UserError } from '../contract/errors';
import { readState, sandboxHome } from '../contract/home';
import { readLogin, writeLogin, type StoredCookie } from './config';
import { discover, fetchIssuerKeys, verifyIdToken, type IssuerMetadata } from './oidc';

/** What tiershift asks for: the person, their display name and their groups, in the ID token. */
export const SCOPES = 'openid profile groups';
const GROUPS_CLAIM = 'groups';
/** The redirect URI registered for the CLI; a native client may use it on any loopback port. */
const REDIRECT_URI = 'http://127.0.0.1/callback';
const HTTP_TIMEOUT_MS = 10_000;
const BROWSER_TIMEOUT_MS = 5 * 60_000;
const MAX_REDIRECTS = 10;

export interface LoginOptions {
  issuer: string;
  clientId: string;
  /** Sign in through the provider's form as this user (the sandbox's); without it, through the browser. */
  user?: string;
  /** The user's password; for the running sandbox's provider it is read from the sandbox's users file. */
  password?: string;
  /** Where the sign-in is kept (default configDir()): the demo and tests keep one per person. */
  configDir?: string;
}

export const notSignedIn = (issuer: string): UserError =>
  new UserError(`you are not signed in to ${issuer} (or your sign-in expired); run \`tiershift login\` and try again.`);

/** A small cookie jar for one issuer: enough for the provider's session and interaction cookies. */
class CookieJar {
  constructor(private cookies: StoredCookie[] = []) {}

  /** Takes the response's Set-Cookie headers; an expired or emptied cookie is removed. */
  store(res: Response, url: URL): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';').map((p) => p.trim());
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const cookie: StoredCookie = { name: pair.slice(0, eq), value: pair.slice(eq + 1), path: defaultPath(url) };
      for (const attribute of attributes) {
        const [key = '', value = ''] = attribute.split('=', 2).map((p) => p.trim());
        const k = key.toLowerCase();
        if (k === 'path' && value.startsWith('/')) cookie.path = value;
        else if (k === 'max-age' && /^-?\d+$/.test(value)) cookie.expires = Date.now() + Number(value) * 1000;
        else if (k === 'expires' && cookie.expires === undefined && !Number.isNaN(Date.parse(value))) cookie.expires = Date.parse(value);
      }
      this.cookies = this.cookies.filter((c) => !(c.name === cookie.name && c.path === cookie.path));
      if (cookie.value !== '' && (cookie.expires === undefined || cookie.expires > Date.now())) this.cookies.push(cookie);
    }
  }

  /** The Cookie header for a request to `url` (of the issuer), or undefined. */
  header(url: URL): string | undefined {
    const now = Date.now();
    const matching = this.cookies.filter((c) => (c.expires === undefined || c.expires > now) && pathMatches(url.pathname, c.path));
    return matching.length ? matching.map((c) => `${c.name}=${c.value}`).join('; ') : undefined;
  }

  live(): StoredCookie[] {
    const now = Date.now();
    return this.cookies.filter((c) => c.expires === undefined || c.expires > now);
  }
}

function defaultPath(url: URL): string {
  const dir = url.pathname.slice(0, url.pathname.lastIndexOf('/'));
  return dir || '/';
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  return requestPath === cookiePath || (requestPath.startsWith(cookiePath) && (cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/'));
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** One authorization request: its URL and what the callback and the token request must match. */
interface Authorization {
  url: URL;
  state: string;
  verifier: string;
  redirectUri: string;
  nonce: string;
}

function authorization(meta: IssuerMetadata, clientId: string, redirectUri: string, nonce: string, prompt?: 'none' | 'login', resource?: { indicator: string; scope: string }): Authorization {
  const { verifier, challenge } = pkce();
  const state = randomBytes(16).toString('base64url');
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: clientId,
    redirect_uri: redirectUri,
    response_type: 'code',
    scope: resource ? `openid ${resource.scope}` : SCOPES,
    ...(resource ? { resource: resource.indicator } : {}),
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(prompt ? { prompt } : {}),
  }).toString();
  return { url, state, verifier, redirectUri, nonce };
}

async function request(issuer: string, url: URL, init: RequestInit, jar?: CookieJar): Promise<Response> {
  const headers = new Headers(init.headers);
  const cookie = jar?.header(url);
  if (cookie) headers.set('cookie', cookie);
  let res: Response;
  try {
    res = await fetch(url, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  } catch (err) {
    const reason = err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw new TransientError(`could not reach the identity provider ${issuer} (${reason}); check that it is up and try again.`);
  }
  jar?.store(res, url);
  return res;
}

const sameEndpoint = (a: URL, b: URL) => a.origin === b.origin && a.pathname === b.pathname;

/**
 * Follows the provider's redirects by hand (so each one's cookies are kept) until the Location is the
 * redirect URI, which is never fetched: its query carries the code. A page instead means the provider
 * wants the person (the sign-in form).
 */
async function follow(issuer: string, first: Response, firstUrl: URL, redirectUri: string, jar: CookieJar): Promise<{ callback: URL } | { page: Response; url: URL }> {
  const redirect = new URL(redirectUri);
  let url = firstUrl;
  let res = first;
  for (let hops = 0; ; hops++) {
    if (res.status < 300 || res.status >= 400) return { page: res, url };
    const location = res.headers.get('location');
    if (!location) throw new UserError(`the identity provider ${issuer} answered a redirect without a location; check the issuer URL.`);
    const next = new URL(location, url);
    await res.body?.cancel();
    if (sameEndpoint(next, redirect)) return { callback: next };
    if (next.origin !== new URL(issuer).origin) {
      throw new UserError(`the identity provider ${issuer} sent the sign-in to ${next.origin}, which tiershift cannot follow; sign in through the browser instead.`);
    }
    if (hops >= MAX_REDIRECTS) throw new UserError(`the identity provider ${issuer} redirected more than ${MAX_REDIRECTS} times; check the issuer URL.`);
    url = next;
    res = await request(issuer, url, {}, jar);
  }
}

/** The authorization code from the callback; the provider's refusal as one sentence. */
function codeFrom(issuer: string, callback: URL, auth: Authorization): string {
  const params = callback.searchParams;
  const error = params.get('error');
  if (error) {
    if (['login_required', 'interaction_required', 'consent_required', 'account_selection_required'].includes(error)) throw notSignedIn(issuer);
    const description = params.get('error_description');
    throw new UserError(`the identity provider ${issuer} refused the sign-in (${error}${description ? `: ${description}` : ''}); run \`tiershift login\` and try again.`);
  }
  // RFC 9207: a callback naming another issuer is a mix-up, whatever it carries.
  const iss = params.get('iss');
  if (iss !== null && iss !== issuer) throw new UserError(`the sign-in came back from ${iss}, not ${issuer}; start it again with \`tiershift login\`.`);
  if (params.get('state') !== auth.state) throw new UserError(`the sign-in answer does not belong to this sign-in (its state differs); start it again with \`tiershift login\`.`);
  const code = params.get('code');
  if (!code) throw new UserError(`the identity provider ${issuer} returned no authorization code; run \`tiershift login\` and try again.`);
  return code;
}

/** Exchanges the code (with the PKCE verifier) for an ID token, and checks the token before anyone relies on it. */
async function tokenFor(issuer: string, meta: IssuerMetadata, clientId: string, code: string, auth: Authorization): Promise<{ token: string; subject: string; name?: string }> {
  const res = await request(issuer, new URL(meta.token_endpoint), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: auth.redirectUri, client_id: clientId, code_verifier: auth.verifier }),
  });
  const body = (await res.json().catch(() => ({}))) as { id_token?: unknown; error?: unknown; error_description?: unknown };
  if (!res.ok || typeof body.id_token !== 'string') {
    const why = typeof body.error === 'string' ? `${body.error}${typeof body.error_description === 'string' ? `: ${body.error_description}` : ''}` : `HTTP ${res.status}`;
    throw new UserError(`the identity provider ${issuer} issued no ID token (${why}); run \`tiershift login\` and try again.`);
  }
  const check = async (fresh: boolean) =>
    verifyIdToken(body.id_token as string, { issuer, audience: clientId, nonce: auth.nonce, at: new Date(), groupsClaim: GROUPS_CLAIM, keys: (await fetchIssuerKeys(issuer, { fresh })).keys });
  // Once more with the keys fetched afresh: the provider may have rotated its key since they were cached.
  let verified = await check(false);
  if (!verified.ok) verified = await check(true);
  if (!verified.ok) throw new UserError(`${verified.refusal}.`);
  const { subject, name } = verified.identity;
  return { token: body.id_token, subject, ...(name !== undefined ? { name } : {}) };
}

/** The password of a sandbox user, when `issuer` is the running sandbox's own provider. */
function sandboxPassword(issuer: string, user: string): string {
  const idp = readState(sandboxHome())?.idp;
  if (idp?.issuer !== issuer) {
    throw new UserError(`no password was given for ${user} at ${issuer}; pass one, or sign in through the browser without a user name.`);
  }
  const users = JSON.parse(readFileSync(idp.usersFile, 'utf8')) as Record<string, { password?: string }>;
  const password = Object.hasOwn(users, user) ? users[user]?.password : undefined;
  if (!password) throw new UserError(`the sandbox has no user ${user}; sign in as one of ${Object.keys(users).join(', ')}.`);
  return password;
}

/** Signs in through the provider's own form over HTTP: the sandbox's, whose form is a plain username and password. */
async function formSignIn(issuer: string, meta: IssuerMetadata, clientId: string, user: string, password: string, jar: CookieJar) {
  const auth = authorization(meta, clientId, REDIRECT_URI, randomBytes(16).toString('base64url'), 'login');
  let step = await follow(issuer, await request(issuer, auth.url, {}, jar), auth.url, REDIRECT_URI, jar);
  if ('page' in step) {
    const html = await step.page.text();
    const action = /<form\b[^>]*\baction="([^"]+)"/i.exec(html)?.[1];
    if (!action || !/name="password"/.test(html)) {
      throw new UserError(`the identity provider ${issuer} shows no username and password form; sign in through the browser without a user name.`);
    }
    const target = new URL(action.replace(/&amp;/g, '&'), step.url);
    const res = await request(issuer, target, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ username: user, password }),
    }, jar);
    if (res.status === 401 || res.status === 200) {
      await res.body?.cancel();
      throw new UserError(`${issuer} refused the user name or password for ${user}; check them and run \`tiershift login\` again.`);
    }
    step = await follow(issuer, res, target, REDIRECT_URI, jar);
    if ('page' in step) {
      await step.page.body?.cancel();
      throw new UserError(`the identity provider ${issuer} asked for more than a password (HTTP ${step.page.status}); sign in through the browser without a user name.`);
    }
  }
  return tokenFor(issuer, meta, clientId, codeFrom(issuer, step.callback, auth), auth);
}

/** Whether a person can complete a browser sign-in here: someone at a terminal. */
function interactive(): boolean {
  return Boolean(process.stdin.isTTY && process.stderr.isTTY) && !process.env.CI;
}

/** The browser flow: a one-shot loopback listener for the callback (RFC 8252 section 7.3). */
async function browserSignIn(issuer: string, meta: IssuerMetadata, clientId: string, nonce: string) {
  const server = http.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  try {
    const { port } = server.address() as AddressInfo;
    const redirectUri = `http://127.0.0.1:${port}/callback`;
    const auth = authorization(meta, clientId, redirectUri, nonce);
    const callback = new Promise<URL>((resolve, reject) => {
      const timer = setTimeout(() => reject(new UserError(`the sign-in at ${issuer} was not completed within 5 minutes; run the command again.`)), BROWSER_TIMEOUT_MS);
      server.on('request', (req, res) => {
        const url = new URL(req.url ?? '/', redirectUri);
        if (url.pathname !== '/callback' || url.searchParams.get('state') !== auth.state) {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('Not the tiershift sign-in.\n');
          return;
        }
        const failed = url.searchParams.has('error');
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(
          `<!doctype html><p>${failed ? 'The sign-in failed; see the terminal.' : 'Signed in to tiershift; you can close this window.'}</p>\n`,
        );
        clearTimeout(timer);
        resolve(url);
      });
    });
    process.stderr.write(`Sign in to ${issuer} in your browser:\n  ${auth.url.href}\n`);
    // TIERSHIFT_NO_BROWSER: over SSH, or in tests, the URL is opened elsewhere.
    if (!process.env.TIERSHIFT_NO_BROWSER) {
      const opener = spawn('xdg-open', [auth.url.href], { stdio: 'ignore', detached: true });
      opener.on('error', () => undefined);
      opener.unref();
    }
    const url = await callback;
    return await tokenFor(issuer, meta, clientId, codeFrom(issuer, url, auth), auth);
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

/**
 * Signs in to `issuer` as tiershift's client `clientId` and remembers it in the login file. With `user`,
 * through the provider's form (the sandbox's); without it, through the browser.
 */
export async function login(opts: LoginOptions): Promise<{ subject: string; name?: string }> {
  const meta = await discover(opts.issuer);
  if (opts.user !== undefined) {
    const password = opts.password ?? sandboxPassword(opts.issuer, opts.user);
    const jar = new CookieJar();
    const { subject, name } = await formSignIn(opts.issuer, meta, opts.clientId, opts.user, password, jar);
    writeLogin(opts.issuer, { clientId: opts.clientId, subject, ...(name !== undefined ? { name } : {}), signedInAt: new Date().toISOString(), cookies: jar.live() }, opts.configDir);
    return { subject, ...(name !== undefined ? { name } : {}) };
  }
  const { subject, name } = await browserSignIn(opts.issuer, meta, opts.clientId, randomBytes(16).toString('base64url'));
  // The browser keeps the provider's session: later tokens come through the browser again, signed in already.
  writeLogin(opts.issuer, { clientId: opts.clientId, subject, ...(name !== undefined ? { name } : {}), signedInAt: new Date().toISOString() }, opts.configDir);
  return { subject, ...(name !== undefined ? { name } : {}) };
}

/**
 * An authorization code on the stored session, without a browser (`prompt=none`), for an ID token with `nonce`
 * or, with `resource`, an access token for that resource server; the person is asked to sign in when the
 * provider's session is gone.
 */
async function silentCode(
  opts: { issuer: string; clientId: string; configDir?: string },
  stored: NonNullable<ReturnType<typeof readLogin>>,
  nonce: string,
  resource?: { indicator: string; scope: string },
): Promise<{ meta: IssuerMetadata; auth: Authorization; code: string }> {
  const meta = await discover(opts.issuer);
  const jar = new CookieJar(stored.cookies ?? []);
  const auth = authorization(meta, opts.clientId, REDIRECT_URI, nonce, 'none', resource);
  const step = await follow(opts.issuer, await request(opts.issuer, auth.url, {}, jar), auth.url, REDIRECT_URI, jar);
  if ('page' in step) {
    await step.page.body?.cancel();
    throw notSignedIn(opts.issuer);
  }
  const code = codeFrom(opts.issuer, step.callback, auth);
  // The provider may have renewed its cookies: keep the latest.
  writeLogin(opts.issuer, { ...stored, cookies: jar.live() }, opts.configDir);
  return { meta, auth, code };
}

/**
 * A fresh ID token from `issuer` for `clientId` whose `nonce` claim is `nonce` (a decision's statementNonce).
 * Silently on the stored session; through the browser when there is none and a person is at the terminal.
 */
export async function idTokenFor(opts: { issuer: string; clientId: string; nonce: string; configDir?: string }): Promise<string> {
  const stored = readLogin(opts.issuer, opts.configDir);
  if (stored?.cookies?.length) {
    const { meta, auth, code } = await silentCode(opts, stored, opts.nonce);
    return (await tokenFor(opts.issuer, meta, opts.clientId, code, auth)).token;
  }
  if (stored && interactive()) return (await browserSignIn(opts.issuer, await discover(opts.issuer), opts.clientId, opts.nonce)).token;
  throw notSignedIn(opts.issuer);
}

/**
 * An access token for a resource server (RFC 8707) as the signed-in person, silently on the stored session:
 * for the sandbox's Temporal frontend, a JWT whose `permissions` claim the provider derives from the person's
 * groups, to pass as `--api-key`. Never printed here, nor kept.
 */
export async function accessTokenFor(opts: { issuer: string; clientId: string; resource: string; scope: string; configDir?: string }): Promise<string> {
  const stored = readLogin(opts.issuer, opts.configDir);
  if (!stored?.cookies?.length) throw notSignedIn(opts.issuer);
  const { meta, auth, code } = await silentCode(opts, stored, randomBytes(16).toString('base64url'), { indicator: opts.resource, scope: opts.scope });
  const res = await request(opts.issuer, new URL(meta.token_endpoint), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: auth.redirectUri, client_id: opts.clientId, code_verifier: auth.verifier, resource: opts.resource }),
  });
  const body = (await res.json().catch(() => ({}))) as { access_token?: unknown; error?: unknown; error_description?: unknown };
  if (!res.ok || typeof body.access_token !== 'string') {
    const why = typeof body.error === 'string' ? `${body.error}${typeof body.error_description === 'string' ? `: ${body.error_description}` : ''}` : `HTTP ${res.status}`;
    throw new UserError(`the identity provider ${opts.issuer} issued no access token for ${opts.resource} (${why}); run \`tiershift login\` and try again.`);
  }
  return body.access_token;
}
