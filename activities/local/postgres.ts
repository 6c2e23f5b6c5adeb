// PostgreSQL helpers shared by the backup proof and the sync verification: both compare databases
// table by table, by row count and by a checksum of every row in primary-key order.
import type pg from 'pg';
import { withPgClient } from '../../contract/pg';

export interface TableFingerprint {
  table: string;
  rows: number;
  md5: string;
}

/** A connection for `fn`, closed afterwards; a dropped connection fails `fn`, never the process (contract/pg.ts). */
export function withClient<T>(connectionString: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  return withPgClient(connectionString, fn);
}

/** Base tables of the public schema with their primary-key columns (the order rows are hashed in). */
export async function userTables(client: pg.Client): Promise<{ table: string; key: string[] }[]> {
  const { rows } = await client.query<{ table: string; key: string[] | null }>(`
    select c.relname as table,
           (select array_agg(a.attname::text order by k.ord)
              from pg_index i
              cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
              join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
             where i.indrelid = c.oid and i.indisprimary) as key
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' and c.relkind = 'r'
     order by c.relname`);
  return rows.map((r) => ({ table: r.table, key: r.key ?? [] }));
}

/** Row count and md5 of all rows in key order, per table, in one snapshot so concurrent writes cannot skew it. */
export async function fingerprints(client: pg.Client): Promise<TableFingerprint[]> {
  await client.query('begin isolation level repeatable read read only');
  try {
    const result: TableFingerprint[] = [];
    for (const { table, key } of await userTables(client)) {
      const ident = client.escapeIdentifier(table);
      const order = key.length ? key.map((k) => client.escapeIdentifier(k)).join(', ') : 't::text';
      const { rows } = await client.query<{ rows: string; md5: string | null }>(
        `select count(*) as rows, md5(string_agg(t::text, E'\\n' order by ${order})) as md5 from ${ident} t`,
      );
      result.push({ table, rows: Number(rows[0]!.rows), md5: rows[0]!.md5 ?? 'empty' });
    }
    return result;
  } finally {
    await client.query('rollback');
  }
}

/** Tables whose count or checksum differ, one phrase each ("orders: 100000 rows vs 99990"). */
export function compareFingerprints(expected: TableFingerprint[], actual: TableFingerprint[]): string[] {
  const byTable = new Map(actual.map((f) => [f.table, f]));
  const differences: string[] = [];
  for (const want of expected) {
    const got = byTable.get(want.table);
    if (!got) differences.push(`${want.table}: missing`);
    else if (got.rows !== want.rows) differences.push(`${want.table}: ${got.rows} rows vs ${want.rows}`);
    else if (got.md5 !== want.md5) differences.push(`${want.table}: same ${got.rows} rows but different content`);
  }
  return differences;
}
