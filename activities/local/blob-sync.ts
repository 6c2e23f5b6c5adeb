// Blob sync on the sandbox: the local twin of `az storage copy` between regions. Every blob is copied
// server-side (the target account reads the source through a short-lived SAS URL), so no blob data
// passes through the worker; listing goes page by page and the heartbeat carries the position.
import { BlobSASPermissions, BlobServiceClient, RestError, type BlobItem, type ContainerClient } from '@azure/storage-blob';
import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import type { DataStep, Resource } from '../../plan/types';
import type { LocalBlob } from './provider';
import { blobSyncOutcome, containerMeter, eachLimited, observeTarget, undoBlobSyncIn, type BlobSyncCounts } from '../blob-outcome';
import type { Json, StepInput, StepOutcome, UndoInput } from '../types';
import { storageAccount } from './sandbox';
import { resolveSecret } from '../secrets';
import type { Progress } from '../../contract/progress';

/** Copy Blob From URL is synchronous only up to this size; bigger blobs use the asynchronous copy. */
const SYNC_COPY_LIMIT = 256 * 1024 * 1024;
const COPY_CONCURRENCY = 8;

/** Where a copy stands after a whole page: what the heartbeat carries and a retry resumes from. */
export interface CopyProgress extends BlobSyncCounts {
  continuationToken?: string;
}

export function blobResource(resources: Record<string, Resource>, name: string | undefined, role: string): LocalBlob {
  const resource = name === undefined ? undefined : resources[name];
  if (resource?.kind !== 'blob') {
    throw ApplicationFailure.nonRetryable(`the ${role} ${name ?? '(none)'} is not a blob resource of the plan; name a resource of kind blob`, 'NonRetryable');
  }
  return resource as LocalBlob;
}

/**
 * The client holds the account's shared key, which is what lets it sign SAS URLs for the source; a
 * resource with its own `connection` (e.g. a SAS connection string) uses that instead.
 */
export async function containerClient(resource: LocalBlob): Promise<ContainerClient> {
  const connection = resource.connection ? await resolveSecret(resource.connection, `the storage account of ${resource.name}`) : storageAccount(resource).connectionString;
  return BlobServiceClient.fromConnectionString(connection).getContainerClient(resource.container);
}

const md5Of = (bytes: Uint8Array | undefined): string | undefined => (bytes?.length ? Buffer.from(bytes).toString('base64') : undefined);

async function targetProperties(target: ContainerClient, name: string, abortSignal: AbortSignal) {
  try {
    return await target.getBlobClient(name).getProperties({ abortSignal });
  } catch (err) {
    if (err instanceof RestError && err.statusCode === 404) return undefined;
    throw err;
  }
}

/**
 * Copies one source blob to `targetName` unless the target already holds the same bytes (same MD5
 * and length). Verification compares the target's length and Content-MD5 with the source's: the
 * MD5 is the digest the storage service recorded for the source upload and copies with the blob, so a
 * match proves the copy completed from that version. A source without an MD5 is checked by length only.
 */
async function copyBlob(
  source: ContainerClient,
  target: ContainerClient,
  blob: BlobItem,
  targetName: string,
  progress: CopyProgress,
  verify: boolean,
): Promise<void> {
  const abortSignal = Context.current().cancellationSignal;
  const length = blob.properties.contentLength ?? 0;
  const md5 = md5Of(blob.properties.contentMD5);
  const before = await targetProperties(target, targetName, abortSignal);
  if (before && before.contentLength === length && md5 !== undefined && md5Of(before.contentMD5) === md5) {
    progress.skipped += 1;
    progress.verified += 1;
    return;
  }

  const sourceBlob = source.getBlobClient(blob.name);
  const sasUrl = await sourceBlob.generateSasUrl({ permissions: BlobSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 60 * 60_000) });
  // ifMatch: copy exactly the version listed, so a blob rewritten meanwhile fails this attempt rather than being verified against stale properties.
  const sourceConditions = blob.properties.etag ? { ifMatch: blob.properties.etag } : undefined;
  const to = target.getBlobClient(targetName);
  if (blob.properties.blobType === 'BlockBlob' && length <= SYNC_COPY_LIMIT) {
    await to.syncCopyFromURL(sasUrl, { abortSignal, sourceConditions, sourceContentMD5: blob.properties.contentMD5 });
  } else {
    const poller = await to.beginCopyFromURL(sasUrl, { abortSignal, sourceConditions, intervalInMs: 2_000, onProgress: () => heartbeat({ copying: targetName }) });
    await poller.pollUntilDone();
  }
  progress.copied += 1;
  progress.bytes += length;
  if (!before) progress.created.push(targetName);

  if (!verify) return;
  const after = await targetProperties(target, targetName, abortSignal);
  if (after?.contentLength !== length || (md5 !== undefined && md5Of(after.contentMD5) !== md5)) {
    throw new Error(
      `copy of ${source.accountName}/${source.containerName}/${blob.name} to ${target.accountName}/${target.containerName}/${targetName} does not match the source (length ${after?.contentLength} vs ${length}, MD5 ${md5Of(after?.contentMD5)} vs ${md5})`,
    );
  }
  if (md5 !== undefined) progress.verified += 1;
}

/**
 * Copies every blob of `source` into `target` (under `prefix`), page by page, starting from `progress`
 * (a resumed heartbeat); `onPage` runs after each page with the position to resume from.
 */
export async function copyContainer(
  source: ContainerClient,
  target: ContainerClient,
  opts: { prefix?: string; pageSize?: number; verify?: boolean; progress?: CopyProgress; onPage?: (progress: CopyProgress, reading: Progress) => void; phase?: string },
): Promise<CopyProgress> {
  const progress: CopyProgress = opts.progress ?? { copied: 0, skipped: 0, bytes: 0, verified: 0, created: [] };
  const abortSignal = Context.current().cancellationSignal;
  if (!(await source.exists({ abortSignal }))) {
    throw ApplicationFailure.nonRetryable(`container ${source.accountName}/${source.containerName} does not exist; fix the plan's blob resource or create the container`, 'NonRetryable');
  }
  await target.createIfNotExists({ abortSignal });
  // An empty resumed token means the listing had already finished.
  if (opts.progress && !opts.progress.continuationToken) return progress;
  const meter = await containerMeter(source, opts.phase ?? 'copying blobs');
  // Skipped blobs count as done, and their bytes too: the total holds them.
  let bytesSeen = progress.bytes;
  const pages = source.listBlobsFlat({ abortSignal }).byPage({ maxPageSize: opts.pageSize ?? 100, continuationToken: progress.continuationToken });
  for await (const page of pages) {
    await eachLimited(page.segment.blobItems, COPY_CONCURRENCY, (blob) =>
      copyBlob(source, target, blob, `${opts.prefix ?? ''}${blob.name}`, progress, opts.verify ?? true),
    );
    progress.continuationToken = page.continuationToken || undefined;
    bytesSeen += page.segment.blobItems.reduce((n, b) => n + (b.properties.contentLength ?? 0), 0);
    opts.onPage?.(progress, meter.read(progress.copied + progress.skipped, bytesSeen));
  }
  return progress;
}

/** Heartbeat details of an earlier attempt, if they look like ours. */
function resumedProgress(): CopyProgress | undefined {
  const details = Context.current().info.heartbeatDetails as Partial<CopyProgress> | undefined;
  if (!details || typeof details.copied !== 'number' || !Array.isArray(details.created)) return undefined;
  return {
    continuationToken: typeof details.continuationToken === 'string' && details.continuationToken ? details.continuationToken : undefined,
    copied: details.copied,
    skipped: details.skipped ?? 0,
    bytes: details.bytes ?? 0,
    verified: details.verified ?? 0,
    created: details.created,
  };
}

/** Server-side incremental copy of a container to another account or container, resumable from its heartbeat. */
export async function syncBlobs(input: StepInput<DataStep>, options: { pageSize?: number } = {}): Promise<StepOutcome> {
  const { step, migrationId } = input;
  const from = blobResource(input.resources, step.from, 'data source');
  const to = blobResource(input.resources, step.to, 'data target');
  const source = await containerClient(from);
  const target = await containerClient(to);
  if (source.url === target.url) {
    throw ApplicationFailure.nonRetryable(`${step.from} and ${step.to} are the same container; make the data step copy to another account or container`, 'NonRetryable');
  }

  const resumed = resumedProgress();
  const result = await copyContainer(source, target, {
    pageSize: options.pageSize,
    verify: step.verify,
    progress: resumed,
    phase: 'copying blobs',
    onPage: (p, progress) => heartbeat({ ...p, progress } as unknown as Json),
  });

  return blobSyncOutcome(source, target, { migrationId, step, counts: result, resumed: Boolean(resumed) });
}

/** Deletes the blobs the sync created; blobs that existed in the target before the step are never touched. */
export async function undoBlobSync(input: UndoInput): Promise<StepOutcome> {
  const step = input.step as DataStep;
  const to = blobResource(input.resources, step.to, 'data target');
  const target = await containerClient(to);
  const source = await containerClient(blobResource(input.resources, step.from, 'data source'));
  return undoBlobSyncIn(target, step.to, input.undo, undefined, { before: input.before, source });
}

/** Read-only: the blobs the target holds before the sync (see observeTarget). */
export async function observeBlobSync(input: StepInput<DataStep>): Promise<Json> {
  const target = await containerClient(blobResource(input.resources, input.step.to, 'data target'));
  return observeTarget(target, input.migrationId, input.step.id);
}
