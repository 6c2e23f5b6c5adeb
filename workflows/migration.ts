// One migration = one workflow, read top to bottom like the runbook it encodes: each plan step runs in
// order; gates wait for people; a failed step waits for an operator; any rollback trigger undoes the
// completed steps in reverse, traffic first.
//
// Versioning: running migrations may wait days at a gate across worker deployments. Any change to the
// order or kind of commands below must be guarded with `wf.patched('<change-id>')` (and the replay test
// in test/replay.test.ts extended with a history recorded before the change).
import * as wf from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AnalysisInput, AnalysisOutcome, ArmExpectation, BakeInput, DriftExpectation, Json, StepOutcome } from '../activities/types';
import { unreachableGate } from '../plan/gates';
import { bodyLeaves } from '../plan/phases/resource';
import { rollbackOrder } from '../plan/rollback';
import { describeSecretRef } from '../plan/secret-ref';
import type { AppStep, GateStep, ResourceStep, SecretRef, Step, TrafficStep, VerifyStep } from '../plan/types';
import { AbortRequested, durationMs, MigrationRun, RollbackRequested, TARGET_WRITES } from './run';
import type { GateNotification, MigrationInput, MigrationStatus } from '../contract/status';
import { redactUrl } from '../contract/redact';
import { approveCommand, gateTimerSummary, shortTime } from '../contract/deadline';

const activities = wf.proxyActivities<Activities>({ startToCloseTimeout: '30m' });

/** Compensations must finish: retry them patiently, and past that, ask an operator. */
const COMPENSATION_RETRY = { maximumAttempts: 10, initialInterval: 2_000, backoffCoefficient: 2, maximumInterval: 60_000 };

export async function migration({ plan, startedBy, startProof, carried, historyLimit = 4000 }: MigrationInput): Promise<MigrationStatus> {
  const run = new MigrationRun(plan, startedBy, carried);
  run.installHandlers((step) => measureTargetWrites(run, step));
  run.touch();
  // Who starts it is proven like every other decision, before anything changes. Plans without an identity
  // are runs started before decisions were proven: their histories replay without this.
  if (!carried && plan.identity) {
    const refusal = await run.verifyStart(startedBy, startProof);
    if (refusal) {
      run.status.errors.push({ stepId: 'start', error: `start refused: ${refusal}`, at: new Date().toISOString() });
      run.setState('aborted');
      return run.status;
    }
  }
  // A gate nobody may pass would wait forever. `tiershift start` refuses such a plan; a start that went
  // around it (the raw Temporal CLI) ends here, before any step runs. Only such a start records the
  // patch marker, so every other run keeps the commands of the histories recorded before the check.
  const unreachable = carried ? undefined : unreachableGate(plan, run.status.startedBy);
  if (unreachable && wf.patched('refuse-unreachable-gate')) {
    run.status.errors.push({ stepId: 'start', error: unreachable, at: new Date().toISOString() });
    run.setState('aborted');
    return run.status;
  }
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
            startedBy: run.status.startedBy,
            historyLimit,
            carried: { status: run.status, nextStep: run.nextStep, undo: run.undo, before: run.before },
          });
        }
      }
    });
    run.setState('completed');
  } catch (err) {
    if (err instanceof AbortRequested) {
      run.endPendingGate({ error: err.reason });
      run.status.errors.push({ stepId: run.status.currentStep ?? '', error: err.reason, at: new Date().toISOString() });
      run.setState('aborted');
    } else if (err instanceof RollbackRequested || wf.isCancellation(err)) {
      await wf.CancellationScope.nonCancellable(async () => {
        // Cancelled from outside (the Temporal UI) with no rollback asked for: where decisions are proven,
        // that is only a request, and an operator decides it like any other rollback.
        if (!run.rollbackRequested && run.cancelNeedsDecision) await run.awaitRollbackDecision();
        await rollback(run);
      });
    } else {
      throw err;
    }
  }
  return run.status;
}

async function perform(run: MigrationRun, step: Step): Promise<void> {
  if (step.kind === 'gate') return awaitApproval(run, step);
  // The plan puts the point of no return's gate right before its step; this holds even if it did not.
  if (step.kind === 'finalize' && step.pointOfNoReturn) await requireCrossingApproved(run, step);
  // Added after the first release: histories recorded before it replay without the check.
  if (wf.patched('drift-check')) await checkDrift(run, step);
  // Added after drift-check: histories recorded before it replay without the observation.
  if (MUTATING.has(step.kind) && wf.patched('observe-before')) await observeBefore(run, step);
  if (step.kind === 'traffic') return runStep(run, step, () => shiftTraffic(run, step));
  if (step.kind === 'verify') return runStep(run, step, () => verifyService(run, step));
  return runStep(run, step, () => callStepActivity(run, step));
}

async function requireCrossingApproved(run: MigrationRun, step: Step): Promise<void> {
  const gate = run.plan.steps.find((s): s is GateStep => s.kind === 'gate' && s.pointOfNoReturn === step.id);
  if (gate && run.step(gate.id).state !== 'done') await awaitApproval(run, gate);
}

/**
 * Before a mutating step acts, its resources must still be what the plan and the steps before it left:
 * someone editing weights or settings by hand means the plan no longer describes the system. On drift
 * the migration waits for an operator (who fixes it and resumes, or rolls back) with the diff.
 */
async function checkDrift(run: MigrationRun, step: Step): Promise<void> {
  const expect = driftExpectation(run, step);
  if (!expect) return;
  for (;;) {
    let problem: string;
    try {
      const drift = await activities.checkDrift.executeWithOptions(
        { ...activityOptions(step, `Drift check before ${step.id}`), retry: { maximumAttempts: 3 } },
        [{ ...stepInput(run, step), expect }],
      );
      if (!drift.length) return;
      problem = `drift: ${drift.join('; ')}; put it back as the plan expects (or roll back), then resume`;
    } catch (err) {
      if (wf.isCancellation(err)) throw err;
      problem = `the drift check before ${step.id} failed: ${failureMessage(err)}`;
    }
    run.markCurrent(step);
    await run.awaitOperator(step, problem);
  }
}

/** The kinds whose undo puts back what was there before them (resource steps came later: no history before them has one). */
const MUTATING = new Set<Step['kind']>(['infra', 'app', 'data', 'traffic', 'resource']);

/**
 * Reads, once and before the step's first attempt, what its undo must restore, and keeps it in workflow
 * state (so in history, and across continue-as-new). An attempt that acted and lost its result cannot
 * mistake its own change for the state before it, and a step that failed after acting is still undone.
 */
async function observeBefore(run: MigrationRun, step: Step): Promise<void> {
  if (step.id in run.before) return;
  for (;;) {
    try {
      run.before[step.id] = await activities.observeStep.executeWithOptions(
        activityOptions(step, `Observe before ${step.id}: what its undo would restore`),
        [stepInput(run, step)],
      );
      return;
    } catch (err) {
      if (wf.isCancellation(err)) throw err;
      run.markCurrent(step);
      await run.awaitOperator(step, `reading what ${step.id} would change failed: ${failureMessage(err)}; fix it and resume (or roll back)`);
    }
  }
}

/** The databases whose settings a step depends on. */
function databasesOf(step: Step): string[] {
  switch (step.kind) {
    case 'infra':
      return [step.resource];
    case 'app':
      return step.database ? [step.database] : [];
    case 'data':
      return [step.to];
    case 'finalize':
      return step.resources;
    default:
      return [];
  }
}

function driftExpectation(run: MigrationRun, step: Step): DriftExpectation | undefined {
  const databases = databasesOf(step);
  const settings: NonNullable<DriftExpectation['settings']> = {};
  for (const s of run.plan.steps) {
    if (s.kind === 'infra' && run.step(s.id).state === 'done' && databases.includes(s.resource) && Object.keys(s.settings).length) {
      settings[s.resource] = { ...settings[s.resource], ...s.settings };
    }
  }
  const weights = step.kind === 'traffic' && run.status.traffic ? { [step.resource]: run.status.traffic.weight } : undefined;
  const arm = step.kind === 'resource' ? armExpectation(run) : undefined;
  if (!weights && !Object.keys(settings).length && !arm) return undefined;
  return { ...(weights ? { weights } : {}), ...(Object.keys(settings).length ? { settings } : {}), ...(arm ? { arm } : {}) };
}

/**
 * Before a resource step: every resource an earlier resource step set or created still holds what it
 * left (a later step of the same id wins). Only plans with resource steps have one, so no history
 * recorded before them changes.
 */
function armExpectation(run: MigrationRun): Record<string, ArmExpectation> | undefined {
  const out: Record<string, ArmExpectation> = {};
  for (const s of run.plan.steps) {
    if (s.kind !== 'resource' || run.step(s.id).state !== 'done') continue;
    const byId = (out[s.provider] ??= {});
    const values = s.create ? (bodyLeaves(s.create) as Record<string, Json>) : { ...byId[s.armId]?.values, ...(s.set as Record<string, Json>) };
    byId[s.armId] = { stepId: s.id, apiVersion: s.apiVersion, values, ...(s.create ? { created: true } : {}) };
  }
  return Object.keys(out).length ? out : undefined;
}


/** Runs a step; when it fails past its retries, waits for an operator to resume it (or roll back). */
async function runStep(run: MigrationRun, step: Step, action: () => Promise<StepOutcome>): Promise<void> {
  for (;;) {
    run.startStep(step);
    try {
      const outcome = await action();
      // Temporal's own retries (on this worker or another) count as attempts too: the activity says which it was.
      run.countRetries(step, outcome.attempt ?? 1);
      run.completeStep(step, outcome.summary, outcome.figures, outcome.undo);
      return;
    } catch (err) {
      if (err instanceof RollbackRequested || wf.isCancellation(err)) throw err;
      if (err instanceof wf.ActivityFailure && err.retryState === 'MAXIMUM_ATTEMPTS_REACHED') run.countRetries(step, step.retry.maximumAttempts);
      await run.awaitOperator(step, failureMessage(err));
    }
  }
}

async function awaitApproval(run: MigrationRun, gate: GateStep): Promise<void> {
  run.openGate(gate);
  const passed = () => run.gatePassed(gate);
  const id = run.status.migrationId;
  // The timer's summary names the deadline, what happens then and the approve command, in the UI's
  // timeline (metadata only: the command is the same timer, so histories from before it replay unchanged).
  const decided = gate.notify
    ? await awaitWithNotifications(run, gate, passed)
    : gate.timeout
      ? await wf.condition(passed, durationMs(gate.timeout), { summary: gateTimerSummary(gate.gate, id, { what: gate.onTimeout, atMs: Date.now() + durationMs(gate.timeout) }) })
      : await awaitUntimed(gate, id, passed);
  if (!decided) {
    const reason = `gate "${gate.gate}" was not approved within ${gate.timeout}`;
    if (gate.onTimeout === 'abort') throw new AbortRequested(reason);
    run.requestRollback({ trigger: 'gate-timeout', reason });
    throw new RollbackRequested();
  }
  run.closeGate(gate);
}

/**
 * A gate that tells people: when it opens, again every `every` while nobody decides, and once to the
 * escalation list after `escalateAfter`, all on durable timers. False when the gate's timeout passed.
 */
async function awaitWithNotifications(run: MigrationRun, gate: GateStep, passed: () => boolean): Promise<boolean> {
  const notify = gate.notify!;
  const opened = Date.now();
  const deadline = gate.timeout ? opened + durationMs(gate.timeout) : Infinity;
  const escalateAt = notify.escalateAfter ? opened + durationMs(notify.escalateAfter) : Infinity;
  let remindAt = notify.every ? opened + durationMs(notify.every) : Infinity;
  let escalated = false;
  await sendNotification(run, gate, 'opened', notify.webhook, run.status.pendingGate?.approvers ?? []);
  for (;;) {
    const wakeAt = Math.min(deadline, remindAt, escalated ? Infinity : escalateAt);
    if (wakeAt === Infinity) return awaitUntimed(gate, run.status.migrationId, passed);
    const what = wakeAt === deadline ? gate.onTimeout : wakeAt === remindAt ? 'reminder' : 'escalation';
    if (await wf.condition(passed, Math.max(1, wakeAt - Date.now()), { summary: gateTimerSummary(gate.gate, run.status.migrationId, { what, atMs: wakeAt }) })) return true;
    const t = Date.now();
    if (t >= deadline) return false;
    if (!escalated && t >= escalateAt) {
      escalated = true;
      run.escalateGate(gate, notify.escalateTo ?? []);
      await sendNotification(run, gate, 'escalation', notify.escalationWebhook ?? notify.webhook, notify.escalateTo ?? []);
    } else if (t >= remindAt) {
      remindAt += durationMs(notify.every!);
      await sendNotification(run, gate, 'reminder', notify.webhook, run.status.pendingGate?.approvers ?? []);
    }
  }
}

/** The patch that gives a gate without deadline a timer, so the UI's timeline shows it waiting (see awaitUntimed). */
const VISIBLE_GATE = 'visible-untimed-gate';
/** How long that timer runs: a year, longer than any gate is expected to wait. */
const VISIBLE_GATE_MS = 365 * 24 * 3600_000;

/**
 * Waits for a gate without deadline. A bare condition leaves nothing in the UI's timeline, the workflow
 * page's first screen, so the wait runs on a labelled timer that names the gate and the approve command.
 * One timer, not one set again whenever it ends: under a test server's time skipping, a timer set again at
 * once fires again at once, and a migration left at a gate spun through thousands of them (the unit tier
 * went from 1 to 3 minutes). Past the year, the wait goes on unlabelled. Histories recorded before the
 * patch waited on the bare condition, and replay so.
 */
async function awaitUntimed(gate: GateStep, migrationId: string, passed: () => boolean): Promise<true> {
  if (!wf.patched(VISIBLE_GATE)) return (await wf.condition(passed), true);
  if (await wf.condition(passed, VISIBLE_GATE_MS, { summary: gateTimerSummary(gate.gate, migrationId) })) return true;
  return (await wf.condition(passed), true);
}

/** A notification that cannot be delivered is recorded, never a reason to stop the migration. */
async function sendNotification(run: MigrationRun, gate: GateStep, kind: GateNotification['kind'], webhook: string | SecretRef, recipients: string[]): Promise<void> {
  const id = run.status.migrationId;
  const payload = {
    migrationId: id,
    plan: { name: run.plan.name, hash: run.plan.hash },
    gate: gate.gate,
    kind,
    recipients,
    instructions: gate.instructions ?? null,
    openedAt: run.status.pendingGate?.openedAt ?? null,
    deadline: run.status.pendingGate?.deadline ?? null,
    approve: approveCommand(id, gate.gate),
    reject: `tiershift reject ${id} --gate ${gate.gate} --reason "..."`,
    evidence: run.evidence(),
  };
  const to = typeof webhook === 'string' ? redactUrl(webhook.replace(/^(https?:\/\/[^/?#]+).*$/, '$1')) : describeSecretRef(webhook);
  const at = new Date().toISOString();
  try {
    await activities.notifyGate.executeWithOptions(
      { summary: `Notify ${recipients.join(', ') || 'approvers'}: gate "${gate.gate}" ${kind}`, startToCloseTimeout: '30s', retry: { maximumAttempts: 3, initialInterval: '2s' } },
      [{ migrationId: id, gate: gate.gate, webhook, payload }],
    );
    run.recordNotification({ gate: gate.gate, kind, at, to, recipients, ok: true });
  } catch (err) {
    if (wf.isCancellation(err)) throw err;
    run.recordNotification({ gate: gate.gate, kind, at, to, recipients, ok: false, error: failureMessage(err) });
  }
}

/** Added after the first release: histories recorded before it judged the canary once, at the bake's end. */
const CONTINUOUS_ANALYSIS = 'continuous-canary-analysis';

/** Shift, then bake while the canary is judged every few seconds; the first breach rolls back. */
async function shiftTraffic(run: MigrationRun, step: TrafficStep): Promise<StepOutcome> {
  const input = stepInput(run, step);
  const shift = await activities.shiftTraffic.executeWithOptions(activityOptions(step, step.title), [input]);
  run.setTrafficWeight(step.weight);
  run.recordFigures(step.id, shift.figures);
  // Recorded before the bake so a rollback during it restores the weights this step changed.
  if (shift.undo !== undefined) run.undo[step.id] = shift.undo;
  if (wf.patched(CONTINUOUS_ANALYSIS)) {
    const verdict = await bake(run, step, { ...input, baseline: shift.baseline });
    return { summary: `${shift.summary}; ${verdict.summary}`, figures: verdict.figures, undo: shift.undo, ...(shift.attempt ? { attempt: shift.attempt } : {}) };
  }
  await wf.sleep(durationMs(step.bake), { summary: `bake ${step.weight}% on the canary until ${shortTime(new Date(Date.now() + durationMs(step.bake)).toISOString())}` });
  const verdict = await activities.analyseTraffic.executeWithOptions(
    activityOptions(step, `Analyse ${step.weight}% on the canary against the plan's thresholds`),
    [{ ...input, baseline: shift.baseline }],
  );
  run.recordFigures(step.id, verdict.figures);
  if (!verdict.pass) {
    run.requestRollback({ trigger: 'analysis', reason: verdict.reason ?? verdict.summary });
    throw new RollbackRequested();
  }
  return { summary: `${shift.summary}; ${verdict.summary}`, figures: verdict.figures, undo: shift.undo, ...(shift.attempt ? { attempt: shift.attempt } : {}) };
}

/**
 * The bake: one activity judges the canary every few seconds, over the last `analysis.interval`, until
 * the bake's end (fixed by its first attempt, so a retried one bakes until the same moment), and returns
 * at the first breach. A canary too quiet for a verdict is not a failed one: the plan says whether the bake
 * goes on (extend), it rolls back, or an operator decides (the default; resuming shifts and bakes again).
 */
async function bake(run: MigrationRun, step: TrafficStep, input: AnalysisInput): Promise<AnalysisOutcome> {
  const a = step.analysis;
  const bakeMs = durationMs(step.bake);
  const extendMs = a.inconclusive === 'extend' ? durationMs(a.extendUpTo ?? step.bake) : 0;
  const options = activityOptions(step, `Bake ${step.weight}% on the canary for ${step.bake}, judged over each last ${a.interval ?? '10s'}`);
  // It runs for the whole bake: its time limit is the bake's, plus the step's own for the judging.
  options.startToCloseTimeout = bakeMs + extendMs + durationMs(step.timeouts.startToClose);
  const verdict = await activities.bakeTraffic.executeWithOptions(options, [input satisfies BakeInput]);
  run.recordFigures(step.id, verdict.figures);
  if (verdict.pass) return verdict;
  if (!verdict.inconclusive || a.inconclusive === 'rollback') {
    run.requestRollback({ trigger: 'analysis', reason: verdict.reason ?? verdict.summary });
    throw new RollbackRequested();
  }
  throw wf.ApplicationFailure.nonRetryable(
    `the canary's analysis was inconclusive after a bake of ${step.bake}${extendMs ? ` and ${a.extendUpTo ?? step.bake} more` : ''}: ${verdict.reason ?? verdict.summary} Resume to shift and bake again, or roll back`,
    'Inconclusive',
  );
}

/**
 * Smoke checks and a load test. Their figures are recorded whatever the verdict (the next gate's evidence,
 * or the reason for the rollback); a breach rolls back, as a failed canary analysis does.
 */
async function verifyService(run: MigrationRun, step: VerifyStep): Promise<StepOutcome> {
  const verdict = await activities.verifyService.executeWithOptions(activityOptions(step, step.title), [stepInput(run, step)]);
  run.recordFigures(step.id, verdict.figures);
  if (!verdict.pass) {
    run.requestRollback({ trigger: 'analysis', reason: verdict.reason ?? verdict.summary });
    throw new RollbackRequested();
  }
  return { summary: verdict.summary, figures: verdict.figures };
}

function callStepActivity(run: MigrationRun, step: Exclude<Step, GateStep | TrafficStep | VerifyStep>): Promise<StepOutcome> {
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
    case 'sql':
      return activities.runSql.executeWithOptions(options, [stepInput(run, step)]);
    case 'run':
      return activities.runCommand.executeWithOptions(options, [stepInput(run, step)]);
    case 'resource':
      // The observation before it says whether a resource it creates was there already (then it is not its to delete).
      return activities.changeResource.executeWithOptions(options, [{ ...stepInput(run, step as ResourceStep), before: run.before[step.id] as Json }]);
  }
}

async function rollback(run: MigrationRun): Promise<void> {
  const rb = run.takeRollbackRequest({ trigger: 'cancelled', reason: 'the workflow was cancelled' });
  const ponr = run.status.pointOfNoReturn;
  // A point of no return not yet crossed needs no recovery, even if a drift check held its step.
  const touched = run.plan.steps.filter((s) => ['done', 'failed', 'running'].includes(run.step(s.id).state) && !(s.id === ponr?.stepId && !ponr.crossed));
  // Past the write point the target holds writes the source lacks: the rollback recovers them (or, where
  // the plan accepts losing them, counts them). Runs that crossed no write point keep their commands.
  const writes = run.status.targetWrites;
  const tracked = writes?.crossed ? wf.patched(TARGET_WRITES) : false;
  rb.actions = rollbackOrder(touched, { targetWrites: tracked }).map((a) => ({ ...a, state: 'pending' }));
  // A switch back copies no rows: no count of recovered rows to show. (State only, no command: replay-safe.)
  if (tracked || (ponr?.crossed && ponr.recovery === 'reverse-sync')) {
    rb.rowsRecovered = 0;
    rb.rowsAtRisk = 0;
  }
  for (const action of rb.actions) {
    const step = run.plan.steps.find((s) => s.id === action.stepId)!;
    for (;;) {
      action.state = 'running';
      run.setState('rolling-back');
      try {
        const outcome = await activities.undoStep.executeWithOptions(
          { ...activityOptions(step, `Rollback: ${action.action}`), retry: COMPENSATION_RETRY },
          [
            {
              ...stepInput(run, step),
              undo: run.undo[step.id] as StepOutcome['undo'],
              ...(step.id in run.before ? { before: run.before[step.id] as StepOutcome['undo'] } : {}),
              ...(action.part ? { part: action.part } : {}),
            },
          ],
        );
        action.state = 'done';
        action.summary = outcome.summary;
        action.endedAt = new Date().toISOString();
        if (action.part !== 'start') run.step(step.id).state = 'compensated';
        run.recordFigures(step.id, outcome.figures);
        if (outcome.recovery && rb.rowsRecovered !== undefined) {
          rb.rowsRecovered += outcome.recovery.recovered;
          // The last part's count is the one that stands: it saw everything the first part saw.
          rb.rowsAtRisk = outcome.recovery.atRisk;
        }
        if (step.kind === 'traffic') run.setTrafficWeight(0);
        break;
      } catch (err) {
        action.state = 'failed';
        action.error = failureMessage(err);
        await run.awaitOperator(step, `rollback of ${step.id} failed: ${action.error}`);
      }
    }
  }
  if (tracked && writes?.recovery === 'none' && !ponr?.crossed) {
    // Nothing was copied back: everything the target took is what the plan accepted losing.
    const step = run.plan.steps.find((s): s is AppStep => s.kind === 'app' && s.id === writes.stepId)!;
    try {
      const measure = await measureTargetWrites(run, step);
      run.recordMeasure(measure);
      if (measure.measured) rb.rowsAtRisk = measure.targetOnly + measure.differing;
    } catch (err) {
      run.status.errors.push({ stepId: step.id, error: `could not count the writes ${writes.database} took: ${failureMessage(err)}`, at: new Date().toISOString() });
    }
  }
  rb.endedAt = new Date().toISOString();
  run.setState('rolled-back');
}

/** What a rollback now would have to recover at the write point; reads only, so a few quick retries. */
function measureTargetWrites(run: MigrationRun, step: AppStep) {
  return activities.measureTargetWrites.executeWithOptions(
    { ...activityOptions(step, `Count the rows only ${step.targetWrites?.database} has`), retry: { maximumAttempts: 3, initialInterval: 1_000 } },
    [stepInput(run, step)],
  );
}

function stepInput<S extends Step>(run: MigrationRun, step: S) {
  // The run id keys what belongs to this run (its backups): the workflow id repeats when a plan runs again.
  return { migrationId: run.status.migrationId, runId: wf.workflowInfo().firstExecutionRunId, step, resources: run.plan.resources };
}

/**
 * Added with task queues per resource: only steps whose resources pin a queue (plan/queues.ts) ask, so
 * no history recorded before, and no plan without a pinned queue, gets the marker.
 */
export const RESOURCE_TASK_QUEUE = 'resource-task-queue';

function activityOptions(step: Step, summary: string): wf.ActivityOptions {
  return {
    summary,
    // Every activity touching the step's resources (drift check, observation, the step, its undo) runs where they are reachable.
    ...(step.taskQueue && wf.patched(RESOURCE_TASK_QUEUE) ? { taskQueue: step.taskQueue } : {}),
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
