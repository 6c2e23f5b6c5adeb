// What every phase kind is made of: the schema pieces steps share, and the contexts the loader gives a phase
// kind to resolve its steps and check itself against the rest of the plan. A phase kind is one module in
// this folder (plan/phases/<kind>.ts) listed in plan/phases/index.ts.
//
// Pure and deterministic (zod only): the workflow imports the phase kinds for their undo wording.
import { z } from 'zod';
import type { PathPart } from '../provider';
import type { GateStep, Resource, ResourceKind, RetryPolicy, Step, StepTimeouts, TrafficAnalysis } from '../types';

export type { PathPart };

export const DURATION = /^(\d+(ms|s|m|h|d))+$/;
export const duration = z.string().regex(DURATION, { error: 'expected a duration such as 30s, 10m, 1h30m or 2d' });
export const gateName = z.string().regex(/^[a-z][a-z0-9-]{0,39}$/, { error: 'expected a gate name of 1 to 40 lowercase letters, digits and dashes, starting with a letter' });
export const resourceName = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,62}$/, { error: 'expected a resource name (letters, digits, _ and -)' });
export const person = z.string().regex(/^[^\s,]{1,100}$/, { error: 'expected a user name without spaces or commas' });

export const retry = z.strictObject({
  maximumAttempts: z.int().min(1).max(100).optional(),
  initialInterval: duration.optional(),
  backoffCoefficient: z.number().min(1).max(10).optional(),
  maximumInterval: duration.optional(),
});
export const timeouts = z.strictObject({ startToClose: duration.optional(), heartbeat: duration.optional() });

/** Every phase may name itself, retitle itself and tune its own retries and timeouts. */
export const stepCommon = {
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, { error: 'expected a step id of lowercase letters, digits and dashes' }).optional(),
  title: z.string().min(1).max(200).optional(),
  retry: retry.optional(),
  timeouts: timeouts.optional(),
};

export const analysis = z.strictObject({
  maxErrorRate: z.number().min(0).max(1).optional(),
  maxResponseTimeMs: z.number().positive().optional(),
  minRequests: z.int().min(0).optional(),
  interval: duration.optional(),
  inconclusive: z.enum(['wait', 'extend', 'rollback']).optional(),
  extendUpTo: duration.optional(),
});

export const DEFAULT_RETRY: RetryPolicy = { maximumAttempts: 3, initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1m' };
export const DEFAULT_TIMEOUTS: StepTimeouts = { startToClose: '2h', heartbeat: '1m' };
export const DEFAULT_ANALYSIS: TrafficAnalysis = { maxErrorRate: 0.01, minRequests: 0, interval: '10s', inconclusive: 'wait' };

/** Schema pieces composed from the registered providers (see plan/schema.ts). */
export interface SchemaParts {
  /** `{ env: NAME }` or a kind a registered provider resolves. */
  secretRef: z.ZodType;
}

/** Who decides a gate, how many, by when, and who is told: a gate phase and a point of no return share these. */
export function gateRules({ secretRef }: SchemaParts) {
  const webhook = z.union([z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }), secretRef]);
  return {
    instructions: z.string().max(2000).optional(),
    approvers: z.array(person).optional(),
    requiredApprovals: z.int().min(1).max(10).optional(),
    fourEyes: z.boolean().optional(),
    timeout: duration.optional(),
    onTimeout: z.enum(['rollback', 'abort']).optional(),
    notify: z
      .strictObject({
        /** A webhook URL, or (for URLs that carry a token) a reference to one. */
        webhook,
        every: duration.optional(),
        escalateAfter: duration.optional(),
        escalateTo: z.array(person).min(1).optional(),
        escalationWebhook: webhook.optional(),
      })
      .optional(),
  };
}
export type GateRules = Partial<Pick<GateStep, 'instructions' | 'approvers' | 'requiredApprovals' | 'fourEyes' | 'timeout' | 'onTimeout' | 'notify'>>;

/** The fields every step body has (stepCommon). */
export interface BodyCommon {
  id?: string;
  title?: string;
  retry?: Partial<RetryPolicy>;
  timeouts?: Partial<StepTimeouts>;
}

/** What the loader gives a phase kind to turn its body into steps. */
export interface ResolveContext {
  phaseIndex: number;
  /** Id, retries and timeouts of a step of this phase (`suffix` for phases of several steps). */
  base(suffix?: string): Pick<Step, 'id' | 'phaseIndex' | 'retry' | 'timeouts'>;
  /** The plan's title for the step if it gave one, else the generated runbook line. */
  title(generated: string): string;
  resources: Record<string, Resource>;
  /** The steps of the phases before this one, resolved. */
  steps: readonly Step[];
  /** The plan-wide approvers, for gates that name none. */
  approvers?: string[];
  /** What the provider's own fields on this step change, as words for the generated title. */
  providerWords: string[];
  /** A file the plan names (relative to the plan), read when the plan loads; check() reported it if unreadable. */
  readText(file: string): string;
  /** The plan's provider that drives any resource by its ARM id (a resource step), if it has one. */
  armProvider?: string;
  /** Whether the provider of a database resource restores its backups once to prove them. */
  provesRestore(resource: string): boolean;
  /** The registered providers that can recover past a point of no return, by recovery. */
  recovers(provider: string, recovery: string): boolean;
  /** Why a database, as the plan configures it, cannot take a recovery its provider offers; none if it can. */
  recoveryProblem(resource: string, recovery: string): string | undefined;
}

/** What the loader gives a phase kind to check it against the rest of the plan. */
export interface CheckContext {
  index: number;
  /** A path inside this phase's body: `phases[i].<kind>.<rest>`. */
  at(...rest: PathPart[]): PathPart[];
  problem(at: PathPart[], text: string): void;
  /** The resource `name` must be one of `kinds`; a problem otherwise. */
  ref(at: PathPart[], name: string, kinds: readonly ResourceKind[]): Resource | undefined;
  /** A gate's name is unique and its rules hold together. */
  checkGate(name: string, rules: GateRules, at: (...rest: PathPart[]) => PathPart[], nameKey?: string): void;
  resources: Record<string, Resource>;
  approvers?: string[];
  /** What the phases so far established, for the checks of later ones. */
  seen: {
    /** The first finalize phase, and the one with a point of no return. */
    finalizeAt: number;
    pointOfNoReturnAt: number;
    /** Data target -> data source. */
    syncedInto: Map<string, string>;
    /** Traffic resource -> the weight its last traffic phase reached, and where. */
    lastWeight: Map<string, { weight: number; at: PathPart[] }>;
    /** Data targets a finalize cut over: their replication has ended. */
    cutOver: Set<string>;
  };
  /** The registered providers that can recover past a point of no return, by recovery. */
  recovers(provider: string, recovery: string): boolean;
  /** Why a database, as the plan configures it, cannot take a recovery its provider offers (provider.ts recoveryProblem); none if it can. */
  recoveryProblem(resource: string, recovery: string): string | undefined;
  /** Whether a registered provider runs a step kind beyond cloud calls on its resources (ProviderPlan.runs). */
  runs(provider: string, kind: 'sql' | 'verify'): boolean;
  /** A file the plan names, relative to the plan; a problem at `at` (and undefined) when it cannot be read. */
  readText(at: PathPart[], file: string): string | undefined;
  /** The plan's provider that drives any resource by its ARM id (a resource step), if it has one. */
  armProvider?: string;
}

/** One kind of phase: its schema, its steps, its checks, its undo wording and its dry-run detail. */
export interface PhaseKind<B = unknown> {
  schema(parts: SchemaParts): z.ZodObject;
  resolve(body: B, ctx: ResolveContext): Step[];
  check?(body: B, ctx: CheckContext): void;
  /** What undoing one of its steps does, as a runbook line; none when it changes nothing. */
  undo?(step: Step): string | undefined;
  /** The dry run's bracketed detail after the step's title. */
  describe?(step: Step): string;
  /** May it come after a finalize? Only phases that change nothing the cutover depends on. */
  allowedAfterFinalize?: boolean;
}

/** Erases the body type so the phase kinds can sit in one table; each module types its own body. */
export const phaseKind = <B>(kind: PhaseKind<B>): PhaseKind => kind as unknown as PhaseKind;

export const list = (names: readonly string[]) => names.join(', ');

/** Retries and timeout, the dry run's default detail. */
export const retryDetail = (step: Step) => `retry ${step.retry.maximumAttempts}x from ${step.retry.initialInterval}, timeout ${step.timeouts.startToClose}`;

/** A gate step from its rules, with the plan's approvers when it names none. */
export function gateStep(base: Omit<GateStep, 'kind' | 'gate' | 'approvers' | 'requiredApprovals' | 'fourEyes' | 'onTimeout'>, name: string, b: GateRules, planApprovers: string[] | undefined): GateStep {
  return {
    ...base,
    kind: 'gate',
    gate: name,
    instructions: b.instructions,
    approvers: b.approvers ?? planApprovers ?? [],
    requiredApprovals: b.requiredApprovals ?? 1,
    fourEyes: b.fourEyes ?? false,
    timeout: b.timeout,
    onTimeout: b.onTimeout ?? 'rollback',
    notify: b.notify,
  };
}
