// The capability interface: every provider (`local` sandbox, `azure`) implements these operations,
// and the activities dispatch on the resource's provider. Inputs carry references, never secrets.
import type {
  AppStep,
  BackupStep,
  CheckStep,
  DataStep,
  FinalizeStep,
  InfraStep,
  Resource,
  Step,
  TrafficStep,
} from '../plan/types';
import type { Figures } from '../contract/status';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface StepInput<S extends Step = Step> {
  migrationId: string;
  step: S;
  /** The plan's resources, by name; the step names the ones it acts on. */
  resources: Record<string, Resource>;
}

export interface StepOutcome {
  /** One line for the status and the report, e.g. "source healthy: PostgreSQL 15.18, 100000 orders". */
  summary: string;
  figures: Figures;
  /** What compensation needs to undo this step (e.g. the settings before the change). */
  undo?: Json;
}

export interface TrafficShiftOutcome extends StepOutcome {
  /** Counters at the start of the bake window, so the analysis looks only at traffic after the shift. */
  baseline: Json;
}

export interface AnalysisInput extends StepInput<TrafficStep> {
  baseline: Json;
}

export interface AnalysisOutcome extends StepOutcome {
  pass: boolean;
  /** Why the analysis failed, in one sentence. */
  reason?: string;
}

export interface UndoInput extends StepInput {
  undo?: Json;
  /** For a recovery in two parts (the reverse sync past the point of no return): which one. */
  part?: 'start' | 'finish';
}

/** What the plan and the steps done so far say a step's resources should look like before it acts. */
export interface DriftExpectation {
  /** Traffic resource -> percent on its canary. */
  weights?: Record<string, number>;
  /** Database resource -> settings an earlier infra step set. */
  settings?: Record<string, Record<string, string | number | boolean>>;
}

export interface DriftInput extends StepInput {
  expect: DriftExpectation;
}

export interface MigrationProvider {
  /** Differences between what the resources are and what `expect` says, one phrase each; empty when none. */
  checkDrift?(input: DriftInput): Promise<string[]>;
  checkHealth(input: StepInput<CheckStep>, resource: Resource): Promise<StepOutcome>;
  backupDatabase(input: StepInput<BackupStep>): Promise<StepOutcome>;
  prepareInfra(input: StepInput<InfraStep>): Promise<StepOutcome>;
  updateApp(input: StepInput<AppStep>): Promise<StepOutcome>;
  syncData(input: StepInput<DataStep>): Promise<StepOutcome>;
  shiftTraffic(input: StepInput<TrafficStep>): Promise<TrafficShiftOutcome>;
  analyseTraffic(input: AnalysisInput): Promise<AnalysisOutcome>;
  finalizeMigration(input: StepInput<FinalizeStep>): Promise<StepOutcome>;
  undoStep(input: UndoInput): Promise<StepOutcome>;
}
