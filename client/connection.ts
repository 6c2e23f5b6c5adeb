// How every command reaches Temporal: flags, then the Temporal CLI's own environment variables, then the
// running sandbox, then the local default.
import { Connection, Client } from '@temporalio/client';
import { readFileSync } from 'node:fs';
import { readState, sandboxHome } from '../sandbox/state';
import { UserError } from '../sandbox/binaries';
import { tiershiftDataConverter } from '../codec';

export interface ConnectionFlags {
  address?: string;
  namespace?: string;
  tlsCert?: string;
  tlsKey?: string;
  apiKey?: string;
}

export interface ResolvedConnection {
  address: string;
  namespace: string;
  tls?: { clientCertPair: { crt: Buffer; key: Buffer } } | true;
  apiKey?: string;
  /** The Temporal Web UI, when the sandbox runs it. */
  uiUrl?: string;
}

export function connectionOptions(flags: ConnectionFlags = {}): ResolvedConnection {
  const sandbox = readState(sandboxHome())?.temporal;
  const address = flags.address ?? process.env.TEMPORAL_ADDRESS ?? sandbox?.address ?? '127.0.0.1:7233';
  const namespace = flags.namespace ?? process.env.TEMPORAL_NAMESPACE ?? 'default';
  const certPath = flags.tlsCert ?? process.env.TEMPORAL_TLS_CLIENT_CERT_PATH;
  const keyPath = flags.tlsKey ?? process.env.TEMPORAL_TLS_CLIENT_KEY_PATH;
  const apiKey = flags.apiKey ?? process.env.TEMPORAL_API_KEY;
  if (Boolean(certPath) !== Boolean(keyPath)) {
    throw new UserError('TLS needs both a client certificate and a key; pass --tls-cert and --tls-key together.', 2);
  }
  const read = (file: string) => {
    try {
      return readFileSync(file);
    } catch {
      throw new UserError(`cannot read ${file}; check the TLS file path.`, 2);
    }
  };
  const tls = certPath && keyPath ? { clientCertPair: { crt: read(certPath), key: read(keyPath) } } : apiKey ? (true as const) : undefined;
  const uiUrl = sandbox && address === sandbox.address ? sandbox.uiUrl : undefined;
  return { address, namespace, tls, apiKey, uiUrl };
}

export async function connectClient(flags: ConnectionFlags = {}): Promise<{ client: Client; resolved: ResolvedConnection }> {
  const resolved = connectionOptions(flags);
  // Before connecting: a broken key file is the user's to fix, and should not read as "cannot reach Temporal".
  const dataConverter = tiershiftDataConverter();
  let connection: Connection;
  try {
    connection = await Connection.connect({
      address: resolved.address,
      tls: resolved.tls,
      apiKey: resolved.apiKey,
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

export function workflowUrl(resolved: ResolvedConnection, workflowId: string): string | undefined {
  return resolved.uiUrl && `${resolved.uiUrl}/namespaces/${resolved.namespace}/workflows/${encodeURIComponent(workflowId)}`;
}
