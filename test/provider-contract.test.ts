// A provider is one folder plus one registry line: a test-only provider (test/support/providers/memory)
// is planned and run through whole migrations on the time-skipping server, forward and back, and a gate's
// Key Vault webhook reference notifies through the Azure provider (on the fake ARM transport) while a plan
// whose reference no registered provider resolves is refused when it loads.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createActivities } from '../activities';
import { createAzureProvider } from '../activities/azure';
import { local } from '../activities/local/provider';
import { loadProviders, PROVIDERS } from '../activities/registry';
import { approveGate, rollbackMigration, startMigration } from '../client/migrations';
import type { MigrationStatus } from '../contract/status';
import { describePlan } from '../plan/describe';
import { parsePlan, PlanError } from '../plan/load';
import { FakeArm, fakeCredential } from './support/fake-arm';
import { world } from './support/providers/memory/index';
import { memory } from './support/providers/memory/provider';
import { startWorker, statusWhen, timeSkippingEnv } from './support/temporal';

/** The one registry line: what activities/registry.ts would say with the memory provider in it. */
const REGISTRY = [...PROVIDERS, memory];

const HOOK_PATH = '/hooks/T0KEN-in-the-path';

function planYaml(name: string): string {
  return `
apiVersion: tiershift/v1
name: ${name}
approvers: [alice, bob]
defaults:
  retry: { maximumAttempts: 2, initialInterval: 100ms, backoffCoefficient: 1, maximumInterval: 100ms }
resources:
  oldDb: { kind: postgres, database: shop, memory: { server: db-old } }
  newDb: { kind: postgres, database: shop, memory: { server: db-new } }
  files: { kind: blob, container: files, memory: { bucket: files-a } }
  filesDr: { kind: blob, container: files, memory: { bucket: files-b } }
  api: { kind: app, memory: { service: api } }
  edge: { kind: traffic, stable: blue, canary: green, memory: { router: edge } }
phases:
  - check: { resources: [oldDb, files, api, edge] }
  - backup: { resources: [oldDb, files] }
  - gate:
      name: go
      notify: { webhook: { keyVault: { vault: kv-shop, secret: gate-hook } } }
  - infra: { resource: newDb, settings: { max_connections: 200 } }
  - app: { resource: api, version: v2, database: newDb }
  - data: { from: oldDb, to: newDb }
  - data: { from: files, to: filesDr }
  # A bake is judged by an activity in real time (a time-skipping server does not shorten it): 2 s each.
  - traffic: { resource: edge, steps: [ { weight: 50, bake: 2s }, { weight: 100, bake: 2s } ] }
  - finalize: { resources: [newDb], pointOfNoReturn: { gate: cutover } }
identity: unverified
`;
}

function seedWorld(): void {
  world.servers.clear();
  world.servers.set('db-old', { settings: { max_connections: '100' }, rows: 42, writable: true });
  world.servers.set('db-new', { settings: { max_connections: '100' }, rows: 0, writable: true });
  world.buckets.clear();
  world.buckets.set('files-a', new Set(['a.png', 'b.png']));
  world.buckets.set('files-b', new Set(['old.png']));
  world.routers.clear();
  world.services.clear();
}

let env: TestWorkflowEnvironment;
let stopWorker: () => Promise<void>;
let hooks: Server;
const received: { path: string; body: { gate: string; kind: string } }[] = [];

beforeAll(async () => {
  hooks = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ path: req.url ?? '', body: JSON.parse(body) as { gate: string; kind: string } });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  const arm = new FakeArm();
  // The webhook URL carries a token, so the plan holds only a Key Vault reference; the fake vault holds the URL.
  arm.vaultSecrets.set('kv-shop/gate-hook', `http://127.0.0.1:${(hooks.address() as AddressInfo).port}${HOOK_PATH}`);
  env = await timeSkippingEnv();
  const providers = {
    ...(await loadProviders(REGISTRY)),
    azure: createAzureProvider({ credential: fakeCredential, httpClient: arm, retryOptions: { maxRetries: 1, retryDelayInMs: 10, maxRetryDelayInMs: 20 } }),
  };
  ({ stop: stopWorker } = await startWorker({ connection: env.nativeConnection, activities: createActivities(providers) }));
});

afterAll(async () => {
  await stopWorker?.();
  await env?.teardown();
  await new Promise((resolve) => hooks?.close(resolve));
});

const waitFor = (id: string, ok: (s: MigrationStatus) => boolean) => statusWhen(env, id, ok);
const atGate = (gate: string) => (s: MigrationStatus) => s.pendingGate?.gate === gate;

describe('a provider added as one folder and one registry line', () => {
  it('is planned: its fields nest under its name, it declares its recovery, and unregistered it is refused', () => {
    const plan = parsePlan(planYaml('memory-plan'), 'memory.yaml', REGISTRY);
    expect(plan.resources.newDb).toEqual({ name: 'newDb', kind: 'postgres', provider: 'memory', database: 'shop', server: 'db-new' });
    expect(plan.steps.find((s) => s.kind === 'finalize')).toMatchObject({ pointOfNoReturn: { gate: 'cutover', recovery: 'reverse-sync' } });
    expect(describePlan(plan)).toMatch(/newDb\s+postgres\s+memory/);

    const without = () => parsePlan(planYaml('memory-plan'), 'memory.yaml', PROVIDERS);
    expect(without).toThrow(PlanError);
    expect(without).toThrow(/resources\.oldDb\.memory \(line 8\): expected no key "memory" here \(a resource nests its provider's fields under one of local, azure\)/);
  });

  it('refuses a Key Vault reference when no registered provider resolves it, in one sentence', () => {
    const load = () => parsePlan(planYaml('no-vault'), 'no-vault.yaml', [local, memory]);
    expect(load).toThrow(PlanError);
    expect(load).toThrow(/phases\[2\]\.gate\.notify\.webhook \(line 19\): expected a secret reference a registered provider resolves \(\{ env: NAME \} or \{ memoryVault: … \}\), got a "keyVault" reference, which none of local, memory resolves\./);
  });

  it('runs a whole migration through its operations, and a Key Vault webhook notifies through the Azure provider', async () => {
    seedWorld();
    received.length = 0;
    const plan = parsePlan(planYaml('memory-forward'), 'memory.yaml', REGISTRY);
    const handle = await startMigration(env.client, plan, 'alice');
    const id = handle.workflowId;

    const opened = await waitFor(id, atGate('go'));
    expect(opened.notifications).toEqual([expect.objectContaining({ gate: 'go', kind: 'opened', ok: true, to: 'keyVault:kv-shop/gate-hook' })]);
    expect(received).toEqual([expect.objectContaining({ path: HOOK_PATH, body: expect.objectContaining({ gate: 'go', kind: 'opened' }) })]);
    // The URL (and its token) stays in the worker: only the reference is in the status.
    expect(JSON.stringify(opened)).not.toContain('T0KEN');

    await approveGate(env.client, id, { gate: 'go', by: 'bob' });
    await waitFor(id, atGate('cutover'));
    await approveGate(env.client, id, { gate: 'cutover', by: 'bob' });
    const status = await handle.result();

    expect(status.state).toBe('completed');
    expect(world.servers.get('db-new')).toEqual({ settings: { max_connections: '200' }, rows: 42, writable: true });
    expect(world.servers.get('db-old')?.writable).toBe(false);
    expect(world.routers.get('edge')).toBe(100);
    expect(world.services.get('api')).toBe('v2');
    expect([...world.buckets.get('files-b')!].sort()).toEqual(['a.png', 'b.png', 'old.png']);
    expect([...world.backups].sort()).toEqual([`${id}/1-backup/oldDb`]);
    expect(status.steps.find((s) => s.id === '1-backup')?.summary).toBe('backed up oldDb; copied files');
  });

  it('rolls back through its operations: the world is as it was before the migration', async () => {
    seedWorld();
    const plan = parsePlan(planYaml('memory-rollback'), 'memory.yaml', REGISTRY);
    const handle = await startMigration(env.client, plan, 'alice');
    const id = handle.workflowId;
    await waitFor(id, atGate('go'));
    await approveGate(env.client, id, { gate: 'go', by: 'bob' });
    await waitFor(id, atGate('cutover'));
    expect(world.routers.get('edge')).toBe(100);

    await rollbackMigration(env.client, id, 'alice', 'rehearsal');
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(world.servers.get('db-new')).toEqual({ settings: { max_connections: '100' }, rows: 42, writable: true });
    expect(world.routers.get('edge')).toBe(0);
    expect(world.services.has('api')).toBe(false);
    expect([...world.buckets.get('files-b')!]).toEqual(['old.png']);
    expect(status.rollback?.actions.every((a) => a.state === 'done')).toBe(true);
  });
});
