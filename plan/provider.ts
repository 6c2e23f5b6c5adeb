// What a provider declares to the plan: the fields of each kind of resource it drives (nested under its
// name in a plan, as Argo Rollouts nests `trafficRouting.alb`), the checks a schema cannot say, the
// secret-reference kinds it resolves and how it recovers past a point of no return. plan/schema.ts and
// plan/load.ts compose what the registered providers declare (activities/registry.ts); nothing outside a
// provider's folder names its fields.
import type { z } from 'zod';
import type { Recovery, Resource, ResourceKind } from './types';

export type PathPart = string | number;

/**
 * A provider's resources by kind, typed from its field schemas: the resource every provider's has, with the
 * provider's own fields beside it (as the loader resolves them).
 */
export type ResourcesOf<F extends Record<ResourceKind, z.ZodObject>> = {
  [K in ResourceKind]: Extract<Resource, { kind: K }> & z.output<F[K]>;
};

export interface ProviderPlan {
  /** The key a plan nests this provider's fields under: `azure: { server: … }`. */
  name: string;
  /** What it drives, for `tiershift plan` and messages: "Azure Resource Manager". */
  title: string;
  /** The fields of each kind of resource it drives; a kind it leaves out, it cannot drive. */
  resources: Partial<Record<ResourceKind, z.ZodObject>>;
  /**
   * Checks of one resource that a schema cannot say, e.g. a field needed unless another is given.
   * Paths are below the provider's block; each problem reads "expected …, got …".
   */
  check?(resource: Resource): [PathPart[], string][];
  /**
   * Fields it adds to the steps of a kind of phase, nested under its name in the phase:
   * `- infra: { resource: db, azure: { tier: GeneralPurpose } }`. Only on a step whose resource it drives.
   */
  steps?: Partial<Record<'infra' | 'app', z.ZodObject>>;
  /** The changes those fields make, as words for the step's generated title ("GeneralPurpose", "HA on"). */
  describeStep?(kind: 'infra' | 'app', fields: Record<string, unknown>): string[];
  /** What undoing an infra step with these fields cannot put back, as words for its rollback line; none if everything goes back. */
  describeUndo?(kind: 'infra', fields: Record<string, unknown>): string | undefined;
  /**
   * Whether its database backups are restored once to prove them: only then does a backup's title say so.
   * A function when it depends on the database (Azure proves a restore only through a connection).
   */
  provesRestore?: boolean | ((resource: Resource) => boolean);
  /** Secret-reference kinds it resolves, by key, with their shape: `{ keyVault: { vault, secret } }`. */
  secrets?: Record<string, z.ZodType>;
  /**
   * The steps beyond cloud calls it runs on its resources: `sql` on its postgres resources (it gives the
   * worker a connection), `verify` on its traffic fronts and apps (it knows their address). A plan that
   * asks a provider for one it does not declare is refused at load, except a sql step on a database with
   * its own `connection` reference (the worker resolves that one whatever the provider).
   */
  runs?: readonly ('sql' | 'verify')[];
  /** Whether it changes any resource by its ARM id (the resource step); a plan using it has one of its resources. */
  armResources?: boolean;
  /** How a migration on its databases comes back once the target took writes; none if it cannot. */
  recovery?: readonly Recovery[];
  /**
   * Why one of its databases, as a plan configures it, cannot take `recovery` although the provider can
   * (Azure: a replica promoted standalone cannot be switched back), as "expected …, got …"; none if it can.
   */
  recoveryProblem?(resource: Resource, recovery: Recovery): string | undefined;
  /**
   * Plans written before providers nested their fields put them beside `provider: NAME`; they keep
   * loading. Where a field was renamed, this maps the old name to the new one, per kind.
   */
  renamed?: Partial<Record<ResourceKind, Record<string, string>>>;
}
