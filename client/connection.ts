// The CLI's connection to Temporal, with the one data converter every client and worker shares.
import { Connection, Client } from '@temporalio/client';
import { tiershiftDataConverter } from '../codec';
import { resolveConnection, type ConnectionFlags, type ResolvedConnection } from '../contract/connection';
import { tokenSubject } from '../contract/temporal-auth';
import { permissionDenied, refusedByTemporal, setCaller, type Caller } from './errors';
import { UserError } from '../contract/errors';
import { tracingClientOptions } from './tracing';

/** `env` is the process's own unless a caller reaches another sandbox's home (the bench's cluster). */
export async function connectClient(flags: ConnectionFlags = {}, env: NodeJS.ProcessEnv = process.env): Promise<{ client: Client; resolved: ResolvedConnection }> {
  const resolved = await resolveConnection(flags, env);
  // Who the calls are made as, for the sentence a refusal by Temporal's authorizer prints (client/errors.ts).
  const caller: Caller = {
    address: resolved.address,
    namespace: resolved.namespace,
    subject: tokenSubject(resolved.apiKey),
    source: resolved.apiKeySource ? 'sandbox' : resolved.apiKey ? 'given' : 'none',
  };
  setCaller(caller);
  // Before connecting: a broken key file is the user's to fix, and should not read as "cannot reach Temporal".
  const dataConverter = tiershiftDataConverter();
  const tracing = await tracingClientOptions();
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: resolved.address,
      tls: resolved.tls,
      // The sandbox's service token is read at every call: its renewal (an unref'd timer) takes effect at once.
      apiKey: resolved.apiKeySource ? () => resolved.apiKeySource!.current() : resolved.apiKey,
      ...(resolved.metadata ? { metadata: resolved.metadata } : {}),
      connectTimeout: '5s',
    });
  } catch (err) {
    // A token the server cannot verify is refused from the first call (the SDK's GetSystemInfo).
    if (permissionDenied(err)) throw refusedByTemporal(caller);
    throw new UserError(
      `cannot reach Temporal at ${resolved.address}; run \`tiershift sandbox up\` or pass --address (or set TEMPORAL_ADDRESS).`,
      5,
    );
  }
  return { client: new Client({ connection, namespace: resolved.namespace, dataConverter, ...tracing }), resolved };
}
