// Tokens for Temporal's JWT authorizer from the run sandbox's real identity provider: what the service
// client's token carries (what Temporal's default claim mapper reads), a person's permissions from their
// groups, and the renewal a long-running worker relies on. test/temporal-cluster.test.ts has the server's side.
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { readState, sandboxHome } from '../contract/home';
import { idpClientsFile, permissionsForGroups, sandboxToken, TEMPORAL_AUDIENCE, TEMPORAL_SCOPE, tokenSubject, type SandboxAuth } from '../contract/temporal-auth';
import { accessTokenFor, login } from '../identity/oidc-login';

const home = sandboxHome();
const idp = readState(home)?.idp;
if (!idp) throw new Error('the run sandbox has no identity provider');
const auth: SandboxAuth = { issuer: idp.issuer, audience: TEMPORAL_AUDIENCE, clientsFile: idpClientsFile(home) };
const jwks = createRemoteJWKSet(new URL(`${idp.issuer}/jwks`));
/** Verified as Temporal's claim mapper verifies it: the provider's key, the frontend's audience, not expired. */
const verify = async (token: string) => (await jwtVerify(token, jwks, { issuer: idp.issuer, audience: TEMPORAL_AUDIENCE })).payload;

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('tokens for the Temporal frontend', () => {
  it("the service client's token (client credentials) is a JWT for the frontend with default:write; its secret is kept 0600", async () => {
    expect(statSync(auth.clientsFile).mode & 0o777).toBe(0o600);
    const source = await sandboxToken(auth, 'service');
    source.stop();
    const claims = await verify(source.current());
    expect(claims).toMatchObject({ sub: 'tiershift-sandbox', permissions: ['default:write'], scope: TEMPORAL_SCOPE });
    expect(claims.exp! - claims.iat!).toBe(600);
    const admin = await sandboxToken(auth, 'admin');
    admin.stop();
    expect(await verify(admin.current())).toMatchObject({ sub: 'tiershift-sandbox-admin', permissions: ['temporal-system:admin'] });
  });

  it('a wrong client secret gets no token, in one sentence that does not quote the secret', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-clients-'));
    dirs.push(dir);
    const file = path.join(dir, 'clients.json');
    const wrong = { 'tiershift-sandbox': { secret: 'not-the-secret-0123456789' } };
    writeFileSync(file, JSON.stringify(wrong));
    const error = (await sandboxToken({ ...auth, clientsFile: file }, 'service').then(
      () => new Error('a token was issued'),
      (e: unknown) => e,
    )) as Error;
    expect(error.message).toBe(`the sandbox's identity provider ${idp.issuer} issued no Temporal token to tiershift-sandbox (invalid_client); run \`tiershift sandbox up\` again.`);
    expect(error.message).not.toContain('not-the-secret');
  });

  it("a person's access token carries the permissions of their groups: alice writes, carol reads", async () => {
    const users = JSON.parse(readFileSync(idp.usersFile, 'utf8')) as Record<string, { password: string; groups: string[] }>;
    for (const [user, permissions] of [['alice', ['default:write']], ['carol', ['default:read']]] as const) {
      const configDir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-config-'));
      dirs.push(configDir);
      await login({ issuer: idp.issuer, clientId: 'tiershift', user, password: users[user]!.password, configDir });
      const token = await accessTokenFor({ issuer: idp.issuer, clientId: 'tiershift', resource: TEMPORAL_AUDIENCE, scope: TEMPORAL_SCOPE, configDir });
      expect(await verify(token)).toMatchObject({ sub: user, permissions });
      expect(permissionsForGroups(users[user]!.groups)).toEqual(permissions);
      expect(tokenSubject(token)).toBe(user);
    }
    expect(permissionsForGroups(['dev', 'sre', 'elsewhere'])).toEqual(['default:read', 'default:write']);
    expect(tokenSubject('not a jwt')).toBeUndefined();
  });

  it('renews the token before it expires and hands each new one to the connection, until stopped', async () => {
    const source = await sandboxToken(auth, 'service', { renewAfterMs: () => 300 });
    const first = source.current();
    const renewed: string[] = [];
    source.onRenew((token) => void renewed.push(token));
    await expect.poll(() => renewed.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    source.stop();
    expect(new Set([first, ...renewed]).size).toBe(renewed.length + 1);
    expect(source.current()).toBe(renewed.at(-1));
    for (const token of renewed) expect(decodeJwt(token)).toMatchObject({ sub: 'tiershift-sandbox', permissions: ['default:write'] });
    const count = renewed.length;
    await new Promise((r) => setTimeout(r, 1_000));
    expect(renewed.length).toBe(count);
  });
});
