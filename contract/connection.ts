// How every process reaches Temporal (the CLI, the worker, the bench): flags, then the Temporal CLI's own
// environment variables, then the running sandbox, then the local default.
import { readFileSync } from 'node:fs';
import { UserError } from './errors';
import { readState, sandboxHome } from './home';

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

export function workflowUrl(resolved: ResolvedConnection, workflowId: string): string | undefined {
  return resolved.uiUrl && `${resolved.uiUrl}/namespaces/${resolved.namespace}/workflows/${encodeURIComponent(workflowId)}`;
}

/**
 * The UI's workflow list filtered by a visibility query. A link can carry only the query: the UI keeps
 * its list columns in the browser's own storage, and takes none from the address.
 */
export function workflowListUrl(resolved: ResolvedConnection, query: string): string | undefined {
  return resolved.uiUrl && `${resolved.uiUrl}/namespaces/${resolved.namespace}/workflows?query=${encodeURIComponent(query)}`;
}
