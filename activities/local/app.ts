// The app phase on the sandbox: start the new version of the demo app (green, by default) on the
// database the plan names, the local twin of deploying a Container App revision.
import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import type { AppStep } from '../../plan/types';
import type { LocalApp, LocalPostgres } from './provider';
import { startApp, stopApp, type AppInstance, type SandboxState } from '../../sandbox';
import { appHealth } from '../../sandbox/app';
import type { StepInput, StepOutcome, UndoInput } from '../types';
import { sandboxState } from './sandbox';

type Color = AppInstance['color'];
type Cluster = AppInstance['database'];

/** What the instance of that color ran before the step: undo restores it, or stops what the step started. */
export type AppUndo = { color: Color; previous: { version: string; database: Cluster } | null };

function appResource(input: StepInput<AppStep>): LocalApp {
  const resource = input.resources[input.step.resource];
  if (resource?.kind !== 'app') {
    throw ApplicationFailure.nonRetryable(`${input.step.resource} is not an app resource of the plan; name an app resource in the app step`, 'NonRetryable');
  }
  return resource as LocalApp;
}

function appColor(resource: LocalApp): Color {
  const color = resource.color ?? 'green';
  if (color !== 'blue' && color !== 'green') {
    throw ApplicationFailure.nonRetryable(`the sandbox app ${resource.name} names color "${color}"; use blue or green (or leave it out for green)`, 'NonRetryable');
  }
  return color;
}

/** The sandbox cluster of the step's database; the sandbox app always uses that cluster's own database. */
function databaseCluster(input: StepInput<AppStep>, state: SandboxState, fallback: Cluster): Cluster {
  const name = input.step.database;
  if (name === undefined) return fallback;
  const found = input.resources[name];
  const resource = found?.kind === 'postgres' ? (found as LocalPostgres) : undefined;
  if (!resource?.cluster) {
    throw ApplicationFailure.nonRetryable(`the app step's database ${name} is not a sandbox postgres resource with a cluster; set local: { cluster: source or target } on it`, 'NonRetryable');
  }
  const own = state.postgres[resource.cluster]?.database;
  if (resource.database !== undefined && own !== undefined && resource.database !== own) {
    throw ApplicationFailure.nonRetryable(`the sandbox app can only use the ${own} database of the ${resource.cluster} cluster, not ${resource.database}; fix ${name} in the plan`, 'NonRetryable');
  }
  return resource.cluster;
}

async function healthy(app: AppInstance | undefined): Promise<AppInstance | undefined> {
  if (!app) return undefined;
  return (await appHealth(app).catch(() => undefined))?.healthy ? app : undefined;
}

export async function updateApp(input: StepInput<AppStep>): Promise<StepOutcome> {
  const resource = appResource(input);
  const color = appColor(resource);
  const state = sandboxState();
  const running = await healthy(state.apps[color]);
  // Without a database in the step the app stays where it is, or joins the stable one's.
  const database = databaseCluster(input, state, running?.database ?? state.apps.blue?.database ?? 'source');
  const version = input.step.version;
  // What ran before the first attempt, from that attempt's heartbeat: a retry finds this step's own
  // instance healthy and must not record it as the one to go back to.
  const earlier = (Context.current().info.heartbeatDetails as { previous?: AppUndo['previous'] } | undefined)?.previous;
  const previous = earlier !== undefined ? earlier : running ? { version: running.version, database: running.database } : null;
  heartbeat({ color, version, database, previous });
  // startApp keeps a healthy instance with the same version and database, and waits for /health otherwise.
  const app = await startApp(state, color, { database, version });
  const kept = running?.pid === app.pid;
  const n = resource.name;
  const undo: AppUndo = { color, previous };
  return {
    summary: `${n}: ${color} ${version} ${kept ? 'already ran' : 'started'} on the ${database} database at http://127.0.0.1:${app.port} and answers /health`,
    figures: { [`${n}.port`]: app.port, [`${n}.version`]: app.version, [`${n}.database`]: database, [`${n}.started`]: !kept },
    undo,
  };
}

/** Read-only: what the instance of the step's color runs now, the state its undo puts back. */
export async function observeApp(input: StepInput<AppStep>): Promise<AppUndo> {
  const color = appColor(appResource(input));
  const running = await healthy(sandboxState().apps[color]);
  return { color, previous: running ? { version: running.version, database: running.database } : null };
}

export async function undoApp(input: UndoInput): Promise<StepOutcome> {
  if (input.step.kind !== 'app') throw new Error(`undoApp got a ${input.step.kind} step`);
  const resource = appResource(input as StepInput<AppStep>);
  // What ran before the step's first attempt: a retry after a lost result finds the step's own instance
  // healthy and records it as "previous", which would restart the new version instead of stopping it.
  const undo = (isAppUndo(input.before) ? input.before : input.undo) as AppUndo | undefined;
  const n = resource.name;
  if (!undo) return { summary: `${n}: no record of what the app step started; left as it is`, figures: {} };
  const state = sandboxState();
  if (!undo.previous) {
    await stopApp(state, undo.color);
    return { summary: `${n}: stopped ${undo.color}, which the app step had started`, figures: { [`${n}.stopped`]: true } };
  }
  // The step found an instance running: put that version back (a no-op when it was the same one).
  const app = await startApp(state, undo.color, undo.previous);
  return {
    summary: `${n}: ${undo.color} runs ${app.version} on the ${app.database} database again, as before the app step`,
    figures: { [`${n}.stopped`]: false, [`${n}.version`]: app.version },
  };
}

const isAppUndo = (v: unknown): v is AppUndo => typeof v === 'object' && v !== null && 'color' in v && 'previous' in v;
