// The backup step's optional logical dump on Azure: with a `destination` (a blob resource), a database with a
// `connection` is also written there with `pg_dump -Fc`, as the runbooks' "pg_dump to blob storage" does
// beside the server's own backup. A portable copy that outlives the server and its retention period.
// It is the sandbox's dump (activities/local/backup.ts); its proof is the point-in-time restore's (restore.ts).
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { BackupStep } from '../../plan/types';
import type { Figures } from '../../contract/status';
import { backupPrefix } from '../backup-key';
import { dumpPostgres } from '../local/backup';
import { resolveSecret } from '../secrets';
import type { StepInput } from '../types';
import { account } from './blob';
import { resourceOf, type AzureContext } from './common';
import type { AzureBlob, AzurePostgres } from './provider';
import { reach } from './restore';

/** Before anything is written: a dump needs a login to the database, which only a `connection` gives. */
export function refuseDumpWithoutConnection(input: StepInput<BackupStep>, resource: AzurePostgres): void {
  if (input.step.destination && !resource.connection) {
    throw ApplicationFailure.nonRetryable(
      `backup step ${input.step.id} dumps ${resource.name} to ${input.step.destination}, but ${resource.name} has no connection to dump it through; give it one (a Key Vault reference to its connection string) or remove destination`,
      'NonRetryable',
    );
  }
}

export async function dumpToDestination(az: AzureContext, input: StepInput<BackupStep>, resource: AzurePostgres): Promise<{ line: string; figures: Figures; kept: string }> {
  const destination = resourceOf(input.resources, input.step.destination, 'blob', `destination of backup step ${input.step.id}`) as AzureBlob;
  const { container } = await account(az, destination);
  await container.createIfNotExists({ abortSignal: Context.current().cancellationSignal });
  const blobName = `${backupPrefix(input)}${resource.name}.dump`;
  const blob = container.getBlockBlobClient(blobName);
  const url = reach(az, await resolveSecret(resource.connection!, `database ${resource.name}`));
  const d = await dumpPostgres(input, resource.name, url, blob, { verify: false });
  const n = resource.name;
  return {
    line: `; ${d.reused ? 'kept its logical dump' : 'dumped it'} (pg_dump, ${d.tables} tables, ${d.rows} rows, ${(d.bytes / 1048576).toFixed(1)} MiB, sha256 ${d.sha256.slice(0, 12)}) to ${destination.name}/${blobName}`,
    figures: { [`${n}.dumpBytes`]: d.bytes, [`${n}.dumpSha256`]: d.sha256, [`${n}.dumpRows`]: d.rows, [`${n}.dumpReused`]: d.reused },
    kept: blob.url,
  };
}
