// The state of one migration run: what the status query returns, what the search attributes and the
// UI's current details show, and the rules that accept or refuse an operator's call.
import * as wf from '@temporalio/workflow';
import { durationMs } from '../contract/duration';
import { approveCommand, GATE_MEMO_KEY, gateDeadline } from '../contract/deadline';
import type { z } from 'zod';
import { recoveryPhrase } from '../plan/phases/finalize';
import type { AppStep, FinalizeStep, GateStep, ResolvedPlan, Step, TrafficResource } from '../plan/types';
import type { WritesMeasure } from '../activities/types';
import { MigrationPhase, MigrationState as MigrationStateKey, PendingGate, PlanName, TrafficWeight } from '../contract/search-attributes';
import { approveSignal, approveUpdate, rejectSignal, rejectUpdate, resumePreviewQuery, resumeUpdate, rollbackUpdate, statusQuery } from './shared';
import { approveArgsSchema, operatorArgsSchema, payloadProblem, rejectArgsSchema } from '../contract/messages';
import { evidenceDigest, planDigest } from '../contract/digest';
import { decisionStatement, type DecisionAction, type DecisionRecord, type Proof } from '../contract/identity';
import { checkIdentityPolicy, mayDecide, personOf, samePerson, verifyProof, type Person } from './identity';
import * as metrics from './metrics';
import { evidenceOf, REFUSALS_KEPT, TERMINAL_STATES, type ApproveArgs, type Figures, type GateNotification, type MigrationState, type MigrationStatus, type OperatorArgs, type PointOfNoReturnStatus, type RejectArgs, type ResumePreview, type RollbackStatus, type StepStatus, type TargetWritesStatus } from '../contract/status';

/** Thrown inside the forward path to leave it for the rollback path. */
export class RollbackRequested extends Error {
  constructor() {
    super('rollback requested');
    this.name = 'RollbackRequested';
  }
}

/** Thrown when a gate times out with `onTimeout: abort`: stop, leaving everything as it is. */
export class AbortRequested extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'AbortRequested';
  }
}

const now = (): string => new Date().toISOString();

export class MigrationRun {
  readonly status: MigrationStatus;
  /** What each completed step recorded for its compensation. */
  readonly undo: Record<string, unknown>;
  /**
   * What each mutating step's resources looked like before its first attempt (the observe activity's
   * answer): what its undo restores, even when the step failed after acting and recorded no undo.
   */
  readonly before: Record<string, unknown>;
  nextStep: number;
  private resumeRequested = false;
  /** The workflow was cancelled: a request to roll back, which waits for a verified operator's decision. */
  private cancelled = false;
  private rollbackRequest?: Omit<RollbackStatus, 'startedAt' | 'actions'>;
  private forwardScope?: wf.CancellationScope;
  private lastAttributes?: string;
  /** Whether the pending gate's deadline is in the memo (see openGate). */
  private gateMemo = false;
  private measureWrites?: (step: AppStep) => Promise<WritesMeasure>;

  constructor(
    readonly plan: ResolvedPlan,
    startedBy: string,
    carried?: { status: MigrationStatus; nextStep: number; undo: Record<string, unknown>; before?: Record<string, unknown> },
  ) {
    this.nextStep = carried?.nextStep ?? 0;
    this.undo = carried?.undo ?? {};
    this.before = carried?.before ?? {};
    this.status = carried?.status ?? {
      // The workflow ID, which `--id` may have chosen; the plan name only gives the default.
      migrationId: wf.workflowInfo().workflowId,
      plan: { name: plan.name, hash: plan.hash, source: plan.source },
      state: 'running',
      phase: plan.steps[0]?.kind ?? 'done',
      startedBy,
      startedAt: now(),
      updatedAt: now(),
      steps: plan.steps.map((s) => ({ id: s.id, kind: s.kind, title: s.title, state: 'pending', attempts: 0, figures: {} })),
      decisions: [],
      errors: [],
      traffic: initialTraffic(plan),
      pointOfNoReturn: initialPointOfNoReturn(plan),
      targetWrites: initialTargetWrites(plan),
    };
    // A run continued as new carries its state over: it did not enter it again.
    if (!carried) metrics.stateEntered('running');
  }

  /**
   * Queries, updates (with validators, so a wrong call is refused with a reason) and compatible signals.
   * Every payload comes from outside (`temporal workflow signal` sends anything, or nothing): each
   * validator checks its shape before reading a field, so no payload can fail a workflow task.
   */
  installHandlers(measureWrites?: (step: AppStep) => Promise<WritesMeasure>): void {
    this.measureWrites = measureWrites;
    wf.setHandler(statusQuery, () => this.status);
    wf.setHandler(resumePreviewQuery, () => this.resumePreview());
    // Runs started before decisions were proven (no identity in their status) keep their synchronous
    // handlers: an Update answered at once completes before the workflow moves on, as their histories say.
    const proven = () => this.status.identity !== undefined;
    wf.setHandler(approveUpdate, (args: ApproveArgs) => (proven() ? guarded((a: ApproveArgs) => this.approveProven(a))(args) : guardedSync((a: ApproveArgs) => this.approve(a as ApproveArgs & { by: string }))(args)), {
      validator: (args: unknown) => this.validateApprove(args),
    });
    wf.setHandler(rejectUpdate, (args: RejectArgs) => (proven() ? guarded((a: RejectArgs) => this.rejectProven(a))(args) : guardedSync((a: RejectArgs) => this.reject(a as RejectArgs & { by: string }))(args)), {
      validator: (args: unknown) => this.validateReject(args),
    });
    wf.setHandler(resumeUpdate, (args: OperatorArgs) => (proven() ? guarded((a: OperatorArgs) => this.resumeProven(a))(args) : guardedSync((a: OperatorArgs) => this.resume(a))(args)), {
      validator: (args: unknown) => this.validateResume(args),
    });
    wf.setHandler(rollbackUpdate, guarded((args: OperatorArgs) => this.operatorRollback(args)), { validator: (args: unknown) => this.validateRollback(args) });
    // A signal is validated again when its history replays (an Update's validator is not): a signal the
    // shape check refuses may have been accepted before the check existed, so histories without the
    // marker replay without it.
    wf.setHandler(approveSignal, (args: unknown) =>
      proven()
        ? this.viaSignalProven(approveSignal.name, args, async () => {
            this.validateApprove(args);
            await this.approveProven(args);
          })
        : this.viaSignal(approveSignal.name, args, () => {
            this.validateApprove(args, wf.patched(SIGNAL_SHAPES));
            this.approve(args as ApproveArgs & { by: string });
          }),
    );
    wf.setHandler(rejectSignal, (args: unknown) =>
      proven()
        ? this.viaSignalProven(rejectSignal.name, args, async () => {
            this.validateReject(args);
            await this.rejectProven(args);
          })
        : this.viaSignal(rejectSignal.name, args, () => {
            this.validateReject(args, wf.patched(SIGNAL_SHAPES));
            this.reject(args as RejectArgs & { by: string });
          }),
    );
  }

  // ---- the forward path ---------------------------------------------------------------------

  /** Runs the forward path in a scope that a rollback request (or workflow cancellation) cancels. */
  async forward(body: () => Promise<void>): Promise<void> {
    this.forwardScope = new wf.CancellationScope();
    await this.forwardScope.run(body);
  }

  step(id: string): StepStatus {
    const step = this.status.steps.find((s) => s.id === id);
    if (!step) throw new Error(`no step ${id}`);
    return step;
  }

  /** The step the migration is at, before it has started (e.g. held by a drift check). */
  markCurrent(step: Step): void {
    this.status.currentStep = step.id;
    this.status.phase = step.kind;
    this.touch();
  }

  startStep(step: Step): void {
    const ponr = this.status.pointOfNoReturn;
    // Crossed as soon as the step starts: a half-done cutover is already one the source has not seen.
    if (ponr && ponr.stepId === step.id && !ponr.crossed) {
      ponr.crossed = true;
      ponr.crossedAt = now();
    }
    // Likewise the write point: a new version starting on the target may write before it reports healthy.
    const writes = this.status.targetWrites;
    if (writes && writes.stepId === step.id && !writes.crossed) {
      writes.crossed = true;
      writes.crossedAt = now();
    }
    const s = this.step(step.id);
    s.state = 'running';
    s.attempts += 1;
    s.startedAt ??= now();
    s.error = undefined;
    this.status.currentStep = step.id;
    this.status.phase = step.kind;
    this.status.failure = undefined;
    this.setState('running');
  }

  /** The try that just ended took `attempt` of Temporal's attempts; startStep counted the first. */
  countRetries(step: Step, attempt: number): void {
    if (attempt > 1) this.step(step.id).attempts += attempt - 1;
  }

  completeStep(step: Step, summary: string, figures: Figures, undo: unknown): void {
    const s = this.step(step.id);
    s.state = 'done';
    s.endedAt = now();
    s.summary = summary;
    s.figures = { ...s.figures, ...figures };
    if (undo !== undefined) this.undo[step.id] = undo;
    metrics.stepEnded(step.kind, 'done', s.startedAt, s.endedAt);
    if (step.kind === 'data') {
      for (const [key, value] of Object.entries(figures)) if (key.endsWith('.rowsCopied') && typeof value === 'number') metrics.rowsSynced(value, key.slice(0, -'.rowsCopied'.length));
    }
    this.touch();
  }

  recordFigures(stepId: string, figures: Figures): void {
    const s = this.step(stepId);
    s.figures = { ...s.figures, ...figures };
    this.touch();
  }

  setTrafficWeight(weight: number): void {
    if (this.status.traffic) this.status.traffic.weight = weight;
    this.touch();
  }

  /** A step exhausted its retries: wait for an operator to `resume` it (or `rollback`, which cancels this wait). */
  async awaitOperator(step: Step, error: string): Promise<void> {
    const s = this.step(step.id);
    s.state = 'failed';
    s.error = error;
    const at = now();
    this.status.failure = { stepId: step.id, error, at };
    this.status.errors.push({ stepId: step.id, error, at });
    this.resumeRequested = false;
    this.setState('awaiting-operator');
    await wf.condition(() => this.resumeRequested);
    this.resumeRequested = false;
  }

  // ---- gates ----------------------------------------------------------------------------------

  openGate(gate: GateStep): void {
    const s = this.step(gate.id);
    s.state = 'running';
    s.startedAt ??= now();
    this.status.currentStep = gate.id;
    this.status.phase = 'gate';
    this.status.pendingGate = {
      gate: gate.gate,
      stepId: gate.id,
      openedAt: now(),
      deadline: gate.timeout ? new Date(Date.now() + durationMs(gate.timeout)).toISOString() : undefined,
      onTimeout: gate.onTimeout,
      approvers: gate.approvers,
      requiredApprovals: gate.requiredApprovals,
      fourEyes: gate.fourEyes,
      approvedBy: [],
      instructions: gate.instructions,
    };
    // The list (`tiershift list`, the UI's list) reads memos without asking the workflow: the deadline
    // goes there too. A new kind of command, so only runs that opened a gate since record it.
    if (wf.patched(GATE_MEMO)) {
      const { deadline, onTimeout, openedAt } = this.status.pendingGate;
      wf.upsertMemo({ [GATE_MEMO_KEY]: { gate: gate.gate, openedAt, onTimeout, ...(deadline ? { deadline } : {}) } });
      this.gateMemo = true;
    }
    this.setState('awaiting-approval');
  }

  /** The gate's memo goes with the gate. */
  private clearGateMemo(): void {
    if (!this.gateMemo) return;
    this.gateMemo = false;
    wf.upsertMemo({ [GATE_MEMO_KEY]: null });
  }

  gatePassed(gate: GateStep): boolean {
    const pending = this.status.pendingGate;
    return pending?.gate === gate.gate && pending.approvedBy.length >= gate.requiredApprovals;
  }

  closeGate(gate: GateStep): void {
    const s = this.step(gate.id);
    s.state = 'done';
    s.endedAt = now();
    s.summary = `approved by ${this.status.pendingGate?.approvedBy.join(', ')}`;
    metrics.gateEnded(gate.gate, 'approved', this.status.pendingGate?.openedAt, s.endedAt);
    this.status.pendingGate = undefined;
    this.clearGateMemo();
    this.setState('running');
  }

  private gateStep(name: string): GateStep {
    const gate = this.plan.steps.find((s): s is GateStep => s.kind === 'gate' && s.gate === name);
    if (!gate) {
      const names = this.plan.steps.flatMap((s) => (s.kind === 'gate' ? [s.gate] : []));
      throw new Error(`unknown gate "${name}"; this plan's gates are: ${names.join(', ') || 'none'}`);
    }
    return gate;
  }

  private requirePending(name: string): void {
    this.gateStep(name);
    const pending = this.status.pendingGate;
    if (pending?.gate !== name) {
      const where = pending ? `it is waiting at gate "${pending.gate}"` : `it is ${this.status.state}`;
      throw new Error(`gate "${name}" is not pending; ${where}`);
    }
  }

  private requireApprover(gate: GateStep, who: Person): void {
    // The pending gate's list, which an escalation may have widened, else the plan's.
    const approvers = this.status.pendingGate?.gate === gate.gate ? this.status.pendingGate.approvers : gate.approvers;
    if (!mayDecide(approvers, who)) {
      throw new Error(`${who.subject} may not decide gate "${gate.gate}"; its approvers are: ${approvers.join(', ')}`);
    }
  }

  /** Approver lists, four eyes and distinct approvers, on who the decision is by (verified, where the plan proves people). */
  private requireMayApprove(gate: GateStep, who: Person): void {
    const name = gate.gate;
    this.requireApprover(gate, who);
    if (gate.fourEyes && this.isStarter(who)) {
      throw new Error(`gate "${name}" needs four eyes: ${who.subject} started this migration and cannot approve it; ask another approver`);
    }
    const pending = this.status.pendingGate;
    const approvals = (this.status.decisionLog ?? []).filter((d) => d.statement.action === 'approve' && d.statement.gate === name).map(personOf);
    if (pending?.approvedBy.includes(who.subject) || approvals.some((a) => samePerson(a, who))) {
      throw new Error(
        `${who.subject} already approved gate "${name}"; it needs ${gate.requiredApprovals} distinct approvers (${pending?.approvedBy.length ?? 0} so far)`,
      );
    }
  }

  private isStarter(who: Person): boolean {
    const start = this.status.decisionLog?.find((d) => d.statement.action === 'start');
    return start ? samePerson(personOf(start), who) : who.subject === this.status.startedBy;
  }

  /** Nobody answered in time: the escalation list is told, and may decide too. */
  escalateGate(gate: GateStep, to: string[]): void {
    const pending = this.status.pendingGate;
    if (pending?.gate !== gate.gate) return;
    if (pending.approvers.length) pending.approvers = [...new Set([...pending.approvers, ...to])];
    pending.escalatedTo = to;
    this.touch();
  }

  recordNotification(notification: GateNotification): void {
    (this.status.notifications ??= []).push(notification);
    this.touch();
  }

  /** A decision made on another version of the plan is not a decision about this migration. */
  private requireSamePlan(planHash: string | undefined): void {
    if (planHash !== undefined && planHash !== this.plan.hash) {
      throw new Error(
        `this decision was made on plan sha256 ${planHash.slice(0, 12)}, but the migration runs plan sha256 ${this.plan.hash.slice(0, 12)}; review what runs with \`tiershift status ${this.status.migrationId}\` and decide again`,
      );
    }
  }

  /** Every figure measured so far, by step: the evidence a decision was made on. */
  evidence(): Record<string, Figures> {
    return evidenceOf(this.status);
  }

  validateApprove(args: unknown, checkShape = true): asserts args is ApproveArgs {
    if (checkShape) requireShape(approveArgsSchema, 'approval', args);
    // Unchecked only when replaying a signal from before the check: read as it was read then.
    const { gate: name, by, planHash } = args as ApproveArgs;
    this.requireSamePlan(planHash);
    this.requirePending(name);
    const gate = this.gateStep(name);
    // With proven decisions, who decides is known only once the proof is verified (approveProven).
    if (this.requireProof(args as ApproveArgs)) return;
    this.requireMayApprove(gate, { subject: this.named(by), groups: [] });
  }

  /** Verifies who approves, checks the gate's rules on that person, then approves. */
  async approveProven(args: ApproveArgs): Promise<MigrationStatus> {
    const record = await this.proveDecision('approve', args, { gate: args.gate, note: args.comment });
    // The migration may have moved on while the proof was checked: the gate must still be pending.
    this.validateApprove(args);
    this.requireMayApprove(this.gateStep(args.gate), personOf(record));
    this.log(record);
    return this.approve({ ...args, by: record.subject });
  }

  approve({ gate, by, comment }: ApproveArgs & { by: string }): MigrationStatus {
    this.status.pendingGate?.approvedBy.push(by);
    this.status.decisions.push({ gate, decision: 'approve', by, at: now(), comment, planHash: this.plan.hash, evidence: this.evidence() });
    this.touch();
    return this.status;
  }

  validateReject(args: unknown, checkShape = true): asserts args is RejectArgs {
    if (checkShape) requireShape(rejectArgsSchema, 'rejection', args);
    const { gate: name, by, reason, planHash } = args as RejectArgs;
    this.requireSamePlan(planHash);
    this.requirePending(name);
    if (this.status.pointOfNoReturn?.crossed) {
      throw new Error(`gate "${name}" is past the point of no return, where rejecting would roll back: ${this.confirmHint()}; or approve it`);
    }
    if (!reason?.trim()) throw new Error('a rejection needs a reason; pass --reason');
    if (this.requireProof(args as RejectArgs)) return;
    this.requireApprover(this.gateStep(name), { subject: this.named(by), groups: [] });
  }

  async rejectProven(args: RejectArgs): Promise<MigrationStatus> {
    const record = await this.proveDecision('reject', args, { gate: args.gate, note: args.reason });
    this.validateReject(args);
    this.requireApprover(this.gateStep(args.gate), personOf(record));
    this.log(record);
    return this.reject({ ...args, by: record.subject });
  }

  reject({ gate, by, reason }: RejectArgs & { by: string }): MigrationStatus {
    this.status.decisions.push({ gate, decision: 'reject', by, at: now(), comment: reason, planHash: this.plan.hash, evidence: this.evidence() });
    this.requestRollback({ trigger: 'gate-rejected', reason: `gate "${gate}" rejected by ${by}: ${reason}`, by });
    return this.status;
  }

  /**
   * A signal cannot answer its sender, and a signal handler that throws fails the workflow task on every
   * replay: whatever goes wrong is recorded as a refusal instead.
   */
  private viaSignal(signal: string, payload: unknown, handle: () => void): void {
    try {
      handle();
    } catch (err) {
      const gate = (payload as { gate?: unknown } | null | undefined)?.gate;
      this.recordRefusal(typeof gate === 'string' && gate.length <= 100 ? `gate:${gate}` : `signal:${signal}`, errorMessage(err));
    }
  }

  /** viaSignal, for a decision whose proof is verified first (an activity): a refusal is recorded all the same. */
  private async viaSignalProven(signal: string, payload: unknown, handle: () => Promise<void>): Promise<void> {
    try {
      await handle();
    } catch (err) {
      if (err instanceof wf.TemporalFailure && !(err instanceof wf.ActivityFailure) && !(err instanceof wf.ApplicationFailure)) throw err;
      const gate = (payload as { gate?: unknown } | null | undefined)?.gate;
      this.recordRefusal(typeof gate === 'string' && gate.length <= 100 ? `gate:${gate}` : `signal:${signal}`, errorMessage(err));
    }
  }

  // ---- proven decisions -------------------------------------------------------------------------

  /** With an identity provider or SSH signers: whether a proof came (true), or the refusal of a decision without one. */
  private requireProof(args: { proof?: Proof; evidence?: string }): boolean {
    const identity = this.status.identity;
    if (!identity || identity.policy.mode === 'unverified') return false;
    if (!args.proof) {
      const how = identity.policy.mode === 'oidc' ? `sign in to ${identity.policy.issuer} with \`tiershift login\`` : 'sign with an SSH key its plan lists (--key)';
      throw new Error(`this migration takes verified decisions only, and this one carries no proof of who made it; ${how} and decide with tiershift`);
    }
    if (args.evidence !== undefined && args.evidence !== evidenceDigest(this.evidence())) {
      throw new Error(`the evidence changed since it was shown (new figures were measured); review it with \`tiershift status ${this.status.migrationId}\` and decide again`);
    }
    return true;
  }

  /** Who an unproven decision is by: the name given, which a rehearsal (or a run from before proofs) takes as it is. */
  private named(by: string | undefined): string {
    if (by === undefined) throw new Error('the decision does not say who makes it; send "by" (the CLI sends --by, or your user name)');
    return by;
  }

  /**
   * The statement of a decision, as the workflow (never the caller) builds it, and who it is by: the
   * verified subject of its proof, or, in a rehearsal, the name given.
   */
  private async proveDecision(action: DecisionAction, args: { by?: string; proof?: Proof }, extra: { gate?: string; note?: string; confirm?: boolean }): Promise<DecisionRecord> {
    const identity = this.status.identity!;
    const statement = decisionStatement({ migration: this.status.migrationId, run: identity.run, planHash: this.plan.hash, evidence: evidenceDigest(this.evidence()) }, action, extra);
    const at = now();
    if (identity.policy.mode === 'unverified') return { statement, at, subject: this.named(args.by), claimedBy: args.by, verified: false };
    this.requireProof(args);
    const verification = await verifyProof(identity.policy, statement, args.proof!, at);
    if (!verification.ok) throw new Error(verification.refusal);
    const who = verification.identity;
    if (args.by !== undefined && args.by !== who.subject) {
      throw new Error(`the decision says it is by ${args.by}, but its proof is ${who.subject}'s; decide as yourself, without --by`);
    }
    return { statement, at: now(), subject: who.subject, ...(args.by !== undefined ? { claimedBy: args.by } : {}), verified: true, identity: who, proof: args.proof };
  }

  private log(record: DecisionRecord): void {
    (this.status.decisionLog ??= []).push(record);
    this.touch();
  }

  /** Resume and rollback are for the plan's operators. */
  private requireOperator(record: DecisionRecord, verb: string): void {
    const operators = this.status.identity?.operators ?? [];
    if (!mayDecide(operators, personOf(record))) throw new Error(`${record.subject} may not ${verb} this migration; its operators are: ${operators.join(', ')}`);
  }

  /**
   * Before the first step: the plan is the one its hash names, this worker runs plans proven this way,
   * and the person starting it is verified. The refusal, when there is one.
   */
  async verifyStart(startedBy: string, proof: Proof | undefined): Promise<string | undefined> {
    const policy = this.plan.identity!;
    this.status.identity = { policy, run: wf.workflowInfo().firstExecutionRunId, operators: this.plan.operators ?? [] };
    this.touch();
    const hash = planDigest(this.plan);
    if (hash !== this.plan.hash) return `the plan's content does not match its hash (sha256 ${this.plan.hash.slice(0, 12)}); start it with \`tiershift start PLAN\``;
    const allowed = await checkIdentityPolicy(policy);
    if (allowed.refusal) return allowed.refusal;
    try {
      // Anyone the plan's identity proves may start; four eyes then keeps them from approving it too.
      const record = await this.proveDecision('start', { by: startedBy || undefined, proof }, {});
      this.status.startedBy = record.subject;
      this.status.identity.startVerified = true;
      this.log(record);
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  }

  /** Keeps the last REFUSALS_KEPT refusals in `errors` and counts them all: a flood must not grow the status without bound. */
  private recordRefusal(stepId: string, reason: string): void {
    const errors = this.status.errors;
    // A status carried over from before the count existed: its refusals so far are all still in `errors`.
    this.status.refusedSignals = (this.status.refusedSignals ?? errors.filter(isRefusal).length) + 1;
    errors.push({ stepId, error: `${REFUSED}${reason.slice(0, 500)}`, at: now() });
    let excess = errors.filter(isRefusal).length - REFUSALS_KEPT;
    for (let i = 0; excess > 0 && i < errors.length; ) {
      if (isRefusal(errors[i]!)) {
        errors.splice(i, 1);
        excess -= 1;
      } else {
        i += 1;
      }
    }
    this.touch();
  }

  // ---- operator decisions ---------------------------------------------------------------------

  validateResume(args: unknown): asserts args is OperatorArgs {
    requireShape(operatorArgsSchema, 'resume', args);
    if (this.status.state !== 'awaiting-operator') {
      throw new Error(`there is nothing to resume; the migration is ${this.status.state}`);
    }
    if (this.cancelled) throw new Error(`the workflow was cancelled, which asks for a rollback; decide it with \`tiershift rollback ${this.status.migrationId} --reason "..."\``);
    this.requireProof(args);
  }

  async resumeProven(args: OperatorArgs): Promise<MigrationStatus> {
    const record = await this.proveDecision('resume', args, { note: args.reason });
    this.validateResume(args);
    this.requireOperator(record, 'resume');
    this.log(record);
    return this.resume({ ...args, by: record.subject });
  }

  /** What `resume` would do: the failed step runs again (its activity first checks what the last attempt left), done steps are skipped. */
  resumePreview(): ResumePreview {
    return {
      migrationId: this.status.migrationId,
      state: this.status.state,
      steps: this.status.steps.map((s) => ({
        id: s.id,
        title: s.title,
        verdict:
          s.state === 'done'
            ? s.kind === 'gate'
              ? 'skip: gate passed'
              : 'skip: done'
            : s.state === 'failed' || s.state === 'running'
              ? 'run again'
              : s.kind === 'gate'
                ? 'wait for approval'
                : 'run',
      })),
    };
  }

  resume({ by }: OperatorArgs): MigrationStatus {
    this.resumeRequested = true;
    (this.status.resumes ??= []).push({ stepId: this.status.failure?.stepId ?? this.status.currentStep ?? '', by: by ?? 'unknown', at: now() });
    this.touch();
    return this.status;
  }

  validateRollback(args: unknown): asserts args is OperatorArgs {
    requireShape(operatorArgsSchema, 'rollback', args);
    const { confirm } = args;
    if (this.rollbackRequest || this.status.state === 'rolling-back') throw new Error('the migration is already rolling back');
    if (isTerminal(this.status.state)) throw new Error(`the migration has ended (${this.status.state}); there is nothing to roll back`);
    if (this.status.pointOfNoReturn?.crossed && !confirm) throw new Error(this.confirmHint());
    this.requireProof(args);
  }

  /** Past the point of no return a rollback moves data back: say what it will do, and how to confirm it. */
  private confirmHint(): string {
    const ponr = this.status.pointOfNoReturn!;
    return `the migration crossed its point of no return (${ponr.stepId}, at ${ponr.crossedAt}), so rolling back means ${ponr.recoveryPlan}; to do that, run \`tiershift rollback ${this.status.migrationId} --reason "..." --confirm\``;
  }

  /**
   * Past the write point (and before the point of no return, whose validator already asks for --confirm),
   * an unconfirmed rollback first counts what the target holds that the source lacks: with nothing there it
   * proceeds; otherwise it is refused with the counts and what --confirm would do. Counting needs an
   * activity, so it happens here rather than in the validator; histories from before it replay without it.
   */
  async operatorRollback(args: OperatorArgs): Promise<MigrationStatus> {
    let record: DecisionRecord | undefined;
    if (this.status.identity) {
      record = await this.proveDecision('rollback', args, { note: args.reason, confirm: args.confirm });
      this.validateRollback(args);
      this.requireOperator(record, 'roll back');
    }
    const { reason, confirm } = args;
    const by = record?.subject ?? args.by ?? 'unknown';
    const writes = this.status.targetWrites;
    if (writes?.crossed && !confirm && !this.status.pointOfNoReturn?.crossed && this.measureWrites && wf.patched(TARGET_WRITES)) {
      const step = this.plan.steps.find((s): s is AppStep => s.kind === 'app' && s.id === writes.stepId)!;
      // Not cancellable: after the workflow was cancelled, this decision is the rollback it waits for.
      const measure = await wf.CancellationScope.nonCancellable(() => this.measureWrites!(step));
      this.recordMeasure(measure);
      // Another trigger may have started a rollback while this one counted: that one goes on.
      if (this.rollbackRequest || this.status.state === 'rolling-back' || isTerminal(this.status.state)) throw new Error(`the migration is already ${this.status.state}`);
      if (!measure.measured || measure.targetOnly + measure.differing > 0) throw new Error(this.writesHint(writes, measure));
    }
    if (record) this.log(record);
    this.requestRollback({ trigger: 'operator', reason: reason ?? `requested by ${by}`, by });
    return this.status;
  }

  /** Whether a rollback was asked for (by a person, a gate's timeout, the canary analysis). */
  get rollbackRequested(): boolean {
    return this.rollbackRequest !== undefined;
  }

  /** Where decisions are proven, cancelling the workflow only asks for a rollback: a verified operator decides it. */
  get cancelNeedsDecision(): boolean {
    return this.status.identity !== undefined && this.status.identity.policy.mode !== 'unverified';
  }

  /** The workflow was cancelled (Temporal UI, `temporal workflow cancel`): wait for an operator's rollback. */
  async awaitRollbackDecision(): Promise<void> {
    this.cancelled = true;
    const error = `the workflow was cancelled, which asks for a rollback; a verified operator decides it with \`tiershift rollback ${this.status.migrationId} --reason "..."\``;
    const at = now();
    this.status.failure = { stepId: this.status.currentStep ?? '', error, at };
    this.status.errors.push({ stepId: this.status.currentStep ?? '', error, at });
    this.setState('awaiting-operator');
    await wf.condition(() => this.rollbackRequest !== undefined);
  }

  recordMeasure(measure: WritesMeasure): void {
    const writes = this.status.targetWrites;
    if (!writes || !measure.measured) return;
    writes.targetOnlyRows = measure.targetOnly;
    writes.differingRows = measure.differing;
    writes.measuredAt = now();
    this.touch();
  }

  /** Why an unconfirmed rollback past the write point is refused, with the counts and what --confirm does. */
  private writesHint(w: TargetWritesStatus, m: WritesMeasure): string {
    const held = m.measured
      ? `${w.database} holds ${m.targetOnly} rows ${w.source} lacks and ${m.differing} rows both hold differently`
      : `${w.database} may hold writes ${w.source} lacks (its provider cannot count them)`;
    const confirmed = `\`tiershift rollback ${this.status.migrationId} --reason "..." --confirm\``;
    return w.recovery === 'none'
      ? `${held}, written since ${w.stepId} put the new version on it, and the plan accepts losing them (acceptWriteLoss), so ${confirmed} rolls back and loses them`
      : `${held}, written since ${w.stepId} put the new version on it; ${confirmed} first copies ${m.measured ? `the ${m.targetOnly} rows` : 'every row'} only ${w.database} has to ${w.source} (rows both changed keep ${w.source}'s version and are reported at risk), then rolls back`;
  }

  /** Leaves the forward path (wherever it waits) for the rollback path. */
  requestRollback(request: Omit<RollbackStatus, 'startedAt' | 'actions'>): void {
    this.rollbackRequest ??= request;
    this.forwardScope?.cancel();
  }

  takeRollbackRequest(fallback: Omit<RollbackStatus, 'startedAt' | 'actions'>): RollbackStatus {
    const request = (this.rollbackRequest ??= fallback);
    this.cancelled = false;
    this.status.rollback = { ...request, startedAt: now(), actions: [] };
    metrics.rollbackStarted(request.trigger);
    const decided = request.trigger === 'gate-rejected' || request.trigger === 'gate-timeout';
    this.endPendingGate(decided ? { error: request.reason } : { summary: `not decided: the migration rolled back (${request.trigger})` });
    this.status.failure = undefined;
    this.setState('rolling-back');
    return this.status.rollback;
  }

  /**
   * A gate that stops waiting without passing is no longer shown running: rejected or timed out (an
   * error), it failed; interrupted before anyone decided (a summary), it is skipped.
   */
  endPendingGate(how: { error: string } | { summary: string }): void {
    const gate = this.status.pendingGate;
    if (!gate) return;
    const s = this.step(gate.stepId);
    s.endedAt = now();
    metrics.gateEnded(gate.gate, 'error' in how ? 'failed' : 'skipped', gate.openedAt, s.endedAt);
    if ('error' in how) {
      s.state = 'failed';
      s.error = how.error;
    } else {
      s.state = 'skipped';
      s.summary = how.summary;
    }
    this.status.pendingGate = undefined;
    this.clearGateMemo();
  }

  // ---- visibility -----------------------------------------------------------------------------

  setState(state: MigrationState): void {
    if (state !== this.status.state) metrics.stateEntered(state);
    this.status.state = state;
    if (isTerminal(state)) {
      this.status.endedAt = now();
      this.status.currentStep = undefined;
      this.status.phase = 'done';
    }
    this.touch();
  }

  /** Keeps the search attributes (UI list filters) and the current details (UI workflow page) current. */
  touch(): void {
    this.status.updatedAt = now();
    const attributes = {
      state: this.status.state,
      phase: this.status.phase,
      gate: this.status.pendingGate?.gate ?? null,
      weight: this.status.traffic?.weight ?? 0,
    };
    // Each upsert is a history event: only send one when a filterable value really changed.
    const key = JSON.stringify(attributes);
    if (key !== this.lastAttributes) {
      this.lastAttributes = key;
      wf.upsertSearchAttributes([
        { key: MigrationStateKey, value: attributes.state },
        { key: MigrationPhase, value: attributes.phase },
        { key: PendingGate, value: attributes.gate },
        { key: PlanName, value: this.plan.name },
        { key: TrafficWeight, value: attributes.weight },
      ]);
    }
    wf.setCurrentDetails(currentDetails(this.status));
  }
}

/** The patch that puts a waiting gate's deadline in the memo (see openGate). */
const GATE_MEMO = 'gate-deadline-memo';

/** The patch that added the shape check to signals (see installHandlers). */
const SIGNAL_SHAPES = 'signal-payload-shape';
const REFUSED = 'signal refused: ';
const isRefusal = (e: MigrationStatus['errors'][number]): boolean => e.error.startsWith(REFUSED);

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The first check of every validator: the payload has the shape the CLI sends, before any field is read. */
function requireShape<T>(schema: z.ZodType<T>, call: string, payload: unknown): asserts payload is T {
  const problem = payloadProblem(schema, call, payload);
  if (problem) throw new Error(problem);
}

/** The patch that counts and recovers the writes the target took past the write point (workflows/migration.ts too). */
export const TARGET_WRITES = 'recover-target-writes';

/**
 * An Update handler runs only after its validator accepted the payload, but an error it threw would still
 * fail the workflow task (on every replay): it fails that one Update instead.
 */
function guarded<A extends unknown[], R>(handler: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args) => {
    try {
      return await handler(...args);
    } catch (err) {
      if (err instanceof wf.TemporalFailure && !(err instanceof wf.ActivityFailure)) throw err;
      throw wf.ApplicationFailure.nonRetryable(errorMessage(err instanceof wf.ActivityFailure && err.cause ? err.cause : err), 'HandlerFailed');
    }
  };
}

/** guarded, for a handler that answers at once. */
function guardedSync<A extends unknown[], R>(handler: (...args: A) => R): (...args: A) => R {
  return (...args) => {
    try {
      return handler(...args);
    } catch (err) {
      if (err instanceof wf.TemporalFailure) throw err;
      throw wf.ApplicationFailure.nonRetryable(errorMessage(err), 'HandlerFailed');
    }
  };
}

export function isTerminal(state: MigrationState): boolean {
  return TERMINAL_STATES.includes(state);
}

function initialPointOfNoReturn(plan: ResolvedPlan): PointOfNoReturnStatus | undefined {
  const step = plan.steps.find((s): s is FinalizeStep => s.kind === 'finalize' && s.pointOfNoReturn !== undefined);
  if (!step?.pointOfNoReturn) return undefined;
  const { gate, recovery } = step.pointOfNoReturn;
  return { stepId: step.id, gate, recovery, crossed: false, recoveryPlan: recoveryPhrase(recovery, step.syncedFrom) };
}

function initialTargetWrites(plan: ResolvedPlan): TargetWritesStatus | undefined {
  const step = plan.steps.find((s): s is AppStep => s.kind === 'app' && s.targetWrites !== undefined);
  if (!step?.targetWrites) return undefined;
  const { database, source, recovery } = step.targetWrites;
  return { stepId: step.id, database, source, recovery: recovery ?? 'none', crossed: false };
}

function initialTraffic(plan: ResolvedPlan): MigrationStatus['traffic'] {
  const step = plan.steps.find((s) => s.kind === 'traffic');
  if (!step || step.kind !== 'traffic') return undefined;
  const front = plan.resources[step.resource] as TrafficResource | undefined;
  return front ? { resource: front.name, stable: front.stable, canary: front.canary, weight: 0 } : undefined;
}


/** Markdown for the Temporal UI's "current details": reads like the runbook line being executed. */
function currentDetails(status: MigrationStatus): string {
  const done = status.steps.filter((s) => s.state === 'done').length;
  const lines = [`**${status.plan.name}** — ${status.state} (${done}/${status.steps.length} steps done)`];
  const current = status.steps.find((s) => s.id === status.currentStep);
  if (current) lines.push(`Step: ${current.title} (${current.state}${current.kind === 'gate' ? '' : `, attempt ${current.attempts}`})`);
  // The live figures change every few seconds: they stay in the heartbeat, not in this history's metadata.
  if (current?.state === 'running' && current.kind !== 'gate') {
    lines.push(`Live progress: Pending Activities → Heartbeat details (or \`tiershift watch ${status.migrationId}\`)`);
  }
  const ponr = status.pointOfNoReturn;
  if (ponr && !isTerminal(status.state)) {
    lines.push(
      ponr.crossed
        ? `Point of no return: **crossed** at ${ponr.crossedAt} (${ponr.stepId}). Rolling back now means ${ponr.recoveryPlan}, and needs \`--confirm\`.`
        : `Point of no return: **not crossed** (${ponr.stepId}, after gate ${ponr.gate}). Rolling back is a simple undo.`,
    );
  }
  const writes = status.targetWrites;
  if (writes?.crossed && !isTerminal(status.state) && !ponr?.crossed) {
    lines.push(
      `Write point: **crossed** at ${writes.crossedAt} (${writes.stepId}): ${writes.database} takes writes ${writes.source} lacks; ` +
        (writes.recovery === 'none' ? 'the plan accepts losing them on a rollback.' : `a rollback copies them back to ${writes.source} first.`),
    );
  }
  if (status.rollback?.rowsRecovered !== undefined) lines.push(`Rows recovered: ${status.rollback.rowsRecovered}; at risk: ${status.rollback.rowsAtRisk ?? 0}`);
  if (status.traffic) lines.push(`Traffic: ${100 - status.traffic.weight}% ${status.traffic.stable} / ${status.traffic.weight}% ${status.traffic.canary}`);
  const gate = status.pendingGate;
  if (gate) {
    lines.push(`Waiting for approval at gate **${gate.gate}** (${gate.approvedBy.length}/${gate.requiredApprovals}); ${gateDeadline(gate)}.`);
    lines.push(`Approve: \`${approveCommand(status.migrationId, gate.gate)}\``);
  }
  if (status.failure) {
    lines.push(`Failed: ${status.failure.error}`);
    lines.push(`Decide: \`tiershift resume ${status.migrationId}\` or \`tiershift rollback ${status.migrationId} --reason ...\``);
  }
  if (status.rollback) lines.push(`Rollback (${status.rollback.trigger}): ${status.rollback.reason}`);
  const identity = status.identity;
  if (identity) {
    const policy = identity.policy;
    const last = status.decisionLog?.at(-1);
    lines.push(
      policy.mode === 'unverified'
        ? '**Unverified** decisions (identity: unverified, a rehearsal): every name is as typed.'
        : `Decisions verified with ${policy.mode === 'oidc' ? `ID tokens from ${policy.issuer}` : 'SSH signatures'}${last ? `; last: ${last.statement.action} by ${last.subject}` : ''}.`,
    );
  }
  return lines.join('\n\n');
}

export { durationMs };
