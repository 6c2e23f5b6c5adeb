// Activities that answer at once instead of acting, for what runs on Temporal without a sandbox: the
// workflow-logic tests on the time-skipping server (ActivityScript: records each call, fails where a test
// says so) and the benchmarks that measure orchestration alone (noopActivities). The providers' real
// activities are tested on the sandbox. No vitest import: the benchmarks use it outside the test runner.
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { Activities } from '../../activities';
import { withAttempt as stampAttempt } from '../../activities/attempt';
import type { NotifyInput } from '../../activities/notify';
import type { AnalysisInput, AnalysisOutcome, DriftInput, StepInput, StepOutcome, UndoInput, WritesMeasure } from '../../activities/types';

/** The attempt stamp where these run as activities; the orchestration benchmark also calls them as plain functions. */
function withAttempt<T>(result: T): T {
  try {
    Context.current();
  } catch {
    return result;
  }
  return stampAttempt(result);
}

/** How instant activities answer; `step` serves every activity that performs a step (it may throw). */
interface Answers {
  step(name: string, input: StepInput): StepOutcome;
  /** A judgement of the canary: `analyseTraffic` (histories before continuous analysis) or a whole `bakeTraffic`. */
  analyse(input: AnalysisInput, name: 'analyseTraffic' | 'bakeTraffic'): AnalysisOutcome;
  /** What a mutating step's resources look like before it acts (read-only). */
  observe(input: StepInput): unknown;
  undo(input: UndoInput): StepOutcome;
  drift(input: DriftInput): string[];
  notify(input: NotifyInput): { status: number };
  measure(input: StepInput): WritesMeasure;
}

/** Every activity the worker registers, in one place, so a new activity is added to both fixtures at once. */
function instantActivities(a: Answers): Activities {
  // Like the worker's activities, an outcome says which of Temporal's attempts it came from.
  const step = (name: string) => async (input: StepInput) => withAttempt(a.step(name, input));
  return {
    checkHealth: step('checkHealth'),
    backupDatabase: step('backupDatabase'),
    prepareInfra: step('prepareInfra'),
    updateApp: step('updateApp'),
    syncData: step('syncData'),
    finalizeMigration: step('finalizeMigration'),
    runSql: step('runSql'),
    runCommand: step('runCommand'),
    verifyService: async (input) => ({ pass: true, ...a.step('verifyService', input) }),
    changeResource: step('changeResource'),
    shiftTraffic: async (input) => withAttempt({ ...a.step('shiftTraffic', input), baseline: { requests: 0 } }),
    analyseTraffic: async (input) => a.analyse(input, 'analyseTraffic'),
    bakeTraffic: async (input) => a.analyse(input, 'bakeTraffic'),
    observeStep: async (input) => a.observe(input) as never,
    undoStep: async (input) => withAttempt(a.undo(input)),
    checkDrift: async (input) => a.drift(input),
    notifyGate: async (input) => a.notify(input),
    measureTargetWrites: async (input) => a.measure(input),
  };
}

/**
 * Activities that do nothing, for measuring the orchestration alone. `onStart` sees each call with the
 * time (performance.now()) the activity function began.
 */
export function noopActivities(onStart: (name: string, input: StepInput, at: number) => void = () => undefined): Activities {
  const started = (name: string, input: StepInput) => onStart(name, input, performance.now());
  return instantActivities({
    step: (name, input) => (started(name, input), { summary: `${name} ${input.step.id} (no-op)`, figures: {}, undo: { step: input.step.id } }),
    analyse: (input, name) => (started(name, input), { pass: true, summary: 'no-op analysis', figures: {} }),
    observe: (input) => (started('observeStep', input), null),
    undo: (input) => (started('undoStep', input), { summary: `undone ${input.step.id}`, figures: {} }),
    drift: (input) => (started('checkDrift', input), []),
    notify: () => ({ status: 200 }),
    measure: (input) => (started('measureTargetWrites', input), { targetOnly: 0, differing: 0, measured: true }),
  });
}

export class ActivityScript {
  /** `${migrationId}` -> ["backupDatabase:1-backup", "undoStep:4-app", ...] in call order. */
  readonly calls = new Map<string, string[]>();
  /** `${migrationId}/${stepId}` -> how many more calls of that step fail. */
  readonly failures = new Map<string, number>();
  /** `${migrationId}/${stepId}` of traffic steps whose analysis fails. */
  readonly failingAnalysis = new Set<string>();
  /** `${migrationId}/${stepId}` of traffic steps whose canary is too quiet for a verdict. */
  readonly quietAnalysis = new Set<string>();
  /** `${migrationId}/${stepId}` -> the drift its check reports until the test clears it. */
  readonly drift = new Map<string, string[]>();
  /** Every drift check's expectation, by `${migrationId}/${stepId}`. */
  readonly driftChecks = new Map<string, DriftInput['expect']>();
  /** `${migrationId}` -> what the target holds that the source lacks, as measureTargetWrites reports it. */
  readonly targetWrites = new Map<string, { targetOnly: number; differing: number }>();
  /** `${migrationId}` -> what each recovery part reports it copied back and left at risk. */
  readonly recoveries = new Map<string, { recovered: number; atRisk: number }>();
  /** `${migrationId}` -> the steps observed before their first attempt, in order (kept out of `calls`). */
  readonly observed = new Map<string, string[]>();
  /** Every undo's input, by `${migrationId}/${stepId}`. */
  readonly undoInputs = new Map<string, UndoInput>();
  /** Gate notifications in the order they were sent. */
  readonly notifications: NotifyInput[] = [];

  callsOf(migrationId: string): string[] {
    return this.calls.get(migrationId) ?? [];
  }

  private record(name: string, input: StepInput, part?: string): void {
    const list = this.calls.get(input.migrationId) ?? [];
    list.push(`${name}:${input.step.id}${part ? `/${part}` : ''}`);
    this.calls.set(input.migrationId, list);
    const key = `${input.migrationId}/${input.step.id}`;
    const remaining = this.failures.get(key) ?? 0;
    if (remaining > 0 && name !== 'undoStep') {
      this.failures.set(key, remaining - 1);
      throw ApplicationFailure.retryable(`injected failure of ${input.step.id}`, 'InjectedFailure');
    }
  }

  activities(): Activities {
    return instantActivities({
      step: (name, input) => {
        this.record(name, input);
        return { summary: `${name} ${input.step.id}`, figures: { [`${input.step.id}.calls`]: 1 }, undo: { step: input.step.id } };
      },
      analyse: (input, name) => {
        this.record(name, input);
        if (this.quietAnalysis.has(`${input.migrationId}/${input.step.id}`)) {
          return { pass: false, inconclusive: true, reason: 'not enough traffic: 3 requests, the plan asks for at least 20.', summary: 'too few requests', figures: {} };
        }
        const pass = !this.failingAnalysis.has(`${input.migrationId}/${input.step.id}`);
        return {
          pass,
          reason: pass ? undefined : `error rate 0.5 of ${input.step.id} is above ${input.step.analysis.maxErrorRate}`,
          summary: pass ? 'analysis passed' : 'analysis failed',
          figures: { [`${input.step.id}.errorRate`]: pass ? 0 : 0.5 },
        };
      },
      observe: (input) => {
        this.observed.set(input.migrationId, [...(this.observed.get(input.migrationId) ?? []), input.step.id]);
        return { observed: input.step.id };
      },
      undo: (input) => {
        this.undoInputs.set(`${input.migrationId}/${input.step.id}`, input);
        this.record('undoStep', input, input.part);
        const recovery = input.part ? this.recoveries.get(input.migrationId) : undefined;
        return { summary: `undone ${input.step.id}`, figures: {}, ...(recovery ? { recovery } : {}) };
      },
      measure: (input) => {
        this.record('measureTargetWrites', input);
        return { ...(this.targetWrites.get(input.migrationId) ?? { targetOnly: 0, differing: 0 }), measured: true };
      },
      drift: (input) => {
        this.driftChecks.set(`${input.migrationId}/${input.step.id}`, input.expect);
        return this.drift.get(`${input.migrationId}/${input.step.id}`) ?? [];
      },
      notify: (input) => {
        this.notifications.push(input);
        return { status: 200 };
      },
    });
  }
}
