// What a blob-sync step reports and how it is undone, the same for every provider: the undo record (the
// created blobs, or a manifest blob naming them), the summary sentence and figures, and an undo that
// deletes only the blobs the step created. Providers differ in how they reach the containers and copy.
import type { ContainerClient } from '@azure/storage-blob';
import type { DataStep } from '../plan/types';
import type { Json, StepOutcome } from './types';
import { Context } from '@temporalio/activity';
import { ProgressMeter } from '../contract/progress';

/** Above this many created blobs, undo reads its list from a manifest blob rather than the workflow history. */
const INLINE_UNDO_LIMIT = 1000;
const DELETE_CONCURRENCY = 8;

/** What a copy did: the figures of the outcome and the undo record. */
export interface BlobSyncCounts {
  copied: number;
  skipped: number;
  bytes: number;
  verified: number;
  /** Blobs that did not exist in the target before this step: the only ones undo may delete. */
  created: string[];
}

/** Runs a storage call, translating its errors the provider's way (`what` says what was being done). */
export type StorageCall = <T>(what: string, fn: () => Promise<T>) => Promise<T>;

/**
 * A meter whose total is the blobs (and bytes) the container holds as the copy begins: one listing of
 * names, 5000 a request, against a copy of each. An estimate, since the app may add blobs meanwhile.
 */
export async function containerMeter(source: ContainerClient, phase: string, counts: (name: string) => boolean = () => true): Promise<ProgressMeter> {
  let blobs = 0;
  let bytes = 0;
  for await (const page of source.listBlobsFlat({ abortSignal: Context.current().cancellationSignal }).byPage({ maxPageSize: 5000 })) {
    const listed = page.segment.blobItems.filter((b) => counts(b.name));
    blobs += listed.length;
    bytes += listed.reduce((n, b) => n + (b.properties.contentLength ?? 0), 0);
  }
  const meter = new ProgressMeter(phase, 'blobs');
  meter.setTotal(blobs, bytes);
  return meter;
}

const asIs: StorageCall = (_what, fn) => fn();

/** Runs `fn` over `items`, at most `limit` at a time. */
export async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** "account/container to account/container", as summaries and error messages name a sync. */
export const syncRoute = (source: ContainerClient, target: ContainerClient): string =>
  `${source.accountName}/${source.containerName} to ${target.accountName}/${target.containerName}`;

const manifestName = (migrationId: string, stepId: string) => `.tiershift/${migrationId}/${stepId}.json`;
const beforeManifestName = (migrationId: string, stepId: string) => `.tiershift/${migrationId}/${stepId}.before.json`;

/** What the target held before a sync: its blob names inline, or (over the inline limit) in a manifest blob. */
export type BlobTargetBefore = { existed: boolean; names?: string[]; manifest?: string; count?: number };

/**
 * Read-only as far as the data goes: the names of the blobs `target` holds before the step's first
 * attempt. Undo deletes only blobs the source has and the target did not, so blobs a failed attempt
 * created are removed even though no outcome listed them. A long list goes to a manifest blob (one
 * write, under .tiershift/, which syncs and undo skip), so the workflow history stays small.
 */
export async function observeTarget(target: ContainerClient, migrationId: string, stepId: string, call: StorageCall = asIs): Promise<BlobTargetBefore> {
  if (!(await call(`reading container ${target.containerName}`, () => target.exists()))) return { existed: false, names: [] };
  const names: string[] = [];
  await call(`listing ${target.accountName}/${target.containerName}`, async () => {
    for await (const b of target.listBlobsFlat()) if (!b.name.startsWith('.tiershift/')) names.push(b.name);
  });
  if (names.length <= INLINE_UNDO_LIMIT) return { existed: true, names };
  const name = beforeManifestName(migrationId, stepId);
  const manifest = target.getBlockBlobClient(name);
  // Written once: a retried observation must not replace the list from before with one that has the copies.
  if (!(await call(`reading ${name}`, () => manifest.exists()))) {
    const body = JSON.stringify({ names });
    await call(`writing ${name}`, () => manifest.upload(body, Buffer.byteLength(body), { blobHTTPHeaders: { blobContentType: 'application/json' } }));
  }
  return { existed: true, manifest: name, count: names.length };
}

async function namesBefore(target: ContainerClient, before: BlobTargetBefore): Promise<Set<string> | undefined> {
  if (before.names) return new Set(before.names);
  if (!before.manifest) return undefined;
  const manifest = target.getBlobClient(before.manifest);
  if (!(await manifest.exists())) return undefined;
  return new Set((JSON.parse((await manifest.downloadToBuffer()).toString('utf8')) as { names: string[] }).names);
}

const isTargetBefore = (v: unknown): v is BlobTargetBefore => typeof v === 'object' && v !== null && typeof (v as BlobTargetBefore).existed === 'boolean';

/**
 * The outcome of a sync from `source` to `target`: summary, figures and undo record. Over the inline limit
 * the created names go to a manifest blob in the target, and the undo record names that blob instead.
 */
export async function blobSyncOutcome(
  source: ContainerClient,
  target: ContainerClient,
  sync: { migrationId: string; step: Pick<DataStep, 'id' | 'to' | 'verify'>; counts: BlobSyncCounts; resumed: boolean },
  call: StorageCall = asIs,
): Promise<StepOutcome> {
  const { migrationId, step, counts, resumed } = sync;
  let undo: Json = { created: counts.created };
  if (counts.created.length > INLINE_UNDO_LIMIT) {
    const name = manifestName(migrationId, step.id);
    const body = JSON.stringify({ created: counts.created });
    await call(`writing the undo manifest ${name}`, () => target.getBlockBlobClient(name).upload(body, Buffer.byteLength(body), { blobHTTPHeaders: { blobContentType: 'application/json' } }));
    undo = { manifest: name, count: counts.created.length };
  }
  const unverified = counts.copied + counts.skipped - counts.verified;
  return {
    summary:
      `Copied ${counts.copied} blobs (${counts.bytes} bytes) server-side from ${syncRoute(source, target)}, skipped ${counts.skipped} already in place` +
      (step.verify ? `, verified ${counts.verified} by MD5 and length${unverified ? ` (${unverified} without an MD5, by length only)` : ''}` : '') +
      (resumed ? ', resumed from a previous attempt' : ''),
    figures: {
      [`${step.to}.blobsCopied`]: counts.copied,
      [`${step.to}.blobsSkipped`]: counts.skipped,
      [`${step.to}.bytesCopied`]: counts.bytes,
      [`${step.to}.blobsVerified`]: counts.verified,
    },
    undo,
  };
}

/**
 * Deletes the blobs the sync created in `target` (resource `targetName`), as its undo record lists them
 * inline or in the manifest; blobs that were in the target before the step are never touched.
 */
export async function undoBlobSyncIn(
  target: ContainerClient,
  targetName: string,
  undoRecord: Json | undefined,
  call: StorageCall = asIs,
  observed?: { before: Json | undefined; source: ContainerClient },
): Promise<StepOutcome> {
  const undo = (undoRecord ?? {}) as { created?: string[]; manifest?: string };
  let created = undo.created ?? [];
  if (undo.manifest) {
    const manifest = target.getBlobClient(undo.manifest);
    if (await manifest.exists()) created = (JSON.parse((await manifest.downloadToBuffer()).toString('utf8')) as { created: string[] }).created;
  }
  // With the target's names from before the step: every blob the source has and the target did not is
  // one the step created, whether or not an attempt lived to report it.
  const before = observed && isTargetBefore(observed.before) ? observed.before : undefined;
  const had = before ? await call(`reading what ${target.containerName} held before`, () => namesBefore(target, before)) : undefined;
  if (had && before) {
    const found = new Set(created);
    if (before.existed || (await call(`reading container ${target.containerName}`, () => target.exists()))) {
      await call(`listing ${target.accountName}/${target.containerName}`, async () => {
        const inTarget = new Set<string>();
        for await (const b of target.listBlobsFlat()) if (!b.name.startsWith('.tiershift/') && !had.has(b.name)) inTarget.add(b.name);
        if (!inTarget.size) return;
        for await (const b of observed!.source.listBlobsFlat()) if (inTarget.has(b.name)) found.add(b.name);
      });
    }
    created = [...found].filter((name) => !had.has(name));
  }
  let deleted = 0;
  await call(`deleting copied blobs from ${target.containerName}`, () =>
    eachLimited(created, DELETE_CONCURRENCY, async (name) => {
      if ((await target.getBlobClient(name).deleteIfExists({ deleteSnapshots: 'include' })).succeeded) deleted += 1;
    }),
  );
  if (undo.manifest) await target.getBlobClient(undo.manifest).deleteIfExists();
  if (before?.manifest) await target.getBlobClient(before.manifest).deleteIfExists();
  return {
    summary: `Deleted ${deleted} blobs the sync created in ${target.accountName}/${target.containerName}; blobs that were there before are untouched`,
    figures: { [`${targetName}.blobsDeleted`]: deleted },
  };
}
