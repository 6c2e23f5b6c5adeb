// One migration = one workflow, read top to bottom like the runbook it encodes: each plan step runs in
// order; gates wait for people; a failed step waits for an operator; any rollback trigger undoes the
// completed steps in reverse, traffic first.
//
// Versioning: running migrations may wait days at a gate across worker deployments. Any change to the
// order or kind of commands below must be guarded with `wf.patched('<change-id>')` (and the replay test
// in test/replay.test.ts extended with a history recorded before the change).
import * as wf from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { StepOutcome } from '../activities/types';
import { rollbackOrder } from '../plan/rollback';
import type { GateStep, Step, TrafficStep } from '../plan/types';
import { AbortRequested, durationMs, MigrationRun, RollbackRequested } from './run';
import type { MigrationInput, MigrationStatus } from './shared';

const activities = wf.proxyActivities<Activities>({ startToCloseTimeout: '30m' });

/** Compensations must finish: retry them patiently, and past that, ask an operator. */
const COMPENSATION_RETRY = { maximumAttempts: 10, initialInterval: 2_000, backoffCoefficient: 2, maximumInterval: 60_000 };

export async function migration({ plan, startedBy, carried, historyLimit = 4000 }: MigrationInput): Promise<MigrationStatus> {
  const run = new MigrationRun(plan, startedBy, carried);
  run.installHandlers();
  run.touch();
  try {
    await run.forward(async () => {
      while (run.nextStep < plan.steps.length) {
        await perform(run, plan.steps[run.nextStep]!);
        run.nextStep += 1;
        // Hundreds of steps, days at gates: keep each run's history small by carrying the state over.
        const info = wf.workflowInfo();
        if ((info.continueAsNewSuggested || info.historyLength >= historyLimit) && run.nextStep < plan.steps.length) {
          await wf.condition(wf.allHandlersFinished);
          await wf.continueAsNew<typeof migration>({
            plan,
            startedBy,
            historyLimit,
            carried: { status: run.status, nextStep: run.nextStep, undo: run.undo },
          });
        }
      }
    });
    run.setState('completed');
  } catch (err) {
    if (err instanceof AbortRequested) {
      run.status.errors.push({ stepId: run.status.currentStep ?? '', error: err.reason, at: new Date().toISOString() });
      run.setState('aborted');
    } else if (err instanceof RollbackRequested || wf.isCancellation(err)) {
      await wf.CancellationScope.nonCancellable(() => rollback(run));
    } else {
      throw err;
    }
  }
  return run.status;
}

function perform(run: MigrationRun, step: Step): Promise<void> {
  switch (step.kind) {
    case 'gate':
      return awaitApproval(run, step);
    case 'traffic':
      return runStep(run, step, () => shiftTraffic(run, step));
    default:
      return runStep(run, step, () => callStepActivity(run, step));
  }
}

/** Runs a step; when it fails past its retries, waits for an operator to resume it (or roll back). */
async function runStep(run: MigrationRun, step: Step, action: () => Promise<StepOutcome>): Promise<void> {
  for (;;) {
    run.startStep(step);
    try {
      const outcome = await action();
      run.completeStep(step, outcome.summary, outcome.figures, outcome.undo);
      return;
    } catch (err) {
      if (err instanceof RollbackRequested || wf.isCancellation(err)) throw err;
      await run.awaitOperator(step, failureMessage(err));
    }
  }
}

async function awaitApproval(run: MigrationRun, gate: GateStep): Promise<void> {
  run.openGate(gate);
  const passed = () => run.gatePassed(gate);
  const decided = gate.timeout ? await wf.condition(passed, durationMs(gate.timeout)) : (await wf.condition(passed), true);
  if (!decided) {
    const reason = `gate "${gate.gate}" was not approved within ${gate.timeout}`;
    if (gate.onTimeout === 'abort') throw new AbortRequested(reason);
    run.requestRollback({ trigger: 'gate-timeout', reason });
    throw new RollbackRequested();
  }
  run.closeGate(gate);
}

/** Shift, bake on a durable timer, then judge the canary on what it served during the bake. */
async function shiftTraffic(run: MigrationRun, step: TrafficStep): Promise<StepOutcome> {
  const input = stepInput(run, step);
  const shift = await activities.shiftTraffic.executeWithOptions(activityOptions(step, step.title), [input]);
  run.setTrafficWeight(step.weight);
  run.recordFigures(step.id, shift.figures);
  // Recorded before the bake so a rollback during it restores the weights this step changed.
  if (shift.undo !== undefined) run.undo[step.id] = shift.undo;
  await wf.sleep(durationMs(step.bake));
  const verdict = await activities.analyseTraffic.executeWithOptions(
    activityOptions(step, `Analyse ${step.weight}% on the canary against the plan's thresholds`),
    [{ ...input, baseline: shift.baseline }],
  );
  run.recordFigures(step.id, verdict.figures);
  if (!verdict.pass) {
    run.requestRollback({ trigger: 'analysis', reason: verdict.reason ?? verdict.summary });
    throw new RollbackRequested();
  }
  return { summary: `${shift.summary}; ${verdict.summary}`, figures: verdict.figures, undo: shift.undo };
}

function callStepActivity(run: MigrationRun, step: Exclude<Step, GateStep | TrafficStep>): Promise<StepOutcome> {
  const options = activityOptions(step, step.title);
  switch (step.kind) {
    case 'check':
      return activities.checkHealth.executeWithOptions(options, [stepInput(run, step)]);
    case 'backup':
      return activities.backupDatabase.executeWithOptions(options, [stepInput(run, step)]);
    case 'infra':
      return activities.prepareInfra.executeWithOptions(options, [stepInput(run, step)]);
    case 'app':
      return activities.updateApp.executeWithOptions(options, [stepInput(run, step)]);
    case 'data':
      return activities.syncData.executeWithOptions(options, [stepInput(run, step)]);
    case 'finalize':
      return activities.finalizeMigration.executeWithOptions(options, [stepInput(run, step)]);
  }
}

async function rollback(run: MigrationRun): Promise<void> {
  const rb = run.takeRollbackRequest({ trigger: 'cancelled', reason: 'the workflow was cancelled' });
  const touched = run.plan.steps.filter((s) => ['done', 'failed', 'running'].includes(run.step(s.id).state));
  rb.actions = rollbackOrder(touched).map((a) => ({ ...a, state: 'pending' }));
  for (const action of rb.actions) {
    const step = run.plan.steps.find((s) => s.id === action.stepId)!;
    for (;;) {
      action.state = 'running';
      run.setState('rolling-back');
      try {
        const outcome = await activities.undoStep.executeWithOptions(
          { ...activityOptions(step, `Rollback: ${action.action}`), retry: COMPENSATION_RETRY },
          [{ ...stepInput(run, step), undo: run.undo[step.id] as StepOutcome['undo'] }],
        );
        action.state = 'done';
        run.step(step.id).state = 'compensated';
        run.recordFigures(step.id, outcome.figures);
        if (step.kind === 'traffic') run.setTrafficWeight(0);
        break;
      } catch (err) {
        action.state = 'failed';
        action.error = failureMessage(err);
        await run.awaitOperator(step, `rollback of ${step.id} failed: ${action.error}`);
      }
    }
  }
  rb.endedAt = new Date().toISOString();
  run.setState('rolled-back');
}

function stepInput<S extends Step>(run: MigrationRun, step: S) {
  return { migrationId: run.status.migrationId, step, resources: run.plan.resources };
}

function activityOptions(step: Step, summary: string): wf.ActivityOptions {
  return {
    summary,
    startToCloseTimeout: durationMs(step.timeouts.startToClose),
    heartbeatTimeout: step.timeouts.heartbeat ? durationMs(step.timeouts.heartbeat) : undefined,
    retry: {
      maximumAttempts: step.retry.maximumAttempts,
      initialInterval: durationMs(step.retry.initialInterval),
      backoffCoefficient: step.retry.backoffCoefficient,
      maximumInterval: durationMs(step.retry.maximumInterval),
      nonRetryableErrorTypes: ['UserError', 'NonRetryable'],
    },
  };
}

/** The innermost message: what the activity itself said, not the wrapper's "Activity task failed". */
function failureMessage(err: unknown): string {
  let cur: unknown = err;
  while (cur instanceof Error && (cur as { cause?: unknown }).cause instanceof Error) cur = (cur as { cause: Error }).cause;
  return cur instanceof Error ? cur.message : String(err);
}
