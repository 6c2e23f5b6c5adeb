// Local infra prep on the sandbox's target cluster, and its undo after a retried step: the settings it
// restores are the ones from before the first attempt, never the values an earlier attempt set.
import { afterAll, describe, expect, it } from 'vitest';
import { createActivities } from '../activities';
import { localProvider } from '../activities/local';
import type { LocalPostgres } from '../activities/local/provider';
import { withClient } from '../activities/local/postgres';
import type { StepInput, UndoInput } from '../activities/types';
import type { InfraStep } from '../plan/types';
import { postgresUrl } from '../contract/home';
import { runActivity, sandbox, uniqueName } from './support/local-ops';

// The dispatcher over the local provider, as a worker registers it.
const { prepareInfra, observeStep, undoStep } = createActivities({ local: localProvider });
const targetDb: LocalPostgres = { name: 'targetDb', kind: 'postgres', provider: 'local', cluster: 'target' };
const step: InfraStep = {
  id: '2-infra',
  kind: 'infra',
  title: 'Raise work_mem',
  phaseIndex: 2,
  resource: 'targetDb',
  settings: { work_mem: '7MB' },
  retry: { maximumAttempts: 1, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1s' },
  timeouts: { startToClose: '5m', heartbeat: '1m' },
};
const input: StepInput<InfraStep> = { migrationId: uniqueName('m'), step, resources: { targetDb } };
const workMem = () => withClient(postgresUrl(sandbox().postgres.target!), async (c) => (await c.query<{ v: string }>('select current_setting($1) as v', ['work_mem'])).rows[0]!.v);

let original: string | undefined;
afterAll(async () => {
  // Other test files share the sandbox: leave work_mem as this file found it.
  if (original) {
    await withClient(postgresUrl(sandbox().postgres.target!), async (c) => {
      await c.query(`alter system set work_mem = ${c.escapeLiteral(original!)}`);
      await c.query('select pg_reload_conf()');
    });
  }
});

describe('local infra prep', () => {
  it('undoes a retried step to the settings from before its first attempt', async () => {
    original = await workMem();
    expect(original).not.toBe('7MB');
    const before = (await runActivity(observeStep, [input])).result;
    expect(before).toEqual({ previous: { work_mem: original } });

    // The first attempt changes the setting; its result is lost.
    const first = await runActivity(prepareInfra, [input]);
    expect(first.result.figures).toMatchObject({ 'targetDb.settingsChanged': 1 });
    expect(await workMem()).toBe('7MB');
    // A retry that lost the first attempt's heartbeat too reads the new value as the old one: that record is wrong.
    const blind = await runActivity(prepareInfra, [input]);
    expect(blind.result.undo).toEqual({ previous: { work_mem: '7MB' } });
    // A retry given the first attempt's heartbeat keeps the value from before it.
    const resumed = await runActivity(prepareInfra, [input], { info: { heartbeatDetails: first.heartbeats.at(-1), attempt: 2 } });
    expect(resumed.result.undo).toEqual({ previous: { work_mem: original } });

    // Undo goes by the observation, whatever the step's record says.
    const undone = await runActivity(undoStep, [{ ...input, undo: blind.result.undo, before } as UndoInput]);
    expect(undone.result.summary).toBe(`targetDb restored to work_mem=${original}`);
    expect(await workMem()).toBe(original);
  });
});
