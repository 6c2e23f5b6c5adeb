// The proof that a Flexible Server's backups restore: a point-in-time restore (`az postgres flexible-server
// restore`, createMode PointInTimeRestore) to a scratch server, its tables compared with the source's as
// of that same point by the data phase's chunked comparison, then the scratch server deleted.
//
// The point is a snapshot exported on the source and the server's clock read right after it: the restore
// replays every commit up to that time, the snapshot sees every commit before it, so both hold the same
// rows (a commit in the same instant as the point is the one race left; it shows as a difference). The
// snapshot's session stays open while Azure restores (minutes to hours), which holds back vacuum on the
// source for that long.
//
// Resumable: the scratch server's name, the point and the snapshot's transaction ids are in the journal.
// A retry after a worker died resumes the restore's operation (no second server); the snapshot died with
// the worker, so the retry compares with the source now, which is the source at the point only if no
// transaction the point did not see has committed since (checked by transaction id). If one has, the
// scratch server is deleted and the proof starts over at a new point.
import { ApplicationFailure, Context } from '@temporalio/activity';
import { createHash } from 'node:crypto';
import type { Server } from '@azure/arm-postgresql-flexible';
import { withPgClient } from '../../contract/pg';
import type { Figures } from '../../contract/status';
import { SnapshotExporters } from '../local/pg-verify';
import { compareRestore } from '../local/restore-proof';
import { resolveSecret } from '../secrets';
import type { Json } from '../types';
import { azureFind, Journal, progressHeartbeat, runOperation, waitFor, type AzureContext } from './common';
import { BUSY, ready, serverId, target, type Target } from './postgres';
import type { AzurePostgres } from './provider';

/** Tags on a scratch server: whose restore it is (only such a server is ever deleted) and to which point. */
const SOURCE_TAG = 'tiershift-restore-of';
const POINT_TAG = 'tiershift-restore-point';

/**
 * What the journal keeps of a proof under way. `gen` numbers the scratch servers of one step, so each has
 * operations of its own (the journal's list of finished operations only grows); `retired`: deleted, the
 * next attempt starts over at a new point.
 */
interface Point {
  server: string;
  gen: number;
  at: string;
  xids: string;
  retired: boolean;
}

/** The scratch server's name: the source's, then a hash of the source and the backup (one per backup, unique across Azure). */
export function scratchName(t: Pick<Target, 'subscription' | 'resourceGroup' | 'server'>, backup: string): string {
  const hash = createHash('sha256').update(`${serverId(t)}/${backup}`.toLowerCase()).digest('hex').slice(0, 10);
  return `${t.server.slice(0, 45).replace(/-+$/, '')}-verify-${hash}`;
}

/** The connection string as the worker dials it (a test routes Azure host names to local clusters). */
export const reach = (az: AzureContext, url: string) => az.options.routePostgres?.(url) ?? url;

/**
 * The same credentials and database on another server (a restored server keeps its source's logins and
 * databases), so the connection string must be a URL whose host can be swapped.
 */
function onAnotherHost(url: string, what: string): (host: string) => string {
  try {
    new URL(url);
  } catch {
    throw ApplicationFailure.nonRetryable(`${what}: its connection string is not a postgres:// URL, which the restore proof needs to reach the restored server with the same login; store it as a URL`, 'NonRetryable');
  }
  return (host) => {
    const u = new URL(url);
    u.hostname = host;
    return u.toString();
  };
}

/** A snapshot exported on the source, its transaction ids, and the server's clock read after it. */
async function fixPoint(exporters: SnapshotExporters, url: string): Promise<{ snapshot: string; at: string; xids: string }> {
  const snapshot = await exporters.export(url);
  const row = await withPgClient(url, async (c) => {
    await c.query('begin isolation level repeatable read read only');
    await c.query(`set transaction snapshot ${c.escapeLiteral(snapshot)}`);
    // Read after the snapshot was taken: every commit it sees has an earlier commit time.
    const { rows } = await c.query<{ at: Date; xids: string }>('select clock_timestamp() as at, pg_current_snapshot()::text as xids');
    await c.query('rollback');
    return rows[0]!;
  }, { applicationName: 'tiershift: restore point' });
  return { snapshot, at: row.at.toISOString(), xids: row.xids };
}

/**
 * Whether a transaction the snapshot `xids` did not see (in progress then, or started since) has committed
 * by now. If none has, the source reads now exactly as it did at the point. A status no longer known
 * (truncated commit log) counts as committed.
 */
async function committedSince(url: string, xids: string): Promise<boolean> {
  return withPgClient(url, async (c) => {
    const { rows } = await c.query<{ committed: boolean }>(
      `with s as (select $1::pg_snapshot as was, pg_current_snapshot() as now),
            unseen as (
              select x from s, pg_snapshot_xip(s.was) x
              union all
              select (pg_snapshot_xmax(s.was)::text::numeric + g)::text::xid8
                from s, generate_series(0::numeric, pg_snapshot_xmax(s.now)::text::numeric - pg_snapshot_xmax(s.was)::text::numeric - 1) g)
       select exists (select 1 from unseen where coalesce(pg_xact_status(x), 'committed') = 'committed') as committed`,
      [xids],
    );
    return rows[0]!.committed;
  }, { applicationName: 'tiershift: restore point' });
}

const isScratchOf = (s: Server, source: string) => (s.tags?.[SOURCE_TAG] ?? '').toLowerCase() === source.toLowerCase();

/**
 * Deletes the scratch server if it is there (and is a restore of `source`); a server of that name that is
 * not refuses in one sentence. Resumes a deletion a previous attempt left running.
 */
async function removeScratch(az: AzureContext, scratch: Target, source: string, journal: Journal, op: string): Promise<boolean> {
  if (journal.isDone(op)) return false;
  if (!journal.isPending(op)) {
    const s = await azureFind(`reading server ${scratch.server}`, () => scratch.client.servers.get(scratch.resourceGroup, scratch.server));
    if (!s) return false;
    if (!isScratchOf(s, source)) {
      throw ApplicationFailure.nonRetryable(
        `server ${scratch.server} exists but is not a scratch restore of ${source.split('/').pop()} made by tiershift, so the restore proof will not use or delete it; delete or rename it, then resume`,
        'NonRetryable',
      );
    }
    // Azure deletes no server while an operation (the restore a killed attempt started) still runs on it.
    if (s.state && BUSY.has(s.state)) {
      await waitFor(
        az,
        `scratch server ${scratch.server} done ${s.state}`,
        () => scratch.client.servers.get(scratch.resourceGroup, scratch.server),
        (x) => !x.state || !BUSY.has(x.state),
        () => undefined,
        (x) => ({ state: x.state ?? 'unknown' }),
      );
    }
  }
  await runOperation(az, journal, op, `deleting scratch server ${scratch.server}`, (o) => scratch.client.servers.beginDelete(scratch.resourceGroup, scratch.server, o));
  return true;
}

export interface RestoreProof {
  line: string;
  figures: Figures;
}

/** Restores `resource`'s server to a point on a scratch server, compares, and deletes the scratch server (also when the proof fails). */
export async function proveRestore(az: AzureContext, resource: AzurePostgres, backup: string, journal: Journal): Promise<RestoreProof> {
  const key = `restore:${resource.name}`;
  // Proven by an earlier attempt of this step (which then failed on another resource): not restored twice.
  const earlier = journal.state.notes[`${key}:proof`] as RestoreProof | undefined | null;
  if (earlier) return earlier;

  const t = target(az, resource);
  const source = serverId(t);
  const name = scratchName(t, backup);
  const scratch: Target = { ...t, server: name };
  const raw = await resolveSecret(resource.connection!, `database ${resource.name}`);
  const url = reach(az, raw);
  const dial = onAnotherHost(raw, `database ${resource.name}`);
  const sourceServer = await ready(az, t);

  let point = (journal.state.notes[key] ?? undefined) as Point | undefined;
  const exporters = new SnapshotExporters();
  let proven = false;
  try {
    let snapshot: string;
    if (point && !point.retired) {
      // A retry: the point's snapshot died with the attempt that took it. The source now is the source
      // then only if nothing it did not see has committed since; otherwise the restore is of another state.
      const now = await fixPoint(exporters, url);
      snapshot = now.snapshot;
      if (await committedSince(url, point.xids)) {
        await removeScratch(az, scratch, source, journal, `${key}:${point.gen}:delete`);
        point = { server: name, gen: point.gen + 1, at: now.at, xids: now.xids, retired: false };
        journal.note(key, point as unknown as Json);
      }
    } else {
      const gen = (point?.gen ?? 0) + 1;
      // A scratch server whose point no journal recorded (an attempt whose heartbeat was lost) proves nothing.
      await removeScratch(az, scratch, source, journal, `${key}:${gen}:clear`);
      const now = await fixPoint(exporters, url);
      snapshot = now.snapshot;
      point = { server: name, gen, at: now.at, xids: now.xids, retired: false };
      journal.note(key, point as unknown as Json);
    }

    const { at, gen } = point;
    const create = `${key}:${gen}:create`;
    let ours = false;
    if (!journal.isPending(create) && !journal.isDone(create)) {
      const existing = await azureFind(`reading server ${name}`, () => scratch.client.servers.get(scratch.resourceGroup, name));
      // Created by this attempt's own request before a heartbeat recorded it: the same point's restore.
      ours = existing !== undefined && isScratchOf(existing, source) && existing.tags?.[POINT_TAG] === at;
      if (existing && !ours) await removeScratch(az, scratch, source, journal, `${key}:${gen}:replace`);
    }
    if (!ours) {
      await runOperation(az, journal, create, `restoring server ${t.server} to ${at} on scratch server ${name}`, (o) =>
        scratch.client.servers.beginCreateOrUpdate(
          scratch.resourceGroup,
          name,
          {
            location: sourceServer.location!,
            createMode: 'PointInTimeRestore',
            sourceServerResourceId: source,
            pointInTimeUTC: new Date(at),
            tags: { [SOURCE_TAG]: source, [POINT_TAG]: at },
          },
          o,
        ),
      );
    }
    const restored = await ready(az, scratch);
    if (!restored.fullyQualifiedDomainName) throw ApplicationFailure.retryable(`scratch server ${name} reports no host name yet; retrying`, 'AzureTransient');

    progressHeartbeat({ phase: 'compare', resource: resource.name, scratch: name });
    const scratchUrl = reach(az, dial(restored.fullyQualifiedDomainName));
    const restoredSnapshot = await exporters.export(scratchUrl);
    const proof = await compareRestore(url, scratchUrl, { source: snapshot, target: restoredSnapshot });
    if (proof.differences.length) {
      throw ApplicationFailure.nonRetryable(
        `the point-in-time restore of ${t.server} to ${at} (scratch server ${name}) does not hold what ${t.server} held then (${proof.differences.join('; ')}); find out why before changing the server, or set verifyRestore: false to go on without the proof`,
        'NonRetryable',
      );
    }
    proven = true;
    await exporters.close();
    await removeScratch(az, scratch, source, journal, `${key}:${gen}:delete`);
    journal.note(key, { ...point, retired: true } as unknown as Json);
    const result: RestoreProof = {
      line: `; restored it to ${at} on scratch server ${name}, which held the same ${proof.rows} rows in ${proof.tables} tables (${proof.chunks} key ranges compared), then deleted ${name}`,
      figures: {
        [`${resource.name}.restoreVerified`]: true,
        [`${resource.name}.restorePoint`]: at,
        [`${resource.name}.restoreRows`]: proof.rows,
        [`${resource.name}.restoreChunks`]: proof.chunks,
      },
    };
    journal.note(`${key}:proof`, result as unknown as Json);
    return result;
  } finally {
    await exporters.close();
    // A failed proof deletes its scratch server too, and the next attempt starts over at a new point. A
    // cancelled attempt (the worker stopping) leaves it for the retry, which resumes it, or for the step's undo.
    if (!proven && point && !point.retired && !Context.current().cancellationSignal.aborted) {
      const p = point;
      await removeScratch(az, scratch, source, journal, `${key}:${p.gen}:delete`)
        .then(() => journal.note(key, { ...p, retired: true } as unknown as Json))
        // The failure that brought us here is the one to report; the undo deletes what is left.
        .catch(() => undefined);
    }
  }
}

/** The undo of a backup step: a scratch server an interrupted proof left behind is deleted; the backup is kept. */
export async function removeLeftScratch(az: AzureContext, resource: AzurePostgres, backup: string): Promise<string | undefined> {
  const t = target(az, resource);
  const scratch: Target = { ...t, server: scratchName(t, backup) };
  const removed = await removeScratch(az, scratch, serverId(t), new Journal(), `undo:restore:${resource.name}:delete`);
  return removed ? `deleted scratch server ${scratch.server}, left by an interrupted restore proof` : undefined;
}
