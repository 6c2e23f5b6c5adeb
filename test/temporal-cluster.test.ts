// The sandbox with the real Temporal server (`sandbox up --temporal cluster`): v1.32.2 built from the Go
// module proxy (`npm test` builds it first when missing), its four services on the source cluster's
// PostgreSQL with SQL visibility. The minimal plan through the CLI and a spawned worker, then the whole
// migration of local-migration.test.ts's first test, run against it, with Temporal's JWT authorizer on:
// the CLI and worker take the sandbox service client's token, and the refusals of callers without the
// namespace's writer role are Temporal's own. This file brings up a sandbox of its own in a temporary
// home (the run's shared one keeps the dev server) and stops it, by pid, after.
import { Connection } from '@temporalio/client';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MigrationListing } from '../client/migrations';
import { sandboxTlsConfig } from '../contract/connection';
import { sandboxToken, TEMPORAL_AUDIENCE, TEMPORAL_SCOPE } from '../contract/temporal-auth';
import { accessTokenFor, idTokenFor, login } from '../identity/oidc-login';
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { withPgClient } from '../contract/pg';
import { PROJECT_ROOT, postgresUrl, readState } from '../contract/home';
import { SEARCH_ATTRIBUTES } from '../contract/search-attributes';
import type { MigrationStatus } from '../contract/status';
import { sandboxDown, sandboxStatus, sandboxUp } from '../sandbox';
import { isAlive } from '../sandbox/process';
import { TEMPORAL_SERVER_VERSION } from '../sandbox/temporal-server-build';
import { isOneSentence, spawnWorker, tiershift } from './support/cli';
import { migrationSuite } from './support/local-ops';
import { eventually } from './support/temporal';
import { expectWholeMigration, runWholeMigration } from './support/whole-migration';

const home = mkdtempSync(path.join(os.tmpdir(), 'tiershift-cluster-'));
const pids: number[] = [];

// Registered before migrationSuite(), so its beforeAll finds this sandbox (TIERSHIFT_HOME) and its
// afterAll (reset, close) runs before this one stops everything.
beforeAll(async () => {
  process.env.TIERSHIFT_HOME = home;
  try {
    const state = await sandboxUp({ home, freePorts: true, seedRows: 20_000, temporal: 'cluster' });
    pids.push(state.temporal!.pid);
  } catch (err) {
    await sandboxDown({ home, purge: true });
    throw err;
  }
}, 300_000);
afterAll(async () => {
  await sandboxDown({ home, purge: true });
  // Every process the sandbox started is gone, the server included.
  expect(pids.filter(isAlive)).toEqual([]);
});

const suite = migrationSuite();

describe('the sandbox on the Temporal server (--temporal cluster)', () => {
  it('runs the real server on the source cluster\'s PostgreSQL with SQL visibility and mutual TLS, the namespace and search attributes registered', async () => {
    const state = readState(home)!;
    expect(state.temporal?.kind).toBe('cluster');
    const { address, tls } = state.temporal!;
    expect(tls).toBeDefined();
    // The cluster's information is for system readers: the sandbox's admin client.
    const admin = await sandboxToken(state.temporal!.auth!, 'admin');
    const connection = await Connection.connect({ address, tls: sandboxTlsConfig(tls), apiKey: admin.current() });
    admin.stop();
    try {
      const info = await connection.workflowService.getClusterInfo({});
      expect(info.serverVersion).toBe(TEMPORAL_SERVER_VERSION.replace(/^v/, ''));
      expect(info.persistenceStore).toBe('postgres12');
      expect(info.visibilityStore).toBe('postgres12');
      const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
      expect(Object.keys(customAttributes ?? {})).toEqual(expect.arrayContaining(SEARCH_ATTRIBUTES.map((k) => k.name)));
    } finally {
      await connection.close();
    }
    // Mutual TLS: with the sandbox's CA but no client certificate, or in plain text, the frontend lets no call through.
    const refused = async (options: Parameters<typeof Connection.connect>[0]) => {
      const c = await Connection.connect({ ...options, connectTimeout: 3_000 });
      try {
        await c.workflowService.getSystemInfo({});
      } finally {
        await c.close();
      }
    };
    await expect(refused({ address, tls: { serverNameOverride: tls!.serverName, serverRootCACertificate: readFileSync(tls!.caFile) } })).rejects.toThrow();
    await expect(refused({ address })).rejects.toThrow();
    // Its history lives in the source cluster, beside the shop's data.
    const shards = await withPgClient(postgresUrl(state.postgres.source!, 'temporal'), async (c) => Number((await c.query('select count(*) as n from shards')).rows[0].n));
    expect(shards).toBe(4);
    const status = await sandboxStatus({ home });
    expect(status.find((s) => s.name === 'temporal')).toMatchObject({ healthy: true, detail: expect.stringContaining('cluster') });
    // The build step of `npm test` and `npm run setup -- --with-temporal-server` sees the binaries at this version and does nothing.
    const again = spawnSync(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'scripts', 'temporal-server.ts')], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(new RegExp(`^temporal-server: ${TEMPORAL_SERVER_VERSION} already built in `));
    // Asking for the dev server while the cluster runs says what to do instead of mixing the two.
    await expect(sandboxUp({ home, temporal: 'dev' })).rejects.toThrow(/runs the Temporal cluster; run `tiershift sandbox down` first/);
  });

  it('runs the minimal plan from start through approval to completion with the CLI and a worker process', async () => {
    const worker = spawnWorker();
    try {
      const plan = path.join(PROJECT_ROOT, 'plans', 'minimal.yaml');
      const started = await tiershift(['start', plan, '--by', 'alice', '--json']);
      expect(started.code, started.stderr).toBe(0);
      const id = (JSON.parse(started.stdout) as { workflowId: string }).workflowId;
      const status = async () => JSON.parse((await tiershift(['status', id, '--json'])).stdout) as MigrationStatus;
      await eventually(status, (s) => s.pendingGate?.gate === 'go', 90_000);
      // The list is a visibility query on the custom search attributes: PostgreSQL answers it here.
      const listed = await eventually(
        async () => JSON.parse((await tiershift(['list', '--state', 'awaiting-approval', '--plan', 'minimal', '--json'])).stdout) as MigrationListing[],
        (l) => l.some((m) => m.id === id && m.pendingGate === 'go'),
        30_000,
      );
      expect(listed.find((m) => m.id === id)).toMatchObject({ state: 'awaiting-approval', plan: 'minimal' });
      const approved = await tiershift(['approve', id, '--gate', 'go', '--by', 'bob']);
      expect(approved.code, approved.stderr).toBe(0);
      const done = await eventually(status, (s) => ['completed', 'rolled-back', 'aborted', 'awaiting-operator'].includes(s.state), 90_000);
      expect(done.state, JSON.stringify(done.failure)).toBe('completed');
      expect(done.steps.filter((s) => s.kind === 'check').map((s) => s.state)).toEqual(['done', 'done']);
    } finally {
      await worker.stop();
    }
  }, 240_000);

  it('runs the whole local migration: backup, infra, app, data, canary 10/50/100 and cutover, with no failed request', async () => {
    // local-migration.test.ts's first migration, unchanged, on this server.
    const run = await runWholeMigration(suite, 'cluster-full');
    await expectWholeMigration(run);
    expect(run.reads.sent).toBeGreaterThan(100);
  }, 300_000);
});

describe("Temporal's JWT authorizer on the cluster", () => {
  const configDirs: string[] = [];
  afterAll(() => configDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  /** A person's JWT for the Temporal frontend from the sandbox's provider: signed in with the password, then silently. */
  const tokenOf = async (user: string) => {
    const { issuer, usersFile } = readState(home)!.idp!;
    const configDir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-config-'));
    configDirs.push(configDir);
    const password = (JSON.parse(readFileSync(usersFile, 'utf8')) as Record<string, { password: string }>)[user]!.password;
    await login({ issuer, clientId: 'tiershift', user, password, configDir });
    return { token: await accessTokenFor({ issuer, clientId: 'tiershift', resource: TEMPORAL_AUDIENCE, scope: TEMPORAL_SCOPE, configDir }), configDir };
  };
  /** The frontend's answer to one namespace call (count the migrations: read) with `apiKey`, or without any. */
  const answer = async (apiKey?: string) => {
    const { address, tls } = readState(home)!.temporal!;
    // A token the claim mapper cannot verify is refused from the first call, the SDK's own GetSystemInfo at connect.
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address, tls: sandboxTlsConfig(tls), ...(apiKey ? { apiKey } : {}), connectTimeout: 3_000 });
      await connection.workflowService.countWorkflowExecutions({ namespace: 'default' });
      return 'allowed';
    } catch (err) {
      let e: unknown = err;
      while (e instanceof Error && (e as { code?: unknown }).code === undefined && e.cause) e = e.cause;
      return `code ${String((e as { code?: unknown }).code)}`;
    } finally {
      await connection?.close();
    }
  };

  it('refuses a call without a token, with a token signed by a key not in the JWKS, or with one for another audience; a token of the provider passes', async () => {
    const { issuer } = readState(home)!.idp!;
    // PERMISSION_DENIED (7): the frontend's authorizer, not tiershift, which none of these calls reaches.
    expect(await answer()).toBe('code 7');
    // What the sandbox's provider would issue to the service client, down to its key id, signed by another key.
    const keys = JSON.parse(readFileSync(path.join(home, 'idp', 'jwks.json'), 'utf8')) as { keys: (JWK & { kid: string })[] };
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const now = Math.floor(Date.now() / 1000);
    const forge = async (key: JWK, audience = TEMPORAL_AUDIENCE) =>
      new SignJWT({ sub: 'mallory', permissions: ['default:write', 'temporal-system:admin'] })
        .setProtectedHeader({ alg: 'ES256', kid: keys.keys[0]!.kid })
        .setIssuer(issuer)
        .setAudience(audience)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(await importJWK(key, 'ES256'));
    expect(await answer(await forge(await exportJWK(privateKey)))).toBe('code 7');
    // The provider's own key, but for another audience (an ID token for tiershift's CLI), is refused too.
    expect(await answer(await forge(keys.keys[0]!, 'tiershift'))).toBe('code 7');
    const { configDir } = await tokenOf('bob');
    expect(await answer(await idTokenFor({ issuer, clientId: 'tiershift', nonce: 'n', configDir }))).toBe('code 7');
    // The same call with the provider's token for the frontend passes: the refusals were the tokens'.
    expect(await answer(await forge(keys.keys[0]!))).toBe('allowed');
    // The CLI given the forged token says so in one sentence, not "cannot reach".
    const forged = await forge(await exportJWK(privateKey));
    const listed = await tiershift(['list'], { TEMPORAL_API_KEY: forged });
    expect(listed.code, listed.stderr).toBe(4);
    expect(isOneSentence(listed.stderr), listed.stderr).toBe(true);
    expect(listed.stderr).toMatch(/refused mallory \(the token given with --api-key, TEMPORAL_API_KEY or the profile\): .* or does not verify, /);
    expect(`${listed.stdout}${listed.stderr}`).not.toContain(forged);
  }, 30_000);

  it("refuses carol (dev: read only) to start or approve, in one sentence, before the workflow sees anything; she can still read, and alice's token approves", async () => {
    const worker = spawnWorker();
    const carol = (await tokenOf('carol')).token;
    const alice = (await tokenOf('alice')).token;
    const plan = path.join(PROJECT_ROOT, 'plans', 'minimal.yaml');
    const as = (token: string) => ({ TEMPORAL_API_KEY: token });
    const refusedSentence = /^tiershift: Temporal at 127\.0\.0\.1:\d+ refused carol \(the token given with --api-key, TEMPORAL_API_KEY or the profile\): the token does not grant this on default \(starting or deciding needs default:write in its permissions claim\).* --api-key\.$/;
    try {
      const id = `authz-${Date.now().toString(36)}`;
      // Refused at the frontend: no workflow was started.
      const denied = await tiershift(['start', plan, '--id', `${id}-carol`, '--by', 'carol'], as(carol));
      expect(denied.code, denied.stderr).toBe(4);
      expect(isOneSentence(denied.stderr), denied.stderr).toBe(true);
      expect(denied.stderr.trim()).toMatch(refusedSentence);
      const status = async (wid: string) => JSON.parse((await tiershift(['status', wid, '--json'])).stdout) as MigrationStatus;
      const missing = await tiershift(['status', `${id}-carol`, '--json']);
      expect(missing.code).toBe(3);

      // alice's token starts one (write); the service client's worker runs it to its gate.
      const started = await tiershift(['start', plan, '--id', id, '--by', 'alice'], as(alice));
      expect(started.code, started.stderr).toBe(0);
      await eventually(() => status(id), (s) => s.pendingGate?.gate === 'go', 90_000);

      // carol reads: status and list answer with her token.
      const read = await tiershift(['status', id, '--json'], as(carol));
      expect(read.code, read.stderr).toBe(0);
      expect((JSON.parse(read.stdout) as MigrationStatus).pendingGate?.gate).toBe('go');
      const listed = await tiershift(['list', '--plan', 'minimal', '--json'], as(carol));
      expect(listed.code, listed.stderr).toBe(0);
      expect((JSON.parse(listed.stdout) as MigrationListing[]).map((m) => m.id)).toContain(id);

      // carol's approval is refused by the frontend: the gate still waits, and the history holds no update.
      const approve = await tiershift(['approve', id, '--gate', 'go', '--by', 'carol', '--yes'], as(carol));
      expect(approve.code, approve.stderr).toBe(4);
      expect(isOneSentence(approve.stderr), approve.stderr).toBe(true);
      expect(approve.stderr.trim()).toMatch(refusedSentence);
      for (const out of [denied, read, listed, approve]) expect(`${out.stdout}${out.stderr}`).not.toContain(carol);
      const waiting = await status(id);
      expect(waiting.pendingGate).toMatchObject({ gate: 'go', approvedBy: [] });
      const events = await historyEventTypes(id);
      expect(events.filter((t) => /UPDATE/.test(t))).toEqual([]);

      // alice's token approves, and the migration completes.
      const approved = await tiershift(['approve', id, '--gate', 'go', '--by', 'alice', '--yes'], as(alice));
      expect(approved.code, approved.stderr).toBe(0);
      const done = await eventually(() => status(id), (s) => ['completed', 'rolled-back', 'aborted', 'awaiting-operator'].includes(s.state), 90_000);
      expect(done.state, JSON.stringify(done.failure)).toBe('completed');
      expect((await historyEventTypes(id)).filter((t) => /UPDATE_ACCEPTED/.test(t))).toHaveLength(1);
    } finally {
      await worker.stop();
    }
    // The worker ran on the sandbox's service token and printed none.
    expect(worker.output()).not.toMatch(/eyJ[\w-]+\.eyJ/);
  }, 200_000);
});

/** The event types of a migration's history, read with the sandbox's service token. */
async function historyEventTypes(id: string): Promise<string[]> {
  const { address, tls, auth } = readState(home)!.temporal!;
  const token = await sandboxToken(auth!, 'service');
  const connection = await Connection.connect({ address, tls: sandboxTlsConfig(tls), apiKey: token.current() });
  token.stop();
  try {
    const { temporal } = await import('@temporalio/proto');
    const history = await connection.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId: id } });
    return (history.history?.events ?? []).map((e) => temporal.api.enums.v1.EventType[e.eventType ?? 0] ?? String(e.eventType));
  } finally {
    await connection.close();
  }
}
