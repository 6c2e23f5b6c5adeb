// Running local-provider activities against the run's sandbox inside Temporal's activity test
// environment, which gives them a real Context (heartbeats, heartbeat details, cancellation).
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import type { Info } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { randomBytes } from 'node:crypto';
import type { LocalBlob } from '../../activities/local/provider';
import type { BackupStep, DataStep, FinalizeStep } from '../../plan/types';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { fingerprints, withClient, type TableFingerprint } from '../../activities/local/postgres';
import { resetSandbox } from '../../sandbox/reset';
import { postgresUrl, readState, sandboxHome, type SandboxState } from '../../contract/home';
import { sandboxTemporal, type SandboxTemporal } from './temporal';

export function sandbox(): SandboxState {
  const state = readState(sandboxHome());
  if (!state) throw new Error(`no sandbox in ${sandboxHome()}`);
  return state;
}

export function containerOf(role: 'primary' | 'secondary', container: string): ContainerClient {
  const account = sandbox().azurite!.accounts.find((a) => a.role === role)!;
  return BlobServiceClient.fromConnectionString(account.connectionString).getContainerClient(container);
}

/** Name -> base64 MD5 of every blob in a container (tiershift's own manifests left out). */
export async function blobMd5s(role: 'primary' | 'secondary', container: string): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  for await (const b of containerOf(role, container).listBlobsFlat()) {
    if (!b.name.startsWith('.tiershift/')) found[b.name] = Buffer.from(b.properties.contentMD5 ?? []).toString('base64');
  }
  return found;
}

/** A container name no other test uses. */
export const uniqueName = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

const stepBase = {
  phaseIndex: 1,
  retry: { maximumAttempts: 1, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1s' },
  timeouts: { startToClose: '5m', heartbeat: '1m' },
};

export function backupStep(id: string, resources: string[], destination: string): BackupStep {
  return { ...stepBase, id, title: `Back up ${resources.join(', ')}`, kind: 'backup', resources, destination, verifyRestore: true };
}

export function dataStep(id: string, from: string, to: string): DataStep {
  return { ...stepBase, id, title: `Copy ${from} to ${to}`, kind: 'data', from, to, verify: true };
}

/** A finalize step cutting over each key of `syncedFrom` from the database it names. */
export function finalizeStep(id: string, syncedFrom: Record<string, string>, pointOfNoReturn?: FinalizeStep['pointOfNoReturn']): FinalizeStep {
  return { ...stepBase, id, title: 'Cut over', kind: 'finalize', resources: Object.keys(syncedFrom), syncedFrom, ...(pointOfNoReturn ? { pointOfNoReturn } : {}) };
}

export function blob(name: string, role: 'primary' | 'secondary', container: string): LocalBlob {
  return { name, kind: 'blob', provider: 'local', account: role, container };
}

/** Runs `fn` as an activity, collecting its heartbeats; `onHeartbeat` may act on the environment (e.g. cancel it). */
export async function runActivity<A extends unknown[], R>(
  fn: (...args: A) => Promise<R>,
  args: A,
  opts: { info?: Partial<Info>; onHeartbeat?: (details: unknown, env: MockActivityEnvironment) => void } = {},
): Promise<{ result: R; heartbeats: unknown[] }> {
  // Failures are what some tests expect: the SDK's "Activity failed" warning would only be noise.
  const env = new MockActivityEnvironment({ heartbeatTimeoutMs: 60_000, ...opts.info }, { logger: new DefaultLogger('ERROR') });
  const heartbeats: unknown[] = [];
  env.on('heartbeat', (details: unknown) => {
    heartbeats.push(details);
    opts.onHeartbeat?.(details, env);
  });
  return { result: await env.run(fn, ...args), heartbeats };
}

/** The sandbox as a migration finds it: end-to-end tests share one sandbox, so each starts from here. */
export const resetToBlue = (): Promise<void> => resetSandbox(sandbox());

/** Row counts and checksums of every table of a sandbox cluster's database. */
export const tables = (cluster: 'source' | 'target'): Promise<TableFingerprint[]> => withClient(postgresUrl(sandbox().postgres[cluster]!), fingerprints);

/**
 * For a test file that runs whole migrations on the shared sandbox: a Temporal connection, and the
 * sandbox back to "before the migration" before each test and after the file.
 */
export function migrationSuite(): { temporal: SandboxTemporal; state: SandboxState } {
  const suite = {} as { temporal: SandboxTemporal; state: SandboxState };
  beforeAll(async () => {
    suite.temporal = await sandboxTemporal();
    suite.state = sandbox();
  });
  afterAll(async () => {
    await resetToBlue();
    await suite.temporal?.close();
  });
  beforeEach(resetToBlue);
  return suite;
}
