// The sandbox's OpenID provider process: oidc-provider on 127.0.0.1 with the sandbox's users, its
// ES256 signing key, a plain sign-in form of our own (devInteractions off), and consent granted by
// itself for tiershift's first-party clients. Started detached by sandbox/idp.ts; configured by env.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import Provider, { errors, interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { PERMISSIONS_CLAIM, permissionsForGroups, SANDBOX_CLIENTS, TEMPORAL_AUDIENCE, TEMPORAL_SCOPE, type IdpClientSecrets } from '../contract/temporal-auth';
import type { IdpUsers } from './idp';

const HOST = process.env.IDP_HOST ?? '127.0.0.1';
const PORT = Number(process.env.IDP_PORT);
const ISSUER = process.env.IDP_ISSUER ?? `http://${HOST}:${PORT}`;
const DIR = process.env.IDP_DIR;
if (!DIR || !Number.isInteger(PORT) || PORT < 1) {
  console.error('idp: IDP_DIR and IDP_PORT are required');
  process.exit(2);
}

const users = JSON.parse(readFileSync(path.join(DIR, 'users.json'), 'utf8')) as IdpUsers;
const clientSecrets = JSON.parse(readFileSync(path.join(DIR, 'clients.json'), 'utf8')) as IdpClientSecrets;
const jwks = JSON.parse(readFileSync(path.join(DIR, 'jwks.json'), 'utf8')) as { keys: Record<string, unknown>[] };

/** tiershift's own clients: public native apps (a CLI), PKCE, any loopback port (RFC 8252). */
const FIRST_PARTY = ['tiershift', 'other-app'];
const SCOPES = `openid profile groups ${TEMPORAL_SCOPE}`;
/** What each confidential client's tokens for the Temporal frontend may do (contract/temporal-auth.ts). */
const CLIENT_PERMISSIONS = new Map<string, readonly string[]>(Object.values(SANDBOX_CLIENTS).map((c) => [c.clientId, c.permissions]));

/**
 * The default policy, less its consent prompt for every native-client request: that prompt guards against
 * another local program posing as a third-party native app, but here consent is implied (every client is
 * ours), and the CLI must get a fresh token per decision silently (`prompt=none`) on the session.
 */
function policy(): interactionPolicy.DefaultPolicy {
  const prompts = interactionPolicy.base();
  prompts.get('consent')?.checks.remove('native_client_prompt');
  return prompts;
}

const configuration: Configuration = {
  clients: [
    ...FIRST_PARTY.map((client_id) => ({
      client_id,
      application_type: 'native' as const,
      token_endpoint_auth_method: 'none' as const,
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code'],
      response_types: ['code' as const],
      scope: SCOPES,
      id_token_signed_response_alg: 'ES256' as const,
    })),
    // The sandbox's service accounts: the client credentials grant only, for tokens to the Temporal frontend.
    ...[...CLIENT_PERMISSIONS.keys()].map((client_id) => ({
      client_id,
      client_secret: clientSecrets[client_id]?.secret ?? '',
      token_endpoint_auth_method: 'client_secret_basic' as const,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: TEMPORAL_SCOPE,
      // The provider's only key is ES256; a client's default (RS256) would have none to sign with.
      id_token_signed_response_alg: 'ES256' as const,
    })),
  ],
  jwks: jwks as Configuration['jwks'],
  // Session cookies are signed with a key of this process: the sessions themselves live in its memory.
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  responseTypes: ['code'],
  pkce: { required: () => true },
  // `temporal` is the Temporal resource server's scope: a client may ask for it (with `resource`).
  scopes: ['openid', TEMPORAL_SCOPE],
  claims: {
    acr: null,
    sid: null,
    auth_time: null,
    iss: null,
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // The CLI only ever sees the ID token: who decided must be in it, not only behind userinfo.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // The Temporal frontend is a resource server (RFC 8707): a token asked for it is a JWT with its audience,
    // signed with the provider's key, which the server verifies against this provider's JWKS.
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf ?? undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resourceIndicator) => {
        if (resourceIndicator !== TEMPORAL_AUDIENCE) throw new errors.InvalidTarget(`the only resource here is ${TEMPORAL_AUDIENCE}`);
        return { scope: TEMPORAL_SCOPE, audience: TEMPORAL_AUDIENCE, accessTokenTTL: 600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
      },
    },
  },
  // Temporal's default claim mapper reads `permissions` (<namespace>:<role>): a person's come from their
  // groups, a service client's from contract/temporal-auth.ts. Only tokens for the Temporal frontend carry it.
  extraTokenClaims(_ctx, token) {
    if (token.resourceServer?.audience !== TEMPORAL_AUDIENCE) return undefined;
    if (token.kind === 'ClientCredentials') return { [PERMISSIONS_CLAIM]: [...(CLIENT_PERMISSIONS.get(token.clientId ?? '') ?? [])] };
    const accountId = 'accountId' in token ? (token.accountId as string | undefined) : undefined;
    const user = accountId && Object.hasOwn(users, accountId) ? users[accountId] : undefined;
    return { [PERMISSIONS_CLAIM]: user ? permissionsForGroups(user.groups) : [] };
  },
  interactions: { policy: policy(), url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: {
    IdToken: 600,
    AccessToken: 600,
    ClientCredentials: 600,
    AuthorizationCode: 60,
    Interaction: 600,
    Session: 86_400,
    Grant: 86_400,
  },
  async findAccount(_ctx, sub) {
    const user = Object.hasOwn(users, sub) ? users[sub] : undefined;
    if (!user) return undefined;
    return {
      accountId: sub,
      claims: () => ({ sub, name: user.name, preferred_username: sub, groups: user.groups }),
    };
  },
  // Consent is implied for tiershift's own clients: the grant covers what they asked for, so that
  // `prompt=none` works for every one of them once the person has signed in.
  async loadExistingGrant(ctx: KoaContextWithOIDC) {
    const { client, session } = ctx.oidc;
    if (!client || !session?.accountId || !FIRST_PARTY.includes(client.clientId)) return undefined;
    const existingId = ctx.oidc.result?.consent?.grantId ?? session.grantIdFor(client.clientId);
    const existing = existingId ? await ctx.oidc.provider.Grant.find(existingId) : undefined;
    const grant = existing ?? new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
    // A token for the Temporal frontend, when asked for with `resource`: its permissions come from the person's groups.
    for (const [indicator, server] of Object.entries(ctx.oidc.resourceServers ?? {})) grant.addResourceScope(indicator, server.scope);
    await grant.save();
    return grant;
  },
};

const provider = new Provider(ISSUER, configuration);
provider.on('server_error', (_ctx, err) => console.error(`idp: server error: ${err.message}`));
const oidc = provider.callback();

const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid: string, client: string, error?: string, username = ''): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in to the tiershift sandbox</title></head>
<body>
<h1>Sign in</h1>
<p>${escape(client)} asks who you are.</p>
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label>User <input name="username" value="${escape(username)}" autofocus required></label>
<label>Password <input name="password" type="password" required></label>
<button type="submit">Sign in</button>
</form>
</body></html>
`;
}

function send(res: http.ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  let body = '';
  for await (const chunk of req) {
    body += String(chunk);
    if (body.length > 8_192) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

function passwordMatches(user: string, password: string): boolean {
  const expected = Object.hasOwn(users, user) ? users[user]!.password : undefined;
  if (!expected) return false;
  const a = Buffer.from(password);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The sign-in form: shown for the `login` prompt, checked against users.json. */
async function interaction(req: http.IncomingMessage, res: http.ServerResponse, pathname: string): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  const client = String(details.params.client_id ?? 'an application');
  if (details.prompt.name !== 'login') {
    // loadExistingGrant grants first-party clients what they ask for; any other prompt is not ours to answer.
    await provider.interactionFinished(req, res, { error: 'access_denied', error_description: `${details.prompt.name} is not supported here` }, { mergeWithLastSubmission: false });
    return;
  }
  if (req.method === 'GET' && pathname === `/interaction/${details.uid}`) return send(res, 200, loginPage(details.uid, client));
  if (req.method === 'POST' && pathname === `/interaction/${details.uid}/login`) {
    const form = await readForm(req);
    const username = form.get('username') ?? '';
    if (!passwordMatches(username, form.get('password') ?? '')) {
      // 401 with the form again: a person retypes, the CLI reports it in one sentence.
      return send(res, 401, loginPage(details.uid, client, 'Unknown user or wrong password.', username));
    }
    await provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
    return;
  }
  send(res, 404, '<!doctype html><p>Not found.</p>');
}

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url ?? '/', ISSUER);
  if (!pathname.startsWith('/interaction/')) {
    void oidc(req, res);
    return;
  }
  interaction(req, res, pathname).catch((err: unknown) => {
    // An expired or unknown interaction (a stale tab): say so, and where to start again.
    console.error(`idp: interaction failed: ${err instanceof Error ? err.message : String(err)}`);
    if (!res.headersSent) send(res, 400, '<!doctype html><p>This sign-in has expired or is unknown; start it again from tiershift.</p>');
  });
});

server.listen(PORT, HOST, () => console.log(`idp: ${ISSUER} listening`));
const stop = () => {
  server.close(() => process.exit(0));
  // Connections a client keeps open must not hold the stop up.
  setTimeout(() => process.exit(0), 2_000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
