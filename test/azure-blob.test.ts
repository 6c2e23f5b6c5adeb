// The Azure provider's Blob Storage copies against Azurite (the sandbox's two accounts) with the real
// SDK: server-side copy with a SAS for the source, MD5 verification, incremental reruns, resumption from
// the heartbeat's continuation token, and an undo that deletes only what the step created.
import { beforeAll, describe, expect, it } from 'vitest';
import type { AzureResource } from '../activities/azure/provider';
import type { BackupStep, DataStep } from '../plan/types';
import { FakeArm } from './support/fake-arm';
import { attempt, azureActivities, input, lastJournal, scope, step } from './support/fake-arm-env';
import { blobMd5s, containerOf, sandbox, uniqueName } from './support/local-ops';
import { progressOf } from '../contract/progress';

const source = uniqueName('az-articles');
const target = uniqueName('az-articles-dr');
const backups = uniqueName('az-backups');
const BLOBS = 230;

const resources: Record<string, AzureResource> = {
  articles: { name: 'articles', kind: 'blob', account: 'tsprimary', container: source, connection: { env: 'TS_TEST_PRIMARY' }, ...scope },
  articlesDr: { name: 'articlesDr', kind: 'blob', account: 'tssecondary', container: target, connection: { env: 'TS_TEST_SECONDARY' }, ...scope },
  backups: { name: 'backups', kind: 'blob', account: 'tssecondary', container: backups, connection: { env: 'TS_TEST_SECONDARY' }, ...scope },
};
const sync = step<DataStep>({ id: 'blobs', kind: 'data', from: 'articles', to: 'articlesDr', verify: true });
const activities = azureActivities(new FakeArm());

beforeAll(async () => {
  const accounts = sandbox().azurite!.accounts;
  process.env.TS_TEST_PRIMARY = accounts.find((a) => a.role === 'primary')!.connectionString;
  process.env.TS_TEST_SECONDARY = accounts.find((a) => a.role === 'secondary')!.connectionString;
  const c = containerOf('primary', source);
  await c.create();
  for (let i = 0; i < BLOBS; i += 10) {
    await Promise.all(Array.from({ length: 10 }, (_, j) => c.getBlockBlobClient(`a/${String(i + j).padStart(4, '0')}.json`).upload(`{"article":${i + j}}`, `{"article":${i + j}}`.length)));
  }
});

describe('blob sync between accounts', () => {
  it('copies page by page, resumes from the continuation token after a kill, verifies, skips on rerun and undoes only its own blobs', async () => {
    await containerOf('secondary', target).create();
    await containerOf('secondary', target).getBlockBlobClient('kept.txt').upload('was here', 8);

    const first = await attempt(activities.syncData, input(sync, resources), {
      onHeartbeat: (d, env) => {
        if ((d as { notes?: { progress?: { continuationToken?: string } } })?.notes?.progress?.continuationToken) env.cancel();
      },
    });
    expect(first.error).toBeDefined();
    const journal = lastJournal(first.heartbeats) as { notes: { progress: { copied: number; continuationToken: string } } };
    expect(journal.notes.progress.copied).toBe(100);

    const second = await attempt(activities.syncData, input(sync, resources), { resumeFrom: journal });
    expect(second.error).toBeUndefined();
    const figures = second.result!.figures;
    expect(Number(figures['articlesDr.blobsCopied']) + Number(figures['articlesDr.blobsSkipped'])).toBe(BLOBS);
    expect(figures['articlesDr.blobsVerified']).toBe(BLOBS);
    expect(second.result!.summary).toMatch(/resumed from a previous attempt/);
    // Each page also heartbeats a reading, out of the blobs listed as the (resumed) copy began.
    expect(progressOf(second.heartbeats.at(-1))).toMatchObject({ phase: 'copying blobs', unit: 'blobs', done: BLOBS, total: BLOBS });
    const want = await blobMd5s('primary', source);
    const got = await blobMd5s('secondary', target);
    expect(Object.keys(want)).toHaveLength(BLOBS);
    for (const [name, md5] of Object.entries(want)) expect(got[name]).toBe(md5);

    const rerun = await attempt(activities.syncData, input(sync, resources));
    expect(rerun.result!.figures['articlesDr.blobsSkipped']).toBe(BLOBS);
    expect(rerun.result!.figures['articlesDr.blobsCopied']).toBe(0);

    // Undo with what the two attempts created: everything but the blob that was there before.
    const created = (second.result!.undo as { created: string[] }).created;
    expect(created).toHaveLength(BLOBS);
    const undo = await attempt(activities.undoStep, input(sync, resources, second.result!.undo));
    expect(undo.result!.summary).toMatch(new RegExp(`Deleted ${BLOBS} blobs`));
    expect(Object.keys(await blobMd5s('secondary', target))).toEqual(['kept.txt']);
  });

  it('a missing source container is one clear non-retryable sentence', async () => {
    const missing = { ...resources, articles: { ...resources.articles!, container: uniqueName('nothing') } as AzureResource };
    const { error } = await attempt(activities.syncData, input(sync, missing));
    expect(error?.type).toBe('NonRetryable');
    expect(error?.message).toMatch(/^container tsprimary\/nothing-[0-9a-f]+ does not exist; fix the plan's blob resource or create the container$/);
  });

  it('backs a container up into the backup container under the migration prefix', async () => {
    const b = step<BackupStep>({ id: 'backup', kind: 'backup', resources: ['articles'], destination: 'backups', verifyRestore: false });
    const { result, error } = await attempt(activities.backupDatabase, input(b, resources));
    expect(error).toBeUndefined();
    expect(result!.figures['articles.blobsCopied']).toBe(BLOBS);
    const names = Object.keys(await blobMd5s('secondary', backups));
    expect(names).toHaveLength(BLOBS);
    expect(names[0]).toBe(`migration-test/backup/${source}/a/0000.json`);
  });

  it('undoes a sync that was cut short after copying, with no outcome, from the blobs the target held before it', async () => {
    const dr = uniqueName('az-articles-cut');
    const cut = { ...resources, articlesDr: { ...resources.articlesDr!, container: dr } as AzureResource };
    await containerOf('secondary', dr).create();
    await containerOf('secondary', dr).getBlockBlobClient('kept.txt').upload('was here', 8);
    const before = await attempt(activities.observeStep, input(sync, cut));
    expect(before.result).toEqual({ existed: true, names: ['kept.txt'] });
    const first = await attempt(activities.syncData, input(sync, cut), {
      onHeartbeat: (d, env) => {
        if ((d as { notes?: { progress?: { continuationToken?: string } } })?.notes?.progress?.continuationToken) env.cancel();
      },
    });
    expect(first.error).toBeDefined();
    expect(Object.keys(await blobMd5s('secondary', dr)).length).toBeGreaterThan(1);

    const undo = await attempt(activities.undoStep, { ...(input(sync, cut) as object), before: before.result } as never);
    expect(undo.error).toBeUndefined();
    expect(Object.keys(await blobMd5s('secondary', dr))).toEqual(['kept.txt']);
  });

  it('keys a container backup by the run', async () => {
    const b = step<BackupStep>({ id: 'backup', kind: 'backup', resources: ['articles'], destination: 'backups', verifyRestore: false });
    const { result, error } = await attempt(activities.backupDatabase, { ...(input(b, resources) as object), runId: 'run-2' } as never);
    expect(error).toBeUndefined();
    // Not the earlier run's copies (skipped as "already there"): a prefix of its own.
    expect(result!.figures['articles.blobsCopied']).toBe(BLOBS);
    expect(Object.keys(await blobMd5s('secondary', backups)).filter((n) => n.startsWith(`migration-test/run-2/backup/${source}/`))).toHaveLength(BLOBS);
  });
});
