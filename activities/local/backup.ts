// Backups on the sandbox: the local twin of the runbook's "pg_dump to blob storage, then prove it
// restores" and "copy the container aside". A backup blob records in its metadata what it holds and
// whether a restore proved it, so a retried or repeated step reuses a finished backup.
import { RestError, type BlockBlobClient, type ContainerClient } from '@azure/storage-blob';
import { libpqCommandLine } from '../../contract/pg';
import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BackupStep } from '../../plan/types';
import type { LocalBlob, LocalPostgres } from './provider';
import { findBinary } from '../../sandbox/binaries';
import type { StepInput, StepOutcome } from '../types';
import { backupPrefix } from '../backup-key';
import { blobResource, containerClient, copyContainer } from './blob-sync';
import type pg from 'pg';
import { userTables, withClient } from './postgres';
import { SnapshotExporters } from './pg-verify';
import { compareRestore, type RestoreComparison } from './restore-proof';
import { postgresConnection } from './sandbox';
import { ProgressMeter } from '../../contract/progress';

const HEARTBEAT_BYTES = 4 * 1024 * 1024;
const MiB = (bytes: number) => `${(bytes / 1048576).toFixed(1)} MiB`;

export interface DumpRecord {
  sha256: string;
  bytes: number;
  tables: number;
  rows: number;
  restoreVerified: boolean;
  /** Key ranges the restore proof compared (absent when reused or unproven). */
  chunks?: number;
  reused: boolean;
}

/** The container the step's backups go to, created on first use. */
async function destinationOf(input: StepInput<BackupStep>): Promise<ContainerClient> {
  const backups = await containerClient(blobResource(input.resources, input.step.destination, `destination of backup step ${input.step.id}`));
  await backups.createIfNotExists({ abortSignal: Context.current().cancellationSignal });
  return backups;
}

/** `pg_dump -Fc` into the step's destination, with its sha256, then proven by a restore. */
export async function backupDatabase(input: StepInput<BackupStep>, resource: LocalPostgres): Promise<StepOutcome> {
  const name = resource.name;
  const blob = (await destinationOf(input)).getBlockBlobClient(`${backupPrefix(input)}${name}.dump`);
  const d = await dumpPostgres(input, name, await postgresConnection(resource), blob, { verify: input.step.verifyRestore });
  return {
    summary:
      `${d.reused ? 'Kept existing backup of' : 'Dumped'} ${name} (${d.tables} tables, ${d.rows} rows) to ${blobPath(blob.url)}: ` +
      `${MiB(d.bytes)}, sha256 ${d.sha256.slice(0, 12)}, ${d.restoreVerified ? 'restore verified' : 'restore not verified'}`,
    figures: {
      [`${name}.bytes`]: d.bytes,
      [`${name}.sha256`]: d.sha256,
      [`${name}.tables`]: d.tables,
      [`${name}.rows`]: d.rows,
      [`${name}.restoreVerified`]: d.restoreVerified,
      [`${name}.reused`]: d.reused,
      ...(d.chunks !== undefined ? { [`${name}.restoreChunks`]: d.chunks } : {}),
    },
    undo: { kept: [blob.url] },
  };
}

/** A server-side copy of the container under the step's destination; blobs already there are skipped. */
export async function backupBlobs(input: StepInput<BackupStep>, resource: LocalBlob): Promise<StepOutcome> {
  const backups = await destinationOf(input);
  const prefix = `${backupPrefix(input)}${resource.container}/`;
  const c = await backupContainer(resource, backups, prefix);
  const name = resource.name;
  return {
    summary: `Copied ${c.copied} blobs of ${name} (${MiB(c.bytes)}) to ${blobPath(`${backups.url}/${prefix}`)}, ${c.skipped} already there`,
    figures: { [`${name}.blobsCopied`]: c.copied, [`${name}.blobsSkipped`]: c.skipped, [`${name}.bytesCopied`]: c.bytes },
    undo: { kept: [`${backups.url}/${prefix}`] },
  };
}

/** "account/container/blob" of a blob URL, for runbook lines. */
const blobPath = (url: string) => decodeURIComponent(new URL(url).pathname.slice(1));

/**
 * `pg_dump -Fc` of the database at `url` into `blob`, with its sha256, and (`verify`) proven by a restore
 * into a scratch database on the same server. A finished dump found in `blob` is kept. Also the Azure
 * provider's logical dump (activities/azure/index.ts), which its point-in-time restore proves instead.
 */
export async function dumpPostgres(input: StepInput<BackupStep>, name: string, url: string, blob: BlockBlobClient, opts: { verify: boolean }): Promise<DumpRecord> {
  const existing = await blob.getProperties().catch((err: unknown) => {
    if (err instanceof RestError && err.statusCode === 404) return undefined;
    throw err;
  });
  const meta = existing?.metadata ?? {};
  // Reused only when finished (and proven, if the plan wants proof) and still of the recorded length;
  // anything else (an upload cut short, a failed restore, a blob rewritten since) is dumped again.
  if (meta.tiershiftstate === 'complete' && (meta.restoreverified === 'true' || !opts.verify) && String(existing?.contentLength) === meta.bytes) {
    return {
      sha256: meta.sha256 ?? '',
      bytes: Number(meta.bytes),
      tables: Number(meta.tables),
      rows: Number(meta.rows),
      restoreVerified: meta.restoreverified === 'true',
      reused: true,
    };
  }

  const scratch = `tiershift_verify_${createHash('sha256').update(`${backupPrefix(input)}${name}`).digest('hex').slice(0, 12)}`;
  return withClient(url, async (client) => {
    // pg_dump reads the snapshot this transaction exports, and the restore is compared with the source as
    // of that same snapshot, so both see exactly the same rows even while the app keeps writing. The
    // transaction stays open until the comparison ends: an exported snapshot lives only that long.
    await client.query('begin isolation level repeatable read read only');
    try {
      const { rows } = await client.query<{ id: string }>('select pg_export_snapshot() as id');
      const snapshot = rows[0]!.id;
      const dump = await dumpToBlob(url, snapshot, blob, name);
      const tables = await userTables(client);
      const recorded = { tiershiftstate: 'complete', source: name, sha256: dump.sha256, bytes: String(dump.bytes), tables: String(tables.length) };
      let proof: RestoreComparison | undefined;
      if (opts.verify) {
        // Recorded as complete but unproven first: a failed proof leaves that, and the next attempt dumps again.
        await blob.setMetadata({ ...recorded, restoreverified: 'false' });
        proof = await verifyRestore(url, blob, dump.sha256, snapshot, scratch);
      }
      // The proof's comparison counted the rows; without one they are counted here (count(*) aggregates no values).
      const rowsDumped = proof?.rows ?? (await countRows(client, tables.map((t) => t.table)));
      await blob.setMetadata({ ...recorded, rows: String(rowsDumped), restoreverified: String(proof !== undefined) });
      return { sha256: dump.sha256, bytes: dump.bytes, tables: tables.length, rows: rowsDumped, restoreVerified: proof !== undefined, ...(proof ? { chunks: proof.chunks } : {}), reused: false };
    } finally {
      await client.query('rollback').catch(() => undefined);
    }
  });
}

/** Rows of the tables as the session's snapshot sees them. */
async function countRows(client: pg.Client, tables: string[]): Promise<number> {
  let n = 0;
  for (const t of tables) n += Number((await client.query<{ n: string }>(`select count(*) as n from ${client.escapeIdentifier(t)}`)).rows[0]!.n);
  return n;
}

/** Passes bytes through, hashing and counting them, with a heartbeat every few MiB. */
function meter(details: (bytes: number) => unknown) {
  const hash = createHash('sha256');
  let bytes = 0;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      if (Math.floor((bytes + chunk.length) / HEARTBEAT_BYTES) > Math.floor(bytes / HEARTBEAT_BYTES)) heartbeat(details(bytes + chunk.length));
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  return { stream, result: () => ({ sha256: hash.digest('hex'), bytes }) };
}

/** Resolves when the tool exits 0; rejects with the end of its stderr otherwise. */
function exitOf(child: ChildProcess, tool: string): Promise<void> {
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${tool} failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`)),
    );
  });
}

/** Streams `pg_dump --format=custom` of the exported snapshot straight into the block blob. */
async function dumpToBlob(url: string, snapshot: string, blob: BlockBlobClient, name: string): Promise<{ sha256: string; bytes: number }> {
  // A custom-format dump is compressed: its size is unknown until it ends, so no total and no ETA.
  const progress = new ProgressMeter(`dumping ${name}`, 'bytes');
  heartbeat({ phase: 'dump', resource: name, bytes: 0, progress: progress.read(0) });
  const cmd = libpqCommandLine(url, { ...process.env, PGCONNECT_TIMEOUT: '10' });
  const child = spawn(findBinary('pg_dump'), ['--format=custom', `--snapshot=${snapshot}`, `--dbname=${cmd.url}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: cmd.env,
  });
  const exited = exitOf(child, 'pg_dump');
  const m = meter((bytes) => ({ phase: 'dump', resource: name, bytes, progress: progress.read(bytes) }));
  child.stdout!.pipe(m.stream);
  // The state marks the blob unfinished until the dump has exited cleanly and its digest is recorded.
  const uploaded = blob
    .uploadStream(m.stream, HEARTBEAT_BYTES, 4, { metadata: { tiershiftstate: 'uploading' }, abortSignal: Context.current().cancellationSignal })
    .catch((err: unknown) => {
      // Nobody reads pg_dump's output any more: stop it rather than leave it blocked on a full pipe.
      child.kill('SIGKILL');
      throw err;
    });
  const [upload, exit] = await Promise.allSettled([uploaded, exited]);
  if (upload.status === 'rejected') throw upload.reason;
  if (exit.status === 'rejected') throw exit.reason;
  return m.result();
}

const withDatabase = (url: string, database: string) => {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
};

/**
 * Restores the blob into a scratch database on the same cluster and compares it, chunk by chunk, with the
 * source as of `snapshot` (the one pg_dump read); the scratch database is dropped afterwards, also on
 * failure. The bytes restored are hashed on the way, so the proof also covers the blob matching the
 * recorded sha256.
 */
async function verifyRestore(url: string, blob: BlockBlobClient, sha256: string, snapshot: string, scratch: string): Promise<RestoreComparison> {
  const admin = withDatabase(url, 'postgres');
  const scratchUrl = withDatabase(url, scratch);
  // A deterministic name: a scratch database left by a crashed attempt is dropped by the next one.
  const drop = () => withClient(admin, (c) => c.query(`drop database if exists ${scratch} with (force)`));
  await drop();
  await withClient(admin, (c) => c.query(`create database ${scratch} template template0`));
  try {
    const download = await blob.download(0, undefined, { abortSignal: Context.current().cancellationSignal });
    const progress = new ProgressMeter('verifying the restore', 'bytes', download.contentLength);
    heartbeat({ phase: 'restore', blob: blob.name, bytes: 0, progress: progress.read(0) });
    const cmd = libpqCommandLine(scratchUrl, { ...process.env, PGCONNECT_TIMEOUT: '10' });
    const child = spawn(findBinary('pg_restore'), ['--no-owner', '--no-privileges', '--exit-on-error', `--dbname=${cmd.url}`], {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: cmd.env,
    });
    const exited = exitOf(child, 'pg_restore');
    const m = meter((bytes) => ({ phase: 'restore', blob: blob.name, bytes, progress: progress.read(bytes) }));
    const [fed, exit] = await Promise.allSettled([pipeline(download.readableStreamBody!, m.stream, child.stdin!), exited]);
    if (fed.status === 'fulfilled' && m.result().sha256 !== sha256) {
      throw new Error(`backup blob ${blob.url} does not hold the bytes dumped (sha256 differs from the recorded ${sha256}); the step dumps it again on retry`);
    }
    if (exit.status === 'rejected') throw new Error(`restoring ${blob.url} into scratch database ${scratch} failed: ${(exit.reason as Error).message}`);
    if (fed.status === 'rejected') throw fed.reason;

    heartbeat({ phase: 'compare', blob: blob.name, progress: new ProgressMeter('comparing the restore with the source', 'rows').read(0) });
    const exporters = new SnapshotExporters();
    try {
      const restored = await exporters.export(scratchUrl);
      const proof = await compareRestore(url, scratchUrl, { source: snapshot, target: restored });
      if (proof.differences.length) {
        throw new Error(`restoring ${blob.url} does not reproduce the source: ${proof.differences.join('; ')}`);
      }
      return proof;
    } finally {
      await exporters.close();
    }
  } finally {
    await drop();
  }
}

async function backupContainer(resource: LocalBlob, backups: ContainerClient, prefix: string) {
  const source = await containerClient(resource);
  if (source.url === backups.url) {
    throw ApplicationFailure.nonRetryable(`${resource.name} is the backup destination itself; back it up to another container`, 'NonRetryable');
  }
  return copyContainer(source, backups, {
    prefix,
    phase: `copying blobs of ${resource.name}`,
    onPage: (p, progress) => heartbeat({ phase: 'copy blobs', resource: resource.name, copied: p.copied, skipped: p.skipped, bytes: p.bytes, progress }),
  });
}
