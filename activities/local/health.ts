import { BlobServiceClient } from '@azure/storage-blob';
import { withPgClient } from '../../contract/pg';
import type { Resource } from '../../plan/types';
import type { LocalBlob, LocalPostgres } from './provider';
import type { StepOutcome } from '../types';
import { postgresConnection, sandboxState, storageAccount } from './sandbox';

/** A health check reads only; it is safe to run any number of times. */
export async function checkHealth(resource: Resource): Promise<StepOutcome> {
  switch (resource.kind) {
    case 'postgres':
      return checkPostgres(resource);
    case 'blob':
      return checkBlob(resource as LocalBlob);
    case 'traffic':
    case 'app':
      return checkFront(resource);
  }
}

async function checkPostgres(resource: LocalPostgres): Promise<StepOutcome> {
  return withPgClient(await postgresConnection(resource), async (client) => {
    const { rows } = await client.query<{ version: string; max_connections: string; tables: string; bytes: string }>(`
      select current_setting('server_version') as version,
             current_setting('max_connections') as max_connections,
             (select count(*) from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE') as tables,
             pg_database_size(current_database()) as bytes`);
    const row = rows[0]!;
    const n = resource.name;
    return {
      summary: `${n} healthy: PostgreSQL ${row.version}, ${row.tables} tables, ${(Number(row.bytes) / 1048576).toFixed(1)} MiB, max_connections ${row.max_connections}`,
      figures: {
        [`${n}.tables`]: Number(row.tables),
        [`${n}.bytes`]: Number(row.bytes),
        [`${n}.maxConnections`]: Number(row.max_connections),
      },
    };
  });
}

async function checkBlob(resource: LocalBlob): Promise<StepOutcome> {
  const account = storageAccount(resource);
  const container = BlobServiceClient.fromConnectionString(account.connectionString).getContainerClient(resource.container);
  let blobs = 0;
  let bytes = 0;
  if (await container.exists()) {
    for await (const blob of container.listBlobsFlat()) {
      blobs += 1;
      bytes += blob.properties.contentLength ?? 0;
    }
  }
  return {
    summary: `${resource.name} reachable: ${account.name}/${resource.container} holds ${blobs} blobs (${bytes} bytes)`,
    figures: { [`${resource.name}.blobs`]: blobs, [`${resource.name}.bytes`]: bytes },
  };
}

async function checkFront(resource: Resource): Promise<StepOutcome> {
  const front = sandboxState().haproxy;
  if (!front) return { summary: `${resource.name}: the sandbox has no traffic front`, figures: {} };
  const res = await fetch(new URL('/health', front.frontendUrl), { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`${resource.name}: ${front.frontendUrl}/health answered ${res.status}`);
  return {
    summary: `${resource.name} serving through ${front.frontendUrl} (${res.headers.get('x-app-color') ?? 'unknown'})`,
    figures: { [`${resource.name}.status`]: res.status },
  };
}
