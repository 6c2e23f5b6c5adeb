// Blob Storage between accounts (the runbook's `azcopy sync` to the second region): server-side copies,
// where the target account reads the source through a short-lived read-only SAS, so no blob data passes
// through the worker. Incremental: a blob already there with the same length and either the same MD5 or
// the source's ETag recorded on it by an earlier copy is skipped (a multi-block upload has no MD5). The
// copy carries the source's metadata, access tier and index tags; it is verified, and resumable: the
// listing's continuation token is in the heartbeat.
import {
  BlobSASPermissions,
  BlobServiceClient,
  generateBlobSASQueryParameters,
  RestError,
  StorageSharedKeyCredential,
  type BlobClient,
  type BlobItem,
  type ContainerClient,
  type StoragePipelineOptions,
  type UserDelegationKey,
} from '@azure/storage-blob';
import { createHttpHeaders, createPipelineRequest, type HttpClient } from '@azure/core-rest-pipeline';
import { ApplicationFailure, Context, sleep } from '@temporalio/activity';
import type { DataStep } from '../../plan/types';
import type { AzureBlob } from './provider';
import { blobSyncOutcome, containerMeter, observeTarget, syncRoute, undoBlobSyncIn, type BlobSyncCounts } from '../blob-outcome';
import type { Progress } from '../../contract/progress';
import type { Json, StepInput, StepOutcome, UndoInput } from '../types';
import { azureFailure, eachLimited, Journal, progressHeartbeat, resourceOf, type AzureContext } from './common';
import { resolveSecret } from '../secrets';

/** Put Blob From URL copies synchronously only up to 256 MiB; bigger blobs use the asynchronous copy. */
export const SYNC_COPY_LIMIT = 256 * 1024 * 1024;
const COPY_CONCURRENCY = 8;
const SAS_LIFETIME_MS = 60 * 60_000;

export interface Account {
  service: BlobServiceClient;
  container: ContainerClient;
  /** A read-only SAS URL for a source blob, signed with the account key or a user delegation key. */
  readUrl(blob: BlobClient): Promise<string>;
}

/**
 * The account's client: from a connection string the plan references (account key: account SAS), or
 * with the worker's Azure identity (user delegation SAS, which needs Storage Blob Data Reader or more).
 */
export async function account(az: AzureContext, resource: AzureBlob, opts: { blobEndpoint?: string } = {}): Promise<Account> {
  // The worker's transport (tests: the fake ARM, which hands Azurite's requests on) and its cloud's storage host.
  const pipeline: StoragePipelineOptions = az.options.httpClient ? { httpClient: storageTransport(az.options.httpClient) } : {};
  const service = resource.connection
    ? BlobServiceClient.fromConnectionString(await resolveSecret(resource.connection, `storage account ${resource.account}`), pipeline)
    : new BlobServiceClient(opts.blobEndpoint ?? `https://${resource.account}.blob.${az.cloud.storageSuffix}`, az.credential(), pipeline);
  let delegation: Promise<UserDelegationKey> | undefined;
  const readUrl = async (blob: BlobClient) => {
    const expiresOn = new Date(Date.now() + SAS_LIFETIME_MS);
    if (service.credential instanceof StorageSharedKeyCredential) return blob.generateSasUrl({ permissions: BlobSASPermissions.parse('r'), expiresOn });
    delegation ??= service.getUserDelegationKey(new Date(Date.now() - 5 * 60_000), expiresOn).catch((err: unknown) => {
      delegation = undefined;
      throw azureFailure(`getting a user delegation key for ${resource.account}`, err);
    });
    const key = await delegation;
    const sas = generateBlobSASQueryParameters({ containerName: blob.containerName, blobName: blob.name, permissions: BlobSASPermissions.parse('r'), expiresOn }, key, service.accountName);
    return `${blob.url}?${sas.toString()}`;
  };
  return { service, container: service.getContainerClient(resource.container), readUrl };
}

/**
 * The storage SDK still takes a transport of the older core-http shape (it converts it back inside):
 * this hands its requests to the provider's core-rest-pipeline HttpClient, so Blob Storage goes through
 * the same transport as every other Azure call.
 */
function storageTransport(client: HttpClient): NonNullable<StoragePipelineOptions['httpClient']> {
  return {
    sendRequest: async (r) => {
      const res = await client.sendRequest(
        createPipelineRequest({
          url: r.url,
          method: r.method,
          headers: createHttpHeaders(r.headers.rawHeaders()),
          body: r.body,
          abortSignal: r.abortSignal,
          timeout: r.timeout,
          streamResponseStatusCodes: r.streamResponseStatusCodes,
          // As the storage SDK's own transport: an account reached over http (Azurite) stays reachable.
          allowInsecureConnection: r.url.startsWith('http:'),
        }),
      );
      const headers = r.headers.clone();
      for (const name of headers.headerNames()) headers.remove(name);
      for (const [name, value] of res.headers) headers.set(name, value);
      return { request: r, status: res.status, headers, bodyAsText: res.bodyAsText ?? null, readableStreamBody: res.readableStreamBody, blobBody: res.blobBody };
    },
  };
}

export interface CopyProgress extends BlobSyncCounts {
  continuationToken?: string;
  /** Blobs whose copy waited for one already running into the same target blob. */
  waitedForCopies?: number;
}

const md5Of = (bytes: Uint8Array | undefined): string | undefined => (bytes?.length ? Buffer.from(bytes).toString('base64') : undefined);

async function propertiesOrNothing(blob: BlobClient, abortSignal: AbortSignal) {
  try {
    return await blob.getProperties({ abortSignal });
  } catch (err) {
    if (err instanceof RestError && err.statusCode === 404) return undefined;
    throw err;
  }
}

/** The metadata key each copy records the source's ETag under: how a rerun knows a blob without an MD5 is already there. */
export const SOURCE_ETAG_KEY = 'tiershiftsourceetag';
const etagValue = (etag: string | undefined) => etag?.replace(/"/g, '');

/**
 * Storage error codes a copy meets, by what they mean: kept apart from common.ts's error translation so
 * a later merge can fold the table into its 409 classifier. `wait`: another copy into the same blob is
 * still running; `archived` and `sourceUnreachable` will not pass by retrying.
 */
export const BLOB_COPY_ERRORS: Record<string, 'wait' | 'archived' | 'sourceUnreachable'> = {
  PendingCopyOperation: 'wait',
  BlobArchived: 'archived',
  CannotVerifyCopySource: 'sourceUnreachable',
};

interface CopyContext {
  source: Account;
  target: ContainerClient;
  progress: CopyProgress;
  verify: boolean;
  /** How often a pending copy into the target is polled. */
  pollIntervalMs: number;
}

const archived = (source: Account, name: string) =>
  ApplicationFailure.nonRetryable(
    `blob ${name} in ${source.container.accountName}/${source.container.containerName} is in the Archive tier, which cannot be copied; rehydrate it to Hot or Cool (az storage blob set-tier --tier Hot --rehydrate-priority High), wait for the rehydration, then resume`,
    'NonRetryable',
  );

/** Copies one blob unless the target already holds the same bytes, then checks length and MD5. */
async function copyBlob(ctx: CopyContext, blob: BlobItem, targetName: string): Promise<void> {
  const { source, target, progress } = ctx;
  if (blob.properties.accessTier === 'Archive') throw archived(source, blob.name);
  for (;;) {
    try {
      return await copyOnce(ctx, blob, targetName);
    } catch (err) {
      const code = (err as RestError).code;
      const meaning = code ? BLOB_COPY_ERRORS[code] : undefined;
      if (meaning === 'archived') throw archived(source, blob.name);
      if (meaning === 'sourceUnreachable') {
        throw ApplicationFailure.nonRetryable(
          `storage account ${target.accountName} could not read ${blob.name} from ${source.container.accountName}/${source.container.containerName} (CannotVerifyCopySource): the copy runs between the accounts, so the source account's firewall or private endpoint must let the target account in; add a resource instance rule for ${target.accountName} (or allow trusted Azure services) on ${source.container.accountName}, then resume`,
          'NonRetryable',
        );
      }
      if (meaning !== 'wait') throw err;
      // An earlier attempt's asynchronous copy into this blob is still running: wait for it, then look again.
      await pendingCopyDone(ctx, targetName);
      progress.waitedForCopies = (progress.waitedForCopies ?? 0) + 1;
    }
  }
}

async function pendingCopyDone(ctx: CopyContext, targetName: string): Promise<void> {
  const to = ctx.target.getBlobClient(targetName);
  for (;;) {
    const props = await propertiesOrNothing(to, Context.current().cancellationSignal);
    if (props?.copyStatus !== 'pending') return;
    progressHeartbeat({ waiting: `the copy already running into ${ctx.target.accountName}/${ctx.target.containerName}/${targetName}`, copyProgress: props.copyProgress ?? '' });
    await sleep(ctx.pollIntervalMs);
  }
}

async function copyOnce({ source, target, progress, verify }: CopyContext, blob: BlobItem, targetName: string): Promise<void> {
  const abortSignal = Context.current().cancellationSignal;
  const length = blob.properties.contentLength ?? 0;
  const md5 = md5Of(blob.properties.contentMD5);
  const etag = etagValue(blob.properties.etag);
  const to = target.getBlobClient(targetName);
  const before = await propertiesOrNothing(to, abortSignal);
  const sameMd5 = md5 !== undefined && md5Of(before?.contentMD5) === md5;
  const recorded = etag !== undefined && before?.metadata?.[SOURCE_ETAG_KEY] === etag;
  if (before && before.contentLength === length && (sameMd5 || recorded)) {
    progress.skipped += 1;
    if (md5 !== undefined) progress.verified += 1;
    return;
  }
  const url = await source.readUrl(source.container.getBlobClient(blob.name));
  // ifMatch: copy exactly the version listed; a blob rewritten meanwhile fails this attempt instead of being verified against stale properties.
  const sourceConditions = blob.properties.etag ? { ifMatch: blob.properties.etag } : undefined;
  // What the copy carries over: metadata (plus the source version it copies), the access tier when the
  // blob has one of its own (an inferred tier is the account default, which the target has its own of),
  // and the index tags.
  const carried = {
    metadata: { ...(blob.metadata ?? {}), ...(etag ? { [SOURCE_ETAG_KEY]: etag } : {}) },
    ...(blob.properties.accessTier && !blob.properties.accessTierInferred ? { tier: blob.properties.accessTier } : {}),
    ...(blob.tags && Object.keys(blob.tags).length ? { tags: blob.tags } : {}),
  };
  if (blob.properties.blobType === 'BlockBlob' && length <= SYNC_COPY_LIMIT) {
    await to.syncCopyFromURL(url, { abortSignal, sourceConditions, sourceContentMD5: blob.properties.contentMD5, ...carried });
  } else {
    const poller = await to.beginCopyFromURL(url, { abortSignal, sourceConditions, intervalInMs: 2_000, onProgress: () => progressHeartbeat({ copying: targetName }), ...carried });
    await poller.pollUntilDone();
  }
  progress.copied += 1;
  progress.bytes += length;
  if (!before) progress.created.push(targetName);
  if (!verify) return;
  const after = await propertiesOrNothing(to, abortSignal);
  if (after?.contentLength !== length || (md5 !== undefined && md5Of(after.contentMD5) !== md5)) {
    throw new Error(`the copy of ${blob.name} to ${target.accountName}/${target.containerName}/${targetName} does not match the source (length ${after?.contentLength} vs ${length}, MD5 ${md5Of(after?.contentMD5)} vs ${md5}); retrying`);
  }
  if (md5 !== undefined) progress.verified += 1;
}

/** Copies every blob of the source into `target` (under `prefix`) page by page, from `progress` on. */
export async function copyContainer(
  source: Account,
  target: ContainerClient,
  opts: { prefix?: string; pageSize?: number; verify?: boolean; progress?: CopyProgress; onPage?: (p: CopyProgress, reading: Progress) => void; phase?: string; pollIntervalMs?: number },
): Promise<CopyProgress> {
  const progress: CopyProgress = opts.progress ?? { copied: 0, skipped: 0, bytes: 0, verified: 0, created: [] };
  const abortSignal = Context.current().cancellationSignal;
  const from = source.container;
  if (!(await from.exists({ abortSignal }))) {
    throw ApplicationFailure.nonRetryable(`container ${from.accountName}/${from.containerName} does not exist; fix the plan's blob resource or create the container`, 'NonRetryable');
  }
  await target.createIfNotExists({ abortSignal });
  // A resumed listing without a token had already finished.
  if (opts.progress && !opts.progress.continuationToken) return progress;
  const copied = (name: string) => !name.startsWith('.tiershift/');
  const meter = await containerMeter(from, opts.phase ?? 'copying blobs', copied);
  // Skipped blobs count as done, and their bytes too: the total holds them.
  let bytesSeen = progress.bytes;
  // Metadata and index tags come with the listing, to be carried over by each copy.
  const pages = from.listBlobsFlat({ abortSignal, includeMetadata: true, includeTags: true }).byPage({ maxPageSize: opts.pageSize ?? 100, continuationToken: progress.continuationToken });
  for await (const page of pages) {
    const blobs = page.segment.blobItems.filter((b) => copied(b.name));
    const ctx: CopyContext = { source, target, progress, verify: opts.verify ?? true, pollIntervalMs: opts.pollIntervalMs ?? 2_000 };
    await eachLimited(blobs, COPY_CONCURRENCY, (blob) => copyBlob(ctx, blob, `${opts.prefix ?? ''}${blob.name}`));
    progress.continuationToken = page.continuationToken || undefined;
    bytesSeen += blobs.reduce((n, b) => n + (b.properties.contentLength ?? 0), 0);
    opts.onPage?.(progress, meter.read(progress.copied + progress.skipped, bytesSeen));
  }
  return progress;
}

/** Records where a copy stands (what a retry resumes from) and the reading, in one heartbeat. */
function notePage(journal: Journal, key: string, page: CopyProgress, reading: Progress): void {
  journal.state.notes[key] = { ...page } as unknown as Json;
  progressHeartbeat({ progress: reading as unknown as Json });
}

async function storageCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw azureFailure(what, err);
  }
}

export async function syncBlobs(az: AzureContext, input: StepInput<DataStep>, options: { pageSize?: number } = {}): Promise<StepOutcome> {
  const { step, migrationId } = input;
  const from = await account(az, resourceOf(input.resources, step.from, 'blob', 'data source'));
  const to = await account(az, resourceOf(input.resources, step.to, 'blob', 'data target'));
  if (from.container.url === to.container.url) {
    throw ApplicationFailure.nonRetryable(`${step.from} and ${step.to} are the same container; make the data step copy to another account or container`, 'NonRetryable');
  }
  const journal = new Journal();
  const resumed = journal.state.notes.progress as unknown as CopyProgress | undefined;
  const result = await storageCall(`copying ${syncRoute(from.container, to.container)}`, () =>
    copyContainer(from, to.container, { pageSize: options.pageSize, verify: step.verify, progress: resumed ? { ...resumed, created: [...resumed.created] } : undefined, phase: 'copying blobs', pollIntervalMs: az.pollIntervalMs, onPage: (p, reading) => notePage(journal, 'progress', p, reading) }),
  );
  return blobSyncOutcome(from.container, to.container, { migrationId, step, counts: result, resumed: Boolean(resumed) }, storageCall);
}

/** Deletes the blobs the sync created; blobs that were in the target before the step are never touched. */
export async function undoBlobSync(az: AzureContext, input: UndoInput): Promise<StepOutcome> {
  const step = input.step as DataStep;
  const to = await account(az, resourceOf(input.resources, step.to, 'blob', 'data target'));
  const from = await account(az, resourceOf(input.resources, step.from, 'blob', 'data source'));
  return undoBlobSyncIn(to.container, step.to, input.undo, storageCall, { before: input.before, source: from.container });
}

/** Read-only: the blobs the target holds before the sync (see observeTarget). */
export async function observeBlobSync(az: AzureContext, input: StepInput<DataStep>): Promise<Json> {
  const to = await account(az, resourceOf(input.resources, input.step.to, 'blob', 'data target'));
  return observeTarget(to.container, input.migrationId, input.step.id, storageCall);
}

/** A container copied server-side into the backup container, under the migration's prefix; reused blobs are skipped. */
export async function backupContainer(az: AzureContext, resource: AzureBlob, destination: AzureBlob, prefix: string, journal: Journal): Promise<{ progress: CopyProgress; url: string }> {
  const from = await account(az, resource);
  const to = await account(az, destination);
  const key = `backup:${resource.name}`;
  const resumed = journal.state.notes[key] as unknown as CopyProgress | undefined;
  const progress = await storageCall(`backing up ${resource.account}/${resource.container}`, () =>
    copyContainer(from, to.container, { prefix, verify: true, progress: resumed, phase: `copying blobs of ${resource.name}`, pollIntervalMs: az.pollIntervalMs, onPage: (p, reading) => notePage(journal, key, p, reading) }),
  );
  return { progress, url: `${to.container.url}/${prefix}` };
}

export async function checkContainer(az: AzureContext, resource: AzureBlob): Promise<StepOutcome> {
  const a = await account(az, resource);
  const props = await storageCall(`reading container ${resource.account}/${resource.container}`, () => a.container.getProperties());
  return {
    summary: `${resource.name} reachable: container ${resource.account}/${resource.container}${props.lastModified ? `, last modified ${props.lastModified.toISOString()}` : ''}`,
    figures: { [`${resource.name}.reachable`]: true },
  };
}
