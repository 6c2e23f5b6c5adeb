// The Azure provider as a plan sees it: the fields of each resource it drives, nested under `azure:`, the
// Key Vault secret references it resolves, and its operations, loaded only by a worker (so the CLI never
// loads the Azure SDKs). Registered by one line in activities/registry.ts.
import { z } from 'zod';
import type { ResourcesOf } from '../../plan/provider';
import type { AppStep, InfraStep } from '../../plan/types';
import type { ProviderDefinition } from '../types';

const required = (what: string) => z.string({ error: (iss) => (iss.input === undefined ? `expected ${what}, got nothing` : undefined) }).min(1);
const scope = {
  subscription: required('the Azure subscription id'),
  resourceGroup: required('the Azure resource group'),
};

// Azure's naming rules, so a plan is refused when it loads rather than when ARM answers 400.
const serverName = required('the Flexible Server name').regex(/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/, {
  error: 'expected a Flexible Server name: 3 to 63 lowercase letters, digits and dashes, not starting or ending with a dash',
});
const storageAccount = required('the storage account name').regex(/^[a-z0-9]{3,24}$/, { error: 'expected a storage account name: 3 to 24 lowercase letters and digits' });
/** Azure's limit on `<app>--<suffix>`, a revision's name. */
export const REVISION_NAME_MAX = 54;
/** Why `name` cannot be a revision of Container App `app`, or undefined. */
export function revisionNameProblem(name: string, app: string): string | undefined {
  const suffix = name.startsWith(`${app}--`) ? name.slice(app.length + 2) : undefined;
  if (suffix === undefined) return `expected a revision of ${app}, named ${app}--<suffix>, got "${name}"`;
  if (!/^[a-z]([a-z0-9-]*[a-z0-9])?$/.test(suffix) || suffix.includes('--')) {
    return `expected a revision suffix of lowercase letters, digits and single dashes, starting with a letter and ending with a letter or digit, got "${suffix}"`;
  }
  if (name.length > REVISION_NAME_MAX) return `expected a revision name of at most ${REVISION_NAME_MAX} characters (Azure's limit), got ${name.length} in "${name}"`;
  return undefined;
}
// Container Apps' names for what the app step adds: secrets and scale rules follow Kubernetes' DNS-1123
// names; a revision label also becomes part of a host name (`<app>---<label>.<environment domain>`), so
// it is a DNS label with no "--" (the app name and label are separated by "---").
export const SECRET_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
export const SCALE_RULE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
export const LABEL_NAME = /^[a-z]([a-z0-9-]{0,62}[a-z0-9])?$/;
/** Why `label` cannot be a revision label of Container App `app`, or undefined. */
export function labelProblem(label: string, app: string): string | undefined {
  if (!LABEL_NAME.test(label) || label.includes('--')) return `expected a revision label of lowercase letters, digits and single dashes, starting with a letter and ending with a letter or digit, got "${label}"`;
  if (app.length + 3 + label.length > 63) return `expected a revision label short enough for the host name ${app}---${label} (at most 63 characters), got ${app.length + 3 + label.length}`;
  return undefined;
}
/** A Key Vault secret's URL (its latest version, or a pinned one), in any Azure cloud. */
const KEY_VAULT_SECRET_URL = /^https:\/\/[a-z0-9-]{3,24}\.vault\.(azure\.net|usgovcloudapi\.net|azure\.cn)\/secrets\/[A-Za-z0-9-]{1,127}(\/[0-9a-f]{32})?$/;
const USER_IDENTITY = /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.ManagedIdentity\/userAssignedIdentities\/[^/]+$/i;
/** Env names whose value is a credential: a literal one would sit in the plan, the workflow history and the revision. */
const CREDENTIAL_ENV = /(PASSWORD|PASSWD|SECRET|TOKEN|CONNECTION|CONN_STR|DATABASE_URL|DB_URL|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)/i;
const containerAppName = z.string().regex(/^[a-z][a-z0-9-]{0,30}[a-z0-9]$/, { error: 'expected a Container App name: 2 to 32 lowercase letters, digits and dashes, starting with a letter' });

const fields = {
  postgres: z.strictObject({
    ...scope,
    server: serverName,
    /** The region of a read replica a data step creates (defaults to its source's). */
    location: z.string().min(1).optional(),
    /**
     * How the finalize step promotes this read replica. `switchover` (the default): it and its primary swap
     * roles through a virtual endpoint, and a second switchover reverses it. `standalone`: it leaves the
     * replication set for good; there is no way back.
     */
    promote: z.enum(['switchover', 'standalone']).optional(),
    /**
     * How a data step fills this server (the data step's target). `replica` (the default): the step creates
     * it as a read replica of the source, and the finalize promotes it. `logical`: the server exists already
     * (another region, or a newer major version, which a replica cannot have), and the step fills it by
     * logical replication through both databases' connections (wal_level and the source's other
     * parameters are set, with a restart, and put back by undo); the finalize ends that replication.
     * On the resource rather than the data step, like `promote`: it is what this server is, and the data
     * phase's schema names no provider.
     */
    replication: z.enum(['replica', 'logical']).optional(),
    /** The virtual endpoint (a writer and a reader host name) a switchover moves; defaults to `<primary server>-vep`. */
    virtualEndpoint: z.string().regex(/^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/, { error: 'expected a virtual endpoint name: 3 to 63 lowercase letters, digits and dashes' }).optional(),
  }),
  blob: z.strictObject({ account: storageAccount, subscription: z.string().min(1).optional(), resourceGroup: z.string().min(1).optional() }),
  traffic: z.strictObject({
    ...scope,
    /** Front Door: the profile, origin group and (for the analysis' probe) endpoint. */
    profile: z.string().min(1).optional(),
    originGroup: z.string().min(1).optional(),
    endpoint: z.string().min(1).optional(),
    /** Or: shift between two revisions of this Container App (stable and canary name revisions). */
    containerApp: containerAppName.optional(),
  }),
  app: z.strictObject({ ...scope, containerApp: containerAppName }),
};

/** Premium SSD (Premium_LRS), a Flexible Server's storage: these sizes only, in GiB, 32 GiB to 32 TiB. */
export const PREMIUM_SSD_GB = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767] as const;
/** The compute tier a SKU belongs to: Standard_B* Burstable, Standard_E* MemoryOptimized, the D series GeneralPurpose. */
export const tierOfSku = (sku: string): 'Burstable' | 'GeneralPurpose' | 'MemoryOptimized' =>
  /^Standard_B/i.test(sku) ? 'Burstable' : /^Standard_E/i.test(sku) ? 'MemoryOptimized' : 'GeneralPurpose';
export type HaMode = 'Disabled' | 'SameZone' | 'ZoneRedundant';
/** The plan's `highAvailability`: a mode, or true (zone-redundant, as plans said before modes) and false. */
export const haModeOf = (v: boolean | HaMode): HaMode => (v === true ? 'ZoneRedundant' : v === false ? 'Disabled' : v);

/** What an Azure infra or app step adds: the server's tier and the revision's container. */
const steps = {
  infra: z
    .strictObject({
      sku: z.string().regex(/^Standard_[A-Za-z0-9_]+$/, { error: 'expected an Azure compute SKU such as Standard_D4ds_v5' }).optional(),
      tier: z.enum(['Burstable', 'GeneralPurpose', 'MemoryOptimized']).optional(),
      storageGb: z.int().min(32).max(32767).optional(),
      /** SameZone (the standby in the primary's zone, for regions without zones) or ZoneRedundant; true means ZoneRedundant. */
      highAvailability: z.union([z.boolean(), z.enum(['Disabled', 'SameZone', 'ZoneRedundant'])]).optional(),
      /** The zone of a ZoneRedundant standby; Azure picks one when left out. */
      standbyZone: z.enum(['1', '2', '3']).optional(),
      backupRetentionDays: z.int().min(7).max(35).optional(),
    })
    .superRefine((f, ctx) => {
      // Azure's rules, so a plan Azure would refuse mid-migration is refused when it loads.
      const tier = f.tier ?? (f.sku ? tierOfSku(f.sku) : undefined);
      if (f.sku && f.tier && tierOfSku(f.sku) !== f.tier) {
        ctx.addIssue({ code: 'custom', path: ['sku'], message: `expected a ${f.tier} SKU (${f.tier === 'Burstable' ? 'Standard_B…' : f.tier === 'MemoryOptimized' ? 'Standard_E…' : 'Standard_D…'}), not a ${tierOfSku(f.sku)} one` });
      }
      if (f.storageGb !== undefined && !(PREMIUM_SSD_GB as readonly number[]).includes(f.storageGb)) {
        ctx.addIssue({ code: 'custom', path: ['storageGb'], message: `expected a Premium SSD size in GiB (${PREMIUM_SSD_GB.join(', ')})` });
      }
      const ha = f.highAvailability === undefined ? undefined : haModeOf(f.highAvailability);
      if (tier === 'Burstable' && ha && ha !== 'Disabled') {
        ctx.addIssue({ code: 'custom', path: ['highAvailability'], message: 'expected no high availability on the Burstable tier (Azure has none there; choose GeneralPurpose or MemoryOptimized)' });
      }
      if (f.standbyZone !== undefined && ha !== 'ZoneRedundant') {
        ctx.addIssue({ code: 'custom', path: ['standbyZone'], message: `expected standbyZone only with highAvailability: ZoneRedundant (a SameZone standby is in the primary's zone; this step has ${ha ?? 'no highAvailability'})` });
      }
    }),
  app: z.strictObject({
    image: z.string().min(1).optional(),
    cpu: z.number().positive().max(16).optional(),
    memory: z.string().regex(/^\d+(\.\d+)?Gi$/, { error: 'expected a memory size such as 2Gi' }).optional(),
    minReplicas: z.int().min(0).max(1000).optional(),
    maxReplicas: z.int().min(1).max(1000).optional(),
    /**
     * Container Apps secrets the new revision gets, each a Key Vault reference read by a managed identity
     * (`system`, or a user-assigned identity's ARM id): there is no field for a value, so no credential is
     * ever in the plan, the workflow history or a log.
     */
    secrets: z
      .array(
        z.strictObject({
          name: z.string().regex(SECRET_NAME, { error: 'expected a secret name of lowercase letters, digits, "-" and ".", starting and ending with a letter or digit' }),
          keyVaultUrl: z.string().regex(KEY_VAULT_SECRET_URL, { error: 'expected a Key Vault secret URL such as https://kv-name.vault.azure.net/secrets/db-url' }),
          identity: z.union([z.literal('system'), z.string().regex(USER_IDENTITY)], { error: "expected identity: system, or a user-assigned identity's ARM id (…/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)" }),
        }),
      )
      .optional(),
    /** The first container's environment: a plain value, or `{ secretRef: <secret> }` (an app secret, or one of `secrets`). */
    env: z
      .record(
        z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/, { error: 'expected an environment variable name of letters, digits and _ . -, not starting with a digit' }),
        z.union([z.string(), z.strictObject({ secretRef: z.string().regex(SECRET_NAME, { error: 'expected the name of a secret' }) })]),
      )
      .optional(),
    /** Revision labels: `stable` on the revision serving before the step, `canary` on the new one; each gets its own URL. */
    labels: z.strictObject({ stable: z.string().min(1), canary: z.string().min(1) }).optional(),
    /** Scale rules of the new revision (`az containerapp update --scale-rule-name … --scale-rule-type http --scale-rule-http-concurrency …`). */
    scaleRules: z
      .array(
        z.strictObject({
          name: z.string().regex(SCALE_RULE_NAME, { error: 'expected a scale rule name of lowercase letters, digits, "-" and ".", starting and ending with a letter or digit' }),
          http: z.strictObject({ concurrency: z.int().min(1) }),
        }),
      )
      .optional(),
  }).superRefine((f, ctx) => {
    if (f.minReplicas !== undefined && f.maxReplicas !== undefined && f.minReplicas > f.maxReplicas) {
      ctx.addIssue({ code: 'custom', path: ['maxReplicas'], message: `expected at least minReplicas (${f.minReplicas})` });
    }
    const names = (f.secrets ?? []).map((s) => s.name);
    names.forEach((n, i) => names.indexOf(n) !== i && ctx.addIssue({ code: 'custom', path: ['secrets', i, 'name'], message: `expected each secret once, got "${n}" twice` }));
    for (const [name, v] of Object.entries(f.env ?? {})) {
      if (typeof v === 'string' && CREDENTIAL_ENV.test(name)) {
        ctx.addIssue({ code: 'custom', path: ['env', name], message: `expected { secretRef: <secret> } for ${name}, which looks like a credential, not a literal value; add the value to Key Vault and list it under secrets: with its keyVaultUrl` });
      }
    }
    // The host name's length depends on the app's name, which the resource holds: updateApp checks that part.
    for (const k of ['stable', 'canary'] as const) {
      const problem = f.labels && labelProblem(f.labels[k], '');
      if (problem) ctx.addIssue({ code: 'custom', path: ['labels', k], message: problem });
    }
    if (f.labels && f.labels.stable === f.labels.canary) ctx.addIssue({ code: 'custom', path: ['labels', 'canary'], message: `expected a label other than the stable one ("${f.labels.stable}"): a label names one revision` });
    const rules = (f.scaleRules ?? []).map((r) => r.name);
    rules.forEach((n, i) => rules.indexOf(n) !== i && ctx.addIssue({ code: 'custom', path: ['scaleRules', i, 'name'], message: `expected each scale rule once, got "${n}" twice` }));
  }),
};
export type AzureInfraStep = InfraStep & z.infer<typeof steps.infra>;
export type AzureAppStep = AppStep & z.infer<typeof steps.app>;

/** The resource an Azure operation receives, by kind: the plan loader checked these fields. */
export type AzureResources = ResourcesOf<typeof fields>;
export type AzureResource = AzureResources[keyof AzureResources];
export type AzurePostgres = AzureResources['postgres'];
export type AzureBlob = AzureResources['blob'];
export type AzureTraffic = AzureResources['traffic'];
export type AzureApp = AzureResources['app'];

export const azure: ProviderDefinition = {
  name: 'azure',
  title: 'Azure Resource Manager',
  resources: fields,
  steps,
  describeStep(kind, f) {
    if (kind === 'app') {
      const a = f as z.infer<typeof steps.app>;
      return [
        a.minReplicas !== undefined || a.maxReplicas !== undefined ? `replicas ${a.minReplicas ?? '-'}-${a.maxReplicas ?? '-'}` : undefined,
        ...(a.scaleRules ?? []).map((r) => `scale rule ${r.name} at ${r.http.concurrency} concurrent requests`),
        ...Object.entries(a.env ?? {}).flatMap(([k, v]) => (typeof v === 'string' ? [] : [`${k} from secret ${v.secretRef}${a.secrets?.some((x) => x.name === v.secretRef) ? ' (Key Vault)' : ''}`])),
        a.labels && `labels ${a.labels.stable} (serving revision) and ${a.labels.canary} (new revision)`,
      ].filter((w): w is string => Boolean(w));
    }
    if (kind !== 'infra') return [];
    const ha = f.highAvailability === undefined ? undefined : haModeOf(f.highAvailability as boolean | HaMode);
    return [f.tier, f.sku, f.storageGb !== undefined && `${f.storageGb} GB storage`, ha && (ha === 'Disabled' ? 'HA off' : `HA ${ha}${f.standbyZone ? ` (standby in zone ${f.standbyZone})` : ''}`)].filter(
      (w): w is string => Boolean(w),
    );
  },
  // Azure grows a Flexible Server's storage but never shrinks it: the undo keeps the larger disk (postgres.ts converge).
  describeUndo(kind, f) {
    return kind === 'infra' && f.storageGb !== undefined ? `storage cannot shrink back: it stays at ${f.storageGb} GB if it grew` : undefined;
  },
  check(resource) {
    const db = resource as AzurePostgres;
    if (db.kind === 'postgres' && db.replication === 'logical') {
      const problems: [string[], string][] = [];
      if (!db.connection) problems.push([['replication'], `expected a connection (a Key Vault reference to its connection string) with replication: logical, which reaches the database through it, got none`]);
      if (db.promote !== undefined) problems.push([['promote'], 'expected no promote with replication: logical (a server filled by logical replication is no replica to promote)']);
      return problems;
    }
    const r = resource as AzureTraffic;
    if (r.kind !== 'traffic') return [];
    if (r.containerApp) {
      const app = r.containerApp;
      return (['stable', 'canary'] as const).flatMap((f) => {
        const problem = revisionNameProblem(r[f], app);
        return problem ? [[[f], problem] as [string[], string]] : [];
      });
    }
    return (['profile', 'originGroup'] as const)
      .filter((f) => !r[f])
      .map((f) => [[f], `expected ${f === 'profile' ? 'the Front Door profile' : 'the origin group'} (or containerApp, to shift between revisions), got nothing`]);
  },
  // Any other Azure resource, by its ARM id (the resource step, activities/azure/resource.ts).
  armResources: true,
  // A point-in-time restore to a scratch server, compared through the database's connection (restore.ts).
  provesRestore: (r) => r.kind === 'postgres' && r.connection !== undefined,
  secrets: { keyVault: z.strictObject({ vault: z.string().min(1), secret: z.string().min(1) }) },
  // A switched-over replica is reversed by a second switchover: its old primary stayed its physical
  // replica, so a planned switchover back loses nothing; a standalone one cannot replicate back. A server
  // filled by logical replication (replication: logical) recovers by the sandbox's reverse sync instead,
  // on the two servers' connections (logical.ts).
  recovery: ['switch-back', 'reverse-sync'],
  recoveryProblem(resource, recovery) {
    const r = resource as AzurePostgres;
    if (r.kind !== 'postgres') return undefined;
    if (recovery === 'reverse-sync') {
      return r.replication === 'logical'
        ? undefined
        : `expected replication: logical on ${r.name} for a reverse sync (a read replica has no logical replication to turn around), got ${r.replication ?? 'replica (the default)'}; set replication: logical on ${r.name} to fill it by logical replication`;
    }
    if (recovery !== 'switch-back') return undefined;
    if (r.replication === 'logical') {
      return `expected a read replica (replication: replica) for ${r.name}, whose point of no return recovers by a switch back, got replication: logical, which has no switchover to reverse; leave pointOfNoReturn out of this plan`;
    }
    if (r.promote !== 'standalone') return undefined;
    return `expected promote: switchover on ${r.name} for a point of no return whose recovery is a switch back, got promote: standalone, which Azure can never reverse; remove promote: standalone from ${r.name} or leave pointOfNoReturn out of this plan`;
  },
  operations: async () => (await import('./index')).createAzureProvider(),
};
