// How every process reaches Temporal (the CLI, the worker, the bench), in the Temporal CLI's own
// conventions so `tiershift --profile prod` and `temporal --profile prod` reach the same cluster: flags
// first, then the TEMPORAL_* variables, then the profile of temporal.toml (--profile, else
// TEMPORAL_PROFILE, else "default"; the file is TEMPORAL_CONFIG_FILE, else the CLI's default location),
// then the running sandbox, then the local default. @temporalio/envconfig reads the file and the
// variables exactly as the CLI does; only the flags and the sandbox are ours (and see connectionOptions:
// a sandbox that is up comes before a profile nobody asked for).
import { readFileSync } from 'node:fs';
import { loadClientConfigProfile, toClientOptions } from '@temporalio/envconfig';
import type { TLSConfig } from '@temporalio/common/lib/internal-non-workflow';
import { UserError } from './errors';
import { readState, sandboxHome, type SandboxTls } from './home';
import { sandboxToken, type ApiKeySource, type SandboxAuth } from './temporal-auth';

export interface ConnectionFlags {
  address?: string;
  namespace?: string;
  tlsCert?: string;
  tlsKey?: string;
  apiKey?: string;
  /** A profile of temporal.toml, as `temporal --profile`. */
  profile?: string;
}

export interface ResolvedConnection {
  address: string;
  namespace: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
  /** gRPC headers the profile adds to every call (`grpc_meta`). */
  metadata?: Record<string, string>;
  /** The Temporal Web UI, when the sandbox runs it. */
  uiUrl?: string;
  /**
   * The sandbox cluster's token endpoint, when it is the target and no token was given: resolveConnection
   * takes a token of the sandbox's service client from there.
   */
  sandboxAuth?: SandboxAuth;
  /** Set by resolveConnection for the sandbox's service token: renews `apiKey` before it expires. */
  apiKeySource?: ApiKeySource;
}

/** The profile and TEMPORAL_* variables as the Temporal CLI reads them; `env` for tests. */
function profileOptions(profile: string | undefined, env: NodeJS.ProcessEnv, disableFile: boolean) {
  const vars = Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
  const file = env.TEMPORAL_CONFIG_FILE ?? 'the default temporal.toml (~/.config/temporalio/temporal.toml)';
  try {
    const loaded = loadClientConfigProfile({ ...(profile ? { profile } : {}), overrideEnvVars: vars, disableFile });
    // toClientOptions turns TLS on whenever there is an API key; whether the profile itself asked for TLS
    // decides whether the sandbox's own certificates apply to a token sent to the sandbox's cluster.
    return { ...toClientOptions(loaded), tlsConfigured: loaded.tls !== undefined };
  } catch (err) {
    // The TOML parser's message runs over several lines with a caret under the fault: its first says what.
    const message = (err instanceof Error ? err.message : String(err)).split('\n')[0]!.trim();
    const name = profile ?? env.TEMPORAL_PROFILE;
    if (/^Profile '.*' not found/.test(message)) {
      throw new UserError(`no profile "${name}" in ${file}; add a [profile.${name}] table there, or pass another --profile.`, 2);
    }
    if ((err as { code?: string }).code === 'ENOENT' || (err as { code?: string }).code === 'EACCES') {
      throw new UserError(`cannot read a file the Temporal profile names (${message.replace(/\.$/, '')}); check its paths.`, 2);
    }
    throw new UserError(`cannot read the Temporal profile from ${file} (${message.replace(/[.\s]+$/, '')}); fix the file or pass --address.`, 2);
  }
}

/**
 * The SDK's TLS options for the sandbox's Temporal when it requires mutual TLS (the cluster): its own CA,
 * the client certificate made for the sandbox, and the name in the server's certificate.
 */
export function sandboxTlsConfig(tls: SandboxTls | undefined): TLSConfig | undefined {
  if (!tls) return undefined;
  const read = (file: string) => {
    try {
      return readFileSync(file);
    } catch {
      throw new UserError(`cannot read ${file}, a certificate of the sandbox's Temporal; run \`tiershift sandbox up\` again to make it.`, 2);
    }
  };
  return { serverNameOverride: tls.serverName, serverRootCACertificate: read(tls.caFile), clientCertPair: { crt: read(tls.certFile), key: read(tls.keyFile) } };
}

export function connectionOptions(flags: ConnectionFlags = {}, env: NodeJS.ProcessEnv = process.env): ResolvedConnection {
  // The sandbox of the environment given, like every other setting: a process that reaches two sandboxes
  // (the bench, beside the dev server, a cluster in a home of its own) resolves each through its home.
  const sandbox = readState(sandboxHome(env.TIERSHIFT_HOME))?.temporal;
  // One exception to the CLI's order: with a sandbox up, the "default" profile of the CLI's own config file
  // is not read unless asked for (--profile, TEMPORAL_PROFILE or TEMPORAL_CONFIG_FILE). That file is often
  // set up for production, and a rehearsal on the sandbox must not reach production by accident.
  const asked = flags.profile !== undefined || env.TEMPORAL_PROFILE !== undefined || env.TEMPORAL_CONFIG_FILE !== undefined;
  const { connectionOptions: fromProfile, namespace: profileNamespace, tlsConfigured } = profileOptions(flags.profile, env, Boolean(sandbox) && !asked);
  const address = flags.address ?? fromProfile.address ?? sandbox?.address ?? '127.0.0.1:7233';
  const namespace = flags.namespace ?? profileNamespace ?? 'default';
  const certPath = flags.tlsCert;
  const keyPath = flags.tlsKey;
  const apiKey = flags.apiKey ?? fromProfile.apiKey;
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
  // The flags' certificate pair replaces the profile's; the profile's server CA and name stay.
  const profileTls = typeof fromProfile.tls === 'object' && fromProfile.tls !== null ? fromProfile.tls : undefined;
  const tls: ResolvedConnection['tls'] =
    certPath && keyPath
      ? { ...profileTls, clientCertPair: { crt: read(certPath), key: read(keyPath) } }
      : tlsConfigured && fromProfile.tls !== undefined && fromProfile.tls !== null
        ? fromProfile.tls
        : // The sandbox's cluster requires its own client certificate: a client reaching it gets it, with a token or without.
          sandbox && address === sandbox.address && sandbox.tls
          ? sandboxTlsConfig(sandbox.tls)
          : apiKey
            ? true
            : undefined;
  // A profile's grpc_meta is text (TOML strings and variables); binary values do not come from there.
  const meta = Object.entries(fromProfile.metadata ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string');
  const metadata = meta.length ? Object.fromEntries(meta) : undefined;
  const uiUrl = sandbox && address === sandbox.address ? sandbox.uiUrl : undefined;
  const sandboxAuth = !apiKey && sandbox?.auth && address === sandbox.address ? sandbox.auth : undefined;
  return { address, namespace, tls, apiKey, ...(metadata ? { metadata } : {}), uiUrl, ...(sandboxAuth ? { sandboxAuth } : {}) };
}

/**
 * connectionOptions, plus the token: a token given (--api-key, TEMPORAL_API_KEY, a profile's api_key) is
 * used as it is; with none, on the sandbox's cluster, a token of the sandbox's service client, renewed by
 * `apiKeySource` (stop it when the connection closes). Elsewhere no token is sent, as before.
 */
export async function resolveConnection(flags: ConnectionFlags = {}, env: NodeJS.ProcessEnv = process.env): Promise<ResolvedConnection> {
  const resolved = connectionOptions(flags, env);
  if (!resolved.sandboxAuth) return resolved;
  const apiKeySource = await sandboxToken(resolved.sandboxAuth, 'service');
  return { ...resolved, apiKey: apiKeySource.current(), apiKeySource };
}
