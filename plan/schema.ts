// The plan file's shape, as a zod schema: the one place that says what a plan may contain. Checks that
// span the plan (a step naming a resource that exists and is of the right kind) live in load.ts; the
// JSON Schema for editors is generated from this file (scripts/write-json-schema.ts).
import { z } from 'zod';

export const DURATION = /^(\d+(ms|s|m|h|d))+$/;
const duration = z.string().regex(DURATION, { error: 'expected a duration such as 30s, 10m, 1h30m or 2d' });
const name = z.string().regex(/^[a-z0-9]([a-z0-9-]{1,48})[a-z0-9]$/, {
  error: 'expected 3 to 50 lowercase letters, digits and dashes, starting and ending with a letter or digit',
});
const gateName = z.string().regex(/^[a-z][a-z0-9-]{0,39}$/, { error: 'expected a gate name of 1 to 40 lowercase letters, digits and dashes, starting with a letter' });
const resourceName = z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,62}$/, { error: 'expected a resource name (letters, digits, _ and -)' });
const person = z.string().regex(/^[^\s,]{1,100}$/, { error: 'expected a user name without spaces or commas' });

/** Where a secret lives; the plan holds the reference, an activity reads the value. */
export const secretRef = z.union([
  z.strictObject({ env: z.string().regex(/^[A-Z_][A-Z0-9_]*$/, { error: 'expected an environment variable name such as PG_URL' }) }),
  z.strictObject({ keyVault: z.strictObject({ vault: z.string().min(1), secret: z.string().min(1) }) }),
]);

const retry = z.strictObject({
  maximumAttempts: z.int().min(1).max(100).optional(),
  initialInterval: duration.optional(),
  backoffCoefficient: z.number().min(1).max(10).optional(),
  maximumInterval: duration.optional(),
});
const timeouts = z.strictObject({ startToClose: duration.optional(), heartbeat: duration.optional() });

/** Every phase may name itself, retitle itself and tune its own retries and timeouts. */
const stepCommon = {
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, { error: 'expected a step id of lowercase letters, digits and dashes' }).optional(),
  title: z.string().min(1).max(200).optional(),
  retry: retry.optional(),
  timeouts: timeouts.optional(),
};

const azureCommon = {
  subscription: z.string().min(1).optional(),
  resourceGroup: z.string().min(1).optional(),
};

export const resourceSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('postgres'),
    provider: z.enum(['local', 'azure']),
    cluster: z.enum(['source', 'target']).optional(),
    database: z.string().min(1).optional(),
    server: z.string().min(1).optional(),
    /** azure: the region of a read replica a data step creates (defaults to its source's). */
    location: z.string().min(1).optional(),
    connection: secretRef.optional(),
    ...azureCommon,
  }),
  z.strictObject({
    kind: z.literal('blob'),
    provider: z.enum(['local', 'azure']),
    account: z.string().min(1),
    container: z.string().regex(/^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$/, { error: 'expected a blob container name (3-63 lowercase letters, digits, dashes)' }),
    connection: secretRef.optional(),
    ...azureCommon,
  }),
  z.strictObject({
    kind: z.literal('traffic'),
    provider: z.enum(['local', 'azure']),
    backend: z.string().min(1).optional(),
    profile: z.string().min(1).optional(),
    originGroup: z.string().min(1).optional(),
    endpoint: z.string().min(1).optional(),
    /** azure: shift between two revisions of this Container App instead of Front Door origins. */
    containerApp: z.string().min(1).optional(),
    stable: z.string().min(1),
    canary: z.string().min(1),
    ...azureCommon,
  }),
  z.strictObject({
    kind: z.literal('app'),
    provider: z.enum(['local', 'azure']),
    containerApp: z.string().min(1).optional(),
    ...azureCommon,
  }),
]);

const analysis = z.strictObject({
  maxErrorRate: z.number().min(0).max(1).optional(),
  maxResponseTimeMs: z.number().positive().optional(),
  minRequests: z.int().min(0).optional(),
});

/** Who decides a gate, how many, by when, and who is told. */
const gateRules = {
  instructions: z.string().max(2000).optional(),
  approvers: z.array(person).optional(),
  requiredApprovals: z.int().min(1).max(10).optional(),
  fourEyes: z.boolean().optional(),
  timeout: duration.optional(),
  onTimeout: z.enum(['rollback', 'abort']).optional(),
  notify: z
    .strictObject({
      /** A webhook URL, or (for URLs that carry a token) a reference to one. */
      webhook: z.union([z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }), secretRef]),
      every: duration.optional(),
      escalateAfter: duration.optional(),
      escalateTo: z.array(person).min(1).optional(),
      escalationWebhook: z.union([z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }), secretRef]).optional(),
    })
    .optional(),
};

export const phaseBodies = {
  check: z.strictObject({ ...stepCommon, resources: z.array(resourceName).min(1) }),
  backup: z.strictObject({
    ...stepCommon,
    resources: z.array(resourceName).min(1),
    destination: resourceName.optional(),
    verifyRestore: z.boolean().optional(),
  }),
  gate: z.strictObject({ ...stepCommon, name: gateName, ...gateRules }),
  infra: z.strictObject({
    ...stepCommon,
    resource: resourceName,
    settings: z.record(z.string().regex(/^[a-z_][a-z0-9_.]*$/), z.union([z.string(), z.number(), z.boolean()])).optional(),
    sku: z.string().min(1).optional(),
    tier: z.enum(['Burstable', 'GeneralPurpose', 'MemoryOptimized']).optional(),
    storageGb: z.int().min(32).max(65536).optional(),
    highAvailability: z.boolean().optional(),
    backupRetentionDays: z.int().min(7).max(35).optional(),
  }),
  app: z.strictObject({
    ...stepCommon,
    resource: resourceName,
    version: z.string().min(1).max(100),
    database: resourceName.optional(),
    image: z.string().min(1).optional(),
    cpu: z.number().positive().max(16).optional(),
    memory: z.string().regex(/^\d+(\.\d+)?Gi$/, { error: 'expected a memory size such as 2Gi' }).optional(),
    minReplicas: z.int().min(0).max(1000).optional(),
    maxReplicas: z.int().min(1).max(1000).optional(),
  }),
  data: z.strictObject({ ...stepCommon, from: resourceName, to: resourceName, verify: z.boolean().optional() }),
  traffic: z.strictObject({
    ...stepCommon,
    resource: resourceName,
    analysis: analysis.optional(),
    steps: z
      .array(z.strictObject({ weight: z.int().min(1).max(100), bake: duration, analysis: analysis.optional() }))
      .min(1),
  }),
  finalize: z.strictObject({
    ...stepCommon,
    resources: z.array(resourceName).min(1),
    /** After this step the target has taken writes: crossing needs its own gate, and a rollback a confirmed recovery. */
    pointOfNoReturn: z
      .strictObject({
        /** The name of the gate that opens before the step (default point-of-no-return). */
        gate: gateName.optional(),
        recovery: z.enum(['reverse-sync']).optional(),
        ...gateRules,
      })
      .optional(),
  }),
};

export type PhaseKind = keyof typeof phaseBodies;
export const PHASE_KINDS = Object.keys(phaseBodies) as PhaseKind[];

/** A phase is a one-key object, `- backup: {...}`, so a plan reads as the runbook's list of phases. */
export const phaseSchema = z
  .strictObject(Object.fromEntries(PHASE_KINDS.map((k) => [k, phaseBodies[k].optional()])) as { [K in PhaseKind]: z.ZodOptional<(typeof phaseBodies)[K]> })
  .refine((phase) => Object.keys(phase).length === 1, {
    error: `expected exactly one of ${PHASE_KINDS.join(', ')}`,
  });

export const planSchema = z.strictObject({
  $schema: z.string().optional(),
  apiVersion: z.literal('tiershift/v1'),
  name,
  description: z.string().max(2000).optional(),
  approvers: z.array(person).optional(),
  defaults: z.strictObject({ retry: retry.optional(), timeouts: timeouts.optional() }).optional(),
  resources: z.record(resourceName, resourceSchema),
  phases: z.array(phaseSchema).min(1),
});

export type PlanFile = z.infer<typeof planSchema>;
export type PhaseBody<K extends PhaseKind> = z.infer<(typeof phaseBodies)[K]>;
