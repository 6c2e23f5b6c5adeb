// Infra prep on the sandbox: bring a PostgreSQL cluster to the plan's tier settings (the local twin of
// `az postgres flexible-server parameter set` + a SKU change), restarting only when a setting needs it.
import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import type pg from 'pg';
import type { InfraStep } from '../../plan/types';
import type { LocalPostgres } from './provider';
import type { Json, StepInput, StepOutcome, UndoInput } from '../types';
import { withClient } from './postgres';
import { postgresConnection } from './sandbox';

interface Setting {
  name: string;
  /** Human form ("128MB"): what we record to restore later. */
  shown: string;
  setting: string;
  unit: string | null;
  context: string;
  pending_restart: boolean;
}

const UNIT_BYTES: Record<string, number> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };

/** "128MB" and pg_settings' (16384, "8kB") are the same value; compare in the setting's base unit. */
function normalise(value: string | number | boolean, unit: string | null): string {
  const text = String(value).trim();
  const memory = /^(\d+)\s*(B|kB|MB|GB|TB)$/.exec(text);
  const base = unit ? /^(\d*)(B|kB|MB|GB|TB)$/.exec(unit) : null;
  if (memory && base) return String((Number(memory[1]) * UNIT_BYTES[memory[2]!]!) / ((Number(base[1]) || 1) * UNIT_BYTES[base[2]!]!));
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  return text.toLowerCase();
}

async function readSettings(client: pg.Client, names: string[]): Promise<Map<string, Setting>> {
  const { rows } = await client.query<Setting>(
    'select name, current_setting(name) as shown, setting, unit, context, pending_restart from pg_settings where name = any($1)',
    [names],
  );
  const found = new Map(rows.map((r) => [r.name, r]));
  const unknown = names.filter((n) => !found.has(n));
  if (unknown.length) {
    throw ApplicationFailure.nonRetryable(`PostgreSQL has no setting named ${unknown.join(', ')}; fix the plan's infra settings`, 'NonRetryable');
  }
  return found;
}

/** Applies settings with ALTER SYSTEM; restarts the cluster only if one of them is postmaster-level. */
export async function applySettings(
  resource: LocalPostgres,
  wanted: Record<string, string | number | boolean>,
  restart: () => Promise<void>,
): Promise<{ previous: Record<string, string>; changed: string[]; restarted: boolean }> {
  const url = await postgresConnection(resource);
  const names = Object.keys(wanted);
  // An earlier attempt's reading, from its heartbeat: a retry after a lost result must not record the
  // values that attempt set as the ones from before.
  const earlier = (Context.current().info.heartbeatDetails as { previous?: Record<string, string> } | undefined)?.previous ?? {};
  const { previous, changed, needsRestart } = await withClient(url, async (client) => {
    const current = await readSettings(client, names);
    const previous: Record<string, string> = {};
    for (const name of names) previous[name] = earlier[name] ?? current.get(name)!.shown;
    heartbeat({ previous });
    const changed: string[] = [];
    let needsRestart = false;
    for (const name of names) {
      const s = current.get(name)!;
      if (normalise(wanted[name]!, s.unit) === normalise(s.setting, null) && !s.pending_restart) continue;
      await client.query(`alter system set ${client.escapeIdentifier(name)} = ${client.escapeLiteral(String(wanted[name]))}`);
      changed.push(name);
      if (s.context === 'postmaster') needsRestart = true;
    }
    if (changed.length) await client.query('select pg_reload_conf()');
    return { previous, changed, needsRestart };
  });
  heartbeat({ previous, changed, needsRestart });
  if (needsRestart) await restart();
  // Verify on a fresh connection: what the server now runs with, not what we asked for.
  await withClient(url, async (client) => {
    const now = await readSettings(client, names);
    const wrong = names.filter((n) => normalise(wanted[n]!, now.get(n)!.unit) !== normalise(now.get(n)!.setting, null) || now.get(n)!.pending_restart);
    if (wrong.length) throw new Error(`settings did not take effect: ${wrong.map((n) => `${n}=${now.get(n)!.setting}${now.get(n)!.unit ?? ''}`).join(', ')}`);
  });
  return { previous, changed, restarted: needsRestart };
}

export type RestartCluster = (resource: LocalPostgres) => Promise<void>;

export function prepareInfra(restartCluster: RestartCluster) {
  return async ({ step, resources }: StepInput<InfraStep>): Promise<StepOutcome> => {
    const resource = resources[step.resource] as LocalPostgres;
    const result = await applySettings(resource, step.settings, () => restartCluster(resource));
    const list = Object.entries(step.settings).map(([k, v]) => `${k}=${v}`).join(', ');
    return {
      summary: result.changed.length
        ? `${resource.name} now runs with ${list}${result.restarted ? ' (restarted)' : ' (reloaded)'}`
        : `${resource.name} already runs with ${list}; nothing changed`,
      figures: { [`${resource.name}.settingsChanged`]: result.changed.length, [`${resource.name}.restarted`]: result.restarted },
      undo: { previous: result.previous } satisfies Json,
    };
  };
}

/** Read-only: the settings the infra step names, as the server runs them now (what its undo restores). */
export async function observeInfra({ step, resources }: StepInput<InfraStep>): Promise<Json> {
  const names = Object.keys(step.settings);
  if (!names.length) return { previous: {} };
  const resource = resources[step.resource] as LocalPostgres;
  const current = await withClient(await postgresConnection(resource), (client) => readSettings(client, names));
  return { previous: Object.fromEntries(names.map((n) => [n, current.get(n)!.shown])) };
}

export function undoInfra(restartCluster: RestartCluster) {
  return async ({ step, resources, undo, before }: UndoInput): Promise<StepOutcome> => {
    if (step.kind !== 'infra') throw new Error(`undoInfra got a ${step.kind} step`);
    const resource = resources[step.resource] as LocalPostgres;
    // Observed before the step's first attempt, so right even when a retried attempt recorded its own values.
    const previous = (before as { previous?: Record<string, string> } | undefined)?.previous ?? (undo as { previous?: Record<string, string> } | undefined)?.previous;
    if (!previous) return { summary: `${resource.name}: no recorded settings to restore`, figures: {} };
    const result = await applySettings(resource, previous, () => restartCluster(resource));
    return {
      summary: `${resource.name} restored to ${Object.entries(previous).map(([k, v]) => `${k}=${v}`).join(', ')}`,
      figures: { [`${resource.name}.settingsRestored`]: result.changed.length },
    };
  };
}

/** Drift: settings that no longer hold what an earlier infra step set (someone changed them on the server). */
export async function settingsDrift(resource: LocalPostgres, expected: Record<string, string | number | boolean>): Promise<string[]> {
  const names = Object.keys(expected);
  if (!names.length) return [];
  return withClient(await postgresConnection(resource), async (client) => {
    const now = await readSettings(client, names);
    return names
      .filter((n) => normalise(expected[n]!, now.get(n)!.unit) !== normalise(now.get(n)!.setting, null))
      .map((n) => `${resource.name}: ${n} expected ${expected[n]}, found ${now.get(n)!.shown}`);
  });
}
