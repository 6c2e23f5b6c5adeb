// How local activities reach the sandbox: its state file names every endpoint, so plans name only roles.
import { ApplicationFailure } from '@temporalio/activity';
import type { LocalBlob, LocalPostgres } from './provider';
import { postgresUrl, readState, sandboxHome, type SandboxState, type StorageAccount } from '../../contract/home';
import { resolveSecret } from '../secrets';

export function sandboxState(): SandboxState {
  const home = sandboxHome();
  const state = readState(home);
  if (!state) {
    throw ApplicationFailure.nonRetryable(`no sandbox is running in ${home}; run \`tiershift sandbox up\` and resume`, 'NonRetryable');
  }
  return state;
}

/** A connection string: the resource's own reference, else its sandbox cluster's URL. */
export async function postgresConnection(resource: LocalPostgres): Promise<string> {
  if (resource.connection) return resolveSecret(resource.connection, `database ${resource.name}`);
  const cluster = resource.cluster ? sandboxState().postgres[resource.cluster] : undefined;
  if (!cluster) {
    throw ApplicationFailure.nonRetryable(`the sandbox has no ${resource.cluster ?? '(unnamed)'} PostgreSQL cluster; run \`tiershift sandbox up\``, 'NonRetryable');
  }
  return postgresUrl(cluster, resource.database ?? cluster.database);
}

export function storageAccount(resource: LocalBlob): StorageAccount {
  const account = sandboxState().azurite?.accounts.find((a) => a.role === resource.account || a.name === resource.account);
  if (!account) {
    throw ApplicationFailure.nonRetryable(`the sandbox has no storage account "${resource.account}"; use primary or secondary`, 'NonRetryable');
  }
  return account;
}
