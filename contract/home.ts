import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SandboxAuth } from './temporal-auth';

// The tiershift home: where the sandbox keeps its state file, data, logs and the codec keys. Every layer
// reads it (the CLI and worker find the sandbox's Temporal here), so it sits at the contract level.

const HERE = path.dirname(fileURLToPath(import.meta.url));
/**
 * The project root: binaries installed by `npm run setup` live under `.tools/bin` here. This module runs from
 * contract/ or, compiled by `npm run build`, from dist/contract/: the root is the one above dist/ then.
 */
export const PROJECT_ROOT = path.resolve(HERE, path.basename(path.dirname(HERE)) === 'dist' ? '../..' : '..');

/**
 * Where the sandbox keeps its state file, data directories and logs.
 * TIERSHIFT_HOME overrides it; tests give every run a fresh temporary home.
 */
export function sandboxHome(explicit?: string): string {
  return path.resolve(explicit ?? process.env.TIERSHIFT_HOME ?? path.join(PROJECT_ROOT, '.tiershift'));
}

export interface SandboxPorts {
  temporal: number;
  temporalUi: number;
  azurite: number;
  pgSource: number;
  pgTarget: number;
  haproxy: number;
  haproxyStats: number;
  haproxyRuntime: number;
  appBlue: number;
  appGreen: number;
  /** The sandbox's OpenID provider, whose tokens prove who made a decision. */
  idp: number;
}

/** The ports a sandbox prefers; each is replaced by a free one when taken, unless configured explicitly. */
export const DEFAULT_PORTS: SandboxPorts = {
  temporal: 7233,
  temporalUi: 8233,
  azurite: 10000,
  pgSource: 5433,
  pgTarget: 5434,
  haproxy: 8080,
  haproxyStats: 8404,
  haproxyRuntime: 9999,
  appBlue: 3001,
  appGreen: 3002,
  idp: 5556,
};

export interface ProcessRecord {
  pid: number;
  /** Log file of the process, for `sandbox status` and error messages. */
  log: string;
}

export interface PostgresCluster extends ProcessRecord {
  name: 'source' | 'target';
  tier: 'small' | 'medium' | 'large';
  host: '127.0.0.1';
  port: number;
  user: string;
  database: string;
  dataDir: string;
}

export interface StorageAccount {
  /** Role in the plan: the primary and secondary regions of the seeds' runbooks. */
  role: 'primary' | 'secondary';
  name: string;
  key: string;
  blobEndpoint: string;
  connectionString: string;
}

export interface AppInstance extends ProcessRecord {
  color: 'blue' | 'green';
  version: string;
  port: number;
  database: 'source' | 'target';
}

/** The certificate files a client of the sandbox's Temporal cluster connects with (mutual TLS), and the name its server certificate holds. */
export interface SandboxTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  serverName: string;
}

export interface SandboxState {
  home: string;
  startedAt: string;
  ports: SandboxPorts;
  temporal?: ProcessRecord & {
    /** `dev`: `temporal server start-dev` (SQLite, with the UI; the default, and what a record without a kind is). `cluster`: the real server on the source cluster's PostgreSQL. */
    kind?: 'dev' | 'cluster';
    address: string;
    /** The Web UI: the dev server's own; the cluster runs none. */
    uiUrl?: string;
    namespace: string;
    /** The dev server's SQLite file. */
    dbFile?: string;
    /** The cluster's configuration file, and the ports of its services other than the frontend (reused by the next `up`). */
    cluster?: { config: string; servicePorts: number[] };
    /** Present when the server requires mutual TLS (the cluster does): what a client connects with. */
    tls?: SandboxTls;
    /** Present when the server's JWT authorizer is on (the cluster): where a client without a token gets one. */
    auth?: SandboxAuth;
  };
  azurite?: ProcessRecord & { dataDir: string; accounts: StorageAccount[] };
  postgres: Partial<Record<'source' | 'target', PostgresCluster>>;
  haproxy?: ProcessRecord & {
    config: string;
    frontendUrl: string;
    statsUrl: string;
    /** host:port of the runtime API (`stats socket ipv4@...`, level admin). */
    runtimeApi: string;
    backend: string;
  };
  apps: Partial<Record<'blue' | 'green', AppInstance>>;
  /** The OpenID provider: `issuer` is its URL; `usersFile` holds the sandbox users' passwords (mode 0600). */
  idp?: ProcessRecord & { issuer: string; usersFile: string };
}

export function stateFile(home: string): string {
  return path.join(home, 'state.json');
}

export function readState(home: string): SandboxState | undefined {
  const file = stateFile(home);
  if (!existsSync(file)) return undefined;
  return JSON.parse(readFileSync(file, 'utf8')) as SandboxState;
}

/** Written atomically so a crash mid-write never leaves a state file that forgets a running process. */
export function writeState(state: SandboxState): void {
  mkdirSync(state.home, { recursive: true });
  const file = stateFile(state.home);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
}

export function postgresUrl(cluster: PostgresCluster, database = cluster.database): string {
  // Every component encoded: a database named `shop?host=elsewhere` must stay a name, not become a parameter.
  return `postgres://${encodeURIComponent(cluster.user)}@${cluster.host}:${cluster.port}/${encodeURIComponent(database)}`;
}

/**
 * Where each running `tiershift worker` leaves a pid file (`<pid>.json`, a WorkerRecord), for `sandbox down`
 * to stop it: one file per worker, since several may run against one Temporal.
 */
export function workersDir(home: string): string {
  return path.join(home, 'workers');
}

export interface WorkerRecord {
  pid: number;
  /** The worker's command line as /proc/<pid>/cmdline held it: a recycled pid running anything else differs. */
  cmdline: string;
  /** The Temporal frontend it polls. */
  address: string;
  startedAt: string;
}
