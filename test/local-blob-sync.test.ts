// The local blob sync on the sandbox's Azurite: the seeded `assets` container of the primary account
// copied server-side to a fresh container of the secondary, incrementally, resumably, and undone.
import type { ContainerClient } from '@azure/storage-blob';
import { afterAll, describe, expect, it } from 'vitest';
import { blobSyncOutcome, undoBlobSyncIn } from '../activities/blob-outcome';
import { observeBlobSync, syncBlobs, undoBlobSync } from '../activities/local/blob-sync';
import type { StepInput } from '../activities/types';
import type { DataStep } from '../plan/types';
import { ASSETS_CONTAINER, demoBlobs } from '../sandbox/azurite';
import { blob, containerOf, dataStep, runActivity, uniqueName } from './support/local-ops';
import { progressOf } from '../contract/progress';

const created: ContainerClient[] = [];
afterAll(async () => {
  await Promise.all(created.map((c) => c.deleteIfExists()));
});

/** A sync input into a container of the secondary account that no other test uses. */
function freshSync(): { input: StepInput<DataStep>; target: ContainerClient } {
  const name = uniqueName('sync');
  const target = containerOf('secondary', name);
  created.push(target);
  return {
    input: {
      migrationId: uniqueName('m'),
      step: dataStep('5-data-2', 'assets', 'assetsDr'),
      resources: { assets: blob('assets', 'primary', ASSETS_CONTAINER), assetsDr: blob('assetsDr', 'secondary', name) },
    },
    target,
  };
}

/** name -> "length md5" of every blob in a container. */
async function contents(container: ContainerClient): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const b of container.listBlobsFlat()) {
    out[b.name] = `${b.properties.contentLength} ${Buffer.from(b.properties.contentMD5 ?? []).toString('base64')}`;
  }
  return out;
}

const assets = demoBlobs();
const assetBytes = assets.reduce((n, b) => n + b.size, 0);

describe('local blob sync', () => {
  it('copies every asset server-side, verified, then skips them all on a second run', async () => {
    const { input, target } = freshSync();
    const first = await runActivity(syncBlobs, [input]);
    expect(first.result.figures).toEqual({
      'assetsDr.blobsCopied': assets.length,
      'assetsDr.blobsSkipped': 0,
      'assetsDr.bytesCopied': assetBytes,
      'assetsDr.blobsVerified': assets.length,
    });
    const source = await contents(containerOf('primary', ASSETS_CONTAINER));
    expect(Object.keys(source).sort()).toEqual(assets.map((b) => b.name).sort());
    // Same names, lengths and Content-MD5 (the seeded blobs all carry one).
    expect(await contents(target)).toEqual(source);
    expect(Object.values(source).every((v) => !v.endsWith(' '))).toBe(true);
    expect((first.result.undo as { created: string[] }).created.sort()).toEqual(Object.keys(source).sort());
    expect(first.heartbeats.at(-1)).toMatchObject({ copied: assets.length, skipped: 0, bytes: assetBytes });
    // With a reading of blobs and bytes done out of those listed as the copy began.
    expect(progressOf(first.heartbeats.at(-1))).toMatchObject({ phase: 'copying blobs', unit: 'blobs', done: assets.length, total: assets.length, bytesDone: assetBytes, bytesTotal: assetBytes });

    const second = await runActivity(syncBlobs, [input]);
    expect(second.result.figures).toMatchObject({ 'assetsDr.blobsCopied': 0, 'assetsDr.blobsSkipped': assets.length, 'assetsDr.bytesCopied': 0 });
    expect(second.result.undo).toEqual({ created: [] });
    expect(await contents(target)).toEqual(source);
  });

  it('resumes from the heartbeat of an interrupted attempt instead of starting over', async () => {
    const { input, target } = freshSync();
    const beats: unknown[] = [];
    // Interrupt the first attempt after two pages of five, as a worker crash or timeout would.
    await expect(
      runActivity(syncBlobs, [input, { pageSize: 5 }], {
        onHeartbeat: (details, env) => {
          beats.push(details);
          if (beats.length === 2) env.cancel();
        },
      }),
    ).rejects.toThrow(/aborted/);
    const saved = beats.at(-1) as { continuationToken?: string; copied: number; created: string[] };
    expect(saved.copied).toBe(10);
    expect(saved.continuationToken).toBeTruthy();
    expect(Object.keys(await contents(target))).toHaveLength(10);

    const resumed = await runActivity(syncBlobs, [input, { pageSize: 5 }], { info: { attempt: 2, heartbeatDetails: saved } });
    // Only the two remaining pages were listed and copied; the counters carry on from the heartbeat.
    expect(resumed.heartbeats).toHaveLength(2);
    expect(progressOf(resumed.heartbeats.at(-1))).toMatchObject({ done: assets.length, total: assets.length });
    expect(resumed.result.figures).toMatchObject({ 'assetsDr.blobsCopied': assets.length, 'assetsDr.blobsSkipped': 0, 'assetsDr.bytesCopied': assetBytes });
    expect((resumed.result.undo as { created: string[] }).created).toHaveLength(assets.length);
    expect(await contents(target)).toEqual(await contents(containerOf('primary', ASSETS_CONTAINER)));
  });

  it('undo deletes only the blobs the step created', async () => {
    const { input, target } = freshSync();
    await target.create();
    // One unrelated blob, and one with a source name but other content (overwritten by the sync, yet not created by it).
    await target.getBlockBlobClient('keep/me.txt').upload('mine', 4);
    const overwritten = assets[0]!.name;
    await target.getBlockBlobClient(overwritten).upload('old', 3);

    const { result } = await runActivity(syncBlobs, [input]);
    expect(result.figures).toMatchObject({ 'assetsDr.blobsCopied': assets.length, 'assetsDr.blobsSkipped': 0 });
    expect((result.undo as { created: string[] }).created).toHaveLength(assets.length - 1);
    expect((result.undo as { created: string[] }).created).not.toContain(overwritten);

    const undone = await runActivity(undoBlobSync, [{ ...input, undo: result.undo }]);
    expect(undone.result.figures).toEqual({ 'assetsDr.blobsDeleted': assets.length - 1 });
    expect(Object.keys(await contents(target)).sort()).toEqual([overwritten, 'keep/me.txt'].sort());
    // Undo is idempotent: a second run finds nothing left to delete.
    expect((await runActivity(undoBlobSync, [{ ...input, undo: result.undo }])).result.figures).toEqual({ 'assetsDr.blobsDeleted': 0 });
  });
});

describe('undo of a sync that failed after copying', () => {
  it('deletes the blobs the step created though no outcome listed them, from the names observed before it', async () => {
    const { input, target } = freshSync();
    await target.create();
    await target.getBlockBlobClient('keep/me.txt').upload('mine', 4);
    const overwritten = assets[0]!.name;
    await target.getBlockBlobClient(overwritten).upload('old', 3);
    const before = (await runActivity(observeBlobSync, [input])).result;
    expect(before).toEqual({ existed: true, names: [overwritten, 'keep/me.txt'].sort() });

    // The attempt copies everything, then its result is lost; a retry that lost its heartbeat finds every blob in place.
    await runActivity(syncBlobs, [input]);
    const retry = await runActivity(syncBlobs, [input]);
    expect(retry.result.undo).toEqual({ created: [] });

    const undone = await runActivity(undoBlobSync, [{ ...input, undo: retry.result.undo, before }]);
    expect(undone.result.figures).toEqual({ 'assetsDr.blobsDeleted': assets.length - 1 });
    expect(Object.keys(await contents(target)).sort()).toEqual([overwritten, 'keep/me.txt'].sort());
    // With no record at all (the step never reported), the observation alone is enough; nothing is left to delete.
    expect((await runActivity(undoBlobSync, [{ ...input, before }])).result.figures).toEqual({ 'assetsDr.blobsDeleted': 0 });
  });
});

describe('the undo record of a large sync', () => {
  it('keeps over a thousand created names in a manifest blob, and undo deletes exactly those', async () => {
    const source = containerOf('primary', ASSETS_CONTAINER);
    const target = containerOf('secondary', uniqueName('manifest'));
    created.push(target);
    await target.create();
    const names = Array.from({ length: 1_001 }, (_, i) => `created-${String(i).padStart(4, '0')}`);
    // Only a few exist (deleting a missing blob counts nothing); one blob was there before the step.
    for (const name of [...names.slice(0, 3), 'was-there-before']) await target.getBlockBlobClient(name).upload('x', 1);
    const counts = { copied: names.length, skipped: 0, bytes: names.length, verified: names.length, created: names };
    const outcome = await blobSyncOutcome(source, target, { migrationId: 'm-manifest', step: dataStep('5-data', 'assets', 'assetsDr'), counts, resumed: false });
    expect(outcome.undo).toEqual({ manifest: '.tiershift/m-manifest/5-data.json', count: 1_001 });
    // The history keeps a name, not a thousand.
    expect(JSON.stringify(outcome.undo).length).toBeLessThan(100);
    expect(outcome.figures).toMatchObject({ 'assetsDr.blobsCopied': 1_001 });

    const undone = await undoBlobSyncIn(target, 'assetsDr', outcome.undo);
    expect(undone.figures).toEqual({ 'assetsDr.blobsDeleted': 3 });
    expect(Object.keys(await contents(target))).toEqual(['was-there-before']);
  });
});
