// The plan file's shape, as a zod schema composed from the phase kinds (plan/phases/) and the registered
// providers (activities/registry.ts): the one place that says what a plan may contain. Checks that span the
// plan live in load.ts; the JSON Schema for editors is generated from this (scripts/write-json-schema.ts).
import { z } from 'zod';
import { PROVIDERS } from '../activities/registry';
import { PHASE_KINDS, PHASES, type PhaseKindName } from './phases';
import { person, resourceName, retry, timeouts, type SchemaParts } from './phases/kit';
import type { ProviderPlan } from './provider';
import type { ResourceKind } from './types';

export const RESOURCE_KINDS: readonly ResourceKind[] = ['postgres', 'blob', 'traffic', 'app'];

const name = z.string().regex(/^[a-z0-9]([a-z0-9-]{1,48})[a-z0-9]$/, {
  error: 'expected 3 to 50 lowercase letters, digits and dashes, starting and ending with a letter or digit',
});

/** PostgreSQL's rule for a database name tiershift passes to tools unquoted (63 bytes at most). */
const databaseName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]{0,62}$/, {
  error: 'expected a database name: up to 63 letters, digits, _ and -, starting with a letter or _',
});
/** Azure Blob Storage's rule for container names (Azurite's too). */
const containerName = z.string().regex(/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/, {
  error: 'expected a blob container name (3-63 lowercase letters, digits and single dashes)',
});
const origin = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, { error: 'expected an origin name (letters, digits, ., _ and -)' });

/** `{ env: NAME }` on every worker, or a kind a registered provider resolves. */
function secretRefSchema(providers: readonly ProviderPlan[]) {
  const env = z.strictObject({ env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, { error: 'expected an environment variable name such as PG_URL' }) });
  const kinds = providers.flatMap((p) => Object.entries(p.secrets ?? {}).map(([kind, shape]) => z.strictObject({ [kind]: shape })));
  return kinds.length ? z.union([env, ...kinds]) : env;
}

/** The references a plan may hold, as the errors name them: `{ env: NAME } or { keyVault: … }`. */
export function secretRefPhrase(providers: readonly ProviderPlan[] = PROVIDERS): string {
  return ['{ env: NAME }', ...providers.flatMap((p) => Object.keys(p.secrets ?? {}).map((k) => `{ ${k}: … }`))].join(' or ');
}

/** A Temporal task queue name as `tiershift worker --task-queue` takes it. */
export const taskQueueName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, {
  error: 'expected a task queue name: up to 100 letters, digits, ., _ and -, starting with a letter or digit',
});

/** What a resource of each kind has whatever its provider; the provider's own fields nest under its name. */
function coreFields(parts: SchemaParts): Record<ResourceKind, z.ZodRawShape> {
  // Any resource may pin the activities that touch it to a task queue (plan/queues.ts).
  const taskQueue = taskQueueName.optional();
  return {
    postgres: { database: databaseName.optional(), connection: parts.secretRef.optional(), taskQueue },
    blob: { container: containerName, connection: parts.secretRef.optional(), taskQueue },
    traffic: { stable: origin, canary: origin, taskQueue },
    app: { taskQueue },
  };
}

function resourceSchema(providers: readonly ProviderPlan[], parts: SchemaParts) {
  const core = coreFields(parts);
  return z.discriminatedUnion(
    'kind',
    RESOURCE_KINDS.map((kind) => {
      const drivers = providers.filter((p) => p.resources[kind]);
      return z
        .strictObject({
          kind: z.literal(kind),
          ...core[kind],
          ...Object.fromEntries(drivers.map((p) => [p.name, p.resources[kind]!.optional()])),
        })
        .superRefine((r, ctx) => {
          const given = drivers.filter((p) => (r as Record<string, unknown>)[p.name] !== undefined).map((p) => p.name);
          if (given.length !== 1) {
            ctx.addIssue({
              code: 'custom',
              path: given.length ? [given[1]!] : [],
              message: `expected the fields of exactly one provider that drives ${kind} resources (${drivers.map((p) => `${p.name}: { … }`).join(' or ')}), got ${given.length ? given.join(' and ') : 'none'}`,
            });
          }
        });
    }) as unknown as [z.ZodObject, ...z.ZodObject[]],
  );
}

/** The phase kinds a provider may add fields to (on the step's own resource). */
export const PROVIDER_STEP_KINDS = ['infra', 'app'] as const;
export type ProviderStepKind = (typeof PROVIDER_STEP_KINDS)[number];
export const isProviderStepKind = (kind: string): kind is ProviderStepKind => (PROVIDER_STEP_KINDS as readonly string[]).includes(kind);

/** The plan schema of the registered providers: what `plan/tiershift-plan.schema.json` publishes. */
export const planSchema = (): ReturnType<typeof build> => planSchemaFor(PROVIDERS);

/** The plan schema for a set of providers (the registered ones unless a test brings its own). */
export function planSchemaFor(providers: readonly ProviderPlan[] = PROVIDERS) {
  let cached = schemas.get(providers);
  if (!cached) schemas.set(providers, (cached = build(providers)));
  return cached;
}
const schemas = new WeakMap<readonly ProviderPlan[], ReturnType<typeof build>>();

function build(providers: readonly ProviderPlan[]) {
  const parts: SchemaParts = { secretRef: secretRefSchema(providers) };
  // A provider's own step fields nest under its name: `- infra: { resource: db, azure: { tier: … } }`.
  const withProviders = (kind: PhaseKindName, body: z.ZodObject) =>
    body.extend(Object.fromEntries(providers.flatMap((p) => (isProviderStepKind(kind) && p.steps?.[kind] ? [[p.name, p.steps[kind]!.optional()]] : []))));
  const bodies = Object.fromEntries(PHASE_KINDS.map((k) => [k, withProviders(k, PHASES[k].schema(parts)).optional()])) as Record<PhaseKindName, z.ZodOptional<z.ZodObject>>;
  /** A phase is a one-key object, `- backup: {...}`, so a plan reads as the runbook's list of phases. */
  const phase = z.strictObject(bodies).refine((p) => Object.keys(p).length === 1, { error: `expected exactly one of ${PHASE_KINDS.join(', ')}` });
  return z.strictObject({
    $schema: z.string().optional(),
    apiVersion: z.literal('tiershift/v1'),
    name,
    description: z.string().max(2000).optional(),
    identity,
    approvers: z.array(person).optional(),
    operators: z.array(person).optional(),
    defaults: z.strictObject({ retry: retry.optional(), timeouts: timeouts.optional() }).optional(),
    resources: z.record(resourceName, resourceSchema(providers, parts)),
    phases: z.array(phase).min(1),
  });
}

/**
 * How the plan's decisions are proven. Required, so that a plan never accepts typed names by accident:
 * `unverified` must be written out, and is for rehearsals only.
 */
const identity = z.union(
  [
    z.literal('unverified'),
    z.strictObject({
      oidc: z.strictObject({
        // https, except an identity provider on this machine (the sandbox's).
        // `sandbox`: the sandbox's own identity provider, wherever `tiershift sandbox up` put it.
        issuer: z.union([
          z.literal('sandbox'),
          z.url({ protocol: /^https?$/, error: 'expected the issuer URL of an OpenID Connect provider, or sandbox' }).refine((u) => u.startsWith('https://') || /^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?(\/|$)/.test(u), {
            error: 'expected an https issuer URL (http only on 127.0.0.1)',
          }),
        ]),
        /** The client id tiershift signs in as: the audience its ID tokens carry. */
        audience: z.string().min(1).max(200).optional(),
        /** The claim holding the groups that approver lists name as `group:<name>`. */
        groupsClaim: z.string().min(1).max(100).optional(),
      }),
    }),
    z.strictObject({ ssh: z.strictObject({ allowedSigners: z.string().min(1).max(1000) }) }),
  ],
  {
    error:
      'expected how decisions are proven: identity: { oidc: { issuer: URL } }, identity: { ssh: { allowedSigners: FILE } }, or identity: unverified (for rehearsals only)',
  },
);

/** A plan as the schema leaves it: phases as one-key objects, resources with their provider's block. */
export interface PlanFile {
  name: string;
  description?: string;
  identity: 'unverified' | { oidc: { issuer: string; audience?: string; groupsClaim?: string } } | { ssh: { allowedSigners: string } };
  approvers?: string[];
  operators?: string[];
  defaults?: { retry?: Record<string, unknown>; timeouts?: Record<string, unknown> };
  resources: Record<string, { kind: ResourceKind } & Record<string, unknown>>;
  phases: Partial<Record<PhaseKindName, Record<string, unknown> & { id?: string }>>[];
}
