// The resolved plan: what the workflow executes. Produced from a validated YAML plan by `resolvePlan`;
// type-only here so workflow code can import it without pulling the validator into the workflow bundle.

import type { IdentityPolicy } from '../contract/identity';

export type StepKind = 'check' | 'backup' | 'infra' | 'app' | 'data' | 'traffic' | 'gate' | 'finalize' | 'sql' | 'run' | 'verify' | 'resource';
export type ResourceKind = 'postgres' | 'blob' | 'traffic' | 'app';

/**
 * A reference to a secret, resolved inside activities only: a value never enters a plan or workflow history.
 * One key: `env` (every worker), or a kind a registered provider declares, e.g. `{ keyVault: { vault, secret } }`.
 */
export type SecretRef = { env: string } | { [kind: string]: JsonValue };
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * What every provider's resource of a kind has. The provider's own fields (nested under its name in the
 * plan, e.g. `azure: { server: … }`) are resolved onto the same object; only that provider's folder reads
 * them, with its own types (activities/<provider>/provider.ts).
 */
interface ResourceBase {
  name: string;
  /** The registered provider that owns this resource (activities/registry.ts). */
  provider: string;
  /**
   * The task queue whose workers run every activity touching this resource (plan/queues.ts); absent: the
   * workflow's own queue.
   */
  taskQueue?: string;
}
export interface PostgresResource extends ResourceBase {
  kind: 'postgres';
  database?: string;
  /** A connection string by reference, instead of the provider's own way to reach the server. */
  connection?: SecretRef;
}
export interface BlobResource extends ResourceBase {
  kind: 'blob';
  container: string;
  connection?: SecretRef;
}
export interface TrafficResource extends ResourceBase {
  kind: 'traffic';
  /** The origin serving today (blue) and the one taking over (green). */
  stable: string;
  canary: string;
}
export interface AppResource extends ResourceBase {
  kind: 'app';
}
export type Resource = PostgresResource | BlobResource | TrafficResource | AppResource;

export interface RetryPolicy {
  maximumAttempts: number;
  initialInterval: string;
  backoffCoefficient: number;
  maximumInterval: string;
}
export interface StepTimeouts {
  startToClose: string;
  heartbeat?: string;
}

export interface TrafficAnalysis {
  /** Fraction 0..1 of the canary's responses that may be 5xx over the bake window. */
  maxErrorRate: number;
  /** Upper bound of the canary's average response time over the bake window, in milliseconds. */
  maxResponseTimeMs?: number;
  /** Fewest canary requests for a verdict; fewer means "not enough traffic" and counts as a pass only if 0. */
  minRequests: number;
  /**
   * The sliding window the canary is judged on during the bake (every few seconds, beside the bake so far):
   * a breach rolls back then, not at the bake's end. Absent in plans resolved before it existed.
   */
  interval?: string;
  /** What a bake ending with fewer than `minRequests` requests leads to: an operator decides, the bake goes on, or a rollback. */
  inconclusive?: Inconclusive;
  /** With `inconclusive: extend`: the longest the bake may be extended, waiting for enough requests. */
  extendUpTo?: string;
}

export type Inconclusive = 'wait' | 'extend' | 'rollback';

interface StepBase {
  /** Unique, stable within the plan: `<phaseIndex>-<kind>[-<n>]` unless the plan names it. */
  id: string;
  /** A human title, read like a runbook line: "Back up shop database to blob storage". */
  title: string;
  phaseIndex: number;
  /** Where its activities run: the queue its resources pin (plan/queues.ts); absent: the workflow's own. */
  taskQueue?: string;
  retry: RetryPolicy;
  timeouts: StepTimeouts;
}
export interface CheckStep extends StepBase {
  kind: 'check';
  resources: string[];
}
export interface BackupStep extends StepBase {
  kind: 'backup';
  resources: string[];
  /** Where dumps go: a blob resource. */
  destination?: string;
  verifyRestore: boolean;
}
export interface InfraStep extends StepBase {
  kind: 'infra';
  resource: string;
  /** Server parameters, e.g. max_connections, shared_buffers. The provider's own fields (a tier) sit beside them. */
  settings: Record<string, string | number | boolean>;
  /** What its undo cannot put back, in the provider's words ("storage stays at 64 GB: Azure cannot shrink it"). */
  undoCaveat?: string;
}
export interface AppStep extends StepBase {
  kind: 'app';
  resource: string;
  version: string;
  /** The database resource the new version uses. The provider's own fields (an image, replicas) sit beside it. */
  database?: string;
  /**
   * Set when `database` is the target of an earlier postgres data step: from this step on the target takes
   * application writes its source lacks (the write point), and every rollback must recover them or say so.
   */
  targetWrites?: TargetWrites;
}
/** Where the target first takes application writes, and how a rollback brings them back to the source. */
export interface TargetWrites {
  /** The replicated target the new version writes to, and the source it was replicated from. */
  database: string;
  source: string;
  /** How a rollback recovers them; absent only when the plan says `acceptWriteLoss: true`. */
  recovery?: Recovery;
  acceptWriteLoss?: boolean;
}
export interface DataStep extends StepBase {
  kind: 'data';
  from: string;
  to: string;
  /** postgres: logical replication then cutover; blob: server-side incremental copy. */
  verify: boolean;
}
export interface TrafficStep extends StepBase {
  kind: 'traffic';
  resource: string;
  /** Percent 0..100 of traffic to the canary after this step. */
  weight: number;
  bake: string;
  analysis: TrafficAnalysis;
}
export interface GateStep extends StepBase {
  kind: 'gate';
  /** Gate name used on the CLI: `tiershift approve ID --gate <name>`. */
  gate: string;
  instructions?: string;
  approvers: string[];
  requiredApprovals: number;
  fourEyes: boolean;
  timeout?: string;
  onTimeout: 'rollback' | 'abort';
  notify?: GateNotify;
  /** Set on the gate a plan's point of no return adds: the id of the step it lets the migration cross into. */
  pointOfNoReturn?: string;
}
/** Who hears about an open gate, how often, and who is asked next when nobody answers. */
export interface GateNotify {
  webhook: string | SecretRef;
  /** Re-notify while the gate stays open. */
  every?: string;
  /** After this long, notify the escalation list (which may then approve too). */
  escalateAfter?: string;
  escalateTo?: string[];
  escalationWebhook?: string | SecretRef;
}
export interface FinalizeStep extends StepBase {
  kind: 'finalize';
  resources: string[];
  /** For each finalized resource an earlier data step filled: where it was synced from (the cutover ends that sync). */
  syncedFrom: Record<string, string>;
  /** The traffic fronts earlier steps shift: at run time the cutover checks each one's stable side serves 0%. */
  fronts?: string[];
  /** Past this step rollback is no longer a simple undo: crossing it needs its own gate, undoing it a confirmed recovery. */
  pointOfNoReturn?: PointOfNoReturn;
}
/**
 * How a migration comes back once the target took writes: `reverse-sync` replicates everything the
 * target received back to the source (logical replication, target -> source) before traffic returns;
 * `switch-back` (a cutover by switchover, where the source has stayed a physical replica of the target)
 * is a second planned switchover that makes the source the primary again.
 */
export type Recovery = 'reverse-sync' | 'switch-back';
export interface PointOfNoReturn {
  /** The gate that must pass before the step runs. */
  gate: string;
  recovery: Recovery;
}
/** One statement of a sql step, on one database, in the order the step runs them. */
export interface SqlExecution {
  /** The postgres resource it runs on: the step's own, or (on a replicating pair) the target and then the source. */
  on: string;
  statement: string;
  /**
   * False for statements PostgreSQL refuses inside a transaction (CREATE INDEX CONCURRENTLY, VACUUM...):
   * each runs alone. Consecutive transactional statements on one database commit together.
   */
  transactional: boolean;
  /** CREATE INDEX CONCURRENTLY: the index a resumed step finds valid (kept) or invalid (dropped and built again). */
  index?: string;
}
export interface SqlStep extends StepBase {
  kind: 'sql';
  resource: string;
  /** The plan's statements (or its file's, read when the plan loaded), resolved to where they run. */
  executions: SqlExecution[];
  /** What a rollback runs; on a replicating pair, on the source first, then the target. */
  undo?: SqlExecution[];
  /** Set when the resource is one side of a pair an earlier data step replicates: source -> target. */
  replicating?: { source: string; target: string };
}
/** A command on the worker, as an argument list (never a shell string). */
export interface Command {
  argv: string[];
  /** Environment variables from secret references, resolved on the worker only. */
  env?: Record<string, SecretRef>;
  /** Working directory, relative to the worker's. */
  cwd?: string;
}
export interface RunStep extends StepBase {
  kind: 'run';
  command: Command;
  /** Killed (its whole process group) past this. */
  timeout: string;
  /** Exit codes that count as success. */
  successCodes: number[];
  /** False: it runs at most once per migration, even across worker crashes and retries. */
  rerunnable: boolean;
  undo?: Command;
}
/** An HTTP smoke check: one request, judged on its status, its body and how long it took. */
export interface SmokeCheck {
  /** A path on the step's resource (`/health`), or an absolute URL. */
  url: string;
  status: number;
  /** Text the body must contain. */
  body?: string;
  maxLatencyMs?: number;
}
export interface LoadTest {
  url: string;
  ratePerSecond: number;
  /** Both bounds always hold; the plan gives at least one, the other follows from the rate. */
  duration: string;
  maxRequests: number;
  p95Ms?: number;
  maxErrorRate: number;
}
export interface VerifyStep extends StepBase {
  kind: 'verify';
  /** A traffic front or an app whose address the provider knows; paths are relative to it. */
  resource?: string;
  checks: SmokeCheck[];
  load?: LoadTest;
}
/**
 * Any other resource of a provider that drives resources by ARM id (Azure), by that id: properties set
 * (and restored by undo), or a resource created (and deleted by undo).
 */
export interface ResourceStep extends StepBase {
  kind: 'resource';
  /** The plan's provider that drives resources by ARM id. */
  provider: string;
  armId: string;
  apiVersion: string;
  /** Property path (`sku.name`) -> value. */
  set?: Record<string, JsonValue>;
  method?: 'PATCH' | 'PUT';
  /** The body of the resource the step creates. */
  create?: Record<string, JsonValue>;
}
export type Step = CheckStep | BackupStep | InfraStep | AppStep | DataStep | TrafficStep | GateStep | FinalizeStep | SqlStep | RunStep | VerifyStep | ResourceStep;

export interface ResolvedPlan {
  apiVersion: 'tiershift/v1';
  name: string;
  description?: string;
  /** sha256 of the resolved plan's canonical form (contract/digest.ts planDigest); the workflow recomputes it. */
  hash: string;
  /** Where the plan came from, for messages only. */
  source: string;
  /** How decisions are proven; absent only in plans started before the field existed. */
  identity?: IdentityPolicy;
  /** Who may resume and roll back (subjects or `group:<name>`); by default every gate's approvers. */
  operators?: string[];
  resources: Record<string, Resource>;
  steps: Step[];
}
