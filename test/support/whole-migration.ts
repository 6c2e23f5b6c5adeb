// The whole local migration, as one place for the files that run it: local-migration.test.ts on the dev
// server, temporal-cluster.test.ts on the real server with its authorizer. Same plan, same shoppers, same
// proof that nothing was lost; each file adds what is its own.
import type { Client, WorkflowHandle } from '@temporalio/client';
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { runLoad, type LoadResult } from '../../client/load';
import { approveGate, migrationStatus, startMigration } from '../../client/migrations';
import type { MigrationStatus } from '../../contract/status';
import { shoppers } from './load';
import { blobMd5s, containerOf, tables, uniqueName, type migrationSuite } from './local-ops';
import { everySandboxResource, sandboxPlan } from './plans';
import { eventually, startWorker } from './temporal';

/** Approves each gate in turn once the migration waits there (`before` runs first), then waits for its end. */
export async function driveGates(client: Client, handle: WorkflowHandle, gates: string[], before: (gate: string) => Promise<void> = async () => {}): Promise<MigrationStatus> {
  for (const gate of gates) {
    const status = await eventually(
      () => migrationStatus(client, handle.workflowId),
      (s) => s.pendingGate?.gate === gate || ['completed', 'rolled-back', 'aborted', 'awaiting-operator'].includes(s.state),
      240_000,
    );
    if (status.pendingGate?.gate !== gate) throw new Error(`expected gate ${gate}, the migration is ${status.state}: ${JSON.stringify(status.failure ?? status.rollback ?? {})}`);
    await before(gate);
    await approveGate(client, handle.workflowId, { gate, by: 'bob', comment: `test approves ${gate}` });
  }
  return (await handle.result()) as MigrationStatus;
}

export interface WholeMigration {
  status: MigrationStatus;
  /** The shoppers' reads through the front door, for the whole migration. */
  reads: LoadResult;
  /** Orders written to the source (through blue directly) while the data phase copied it. */
  written: LoadResult;
  backups: string;
  dr: string;
}

/**
 * Backup, infra, app, both data syncs, a 10/50/100 canary and the cutover, through three gates, with an
 * in-process worker on the suite's Temporal; shoppers read through HAProxy all along, and orders arrive on
 * the source until the finalize gate (the runbook's maintenance window before the database's cutover).
 */
export async function runWholeMigration(suite: ReturnType<typeof migrationSuite>, name: string): Promise<WholeMigration> {
  const dr = uniqueName('assets-dr');
  const backups = uniqueName('backups');
  const plan = sandboxPlan(
    {
      name: uniqueName(name),
      head: 'defaults: { timeouts: { startToClose: 10m, heartbeat: 30s } }',
      resources: everySandboxResource({ assetsDr: dr, backups }),
      phases: `
  - backup: { resources: [sourceDb, assets], destination: backups }
  - gate: { name: start }
  - infra: { resource: targetDb, settings: { max_connections: 220, shared_buffers: 160MB } }
  - app: { resource: shop, version: v2, database: targetDb }
  - data: { from: sourceDb, to: targetDb }
  - data: { from: assets, to: assetsDr }
  - gate: { name: cutover }
  - traffic:
      resource: front
      analysis: { maxErrorRate: 0, minRequests: 3 }
      steps: [ { weight: 10, bake: 5s }, { weight: 50, bake: 4s }, { weight: 100, bake: 4s } ]
  - gate: { name: finalize }
  - finalize: { resources: [targetDb] }
`,
    },
    `${name}.yaml`,
  );
  const { stop: stopWorker } = await startWorker({ connection: suite.temporal.connection });
  const load = shoppers({ front: suite.state.haproxy!.frontendUrl, readsPerSecond: 25, lookups: 20_000, durationMs: 300_000 });
  const writes = new AbortController();
  const writer = runLoad({ url: `http://127.0.0.1:${suite.state.apps.blue!.port}/api/orders`, method: 'POST', body: {}, ratePerSecond: 10, durationMs: 300_000, maxRequests: 3_000, signal: writes.signal });
  let status: MigrationStatus;
  try {
    const handle = await startMigration(suite.temporal.client, plan, 'alice');
    status = await driveGates(suite.temporal.client, handle, ['start', 'cutover', 'finalize'], async (gate) => {
      if (gate === 'finalize') writes.abort();
    });
  } finally {
    writes.abort();
    await stopWorker();
  }
  return { status, reads: (await load.stop()).reads, written: await writer, backups, dr };
}

/** Nothing lost and no shopper failed: the backup is what its sha256 says, every row and asset arrived, users are on green. */
export async function expectWholeMigration({ status, reads, written, backups, dr }: WholeMigration): Promise<void> {
  expect(status.state, JSON.stringify(status.failure)).toBe('completed');
  const figures = Object.assign({}, ...status.steps.map((s) => s.figures));
  // The backup: a dump whose sha256 is what the blob holds, restored and compared by the step.
  expect(figures['sourceDb.restoreVerified']).toBe(true);
  const dumps: string[] = [];
  for await (const b of containerOf('primary', backups).listBlobsFlat()) if (b.name.endsWith('sourceDb.dump')) dumps.push(b.name);
  expect(dumps).toHaveLength(1);
  const dump = await containerOf('primary', backups).getBlobClient(dumps[0]!).downloadToBuffer();
  expect(createHash('sha256').update(dump).digest('hex')).toBe(figures['sourceDb.sha256']);
  // Every source row, including the orders written during the sync, is on the target.
  expect(written.ok).toBeGreaterThan(0);
  expect(await tables('target')).toEqual(await tables('source'));
  // Every asset is in the second region with the same MD5.
  const assets = await blobMd5s('primary', 'assets');
  expect(Object.keys(assets).length).toBeGreaterThan(0);
  expect(await blobMd5s('secondary', dr)).toEqual(assets);
  // Users are on green, and none of them saw an error on the way.
  expect(reads.failed, JSON.stringify(reads.byStatus)).toBe(0);
  expect(reads.byColor.green).toBeGreaterThan(0);
  expect(status.traffic?.weight).toBe(100);
}
