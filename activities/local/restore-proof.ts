// The proof that a restored database holds what its source held at one point: the data phase's chunked
// comparison (pg-verify.ts), so no query aggregates a whole table into one value (PostgreSQL caps a
// value at 1 GB, which md5(string_agg(...)) of a big table passes). Shared by the local backup (a
// pg_restore into a scratch database) and the Azure one (a point-in-time restore to a scratch server).
import type pg from 'pg';
import { KEY_RANGE_SETTINGS, withPgClient } from '../../contract/pg';
import { userTables } from './postgres';
import { checksumModes, describeDifference, rowEstimates, verifyChunks, type Snapshots } from './pg-verify';

export interface RestoreComparison {
  tables: number;
  rows: number;
  chunks: number;
  /** One phrase per table that differs ("orders: rows differ at id 12"); empty when the restore matches. */
  differences: string[];
}

/** A read-only session on `url` that sees exactly what `snapshot` saw. */
async function inSnapshot<T>(url: string, snapshot: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  return withPgClient(url, async (c) => {
    await c.query('begin isolation level repeatable read read only');
    try {
      await c.query(`set transaction snapshot ${c.escapeLiteral(snapshot)}`);
      return await fn(c);
    } finally {
      await c.query('rollback').catch(() => undefined);
    }
  }, { applicationName: 'tiershift: verifying a restore', settings: KEY_RANGE_SETTINGS });
}

/**
 * Count and a sum of 64-bit row hashes, for a table without a primary key (no key, no chunks): one pass,
 * order-independent, and a sum rather than XOR so that duplicate rows (which such a table may hold) count.
 */
async function keylessDigest(c: pg.Client, table: string): Promise<{ rows: number; sum: string }> {
  const t = c.escapeIdentifier(table);
  const { rows } = await c.query<{ rows: string; sum: string | null }>(
    `select count(*) as rows, sum(('x' || left(md5(r::text), 16))::bit(64)::bigint::numeric)::text as sum from ${t} r`,
  );
  return { rows: Number(rows[0]!.rows), sum: rows[0]!.sum ?? '0' };
}

/**
 * Compares every base table of `source`'s public schema with the same table of `restored`, each side as of
 * its snapshot: tables with a primary key chunk by chunk (count and checksum per key range), the others by
 * count and a sum of row hashes. Tables missing from the restore are differences too.
 */
export async function compareRestore(source: string, restored: string, snapshots: Snapshots): Promise<RestoreComparison> {
  const tables = await inSnapshot(source, snapshots.source, userTables);
  const present = new Set(await inSnapshot(restored, snapshots.target, async (c) => (await userTables(c)).map((t) => t.table)));
  const differences = tables.filter((t) => !present.has(t.table)).map((t) => `${t.table}: missing from the restore`);
  const keyed = tables.filter((t) => t.key.length && present.has(t.table));
  const keyless = tables.filter((t) => !t.key.length && present.has(t.table));

  let rows = 0;
  let chunks = 0;
  if (keyed.length) {
    const [estimates, modes] = await inSnapshot(source, snapshots.source, async (c) => [await rowEstimates(c, keyed.map((t) => t.table)), await checksumModes(c, keyed)] as const);
    const check = await verifyChunks(source, restored, snapshots, keyed, estimates, modes);
    rows += check.rows;
    chunks += check.chunks;
    differences.push(...check.differences.map(describeDifference));
  }
  for (const { table } of keyless) {
    const [want, got] = await Promise.all([
      inSnapshot(source, snapshots.source, (c) => keylessDigest(c, table)),
      inSnapshot(restored, snapshots.target, (c) => keylessDigest(c, table)),
    ]);
    rows += want.rows;
    if (want.rows !== got.rows) differences.push(`${table}: ${got.rows} rows restored vs ${want.rows}`);
    else if (want.sum !== got.sum) differences.push(`${table}: same ${want.rows} rows but different content`);
  }
  return { tables: tables.length, rows, chunks, differences };
}
