// `tiershift sandbox up --temporal cluster`: the real Temporal server (frontend, history, matching and
// worker services in one process, as `server start` runs them by default) on the sandbox's source
// PostgreSQL cluster, with SQL visibility, mutual TLS (sandbox/temporal-tls.ts) and Temporal's own JWT
// authorizer and default claim mapper fed by the sandbox identity provider's JWKS
// (contract/temporal-auth.ts): what a self-hosted production cluster runs, on one machine. The server's
// worker service calls an internal frontend (mutual TLS with the services' own CA, no token), as
// Temporal's docs recommend once the public frontend has an authorizer.
// Its schema is created and upgraded by the server's own temporal-sql-tool, from the schema embedded
// in it; the namespace and tiershift's search attributes are registered through the frontend with a
// token of the sandbox's admin client (`temporal-system:admin`), as an operator of such a cluster does.
import { Connection } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { withPgClient } from '../contract/pg';
import { SEARCH_ATTRIBUTES } from '../contract/search-attributes';
import { UserError } from '../contract/errors';
import { findStablePort, HOST, isPortFree } from './ports';
import { logTail, run, spawnDetached, waitUntil } from './process';
import { dataDir, keepRunning, logFile, saveRecord, type UpContext } from './service';
import { TEMPORAL_PROCESS, temporalHealth } from './temporal';
import { requireTemporalServer, TEMPORAL_SERVER_VERSION } from './temporal-server-build';
import { ensureCertificates, serverTlsConfig, type ClusterCertificates } from './temporal-tls';
import { sandboxTlsConfig } from '../contract/connection';
import { idpClientsFile, PERMISSIONS_CLAIM, sandboxToken, TEMPORAL_AUDIENCE, type SandboxAuth } from '../contract/temporal-auth';
import { postgresUrl, type PostgresCluster, type SandboxState, type SandboxTls } from '../contract/home';

const NAMESPACE = 'default';
/** Long enough to read a rehearsal's history the next day; the cluster deletes closed workflows after it. */
const RETENTION = '3 days';
/** The persistence and visibility databases, beside `shop` on the source cluster, named as Temporal's own docs name them. */
export const TEMPORAL_DATABASES = { temporal: 'postgresql/v12/temporal', temporal_visibility: 'postgresql/v12/visibility' } as const;
/**
 * Each of the four services opens its own pools: 4 x (4 + 2) connections at most, well inside the
 * source tier's max_connections of 50 beside the demo app's pool of 10 and a migration's own.
 */
const POOL = { default: 4, visibility: 2 };

/**
 * The gRPC ports of the three services behind the frontend, the membership ports of the four, then the
 * internal frontend's gRPC and membership ports (appended: a home's recorded ports keep their places).
 */
const SERVICE_PORTS = 9;
/** How often the server fetches the identity provider's JWKS again: a rotated key is trusted within it. */
const JWKS_REFRESH = '1m';

/** indexedValueType of temporal.api.enums.v1 (the proto package is only a dev dependency here). */
const INDEXED_VALUE_TYPE: Record<string, number> = { TEXT: 1, KEYWORD: 2, INT: 3, DOUBLE: 4, BOOL: 5, DATETIME: 6, KEYWORD_LIST: 7 };

type TemporalRecord = NonNullable<SandboxState['temporal']>;

/** Creates the two databases when missing, then brings their schema to the server's version (idempotent). */
async function setupSchema(sqlTool: string, pg: PostgresCluster, home: string, log: (line: string) => void): Promise<void> {
  const schemaLog = logFile(home, 'temporal-schema');
  for (const [database, schema] of Object.entries(TEMPORAL_DATABASES)) {
    const versioned = await withPgClient(postgresUrl(pg, 'postgres'), async (client) => {
      const exists = (await client.query('select 1 from pg_database where datname = $1', [database])).rowCount;
      if (!exists) await client.query(`create database ${client.escapeIdentifier(database)}`);
      return exists
        ? withPgClient(postgresUrl(pg, database), async (db) => Boolean((await db.query(`select to_regclass('public.schema_version') is not null as v`)).rows[0]?.v))
        : false;
    });
    const base = ['--plugin', 'postgres12', '--endpoint', pg.host, '--port', String(pg.port), '--user', pg.user, '--database', database];
    const steps = [
      // The versioning tables once; then every versioned upgrade the embedded schema holds beyond what is applied.
      ...(versioned ? [] : [['setup-schema', '--version', '0.0']]),
      ['update-schema', '--schema-name', schema],
    ];
    for (const step of steps) {
      const result = await run(sqlTool, [...base, ...step], { timeoutMs: 120_000 });
      writeFileSync(schemaLog, `$ temporal-sql-tool ${[...base, ...step].join(' ')}\n${result.output}\n`, { flag: 'a' });
      if (result.code !== 0) {
        throw new UserError(`setting up Temporal's ${database} schema failed (${logTail(schemaLog).slice(0, 200)}); see ${schemaLog}.`);
      }
    }
  }
  log(`temporal: schema of ${Object.keys(TEMPORAL_DATABASES).join(' and ')} at ${TEMPORAL_SERVER_VERSION} on the source cluster`);
}

/** The previous run's ports when still free (the membership table remembers them), else new ones. */
async function servicePorts(ctx: UpContext, previous: number[] | undefined): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < SERVICE_PORTS; i++) {
    const before = previous?.[i];
    let port = before !== undefined && !ports.includes(before) && (await isPortFree(before)) ? before : undefined;
    while (port === undefined || ports.includes(port) || port === ctx.state.ports.temporal) port = await findStablePort();
    ctx.ports.reserve(port);
    ports.push(port);
  }
  return ports;
}

function serverConfig(pg: PostgresCluster, frontend: number, ports: number[], dynamicConfig: string, certs: ClusterCertificates, auth: SandboxAuth): Record<string, unknown> {
  const [historyGrpc, matchingGrpc, workerGrpc, frontendMembership, historyMembership, matchingMembership, workerMembership, internalGrpc, internalMembership] = ports;
  const store = (databaseName: string, maxConns: number) => ({
    sql: { pluginName: 'postgres12', databaseName, connectAddr: `${pg.host}:${pg.port}`, connectProtocol: 'tcp', user: pg.user, password: '', maxConns, maxIdleConns: maxConns, maxConnLifetime: '1h' },
  });
  const rpc = (grpcPort: number | undefined, membershipPort: number | undefined) => ({ rpc: { grpcPort, membershipPort, bindOnLocalHost: true } });
  return {
    log: { stdout: true, level: 'warn' },
    persistence: {
      defaultStore: 'postgres-default',
      visibilityStore: 'postgres-visibility',
      numHistoryShards: 4,
      datastores: { 'postgres-default': store('temporal', POOL.default), 'postgres-visibility': store('temporal_visibility', POOL.visibility) },
    },
    global: {
      membership: { maxJoinDuration: '30s', broadcastAddress: HOST },
      tls: serverTlsConfig(certs),
      // Every call to the public frontend carries a JWT of the sandbox identity provider for this audience;
      // its `permissions` claim (<namespace>:<role>) is all the default authorizer grants.
      authorization: {
        jwtKeyProvider: { keySourceURIs: [`${auth.issuer}/jwks`], refreshInterval: JWKS_REFRESH },
        permissionsClaimName: PERMISSIONS_CLAIM,
        authorizer: 'default',
        claimMapper: 'default',
        audience: auth.audience,
      },
    },
    services: {
      frontend: rpc(frontend, frontendMembership),
      // The server's own callers (its worker service: schedules, batch, namespace deletion) come here, with the
      // internode certificate and no token; it is bound to loopback, and tiershift's certificate does not open it.
      'internal-frontend': rpc(internalGrpc, internalMembership),
      history: rpc(historyGrpc, historyMembership),
      matching: rpc(matchingGrpc, matchingMembership),
      worker: rpc(workerGrpc, workerMembership),
    },
    clusterMetadata: {
      enableGlobalNamespace: false,
      failoverVersionIncrement: 10,
      masterClusterName: 'active',
      currentClusterName: 'active',
      clusterInformation: { active: { enabled: true, initialFailoverVersion: 1, rpcName: 'frontend', rpcAddress: `${HOST}:${frontend}` } },
    },
    dcRedirectionPolicy: { policy: 'noop' },
    dynamicConfigClient: { filepath: dynamicConfig, pollInterval: '10s' },
  };
}

/**
 * Dynamic configuration, as the dev server sets it: a search attribute registered a moment ago is usable
 * at once rather than after the frontend's cache expires, and workflow updates (tiershift's approve,
 * reject, resume and rollback) are accepted whatever this version's default.
 */
const DYNAMIC_CONFIG = {
  'system.forceSearchAttributesCacheRefreshOnRead': [{ value: true }],
  'frontend.enableUpdateWorkflowExecution': [{ value: true }],
};

/** The namespace and the search attributes, through the frontend; each only when missing. */
async function registerNamespace(address: string, tls: SandboxTls, auth: SandboxAuth): Promise<void> {
  const admin = await sandboxToken(auth, 'admin');
  const connection = await Connection.connect({ address, tls: sandboxTlsConfig(tls), apiKey: () => admin.current(), connectTimeout: 2_000 });
  try {
    try {
      await connection.workflowService.registerNamespace({ namespace: NAMESPACE, workflowExecutionRetentionPeriod: msToTs(RETENTION) });
    } catch (err) {
      // 6: ALREADY_EXISTS, from an earlier `up` on the same data.
      if ((err as { code?: number }).code !== 6) throw err;
    }
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: NAMESPACE });
    const missing = SEARCH_ATTRIBUTES.filter((k) => !(k.name in (customAttributes ?? {})));
    if (missing.length) {
      await connection.operatorService.addSearchAttributes({
        namespace: NAMESPACE,
        searchAttributes: Object.fromEntries(missing.map((k) => [k.name, INDEXED_VALUE_TYPE[k.type]!])),
      });
    }
  } finally {
    admin.stop();
    await connection.close();
  }
}

/**
 * Starts (or keeps) the cluster; `source` resolves once the source PostgreSQL cluster is up, `idp` once the
 * identity provider is: the server reads its JWKS at start, and its health check needs a token from it.
 */
export async function ensureTemporalCluster(ctx: UpContext, source: Promise<void>, idp: Promise<void>): Promise<void> {
  const { state } = ctx;
  await idp;
  if (!state.idp) throw new UserError('the identity provider did not start, and the Temporal cluster trusts its tokens only; see `tiershift sandbox status`.');
  const auth: SandboxAuth = { issuer: state.idp.issuer, audience: TEMPORAL_AUDIENCE, clientsFile: idpClientsFile(state.home) };
  if (await keepRunning(ctx, state.temporal, TEMPORAL_PROCESS, () => temporalHealth(state.temporal!), ['temporal'])) return;
  const { server, sql } = requireTemporalServer();
  const previous = state.temporal?.cluster?.servicePorts;
  await source;
  const pg = state.postgres.source;
  if (!pg) throw new UserError('the source PostgreSQL cluster did not start, and the Temporal cluster keeps its data there; see `tiershift sandbox status`.');
  await setupSchema(sql, pg, state.home, ctx.log);

  const port = (state.ports.temporal = await ctx.ports.claim('temporal'));
  const ports = await servicePorts(ctx, previous);
  const root = path.join(dataDir(state.home), 'temporal-cluster');
  mkdirSync(path.join(root, 'config'), { recursive: true });
  const certs = await ensureCertificates(path.join(root, 'tls'));
  const tls: SandboxTls = { caFile: certs.caFile, certFile: certs.certFile, keyFile: certs.keyFile, serverName: certs.serverName };
  const dynamicConfig = path.join(root, 'config', 'dynamicconfig.yaml');
  writeFileSync(dynamicConfig, stringify(DYNAMIC_CONFIG));
  // `--env sandbox` reads config/sandbox.yaml under --root; the server's own config directory is not needed.
  const config = path.join(root, 'config', 'sandbox.yaml');
  writeFileSync(config, stringify(serverConfig(pg, port, ports, dynamicConfig, certs, auth)));
  const log = logFile(state.home, 'temporal');
  // The internal frontend is not among `start`'s default services: every service is named.
  const services = ['frontend', 'internal-frontend', 'history', 'matching', 'worker'].flatMap((s) => ['--service', s]);
  const pid = spawnDetached(server, ['--root', root, '--config', 'config', '--env', 'sandbox', 'start', ...services], { log, cwd: root });
  const temporal: TemporalRecord = { kind: 'cluster', pid, log, address: `${HOST}:${port}`, namespace: NAMESPACE, cluster: { config, servicePorts: ports }, tls, auth };
  saveRecord(ctx, (s) => (s.temporal = temporal));
  // The frontend answers once the services have joined the ring; the namespace is registered through it.
  await waitUntil('the Temporal server', async () => ((await registerNamespace(temporal.address, tls, auth)), true), { pid, log, timeoutMs: 120_000, intervalMs: 1_000 });
  await waitUntil('the Temporal server\'s search attributes', async () => ((await temporalHealth(temporal)).healthy ? true : undefined), { pid, log, timeoutMs: 60_000, intervalMs: 1_000 });
  ctx.log(`temporal: started the Temporal server ${TEMPORAL_SERVER_VERSION} (pid ${pid}) at ${temporal.address}, PostgreSQL on the source cluster, namespace ${NAMESPACE}`);
}
