// The local sandbox: real processes on 127.0.0.1 standing in for Azure. `up` is idempotent and records
// every process in the state file as soon as it starts; `down` stops exactly what is recorded.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { findBinary } from './binaries';
import { UserError } from '../contract/errors';
import { appHealth, APP_PROCESS, startApp } from './app';
import { AZURITE_PROCESS, azuriteHealth, ensureAzurite } from './azurite';
import { ensureHaproxy, HAPROXY_PROCESS, haproxyHealth } from './haproxy';
import { ensureIdp, IDP_PROCESS, idpHealth } from './idp';
import { checkPortNumbers, PortPlanner } from './ports';
import { CLUSTERS, ensurePostgres, POSTGRES_PROCESS, postgresHealth, type ClusterName } from './postgres';
import { isAlive, isOurProcess, stopProcess, type ProcessSpec } from './process';
import { dataDir, keepRunning, logsDir, probe, type Health, type Log, type UpContext } from './service';
import { ensureTemporal, TEMPORAL_PROCESS, temporalHealth } from './temporal';
import { ensureTemporalCluster } from './temporal-cluster';
import { requireTemporalServer } from './temporal-server-build';
import { stopWorkers } from './workers';
import { postgresUrl, readState, sandboxHome, stateFile, writeState, type AppInstance, type ProcessRecord, type SandboxPorts, type SandboxState } from '../contract/home';

export { findFreePort } from './ports';
export { startApp, stopApp } from './app';
export { restartPostgres } from './postgres';
export { originStats, readStats, runtimeCommand, setServerWeight, type HaproxyStatRow } from './haproxy';
export type { AppInstance, PostgresCluster, SandboxPorts, SandboxState, StorageAccount } from '../contract/home';

export interface SandboxUpOptions {
  home?: string;
  /** Explicit ports: each must be free, or `up` fails with a one-sentence UserError. */
  ports?: Partial<SandboxPorts>;
  /** Ignore the default ports and take any free ones (tests, next to another sandbox). */
  freePorts?: boolean;
  /** Orders in the demo dataset (default 100 000); customers, products and items scale with it. */
  seedRows?: number;
  /** Progress lines. */
  log?: (line: string) => void;
  /**
   * Which Temporal: `dev` (the CLI's dev server, the default) or `cluster` (the real server on the source
   * cluster's PostgreSQL). Unset keeps the kind that runs; asking for the other one while it runs is an error.
   */
  temporal?: TemporalKind;
}

export type TemporalKind = 'dev' | 'cluster';
export const TEMPORAL_KINDS: readonly TemporalKind[] = ['dev', 'cluster'];

export interface ServiceStatus {
  name: string;
  healthy: boolean;
  pid?: number;
  url?: string;
  detail: string;
}

export const DEFAULT_SEED_ROWS = 100_000;
const quiet: Log = () => undefined;

/** Starts whatever is not already running and healthy; returns the state file's content. */
export async function sandboxUp(opts: SandboxUpOptions = {}): Promise<SandboxState> {
  const home = sandboxHome(opts.home);
  const seedRows = opts.seedRows ?? DEFAULT_SEED_ROWS;
  if (!Number.isInteger(seedRows) || seedRows < 1) throw new UserError(`seedRows must be a positive whole number, got ${seedRows}.`);
  checkPortNumbers(opts.ports ?? {});
  if (opts.temporal !== undefined && !TEMPORAL_KINDS.includes(opts.temporal)) {
    throw new UserError(`--temporal takes ${TEMPORAL_KINDS.join(' or ')}, got "${String(opts.temporal)}".`);
  }
  const running = readState(home)?.temporal;
  // A record without a kind is from before the cluster existed: the dev server.
  const recordedKind = running ? (running.kind ?? 'dev') : undefined;
  if (opts.temporal && recordedKind && recordedKind !== opts.temporal) {
    throw new UserError(`the sandbox runs the Temporal ${recordedKind === 'dev' ? 'dev server' : 'cluster'}; run \`tiershift sandbox down\` first to switch it to --temporal ${opts.temporal}.`);
  }
  const kind: TemporalKind = opts.temporal ?? recordedKind ?? 'dev';
  // Every tool first, so a missing one fails before anything starts.
  if (kind === 'cluster') requireTemporalServer();
  for (const name of [...(kind === 'dev' ? ['temporal'] : ['openssl']), 'azurite-blob', 'initdb', 'pg_ctl', 'haproxy', ...(process.getuid?.() === 0 ? ['runuser'] : [])]) findBinary(name);
  mkdirSync(dataDir(home), { recursive: true });
  mkdirSync(logsDir(home), { recursive: true });
  return withLock(home, async () => {
    const previous = readState(home);
    const state: SandboxState = previous ?? { home, startedAt: new Date().toISOString(), ports: { ...emptyPorts }, postgres: {}, apps: {} };
    const ctx: UpContext = {
      state,
      ports: new PortPlanner({ explicit: opts.ports ?? {}, previous: previous?.ports, freePorts: opts.freePorts ?? false }),
      log: opts.log ?? quiet,
      seedRows,
    };
    writeState(state);
    if (kind === 'dev') {
      // The Temporal dev server binds a few random ports of its own at start-up: the other services
      // prepare meanwhile (initdb takes seconds) but claim their ports only once it is up, in case an
      // explicitly configured port is one the kernel could hand it.
      const temporal = ensureTemporal(ctx);
      await allSettled([
        temporal,
        ensureAzurite(ctx, temporal),
        ensurePostgres(ctx, 'source', temporal),
        ensurePostgres(ctx, 'target', temporal),
        ensureIdp(ctx, temporal),
      ]);
    } else {
      // The cluster binds only ports chosen for it, so nobody waits for it;
      // it waits for the source PostgreSQL, which holds its databases, and for the identity provider, whose
      // JWKS its authorizer trusts.
      const now = Promise.resolve();
      const source = ensurePostgres(ctx, 'source', now);
      const idp = ensureIdp(ctx, now);
      await allSettled([
        source,
        idp,
        ensureTemporalCluster(ctx, source, idp),
        ensureAzurite(ctx, now),
        ensurePostgres(ctx, 'target', now),
      ]);
    }
    await ensureApps(ctx);
    await ensureHaproxy(ctx);
    writeState(state);
    return state;
  });
}

/** Like Promise.all, but every service gets to finish (and be recorded) before the first error is thrown. */
async function allSettled(tasks: Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(tasks)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** Placeholder ports until each service claims its own: 0 means "not chosen yet". */
const emptyPorts: SandboxPorts = {
  temporal: 0,
  temporalUi: 0,
  azurite: 0,
  pgSource: 0,
  pgTarget: 0,
  haproxy: 0,
  haproxyStats: 0,
  haproxyRuntime: 0,
  appBlue: 0,
  appGreen: 0,
  idp: 0,
};

/** Blue (v1 on the source) always; green only when the app phase had started it, with its version. */
async function ensureApps(ctx: UpContext): Promise<void> {
  const { state } = ctx;
  const apps: { color: AppInstance['color']; port: 'appBlue' | 'appGreen'; wanted?: Pick<AppInstance, 'database' | 'version'> }[] = [
    { color: 'blue', port: 'appBlue', wanted: state.apps.blue ?? { database: 'source', version: 'v1' } },
    { color: 'green', port: 'appGreen', wanted: state.apps.green },
  ];
  for (const { color, port, wanted } of apps) {
    const app = state.apps[color];
    if (await keepRunning(ctx, app, { ...APP_PROCESS, label: `app-${color}` }, () => appHealth(app!), [port])) continue;
    // Green's port is chosen now even when green does not run: HAProxy's configuration names it.
    state.ports[port] = await ctx.ports.claim(port);
    if (!wanted) continue;
    const started = await startApp(state, color, { database: wanted.database, version: wanted.version });
    ctx.log(`app-${color}: started (pid ${started.pid}) ${started.version} on http://127.0.0.1:${started.port}, ${started.database} database`);
  }
  writeState(state);
}

interface Recorded {
  name: string;
  record: ProcessRecord;
  spec: ProcessSpec;
}

/** Every recorded process, front to back: the order `down` stops them in. */
function recorded(state: SandboxState): Recorded[] {
  const list: (Recorded | undefined)[] = [
    state.haproxy && { name: 'haproxy', record: state.haproxy, spec: HAPROXY_PROCESS },
    ...(['green', 'blue'] as const).map((c) => {
      const app = state.apps[c];
      return app && { name: `app-${c}`, record: app, spec: APP_PROCESS };
    }),
    ...(['source', 'target'] as const).map((c) => {
      const cluster = state.postgres[c];
      return cluster && { name: `postgres-${c}`, record: cluster, spec: POSTGRES_PROCESS };
    }),
    state.idp && { name: 'idp', record: state.idp, spec: IDP_PROCESS },
    state.azurite && { name: 'azurite', record: state.azurite, spec: AZURITE_PROCESS },
    state.temporal && { name: 'temporal', record: state.temporal, spec: TEMPORAL_PROCESS },
  ];
  return list.filter((r): r is Recorded => r !== undefined);
}

/** Stops what the state file records, by pid, then forgets it; `purge` also deletes the home. */
export async function sandboxDown(opts: { home?: string; purge?: boolean; log?: (line: string) => void } = {}): Promise<void> {
  const home = sandboxHome(opts.home);
  const log = opts.log ?? quiet;
  if (!existsSync(home)) {
    log(`no sandbox in ${home}; nothing to stop`);
    return;
  }
  await withLock(home, async () => {
    // Workers first, while Temporal still answers them: each drains its tasks and exits cleanly.
    await stopWorkers(home, log);
    const state = readState(home);
    if (!state) log(`no sandbox is running in ${home}; nothing to stop`);
    else {
      const results = await Promise.allSettled(
        recorded(state).map(async ({ name, record, spec }) => {
          if (!isAlive(record.pid)) return log(`${name}: not running`);
          if (!isOurProcess(record.pid, spec)) return log(`${name}: pid ${record.pid} now belongs to another program; left alone`);
          await stopProcess(record.pid, { ...spec, label: name });
          log(`${name}: stopped (pid ${record.pid})`);
        }),
      );
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      // Keep the state file when something survived, so a second `down` can try again.
      if (failed) throw failed.reason;
      rmSync(stateFile(home), { force: true });
    }
  });
  if (opts.purge) {
    purgeHome(home);
    log(`removed ${home}`);
  }
}

/**
 * What the sandbox writes into its home (and `runs`: the markers of run steps a worker started,
 * activities/command.ts; `workers`: the workers' pid files, worker/pid-file.ts; `demo-logins`: the demo's
 * people's sign-ins, client/demo.ts); a purge refuses to delete a directory holding anything else.
 */
const HOME_ENTRIES = new Set(['state.json', 'state.json.tmp', 'lock', 'data', 'logs', 'haproxy.cfg', 'idp', 'runs', 'workers', 'demo-logins']);

function purgeHome(home: string): void {
  const foreign = readdirSync(home).filter((e) => !HOME_ENTRIES.has(e));
  if (foreign.length) {
    throw new UserError(`${home} holds files the sandbox did not create (${foreign.slice(0, 3).join(', ')}); delete it yourself if you are sure.`);
  }
  rmSync(home, { recursive: true, force: true });
}

/** Health of every service the state file records (and of those `up` did not get to); never throws. */
export async function sandboxStatus(opts: { home?: string } = {}): Promise<ServiceStatus[]> {
  const state = readState(sandboxHome(opts.home));
  if (!state) return [];
  const check = async (name: string, record: ProcessRecord | undefined, url: string | undefined, health: () => Promise<Health>): Promise<ServiceStatus> => {
    if (!record) return { name, healthy: false, detail: 'not started; run `tiershift sandbox up`' };
    if (!isAlive(record.pid)) return { name, healthy: false, pid: record.pid, url, detail: `not running (pid ${record.pid} is gone); see ${record.log}` };
    return { name, pid: record.pid, url, ...(await probe(health)) };
  };
  const clusters = (Object.keys(CLUSTERS) as ClusterName[]).map((c) => {
    const cluster = state.postgres[c];
    return check(`postgres-${c}`, cluster, cluster && postgresUrl(cluster), () => postgresHealth(cluster!));
  });
  const apps = (['blue', 'green'] as const)
    .filter((c) => c === 'blue' || state.apps[c])
    .map((c) => {
      const app = state.apps[c];
      return check(`app-${c}`, app, app && `http://127.0.0.1:${app.port}`, () => appHealth(app!));
    });
  return Promise.all([
    check('temporal', state.temporal, state.temporal?.uiUrl ?? state.temporal?.address, () => temporalHealth(state.temporal!)),
    check('azurite', state.azurite, state.azurite && new URL(state.azurite.accounts[0]?.blobEndpoint ?? 'http://127.0.0.1').origin, () => azuriteHealth(state.azurite!)),
    ...clusters,
    ...apps,
    check('haproxy', state.haproxy, state.haproxy?.frontendUrl, () => haproxyHealth(state)),
    check('idp', state.idp, state.idp?.issuer, () => idpHealth(state.idp!)),
  ]);
}

/**
 * One `up` or `down` at a time per home: two would race on ports and on the state file. A lock left
 * by a process that died is taken over.
 */
async function withLock<T>(home: string, fn: () => Promise<T>): Promise<T> {
  const file = path.join(home, 'lock');
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const holder = Number(readFileSync(file, 'utf8'));
      if (isAlive(holder)) {
        throw new UserError(`another \`tiershift sandbox\` command (pid ${holder}) is working on ${home}; wait for it to finish.`);
      }
      rmSync(file, { force: true });
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}
