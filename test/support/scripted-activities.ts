// Activities for workflow-logic tests on the time-skipping server: they record each call and fail or
// fail analysis where a test says so. The providers' real activities are tested on the sandbox.
import { ApplicationFailure } from '@temporalio/activity';
import type { Activities } from '../../activities';
import type { NotifyInput } from '../../activities/notify';
import type { AnalysisInput, DriftInput, StepInput, StepOutcome, UndoInput } from '../../activities/types';

export class ActivityScript {
  /** `${migrationId}` -> ["backupDatabase:1-backup", "undoStep:4-app", ...] in call order. */
  readonly calls = new Map<string, string[]>();
  /** `${migrationId}/${stepId}` -> how many more calls of that step fail. */
  readonly failures = new Map<string, number>();
  /** `${migrationId}/${stepId}` of traffic steps whose analysis fails. */
  readonly failingAnalysis = new Set<string>();
  /** `${migrationId}/${stepId}` -> the drift its check reports until the test clears it. */
  readonly drift = new Map<string, string[]>();
  /** Every drift check's expectation, by `${migrationId}/${stepId}`. */
  readonly driftChecks = new Map<string, DriftInput['expect']>();
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
    const step =
      (name: string) =>
      async (input: StepInput): Promise<StepOutcome> => {
        this.record(name, input);
        return { summary: `${name} ${input.step.id}`, figures: { [`${input.step.id}.calls`]: 1 }, undo: { step: input.step.id } };
      };
    return {
      checkHealth: step('checkHealth'),
      backupDatabase: step('backupDatabase'),
      prepareInfra: step('prepareInfra'),
      updateApp: step('updateApp'),
      syncData: step('syncData'),
      finalizeMigration: step('finalizeMigration'),
      shiftTraffic: async (input) => ({ ...(await step('shiftTraffic')(input)), baseline: { requests: 0 } }),
      analyseTraffic: async (input: AnalysisInput) => {
        this.record('analyseTraffic', input);
        const pass = !this.failingAnalysis.has(`${input.migrationId}/${input.step.id}`);
        return {
          pass,
          reason: pass ? undefined : `error rate 0.5 of ${input.step.id} is above ${input.step.analysis.maxErrorRate}`,
          summary: pass ? 'analysis passed' : 'analysis failed',
          figures: { [`${input.step.id}.errorRate`]: pass ? 0 : 0.5 },
        };
      },
      observeStep: async (input: StepInput) => {
        this.observed.set(input.migrationId, [...(this.observed.get(input.migrationId) ?? []), input.step.id]);
        return { observed: input.step.id };
      },
      undoStep: async (input: UndoInput) => {
        this.undoInputs.set(`${input.migrationId}/${input.step.id}`, input);
        this.record('undoStep', input, input.part);
        return { summary: `undone ${input.step.id}`, figures: {} };
      },
      checkDrift: async (input: DriftInput) => {
        this.driftChecks.set(`${input.migrationId}/${input.step.id}`, input.expect);
        return this.drift.get(`${input.migrationId}/${input.step.id}`) ?? [];
      },
      notifyGate: async (input: NotifyInput) => {
        this.notifications.push(input);
        return { status: 200 };
      },
    };
  }
}
