// 2. Orchestration overhead: a 6-phase plan whose activities do nothing, end to end as a migration
// (start -> result, through the Temporal dev server), beside the same six steps called one after the
// other by a plain script in the same process.
import type { StepInput } from '../activities/types';
import type { Step } from '../plan/types';
import { createWorker } from '../worker/worker';
import { workerIdentityPolicy } from '../activities/identity';
import { completed, median, ms, now, stamp, startOn, table, type BenchContext, type Section } from './lib';
import { sandboxPlan, sandboxResources } from '../test/support/plans';
import { noopActivities } from '../test/support/scripted-activities';

const QUEUE = 'bench-overhead';

const sixPhases = () =>
  sandboxPlan({
    name: 'bench-six-phases',
    resources: sandboxResources('sourceDb', 'targetDb', 'shop'),
    phases: `
  - check: { resources: [sourceDb] }
  - backup: { resources: [sourceDb] }
  - infra: { resource: targetDb, settings: { work_mem: 8MB } }
  - data: { from: sourceDb, to: targetDb }
  - app: { resource: shop, version: v2, database: targetDb }
  - finalize: { resources: [targetDb] }`,
  });

const ACTIVITY_OF: Record<Exclude<Step['kind'], 'gate' | 'traffic' | 'sql' | 'run' | 'verify'>, 'checkHealth' | 'backupDatabase' | 'prepareInfra' | 'syncData' | 'updateApp' | 'finalizeMigration' | 'changeResource'> = {
  check: 'checkHealth',
  backup: 'backupDatabase',
  infra: 'prepareInfra',
  data: 'syncData',
  app: 'updateApp',
  resource: 'changeResource',
  finalize: 'finalizeMigration',
};

export async function orchestrationOverhead(ctx: BenchContext): Promise<Section> {
  const plan = sixPhases();
  const calls = new Map<string, number>();
  const activities = noopActivities((name, input) => calls.set(input.migrationId, (calls.get(input.migrationId) ?? 0) + 1));
  const worker = await createWorker({ identityPolicy: workerIdentityPolicy({ sandbox: true }), connection: ctx.connection, taskQueue: QUEUE, activities });
  const workflowMs: number[] = [];
  let activityCalls = 0;
  let warmupMs = NaN;
  await worker.runUntil(async () => {
    for (let i = 0; i <= ctx.sizes.overheadRuns; i++) {
      if (i > 1 && Date.now() > ctx.deadline) break;
      const t0 = now();
      const handle = await startOn(ctx.client, plan, QUEUE, `bench-overhead-${stamp()}`);
      await completed(handle);
      const elapsed = now() - t0;
      // The first run pays for the worker's first workflow (sandbox creation, caches): reported apart.
      if (i === 0) warmupMs = elapsed;
      else workflowMs.push(elapsed);
      activityCalls = calls.get(handle.workflowId) ?? 0;
    }
  });

  // The same six steps as a plain script: each activity function called and awaited in order.
  const scriptMs: number[] = [];
  for (let i = 0; i < workflowMs.length; i++) {
    const t0 = now();
    for (const step of plan.steps) {
      const fn = activities[ACTIVITY_OF[step.kind as keyof typeof ACTIVITY_OF]] as (input: StepInput) => Promise<unknown>;
      await fn({ migrationId: 'script', step, resources: plan.resources });
    }
    scriptMs.push(now() - t0);
  }

  const wf = median(workflowMs);
  const script = median(scriptMs);
  return {
    title: '2. Orchestration overhead',
    method:
      'A plan of six phases (check, backup, infra, data, app, finalize) whose activities return at once, run as a migration from `start` to its result on the sandbox\'s ' +
      'Temporal dev server with one worker, beside a plain script that calls the same six activity functions one after the other in the same process. ' +
      `Medians of ${workflowMs.length} runs each, after one warm-up migration (${ms(warmupMs, 0)}, not counted).`,
    body: [
      ...table(
        ['', 'tiershift: migration workflow', 'alternative: plain script'],
        [
          ['runs', workflowMs.length, scriptMs.length],
          ['end to end, median', ms(wf), ms(script, 3)],
          ['end to end, slowest run', ms(Math.max(...workflowMs)), ms(Math.max(...scriptMs), 3)],
          ['activity executions per run', activityCalls, plan.steps.length],
          ['overhead per phase (median difference / 6)', ms((wf - script) / plan.steps.length), '—'],
        ],
      ),
      '',
      `The workflow runs ${activityCalls - plan.steps.length} more activities than the script: the drift checks before the data, app and finalize steps ` +
        '(they compare the target with the settings the infra step left). What the overhead buys: each step\'s result is persisted before the next starts, ' +
        'so a crash resumes at the step it interrupted, and every step is visible in the status, the report and the UI.',
    ],
    shortfalls: [],
  };
}
