// The capability interface: every provider implements these operations per kind of resource, and the
// activities dispatch on the resource's provider. Inputs carry references, never secrets.
import type {
  AppResource,
  AppStep,
  BackupStep,
  BlobResource,
  DataStep,
  FinalizeStep,
  InfraStep,
  PostgresResource,
  Resource,
  ResourceStep,
  Step,
  TrafficResource,
  TrafficStep,
} from '../plan/types';
import type { Figures } from '../contract/status';
import type { ProviderPlan } from '../plan/provider';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface StepInput<S extends Step = Step> {
  migrationId: string;
  /**
   * The run: the first execution's run id (the same across continue-as-new). The workflow id repeats when
   * a plan is run again, so what belongs to one run (its backups) is keyed by this. Absent from inputs
   * scheduled by workflows older than it.
   */
  runId?: string;
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
  /** A recovery of the target's writes: rows it copied back to the source, and rows left at risk. */
  recovery?: RecoveryCount;
  /** Temporal's attempt that produced it (set by the worker when above 1): the step's attempts count retries. */
  attempt?: number;
}

export interface RecoveryCount {
  recovered: number;
  atRisk: number;
}

/** What a rollback now would have to recover (`measured: false` when the provider cannot tell). */
export interface WritesMeasure {
  targetOnly: number;
  differing: number;
  measured: boolean;
}

export interface TrafficShiftOutcome extends StepOutcome {
  /** Counters at the start of the bake window, so the analysis looks only at traffic after the shift. */
  baseline: Json;
}

export interface AnalysisInput extends StepInput<TrafficStep> {
  /** Counters at the shift: the bake so far is judged from here. */
  baseline: Json;
  /** Counters at the bake's previous judgement (`counters` of the last outcome): the last interval is also judged on its own. */
  window?: Json;
}

export interface AnalysisOutcome extends StepOutcome {
  pass: boolean;
  /** Why the analysis failed, in one sentence. */
  reason?: string;
  /**
   * Not a verdict: fewer requests since the shift than the plan's `minRequests`, and nothing else wrong
   * (`pass` is false, for workflows from before continuous analysis). The plan's `inconclusive` decides.
   */
  inconclusive?: boolean;
  /** The counters now, where the next judgement's window starts. */
  counters?: Json;
}

/** A whole bake (the step's `bake`, and its `analysis.extendUpTo` where the canary is too quiet), ending early at the first breach. */
export type BakeInput = AnalysisInput;

export interface UndoInput extends StepInput {
  undo?: Json;
  /**
   * What the step's resources looked like before its first attempt changed anything (the observe
   * activity's result, kept in workflow history). Present even when the step failed after acting and
   * recorded no `undo`; what a provider restores comes from here before the step's own record.
   */
  before?: Json;
  /** For a recovery in two parts (the reverse sync past the point of no return): which one. */
  part?: 'start' | 'finish';
}

/** What the plan and the steps done so far say a step's resources should look like before it acts. */
export interface DriftExpectation {
  /** Traffic resource -> percent on its canary. */
  weights?: Record<string, number>;
  /** Database resource -> settings an earlier infra step set. */
  settings?: Record<string, Record<string, string | number | boolean>>;
  /** Provider -> what earlier resource steps of the plan set or created, by ARM id. */
  arm?: Record<string, ArmExpectation>;
}

/** ARM id -> the values an earlier resource step left on it (all the leaves of the body, for one it created). */
export type ArmExpectation = Record<string, { stepId: string; apiVersion: string; values: Record<string, Json>; created?: boolean }>;

/** A resource step's input: the observation before its first attempt says whether a resource to create was already there. */
export interface ResourceInput extends StepInput<ResourceStep> {
  before?: Json;
}

export interface DriftInput extends StepInput {
  expect: DriftExpectation;
}

export type Settings = Record<string, string | number | boolean>;

// ---- what a provider does, per kind of resource --------------------------------------------------------
// A provider's index.ts is a table of these; activities/index.ts loops over a step's resources, routes undo
// and finalize, fans out drift checks and merges outcomes once, for every provider. The resources a
// provider receives passed its own plan schema (its provider.ts), so it may read its nested fields.

export interface PostgresOperations {
  check(resource: PostgresResource): Promise<StepOutcome>;
  /** A connection string for a sql step's statements; only a provider that declares `runs: ['sql']` has it. */
  connection?(resource: PostgresResource): Promise<string>;
  /** One database of a backup step, into the step's destination. */
  backup(input: StepInput<BackupStep>, resource: PostgresResource): Promise<StepOutcome>;
  /** What a backup step's undo removes besides keeping the backup (a scratch server a restore proof left), as a phrase; none if nothing. */
  undoBackup?(input: UndoInput, resource: PostgresResource): Promise<string | undefined>;
  prepare(input: StepInput<InfraStep>): Promise<StepOutcome>;
  /** Read-only: the settings (and, where the provider has them, SKU, storage...) an infra step would change. */
  observePrepare(input: StepInput<InfraStep>): Promise<Json>;
  undoPrepare(input: UndoInput): Promise<StepOutcome>;
  /** Settings that no longer hold what an earlier infra step set, one phrase each. */
  settingsDrift(resource: PostgresResource, expected: Settings): Promise<string[]>;
  /** A data step into this provider's database (the target's provider runs the sync). */
  sync(input: StepInput<DataStep>): Promise<StepOutcome>;
  /** Read-only: whether the replication (subscription, replica) the data step creates exists already. */
  observeSync(input: StepInput<DataStep>): Promise<Json>;
  undoSync(input: UndoInput): Promise<StepOutcome>;
  /** Finalize: the target a data step filled from `from` takes over. */
  cutover(input: StepInput<FinalizeStep>, from: PostgresResource, to: PostgresResource): Promise<StepOutcome>;
  /**
   * Only a provider that declares the reverse-sync recovery (its provider.ts) has these. For an app step
   * (the write point, before any cutover) the two parts recover what the new version wrote to `to`.
   */
  measureWrites?(from: PostgresResource, to: PostgresResource): Promise<{ targetOnly: number; differing: number } | undefined>;
  /**
   * Only a provider that declares the switch-back recovery has it: past the point of no return, the
   * cutover's switchover reversed, `from` the primary again and `to` its replica. Idempotent.
   */
  switchBack?(input: UndoInput, from: PostgresResource, to: PostgresResource): Promise<StepOutcome>;
  reverseSync?: {
    start(input: UndoInput, from: PostgresResource, to: PostgresResource): Promise<StepOutcome>;
    finish(input: UndoInput, from: PostgresResource, to: PostgresResource): Promise<StepOutcome>;
  };
}

export interface BlobOperations {
  check(resource: BlobResource): Promise<StepOutcome>;
  /** One container of a backup step, copied under the step's destination. */
  backup(input: StepInput<BackupStep>, resource: BlobResource): Promise<StepOutcome>;
  sync(input: StepInput<DataStep>): Promise<StepOutcome>;
  /** Read-only: the blobs the target holds before the sync, so undo deletes only what the step added. */
  observeSync(input: StepInput<DataStep>): Promise<Json>;
  undoSync(input: UndoInput): Promise<StepOutcome>;
}

export interface TrafficOperations {
  check(resource: TrafficResource): Promise<StepOutcome>;
  /** The front's base URL, for a verify step's checks; only a provider that declares `runs: ['verify']` has it. */
  address?(resource: TrafficResource): Promise<string>;
  shift(input: StepInput<TrafficStep>): Promise<TrafficShiftOutcome>;
  /** Read-only: the weights the front routes with now. */
  observe(input: StepInput<TrafficStep>): Promise<Json>;
  analyse(input: AnalysisInput): Promise<AnalysisOutcome>;
  /**
   * How often a bake judges the canary, where the provider's figures come slower than every second (Azure
   * Monitor's are per minute): more frequent judgements would read the same figures and cost requests.
   */
  judgeEveryMs?: number;
  undo(input: UndoInput): Promise<StepOutcome>;
  /** How far the canary's share is from `percent`, in one phrase; undefined when it is as expected. */
  drift(resource: TrafficResource, percent: number): Promise<string | undefined>;
  /** Finalize, where the provider has something to retire once the canary has everything (e.g. the blue revision). */
  finalize?(input: StepInput<FinalizeStep>, resource: TrafficResource): Promise<StepOutcome>;
  /** Undoes `finalize` (e.g. reactivates the blue revision). */
  undoFinalize?(input: UndoInput, resource: TrafficResource): Promise<StepOutcome>;
}

export interface AppOperations {
  check(resource: AppResource): Promise<StepOutcome>;
  /** The app's base URL, for a verify step's checks (as for a traffic front). */
  address?(resource: AppResource): Promise<string>;
  update(input: StepInput<AppStep>): Promise<StepOutcome>;
  /** Read-only: what runs now (the instance or revision the step would replace or add to). */
  observe(input: StepInput<AppStep>): Promise<Json>;
  undo(input: UndoInput): Promise<StepOutcome>;
}

/** Any resource by its ARM id (the resource step), for a provider that declares `armResources`. */
export interface ArmResourceOperations {
  /** Read-only: whether the resource exists, and the values of the paths the step sets. */
  observe(input: StepInput<ResourceStep>): Promise<Json>;
  apply(input: ResourceInput): Promise<StepOutcome>;
  undo(input: UndoInput): Promise<StepOutcome>;
  /** One phrase per resource that no longer holds what an earlier step left. */
  drift(expect: ArmExpectation): Promise<string[]>;
}

/** Resolves one kind of secret reference (the value under its key, e.g. `{ vault, secret }`) to the secret. */
export type SecretResolver = (ref: Json, what: string) => Promise<string>;

/** A provider: what it declares to the plan (plan/provider.ts) and its operations, loaded only by a worker. */
export interface ProviderDefinition extends ProviderPlan {
  operations(): Promise<ProviderOperations>;
}

/** One provider's operations: a kind it leaves out is refused by its plan schema. */
export interface ProviderOperations {
  /** The secret-reference kinds this provider resolves, by key (its provider.ts declares their shape). */
  secrets?: Record<string, SecretResolver>;
  postgres?: PostgresOperations;
  blob?: BlobOperations;
  traffic?: TrafficOperations;
  app?: AppOperations;
  arm?: ArmResourceOperations;
}
