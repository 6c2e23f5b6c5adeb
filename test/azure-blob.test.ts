// The Azure provider's Blob Storage copies against Azurite (the sandbox's two accounts) with the real
// SDK: server-side copy with a SAS for the source, MD5 verification, incremental reruns, resumption from
// the heartbeat's continuation token, and an undo that deletes only what the step created.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AzureResource } from '../activities/azure/provider';
import type { BackupStep, DataStep } from '../plan/types';
import { FakeArm } from './support/fake-arm';
import { FakeStorage } from './support/fake-arm-storage';
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
// The storage SDK goes through the fake ARM's transport, which hands Azurite's requests on (and fails
// those a test asks to, with Azure's error codes).
const arm = new FakeArm();
const storage = new FakeStorage(arm);
const activities = azureActivities(arm);
// Whatever the provider sends to Resource Manager here conforms to the spec of its api-version (test/support/azure-specs).
afterEach(() => expect(arm.specViolations).toEqual([]));

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

  /** A source and a target container of their own, with `blobs` uploaded to the source. */
  async function pair(blobs: Record<string, (c: ReturnType<typeof containerOf>) => Promise<unknown>>) {
    const src = uniqueName('az-src');
    const dst = uniqueName('az-dst');
    const c = containerOf('primary', src);
    await c.create();
    for (const [, put] of Object.entries(blobs)) await put(c);
    const res = {
      ...resources,
      articles: { ...resources.articles!, container: src } as AzureResource,
      articlesDr: { ...resources.articlesDr!, container: dst } as AzureResource,
    };
    return { src, dst, res };
  }

  it('skips on rerun a blob without a Content-MD5 (a multi-block upload) by the source ETag its copy recorded', async () => {
    const { res, dst } = await pair({
      'big.bin': async (c) => {
        const b = c.getBlockBlobClient('big.bin');
        // Two blocks committed as a list: the service computes no MD5 for the whole blob.
        await b.stageBlock(Buffer.from('block-0').toString('base64'), Buffer.alloc(1024, 1), 1024);
        await b.stageBlock(Buffer.from('block-1').toString('base64'), Buffer.alloc(512, 2), 512);
        await b.commitBlockList([Buffer.from('block-0').toString('base64'), Buffer.from('block-1').toString('base64')]);
      },
    });
    expect((await containerOf('primary', (res.articles as { container: string }).container).getBlobClient('big.bin').getProperties()).contentMD5).toBeUndefined();
    const first = await attempt(activities.syncData, input(sync, res));
    expect(first.error).toBeUndefined();
    expect(first.result!.figures).toMatchObject({ 'articlesDr.blobsCopied': 1 });
    const again = await attempt(activities.syncData, input(sync, res));
    expect(again.result!.figures).toMatchObject({ 'articlesDr.blobsCopied': 0, 'articlesDr.blobsSkipped': 1 });
    // A source rewritten since is copied again.
    await containerOf('primary', (res.articles as { container: string }).container).getBlockBlobClient('big.bin').upload('changed', 7);
    const third = await attempt(activities.syncData, input(sync, res));
    expect(third.result!.figures).toMatchObject({ 'articlesDr.blobsCopied': 1, 'articlesDr.blobsSkipped': 0 });
    expect((await containerOf('secondary', dst).getBlobClient('big.bin').getProperties()).contentLength).toBe(7);
  });

  it('carries the access tier, index tags and metadata over', async () => {
    const { res, dst } = await pair({
      'cool.json': (c) => c.getBlockBlobClient('cool.json').upload('{"a":1}', 7, { metadata: { owner: 'team-a' }, tags: { project: 'compliance', class: 'cold' }, tier: 'Cool' }),
      'plain.json': (c) => c.getBlockBlobClient('plain.json').upload('{"b":2}', 7),
    });
    const done = await attempt(activities.syncData, input(sync, res));
    expect(done.error).toBeUndefined();
    const cool = containerOf('secondary', dst).getBlobClient('cool.json');
    const props = await cool.getProperties();
    expect(props.metadata).toMatchObject({ owner: 'team-a' });
    expect(props.accessTier).toBe('Cool');
    expect((await cool.getTags()).tags).toEqual({ project: 'compliance', class: 'cold' });
    // A blob whose tier is the account default keeps the target account's default.
    expect((await containerOf('secondary', dst).getBlobClient('plain.json').getProperties()).accessTierInferred).toBe(true);
  });

  it('classifies copy errors by code: an archived blob and a firewalled source fail at once, a pending copy is waited for', async () => {
    const { res, src } = await pair({
      'one.json': (c) => c.getBlockBlobClient('one.json').upload('{"one":1}', 9),
      'two.json': (c) => c.getBlockBlobClient('two.json').upload('{"two":2}', 9),
    });
    const target = (name: string) => new RegExp(`/${(res.articlesDr as { container: string }).container}/${name}$`);

    storage.fail({ method: 'PUT', path: target('one.json'), status: 409, code: 'BlobArchived', message: 'This operation is not permitted on an archived blob.' });
    const archived = await attempt(activities.syncData, input(sync, res));
    expect(archived.error?.type).toBe('NonRetryable');
    expect(archived.error?.message).toBe(
      `blob one.json in tsprimary/${src} is in the Archive tier, which cannot be copied; rehydrate it to Hot or Cool (az storage blob set-tier --tier Hot --rehydrate-priority High), wait for the rehydration, then resume`,
    );

    // two.json was copied beside it; one.json is still to copy.
    storage.fail({ method: 'PUT', path: target('one.json'), status: 403, code: 'CannotVerifyCopySource', message: 'This request is not authorized to perform this operation.' });
    const firewalled = await attempt(activities.syncData, input(sync, res));
    expect(firewalled.error?.type).toBe('NonRetryable');
    expect(firewalled.error?.message).toMatch(/^storage account tssecondary could not read one\.json from tsprimary\/az-src-[0-9a-f]+ \(CannotVerifyCopySource\): .*firewall or private endpoint must let the target account in; add a resource instance rule for tssecondary/);
    expect(firewalled.error?.message).not.toMatch(/role/);

    // A copy an earlier attempt started is still running into one.json: it is waited for (three reads), then the blob copied.
    storage.fail({ method: 'PUT', path: target('one.json'), status: 409, code: 'PendingCopyOperation', message: 'There is currently a pending copy operation.', pendingReads: 3 });
    const waited = await attempt(activities.syncData, input(sync, res));
    expect(waited.error).toBeUndefined();
    const waits = waited.heartbeats.filter((h) => /the copy already running into tssecondary\/az-dst-[0-9a-f]+\/one\.json/.test(String((h as { waiting?: string }).waiting)));
    // (A keepalive may repeat a heartbeat: the three reads are told apart by the progress each reported.)
    expect(new Set(waits.map((h) => (h as { copyProgress?: string }).copyProgress))).toEqual(new Set(['512/2048', '1024/2048', '1536/2048']));
    expect(Number(waited.result!.figures['articlesDr.blobsCopied']) + Number(waited.result!.figures['articlesDr.blobsSkipped'])).toBe(2);
  });

  it('refuses a source blob in the Archive tier before copying it, with what to do', async () => {
    const { res } = await pair({ 'old.json': (c) => c.getBlockBlobClient('old.json').upload('{"old":1}', 9, { tier: 'Archive' }) });
    const { error } = await attempt(activities.syncData, input(sync, res));
    expect(error?.type).toBe('NonRetryable');
    expect(error?.message).toMatch(/^blob old\.json in tsprimary\/az-src-[0-9a-f]+ is in the Archive tier, which cannot be copied; rehydrate it/);
  });
});
