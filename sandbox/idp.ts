// The sandbox's OpenID provider (oidc-provider, in sandbox/idp-server.ts): the identity provider a
// plan's `oidc` policy trusts locally, so decisions carry real ID tokens in the sandbox as in production.
// Its users' passwords and its signing key are generated once per home and kept under <home>/idp.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';
import { PROJECT_ROOT, type SandboxState } from '../contract/home';
import { idpClientsFile, SANDBOX_CLIENTS, type IdpClientSecrets } from '../contract/temporal-auth';
import { HOST } from './ports';
import { spawnDetached, waitUntil, type ProcessSpec } from './process';
import { keepRunning, logFile, saveRecord, type Health, type UpContext } from './service';

export const IDP_PROCESS: ProcessSpec = { label: 'idp', signal: 'SIGTERM', group: true, match: 'idp-server.ts' };
const IDP_ENTRY = path.join(PROJECT_ROOT, 'sandbox', 'idp-server.ts');

type IdpRecord = NonNullable<SandboxState['idp']>;

/** One sandbox user: `sub` is the user name; the profile goes into ID tokens. */
export interface IdpUser {
  password: string;
  name: string;
  groups: string[];
}
export type IdpUsers = Record<string, IdpUser>;

/** The sandbox's people: approver lists in the demo plans name them and their groups. */
const PEOPLE: Record<string, Omit<IdpUser, 'password'>> = {
  alice: { name: 'Alice Example', groups: ['sre', 'dba'] },
  bob: { name: 'Bob Example', groups: ['sre'] },
  carol: { name: 'Carol Example', groups: ['dev'] },
};

export const idpDir = (home: string): string => path.join(home, 'idp');
export const idpUsersFile = (home: string): string => path.join(idpDir(home), 'users.json');
export const idpKeysFile = (home: string): string => path.join(idpDir(home), 'jwks.json');

function writeSecret(file: string, value: unknown): void {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  // writeFileSync's mode applies only to a new file.
  chmodSync(file, 0o600);
}

/** The users file, created once with random passwords; later ups keep the passwords people already use. */
export function ensureIdpUsers(home: string): IdpUsers {
  const file = idpUsersFile(home);
  const existing: IdpUsers = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as IdpUsers) : {};
  let changed = !existsSync(file);
  for (const [sub, profile] of Object.entries(PEOPLE)) {
    if (existing[sub]?.password) continue;
    existing[sub] = { ...profile, password: randomBytes(12).toString('base64url') };
    changed = true;
  }
  if (changed) writeSecret(file, existing);
  return existing;
}

/**
 * The secrets of the sandbox's confidential clients (contract/temporal-auth.ts), made once like the users'
 * passwords: a worker that already holds a token keeps working across an `up`.
 */
export function ensureIdpClients(home: string): IdpClientSecrets {
  const file = idpClientsFile(home);
  const existing: IdpClientSecrets = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as IdpClientSecrets) : {};
  let changed = !existsSync(file);
  for (const { clientId } of Object.values(SANDBOX_CLIENTS)) {
    if (existing[clientId]?.secret) continue;
    existing[clientId] = { secret: randomBytes(32).toString('base64url') };
    changed = true;
  }
  if (changed) writeSecret(file, existing);
  return existing;
}

/** The signing key set: one ES256 key, generated once so tokens issued before a restart still verify. */
export async function ensureIdpKeys(home: string): Promise<void> {
  const file = idpKeysFile(home);
  if (existsSync(file)) return;
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  writeSecret(file, { keys: [{ ...jwk, kid: await calculateJwkThumbprint(jwk), alg: 'ES256', use: 'sig' }] });
}

export async function idpHealth(idp: IdpRecord): Promise<Health> {
  const res = await fetch(`${idp.issuer}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(3_000) });
  if (!res.ok) return { healthy: false, detail: `discovery answered HTTP ${res.status}` };
  const body = (await res.json()) as { issuer?: string };
  if (body.issuer !== idp.issuer) return { healthy: false, detail: `port answers as issuer ${body.issuer ?? '?'}, expected ${idp.issuer}` };
  return { healthy: true, detail: `OpenID provider ${idp.issuer}, users ${Object.keys(PEOPLE).join(', ')} (passwords in ${idp.usersFile})` };
}

/** Starts (or keeps) the identity provider; `portsFree` resolves when it may claim its port (see sandboxUp). */
export async function ensureIdp(ctx: UpContext, portsFree: Promise<void>): Promise<void> {
  const { state } = ctx;
  if (await keepRunning(ctx, state.idp, IDP_PROCESS, () => idpHealth(state.idp!), ['idp'])) return;

  mkdirSync(idpDir(state.home), { recursive: true, mode: 0o700 });
  ensureIdpUsers(state.home);
  ensureIdpClients(state.home);
  await ensureIdpKeys(state.home);
  await portsFree;
  const port = (state.ports.idp = await ctx.ports.claim('idp'));
  const issuer = `http://${HOST}:${port}`;
  const log = logFile(state.home, 'idp');
  // tsx resolved from this project, so the provider starts the same from any working directory.
  const tsx = pathToFileURL(createRequire(path.join(PROJECT_ROOT, 'package.json')).resolve('tsx')).href;
  const pid = spawnDetached(process.execPath, ['--import', tsx, IDP_ENTRY], {
    log,
    cwd: PROJECT_ROOT,
    env: { ...process.env, IDP_HOST: HOST, IDP_PORT: String(port), IDP_ISSUER: issuer, IDP_DIR: idpDir(state.home) },
  });
  const idp: IdpRecord = { pid, log, issuer, usersFile: idpUsersFile(state.home) };
  saveRecord(ctx, (s) => (s.idp = idp));
  await waitUntil('the identity provider', async () => ((await idpHealth(idp)).healthy ? true : undefined), { pid, log, timeoutMs: 30_000 });
  ctx.log(`idp: started (pid ${pid}) at ${issuer}`);
}
