// Starting and stopping the demo app's blue and green instances. `up` starts blue; the app phase
// starts green on the target later, through the same functions, so both stay idempotent.
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { PROJECT_ROOT } from '../contract/home';
import { TransientError, UserError } from '../contract/errors';
import { HOST, isPortFree } from './ports';
import { isOurProcess, spawnDetached, stopProcess, waitUntil, type ProcessSpec } from './process';
import { logFile, type Health } from './service';
import { postgresUrl, writeState, type AppInstance, type SandboxState } from '../contract/home';

export const APP_PROCESS: ProcessSpec = { label: 'app', signal: 'SIGTERM', group: true, match: 'server.ts' };
const APP_ENTRY = path.join(PROJECT_ROOT, 'app', 'server.ts');

type Color = AppInstance['color'];
const portName = (color: Color) => (color === 'blue' ? 'appBlue' : 'appGreen');
const spec = (color: Color): ProcessSpec => ({ ...APP_PROCESS, label: `app-${color}` });

interface HealthBody {
  status?: string;
  color?: string;
  version?: string;
  database?: { ok?: boolean; orders?: number | null; error?: string };
}

export async function appHealth(app: AppInstance): Promise<Health> {
  const res = await fetch(`http://${HOST}:${app.port}/health`, { signal: AbortSignal.timeout(3_000) });
  const body = (await res.json()) as HealthBody;
  const db = body.database?.ok ? `${app.database} database, ${body.database.orders ?? 'no'} orders` : `${app.database} database unreachable (${body.database?.error ?? 'unknown'})`;
  if (body.color !== app.color || body.version !== app.version) {
    return { healthy: false, detail: `port ${app.port} answers as ${body.color ?? '?'} ${body.version ?? '?'}, expected ${app.color} ${app.version}` };
  }
  return { healthy: res.ok, detail: `${app.color} ${app.version} at http://${HOST}:${app.port}, ${db}` };
}

/**
 * Starts (or keeps) the `color` instance of the demo app on its sandbox port. An instance already
 * running with the same version and database is kept; a different one is replaced.
 */
export async function startApp(state: SandboxState, color: Color, opts: { database: 'source' | 'target'; version: string }): Promise<AppInstance> {
  const cluster = state.postgres[opts.database];
  if (!cluster) throw new UserError(`the sandbox has no ${opts.database} PostgreSQL cluster; run \`tiershift sandbox up\` first.`);
  const existing = state.apps[color];
  const port = state.ports[portName(color)];
  if (!port) throw new UserError(`the sandbox has not chosen a port for the ${color} app yet; run \`tiershift sandbox up\` first.`);
  if (existing && isOurProcess(existing.pid, spec(color))) {
    const same = existing.version === opts.version && existing.database === opts.database && existing.port === port;
    if (same && (await appHealth(existing).catch(() => undefined))?.healthy) return existing;
    await stopProcess(existing.pid, spec(color));
  }
  if (!(await isPortFree(port))) {
    // Often the previous instance still releasing it: retried, and the message says what to do if it stays taken.
    throw new TransientError(`port ${port} for the ${color} app is already in use on ${HOST}; stop what listens there or run \`tiershift sandbox down\` and up again.`);
  }

  const log = logFile(state.home, `app-${color}`);
  // tsx resolved from this project, so the app starts the same from any working directory.
  const tsx = pathToFileURL(createRequire(path.join(PROJECT_ROOT, 'package.json')).resolve('tsx')).href;
  const pid = spawnDetached(process.execPath, ['--import', tsx, APP_ENTRY], {
    log,
    cwd: PROJECT_ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      HOST,
      DATABASE_URL: postgresUrl(cluster),
      APP_COLOR: color,
      APP_VERSION: opts.version,
    },
  });
  const app: AppInstance = { color, version: opts.version, port, database: opts.database, pid, log };
  state.apps[color] = app;
  writeState(state);
  await waitUntil(`the ${color} app`, async () => ((await appHealth(app)).healthy ? true : undefined), { pid, log, timeoutMs: 30_000 });
  return app;
}

/** Stops the `color` instance if it runs and forgets it; a no-op when there is none. */
export async function stopApp(state: SandboxState, color: Color): Promise<void> {
  const app = state.apps[color];
  if (!app) return;
  if (isOurProcess(app.pid, spec(color))) await stopProcess(app.pid, spec(color));
  delete state.apps[color];
  writeState(state);
}
