// Every PostgreSQL client of the project comes from here (activities, sandbox, bench, tests), so each one
// has an 'error' listener: pg emits 'error' on a Client whose connection drops (a restart, a
// pg_terminate_backend, a network cut), and an EventEmitter without a listener turns that into an
// uncaught exception that kills the whole worker. With the listener, the query in flight (or the next
// one) rejects instead, which fails only the activity attempt, and Temporal retries it.
import pg from 'pg';

/**
 * Settings of a session that reads a table by primary-key range (copy chunks, checksums, boundaries):
 * the planner guesses a third of the table for a row comparison like `(a, b) > (1, 2)`, and would scan
 * the whole table for every chunk (and in parallel workers), making a big table's work grow with its
 * square. The key's index is always the way to read a range.
 */
export const KEY_RANGE_SETTINGS = { enable_seqscan: 'off', max_parallel_workers_per_gather: 0 } as const;

/** application_name of tiershift's own sessions, so operators (and tests) can tell them apart in pg_stat_activity. */
export const APPLICATION_NAME = 'tiershift';

export interface PgClientOptions {
  /** Session settings sent at connection start (`-c name=value`), in force before the first statement. */
  settings?: Record<string, string | number>;
  applicationName?: string;
  connectTimeoutMs?: number;
  /** Extra pg options (e.g. `replication: 'database'`). */
  extra?: Record<string, unknown>;
}

/**
 * Where to connect. pg decodes a URL's database with decodeURI, which leaves `%3F`, `%23`, `%2F` encoded:
 * a database named `a?b` would be looked up as `a%3Fb`. A plain URL (no query string: what postgresUrl
 * builds) is therefore split into its components here, each decoded in full; anything else goes to pg as is.
 */
function target(connectionString: string): pg.ClientConfig {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return { connectionString };
  }
  if (!/^postgres(ql)?:$/.test(url.protocol) || url.search || url.hash || !url.hostname) return { connectionString };
  const part = (s: string) => (s ? decodeURIComponent(s) : undefined);
  return {
    host: part(url.hostname.replace(/^\[(.+)\]$/, '$1')),
    port: url.port ? Number(url.port) : 5432,
    user: part(url.username),
    password: part(url.password),
    database: part(url.pathname.slice(1)),
  };
}

/**
 * A client with an error listener and TCP keepalives: the keepalive notices a server that vanished
 * without closing the connection (otherwise a query would wait for the kernel's TCP timeout, ~2 h).
 */
export function pgClient(connectionString: string, opts: PgClientOptions = {}): pg.Client {
  const options = Object.entries(opts.settings ?? {})
    .map(([k, v]) => `-c ${k}=${String(v)}`)
    .join(' ');
  const client = new pg.Client({
    ...target(connectionString),
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: opts.applicationName ?? APPLICATION_NAME,
    ...(options ? { options } : {}),
    ...opts.extra,
  } as pg.ClientConfig);
  // Deliberately empty: the same error also rejects the pending query, which is where callers see it.
  client.on('error', () => undefined);
  return client;
}

/** Connects, runs `fn`, and always closes; a close on a connection that already died is not an error. */
export async function withPgClient<T>(connectionString: string, fn: (client: pg.Client) => Promise<T>, opts: PgClientOptions = {}): Promise<T> {
  const client = pgClient(connectionString, opts);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * A connection URL for a libpq tool's command line (pg_dump, pg_restore, psql) without its password, and
 * the environment that carries the password instead: arguments are visible to every user of the host
 * (`ps`), a process's environment only to its owner.
 */
export function libpqCommandLine(connectionString: string, env: NodeJS.ProcessEnv = process.env): { url: string; env: NodeJS.ProcessEnv } {
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return { url: connectionString, env };
  }
  if (!/^postgres(ql)?:$/.test(url.protocol) || !url.password) return { url: connectionString, env };
  const password = decodeURIComponent(url.password);
  url.password = '';
  return { url: url.toString(), env: { ...env, PGPASSWORD: password } };
}
