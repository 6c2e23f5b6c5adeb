// The CLI's connection to Temporal, with the one data converter every client and worker shares.
import { Connection, Client } from '@temporalio/client';
import { tiershiftDataConverter } from '../codec';
import { connectionOptions, type ConnectionFlags, type ResolvedConnection } from '../contract/connection';
import { UserError } from '../contract/errors';

/** `env` is the process's own unless a caller reaches another sandbox's home (the bench's cluster). */
export async function connectClient(flags: ConnectionFlags = {}, env: NodeJS.ProcessEnv = process.env): Promise<{ client: Client; resolved: ResolvedConnection }> {
  const resolved = connectionOptions(flags, env);
  // Before connecting: a broken key file is the user's to fix, and should not read as "cannot reach Temporal".
  const dataConverter = tiershiftDataConverter();
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: resolved.address,
      tls: resolved.tls,
      apiKey: resolved.apiKey,
      ...(resolved.metadata ? { metadata: resolved.metadata } : {}),
      connectTimeout: '5s',
    });
  } catch {
    throw new UserError(
      `cannot reach Temporal at ${resolved.address}; run \`tiershift sandbox up\` or pass --address (or set TEMPORAL_ADDRESS).`,
      5,
    );
  }
  return { client: new Client({ connection, namespace: resolved.namespace, dataConverter }), resolved };
}
