// The status of a migration and the arguments of the calls people make on it: what the workflow, the
// activities, the worker and the CLI all speak. Types and constants only, so every layer may import it.
import type { Recovery, ResolvedPlan, StepKind } from '../plan/types';
import type { DecisionRecord, IdentityPolicy, Proof } from './identity';
import type { Progress } from './progress';

export const TASK_QUEUE = 'tiershift';

export const migrationId = (planName: string): string => `migration-${planName}`;

export type MigrationState =
  | 'running'
  | 'awaiting-approval'
  | 'awaiting-operator'
  | 'rolling-back'
  | 'rolled-back'
  | 'aborted'
  | 'completed';

export const TERMINAL_STATES: readonly MigrationState[] = ['rolled-back', 'aborted', 'completed'];

/** Every state, in the order a migration meets them (`tiershift list --state` takes these). */
export const MIGRATION_STATES: readonly MigrationState[] = ['running', 'awaiting-approval', 'awaiting-operator', 'rolling-back', 'rolled-back', 'aborted', 'completed'];

/** How many refused signals `errors` keeps: a flood of them must not grow the status without bound. */
export const REFUSALS_KEPT = 50;

export type Figures = Record<string, number | string | boolean>;

export type StepState = 'pending' | 'running' | 'done' | 'failed' | 'skipped' | 'compensated' | 'compensation-failed';

export interface StepStatus {
  id: string;
  kind: StepKind;
  title: string;
  state: StepState;
  attempts: number;
  startedAt?: string;
  endedAt?: string;
  summary?: string;
  figures: Figures;
  error?: string;
  /**
   * The running step's latest heartbeat progress, filled in by the client from Temporal's pending
   * activity (client/migrations.ts). The workflow never sets it: it changes every few seconds and is no
   * figure a decision or a report is made on.
   */
  progress?: Progress;
  /**
   * Why the running step does not start, filled in by the client like `progress`: its activity waits on a
   * task queue no worker polls (a resource's own queue, plan/queues.ts), and what to start there.
   */
  waiting?: string;
}

export interface Decision {
  gate: string;
  decision: 'approve' | 'reject';
  by: string;
  at: string;
  comment?: string;
  /** The plan the decision was made on: a decision binds to this content, not to a name. */
  planHash?: string;
  /** What the workflow had measured when the decision was made, by step: what the approver saw. */
  evidence?: Record<string, Figures>;
}

/** One attempt to tell people about an open gate. */
export interface GateNotification {
  gate: string;
  kind: 'opened' | 'reminder' | 'escalation';
  at: string;
  /** Where it went, without any token: `env:NAME` or the URL's origin. */
  to: string;
  recipients: string[];
  ok: boolean;
  error?: string;
}

/** What `resume` would do, step by step, before an operator commits to it. */
export interface ResumePreview {
  migrationId: string;
  state: MigrationState;
  steps: { id: string; title: string; verdict: 'skip: done' | 'run again' | 'run' | 'skip: gate passed' | 'wait for approval' }[];
}

export interface PendingGate {
  gate: string;
  stepId: string;
  openedAt: string;
  deadline?: string;
  onTimeout: 'rollback' | 'abort';
  approvers: string[];
  requiredApprovals: number;
  fourEyes: boolean;
  approvedBy: string[];
  instructions?: string;
  /** Set when nobody answered in time and the gate's escalation list was asked. */
  escalatedTo?: string[];
}

export interface RollbackAction {
  stepId: string;
  action: string;
  part?: 'start' | 'finish';
  state: 'pending' | 'running' | 'done' | 'failed';
  error?: string;
  /** What the undo itself reported ("100% of front back on blue"), for the rollback's lines in watch and the report. */
  summary?: string;
  endedAt?: string;
  /** The running action's latest heartbeat progress (a reverse backfill), client-filled as StepStatus.progress. */
  progress?: Progress;
}

export interface RollbackStatus {
  trigger: 'operator' | 'gate-rejected' | 'gate-timeout' | 'analysis' | 'cancelled';
  reason: string;
  by?: string;
  startedAt: string;
  endedAt?: string;
  actions: RollbackAction[];
  /**
   * Set once the target took writes (the write point or the point of no return was crossed): rows the
   * rollback copied back to the source, and rows it could not (both sides changed them, or the plan
   * accepted losing them).
   */
  rowsRecovered?: number;
  rowsAtRisk?: number;
}

export interface MigrationStatus {
  migrationId: string;
  plan: { name: string; hash: string; source: string };
  state: MigrationState;
  phase: StepKind | 'done';
  currentStep?: string;
  startedBy: string;
  startedAt: string;
  updatedAt: string;
  endedAt?: string;
  steps: StepStatus[];
  traffic?: { resource: string; stable: string; canary: string; weight: number };
  pendingGate?: PendingGate;
  decisions: Decision[];
  /** The step whose failure the operator must decide on (`resume` or `rollback`). */
  failure?: { stepId: string; error: string; at: string };
  /** Step failures and refused signals; of the refused signals only the last REFUSALS_KEPT stay here. */
  errors: { stepId: string; error: string; at: string }[];
  /** How many signals were refused since the migration started, including those no longer in `errors`. */
  refusedSignals?: number;
  rollback?: RollbackStatus;
  notifications?: GateNotification[];
  /** Who resumed a held step, and when: the operator's side of a failure, for the report. */
  resumes?: { stepId: string; by: string; at: string }[];
  /** Where the plan's point of no return is, and which side of it the migration is on. */
  pointOfNoReturn?: PointOfNoReturnStatus;
  /** Where the target first takes application writes its source lacks, and whether that happened. */
  targetWrites?: TargetWritesStatus;
  /**
   * How decisions are proven (absent in runs started before decisions were), the run the statements
   * bind to, and every decision in order with its proof: what `tiershift audit` verifies again offline.
   */
  identity?: IdentityStatus;
  decisionLog?: DecisionRecord[];
}

export interface IdentityStatus {
  policy: IdentityPolicy;
  /** The run every decision's statement names (the first execution's run id). */
  run: string;
  /** Who may resume and roll back: subjects, or `group:<name>`; empty when any verified person may. */
  operators: string[];
  /** Set once the start was verified; a refused start ends the run before its first step. */
  startVerified?: boolean;
}

/** Every figure measured so far, by step: the evidence a decision is made on, and signs the digest of. */
export function evidenceOf(status: Pick<MigrationStatus, 'steps'>): Record<string, Figures> {
  return Object.fromEntries(status.steps.filter((s) => Object.keys(s.figures).length).map((s) => [s.id, { ...s.figures }]));
}

export interface TargetWritesStatus {
  /** The app step that puts the new version on the replicated target. */
  stepId: string;
  database: string;
  source: string;
  /** How a rollback brings the writes back; `none` when the plan accepts losing them. */
  recovery: Recovery | 'none';
  crossed: boolean;
  crossedAt?: string;
  /** The last count (a refused rollback, or a rollback without recovery): rows only the target has, rows both hold differently. */
  targetOnlyRows?: number;
  differingRows?: number;
  measuredAt?: string;
}

export interface PointOfNoReturnStatus {
  /** The step past which rollback is no longer a simple undo, and the gate before it. */
  stepId: string;
  gate: string;
  recovery: Recovery;
  crossed: boolean;
  crossedAt?: string;
  /** What a rollback does once crossed, in one sentence. */
  recoveryPlan: string;
}

export interface MigrationInput {
  plan: ResolvedPlan;
  /** Who starts it, as typed; with an identity provider or SSH signers, `startProof` says who really did. */
  startedBy: string;
  startProof?: Proof;
  /** History events after which the run continues as new at the next step boundary (default 4000). */
  historyLimit?: number;
  /** Carried over by continue-as-new so a long plan keeps its history small. */
  carried?: { status: MigrationStatus; nextStep: number; undo: Record<string, unknown>; before?: Record<string, unknown> };
}

// The decision payloads are defined once, as the zod schemas the CLI and the workflow both check them with.
export type { ApproveArgs, OperatorArgs, RejectArgs } from './messages';
