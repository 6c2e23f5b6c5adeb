// Container Apps: the runbook's blue-green deploy (`az containerapp update` / `revision copy` with the
// new image and size, then `ingress traffic set --revision-weight`). The new revision is named after the
// plan's version, so a retried step finds the revision it already created instead of making another,
// and it takes no traffic until a traffic step gives it some.
import { ContainerAppsAPIClient, restorePoller, type Configuration, type ContainerApp, type EnvironmentVar, type Revision, type ScaleRule, type Secret, type Template, type TrafficWeight } from '@azure/arm-appcontainers';
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import { labelProblem, REVISION_NAME_MAX } from './provider';
import type { AzureApp, AzureTraffic, AzureAppStep } from './provider';
import type { AppStep } from '../../plan/types';
import type { Json, StepInput, StepOutcome, UndoInput } from '../types';
import { armScope, azureCall, azureFind, Journal, resourceOf, runOperation, waitFor, type AzureContext, type LroOptions, type ResumablePoller } from './common';

interface App {
  client: ContainerAppsAPIClient;
  resourceGroup: string;
  name: string;
}

function app(az: AzureContext, resource: AzureApp | AzureTraffic): App {
  const { subscription, resourceGroup } = armScope(resource);
  if (!resource.containerApp) throw ApplicationFailure.nonRetryable(`${resource.name} names no Container App; add containerApp: to it in the plan`, 'NonRetryable');
  return { client: new ContainerAppsAPIClient(az.credential(), subscription, az.clientOptions()), resourceGroup, name: resource.containerApp };
}

/**
 * Starts a PATCH of the Container App, or, given a previous attempt's serialized poller, polls that one on.
 * arm-appcontainers 4 (generated from TypeSpec, with core-lro 3) has no `resumeFrom` option: its update would
 * send the PATCH again, so a resumed attempt restores the poller with restorePoller instead.
 */
async function patchApp(a: App, patch: ContainerApp, o: LroOptions): Promise<ResumablePoller<ContainerApp>> {
  const options = { updateIntervalInMs: o.updateIntervalInMs };
  const poller = o.resumeFrom ? restorePoller(a.client, o.resumeFrom, a.client.containerApps.update, options) : a.client.containerApps.update(a.resourceGroup, a.name, patch, options);
  await poller.submitted();
  return {
    pollUntilDone: (p) => poller.pollUntilDone(p),
    onProgress: (callback) => poller.onProgress(callback),
    isDone: () => poller.isDone,
    poll: async (p) => {
      await poller.poll(p);
    },
    getResult: () => poller.result,
    // core-lro 3 keeps the operation's status URL in its state's config, where runOperation looks it up.
    getOperationState: () => poller.operationState as unknown as ReturnType<ResumablePoller<ContainerApp>['getOperationState']>,
    // What poller.serialize() resolves to, synchronously (the SDK's own deprecated beginUpdate poller does the
    // same), so every progress checkpoint is saved before the next poll; restorePoller reads it back.
    toString: () => JSON.stringify({ state: poller.operationState }),
  };
}

const getApp = (a: App) => azureCall(`reading Container App ${a.name}`, () => a.client.containerApps.get(a.resourceGroup, a.name));

/**
 * The secrets and registries an update must send back: Azure drops from the app what a PATCH's
 * configuration leaves out (azd and the Maven plugin send them on every update for that reason), and a
 * GET shows secrets by name only, so their values come from listSecrets. Key Vault references go back
 * as references. The values go into the request only, never into a heartbeat, result or message.
 */
async function keptConfiguration(a: App, current: ContainerApp): Promise<Pick<Configuration, 'secrets' | 'registries'>> {
  const registries = current.configuration?.registries ?? [];
  if (!current.configuration?.secrets?.length) return { secrets: [], registries };
  const listed = await azureCall(`reading the secrets of Container App ${a.name} (to send them back with the update)`, () => a.client.containerApps.listSecrets(a.resourceGroup, a.name));
  const secrets: Secret[] = (listed.value ?? []).map((x) =>
    x.keyVaultUrl ? { name: x.name, keyVaultUrl: x.keyVaultUrl, ...(x.identity ? { identity: x.identity } : {}) } : { name: x.name, value: x.value },
  );
  return { secrets, registries };
}

/**
 * One PATCH of the app, with its secrets and registries sent back (see keptConfiguration); `added` are
 * Key Vault references that replace same-named secrets or join them.
 */
async function appPatch(a: App, current: ContainerApp, configuration: Configuration, template?: Template, added: Secret[] = []): Promise<ContainerApp> {
  const kept = await keptConfiguration(a, current);
  const secrets = [...(kept.secrets ?? []).filter((x) => !added.some((n) => n.name === x.name)), ...added];
  return { location: current.location, configuration: { ...configuration, ...kept, secrets }, ...(template ? { template } : {}) };
}

/** The plan's Key Vault references as Container Apps secrets: no value, only where Azure reads it from. */
const keyVaultSecrets = (step: AzureAppStep): Secret[] => (step.secrets ?? []).map((x) => ({ name: x.name, keyVaultUrl: x.keyVaultUrl, identity: x.identity }));

/** The container's env with the plan's entries in place of same-named ones (a value or a `secretref:`). */
function withEnv(env: EnvironmentVar[] | undefined, plan: AzureAppStep['env']): EnvironmentVar[] | undefined {
  if (!plan) return env;
  const entries = Object.entries(plan).map(([name, v]): EnvironmentVar => (typeof v === 'string' ? { name, value: v } : { name, secretRef: v.secretRef }));
  return [...(env ?? []).filter((e) => !(e.name && e.name in plan)), ...entries];
}

/** The scale rules with the plan's HTTP rules in place of same-named ones. */
function withRules(rules: ScaleRule[] | undefined, plan: AzureAppStep['scaleRules']): ScaleRule[] | undefined {
  if (!plan) return rules;
  const entries = plan.map((r): ScaleRule => ({ name: r.name, http: { metadata: { concurrentRequests: String(r.http.concurrency) } } }));
  return [...(rules ?? []).filter((r) => !plan.some((p) => p.name === r.name)), ...entries];
}

/**
 * The traffic with the step's labels: `stable` on the revision serving before, `canary` on the new one
 * (with weight 0: a label gives a revision its own URL, not a share). A label names one revision, so
 * it leaves any entry that had it; an entry left with no label and no weight is dropped.
 */
export function labelled(traffic: TrafficWeight[], labels: { stable: string; canary: string }, stable: string | undefined, canary: string): TrafficWeight[] {
  const mine = new Set([labels.stable, labels.canary]);
  const out = traffic
    .map((t) => (t.label && mine.has(t.label) ? { revisionName: t.revisionName, weight: t.weight ?? 0 } : { ...t }))
    .filter((t) => t.label || (t.weight ?? 0) > 0 || t.latestRevision);
  const put = (revisionName: string, label: string) => {
    const free = out.find((t) => t.revisionName === revisionName && !t.label);
    if (free) free.label = label;
    else out.push({ revisionName, weight: 0, label });
  };
  if (stable) put(stable, labels.stable);
  put(canary, labels.canary);
  return out;
}

/** A label's own address: `<app>---<label>.<environment domain>`, from the app's host name. */
const labelUrl = (fqdn: string | undefined, app: string, label: string) => (fqdn?.startsWith(`${app}.`) ? `https://${app}---${label}${fqdn.slice(app.length)}` : undefined);

/**
 * The revision suffix for a version, as Azure accepts it: lowercase letters, digits and single dashes
 * ("--" separates the app from the suffix, so a suffix may not hold one), starting with a letter and
 * ending with a letter or digit, and `<app>--<suffix>` at most 54 characters. A version too long for
 * that keeps its start and ends with a hash of the whole, so two long versions never share a revision.
 */
export function revisionSuffix(version: string, appName: string): string {
  const s = version.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  const full = /^[a-z]/.test(s) ? s : `v${s}`;
  const room = REVISION_NAME_MAX - appName.length - 2;
  if (full.length <= room) return full;
  const hash = createHash('sha256').update(version).digest('hex').slice(0, 6);
  return `${full.slice(0, room - hash.length - 1).replace(/-+$/, '')}-${hash}`;
}

const RUNNING = new Set(['Running', 'RunningAtMaxScale']);
/** How long a Degraded revision is waited on before the step fails. */
export const DEGRADED_WAIT_MS = 10 * 60_000;

/**
 * Waits until a revision is provisioned and healthy; a failed one needs a fix in the image or the plan.
 * `Degraded` (some replicas not ready) is often a revision still scaling or a probe still warming up,
 * so it is waited out, up to the provider's bound (degradedWaitMs), before it counts as a failure.
 */
async function revisionReady(az: AzureContext, a: App, revision: string): Promise<Revision> {
  const bound = az.options.degradedWaitMs ?? DEGRADED_WAIT_MS;
  let degradedSince: number | undefined;
  return waitFor(
    az,
    `revision ${revision} healthy`,
    () => a.client.containerAppsRevisions.getRevision(a.resourceGroup, a.name, revision),
    (r) => r.provisioningState === 'Provisioned' && r.healthState !== 'Unhealthy' && (r.runningState === undefined || RUNNING.has(r.runningState)),
    (r) => {
      if (r.provisioningState === 'Failed' || r.runningState === 'Failed') {
        return `revision ${revision} of ${a.name} failed to start (${r.provisioningError ?? r.runningState ?? r.provisioningState}); fix the image or its settings and resume`;
      }
      if (r.runningState !== 'Degraded') return (degradedSince = undefined);
      degradedSince ??= Date.now();
      return Date.now() - degradedSince >= bound
        ? `revision ${revision} of ${a.name} stayed Degraded for ${bound >= 1000 ? `${Math.round(bound / 1000)} s` : `${bound} ms`} (some replicas are not ready); look at its replicas' logs, fix the image or its settings and resume`
        : undefined;
    },
    (r) => ({ provisioning: r.provisioningState ?? 'unknown', health: r.healthState ?? 'unknown', running: r.runningState ?? 'unknown' }),
  );
}

/** The traffic as stored, with "latest revision" entries pinned to that revision, so a new revision gets none. */
function pinned(traffic: TrafficWeight[] | undefined, latest: string | undefined): TrafficWeight[] {
  const list = traffic?.length ? traffic : [{ latestRevision: true, weight: 100 }];
  return list.map((t) => (t.latestRevision && latest ? { revisionName: latest, weight: t.weight ?? 0, ...(t.label ? { label: t.label } : {}) } : { ...t }));
}

interface AppBefore {
  revision?: string;
  traffic: TrafficWeight[];
  mode?: string;
}

export async function updateApp(az: AzureContext, { step, resources }: StepInput<AzureAppStep>): Promise<StepOutcome> {
  const resource = resourceOf(resources, step.resource, 'app', 'app resource');
  const a = app(az, resource);
  const journal = new Journal();
  const current = await getApp(a);
  const before = (await journal.before(async () => ({
    revision: current.latestRevisionName,
    traffic: (current.configuration?.ingress?.traffic ?? []) as Json,
    mode: current.configuration?.activeRevisionsMode,
  }) as Json)) as unknown as AppBefore;

  const suffix = revisionSuffix(step.version, a.name);
  const revision = `${a.name}--${suffix}`;
  const exists = !journal.isPending('app:revision') && (await azureFind(`reading revision ${revision}`, () => a.client.containerAppsRevisions.getRevision(a.resourceGroup, a.name, revision)));
  let resumed = false;
  if (!exists) {
    const containers = current.template?.containers ?? [];
    if (!containers.length) throw ApplicationFailure.nonRetryable(`Container App ${a.name} has no container to update; deploy it once before migrating`, 'NonRetryable');
    const [first, ...rest] = containers;
    const labelIssue = step.labels && [step.labels.stable, step.labels.canary].map((l) => labelProblem(l, a.name)).find(Boolean);
    if (labelIssue) throw ApplicationFailure.nonRetryable(`${step.resource}: ${labelIssue}; choose a shorter label in the plan`, 'UserError');
    if (step.labels && !current.configuration?.ingress) {
      throw ApplicationFailure.nonRetryable(`${step.resource}: Container App ${a.name} has no ingress, so its revisions have no URLs to label; enable ingress on it or remove labels: from the step`, 'UserError');
    }
    // A secretref must name a secret the PATCH carries, or Azure refuses the whole update: say which, before sending.
    const added = keyVaultSecrets(step);
    const known = new Set([...(current.configuration?.secrets ?? []).map((x) => x.name), ...added.map((x) => x.name)]);
    const dangling = Object.entries(step.env ?? {}).find(([, v]) => typeof v !== 'string' && !known.has(v.secretRef));
    if (dangling) {
      const ref = (dangling[1] as { secretRef: string }).secretRef;
      throw ApplicationFailure.nonRetryable(`${step.resource}: env ${dangling[0]} refers to secret ${ref}, which neither Container App ${a.name} nor the step's secrets: has; add it under secrets: with its keyVaultUrl and identity`, 'UserError');
    }
    const traffic = current.configuration?.ingress ? pinned(current.configuration.ingress.traffic, before.revision) : undefined;
    const patch = await appPatch(
      a,
      current,
      {
        // Two revisions serve side by side only in Multiple mode; Single would move all traffic at once.
        activeRevisionsMode: 'Multiple',
        ...(current.configuration?.ingress && traffic ? { ingress: { ...current.configuration.ingress, traffic: step.labels ? labelled(traffic, step.labels, before.revision, revision) : traffic } } : {}),
      },
      {
        ...current.template,
        revisionSuffix: suffix,
        containers: [
          {
            ...first,
            ...(step.image ? { image: step.image } : {}),
            ...(step.env ? { env: withEnv(first!.env, step.env) } : {}),
            resources: { ...first!.resources, ...(step.cpu !== undefined ? { cpu: step.cpu } : {}), ...(step.memory ? { memory: step.memory } : {}) },
          },
          ...rest,
        ],
        scale: {
          ...current.template?.scale,
          ...(step.minReplicas !== undefined ? { minReplicas: step.minReplicas } : {}),
          ...(step.maxReplicas !== undefined ? { maxReplicas: step.maxReplicas } : {}),
          ...(step.scaleRules ? { rules: withRules(current.template?.scale?.rules, step.scaleRules) } : {}),
        },
      },
      added,
    );
    const r = await runOperation(az, journal, 'app:revision', `creating revision ${revision} of ${a.name}`, (o) => patchApp(a, patch, o));
    resumed = r.resumed;
    journal.note('created', true);
  }
  // A retry finds the revision an earlier attempt created: the journal says whose it is.
  const created = !exists || journal.state.notes.created === true;
  const rev = await revisionReady(az, a, revision);
  const image = rev.template?.containers?.[0]?.image ?? step.image ?? '';
  // What the step wired in, by name only: a secret's value is never read here.
  const wired = [
    ...Object.entries(step.env ?? {}).flatMap(([k, v]) => (typeof v === 'string' ? [] : [`${k} from secret ${v.secretRef}`])),
    ...(step.scaleRules ?? []).map((r) => `scale rule ${r.name} at ${r.http.concurrency} concurrent requests`),
    ...(step.labels ? [`labels ${step.labels.stable} (${before.revision ?? 'none'}) and ${step.labels.canary} (${revision})`] : []),
  ];
  const urls = step.labels ? Object.fromEntries((['stable', 'canary'] as const).flatMap((k) => {
    const url = labelUrl(current.configuration?.ingress?.fqdn, a.name, step.labels![k]);
    return url ? [[`${step.resource}.${k}Url`, url]] : [];
  })) : {};
  return {
    summary: `${created ? 'Deployed revision' : 'Revision already there'} ${revision} of ${a.name} (${image}${step.cpu !== undefined ? `, ${step.cpu} vCPU` : ''}${step.memory ? `, ${step.memory}` : ''}), healthy with ${rev.replicas ?? 0} replicas and no traffic yet${wired.length ? `; ${wired.join(', ')}` : ''}${resumed ? '; resumed the deployment a previous attempt started' : ''}`,
    figures: { [`${step.resource}.revision`]: revision, [`${step.resource}.replicas`]: rev.replicas ?? 0, [`${step.resource}.healthy`]: rev.healthState !== 'Unhealthy', ...urls },
    undo: { revision, created, before: before as unknown as Json },
  };
}

/** Read-only: the app's revision, traffic and mode now, and whether the step's revision exists already. */
export async function observeApp(az: AzureContext, { step, resources }: StepInput<AppStep>): Promise<Json> {
  const a = app(az, resourceOf(resources, step.resource, 'app', 'app resource'));
  const current = await getApp(a);
  const revision = `${a.name}--${revisionSuffix(step.version, a.name)}`;
  const existing = await azureFind(`reading revision ${revision}`, () => a.client.containerAppsRevisions.getRevision(a.resourceGroup, a.name, revision));
  return {
    revision: current.latestRevisionName ?? null,
    traffic: (current.configuration?.ingress?.traffic ?? []) as Json,
    mode: current.configuration?.activeRevisionsMode ?? null,
    revisionExisted: existing !== undefined,
  };
}

/** Traffic back to the previous revision and the new one deactivated; revision mode stays Multiple (see below). */
export async function undoApp(az: AzureContext, { step, resources, undo, before }: UndoInput): Promise<StepOutcome> {
  if (step.kind !== 'app') throw new Error(`undoApp got a ${step.kind} step`);
  const a = app(az, resourceOf(resources, step.resource, 'app', 'app resource'));
  const recorded = (undo ?? {}) as { revision?: string; created?: boolean; before?: AppBefore };
  // Observed before the first attempt: a retry that lost its journal sees its own revision as "there before".
  const observed = before as (AppBefore & { revisionExisted?: boolean }) | undefined;
  const u = observed && typeof observed.revisionExisted === 'boolean'
    ? { revision: recorded.revision, created: !observed.revisionExisted, before: { revision: observed.revision ?? undefined, traffic: observed.traffic ?? [], mode: observed.mode ?? undefined } }
    : recorded;
  const revision = u.revision ?? `${a.name}--${revisionSuffix(step.version, a.name)}`;
  const journal = new Journal();
  const current = await getApp(a);
  const previous = u.before ? pinned(u.before.traffic, u.before.revision) : undefined;
  if (previous && current.configuration?.ingress && !sameTraffic(pinned(current.configuration.ingress.traffic, current.latestRevisionName), previous)) {
    const patch = await appPatch(a, current, { ingress: { ...current.configuration.ingress, traffic: previous } });
    await runOperation(az, journal, 'undo:traffic', `restoring the traffic of ${a.name}`, (o) =>
      patchApp(a, patch, o),
    );
  }
  let deactivated = false;
  if (u.created !== false) {
    const rev = await azureFind(`reading revision ${revision}`, () => a.client.containerAppsRevisions.getRevision(a.resourceGroup, a.name, revision));
    if (rev?.active) {
      await azureCall(`deactivating revision ${revision}`, () => a.client.containerAppsRevisions.deactivateRevision(a.resourceGroup, a.name, revision));
      deactivated = true;
    }
  }
  return {
    summary:
      `${a.name}: traffic back on ${u.before?.revision ?? 'the previous revision'}` +
      (deactivated ? `, revision ${revision} deactivated` : `, revision ${revision} already inactive`) +
      // Putting Single mode back would hand all traffic to the newest revision, the one just rolled back.
      (u.before?.mode === 'Single' ? '; revision mode left Multiple, since Single would send everything to the newest revision' : ''),
    figures: { [`${step.resource}.revisionDeactivated`]: deactivated },
  };
}

export async function checkApp(az: AzureContext, resource: AzureApp): Promise<StepOutcome> {
  const a = app(az, resource);
  const c = await getApp(a);
  if (c.provisioningState !== 'Succeeded') throw ApplicationFailure.retryable(`Container App ${a.name} is ${c.provisioningState}; waiting for it`, 'AzureTransient');
  const rev = c.latestReadyRevisionName ? await revisionReady(az, a, c.latestReadyRevisionName) : undefined;
  return {
    summary: `${resource.name} healthy: Container App ${a.name} ${c.runningStatus ?? 'running'}, revision ${rev?.name ?? c.latestRevisionName} ${rev?.healthState ?? ''} with ${rev?.replicas ?? 0} replicas`.replace(/\s+/g, ' '),
    figures: { [`${resource.name}.revision`]: rev?.name ?? c.latestRevisionName ?? '', [`${resource.name}.replicas`]: rev?.replicas ?? 0 },
  };
}

// --- revision traffic: a traffic resource with containerApp shifts between two revisions -------------

const sameTraffic = (a: TrafficWeight[], b: TrafficWeight[]) => {
  const key = (l: TrafficWeight[]) => JSON.stringify(l.filter((t) => (t.weight ?? 0) > 0 || t.label).map((t) => [t.revisionName, t.weight ?? 0, t.label ?? '']).sort());
  return key(a) === key(b);
};

export interface RevisionWeights {
  stable: number;
  canary: number;
}

function revisionWeights(traffic: TrafficWeight[], r: AzureTraffic): RevisionWeights {
  const sum = (name: string) => traffic.filter((t) => t.revisionName === name).reduce((n, t) => n + (t.weight ?? 0), 0);
  return { stable: sum(r.stable), canary: sum(r.canary) };
}

export async function readRevisionWeights(az: AzureContext, r: AzureTraffic): Promise<RevisionWeights> {
  const a = app(az, r);
  const c = await getApp(a);
  return revisionWeights(pinned(c.configuration?.ingress?.traffic, c.latestRevisionName), r);
}

/** Sets the revision split; labels and other revisions' entries are kept only when the split leaves them room. */
export async function shiftRevisions(
  az: AzureContext,
  r: AzureTraffic,
  journal: Journal,
  percent: number,
  phase: string,
): Promise<{ before: TrafficWeight[]; changed: boolean; resumed: boolean; canaryFqdn?: string; probePath: string }> {
  const a = app(az, r);
  const c = await getApp(a);
  if (!c.configuration?.ingress) throw ApplicationFailure.nonRetryable(`Container App ${a.name} has no ingress, so it has no traffic to shift; enable ingress or use Front Door`, 'NonRetryable');
  const now = pinned(c.configuration.ingress.traffic, c.latestRevisionName);
  const before = (await journal.before(async () => now as unknown as Json)) as unknown as TrafficWeight[];
  const canary = percent > 0 ? await revisionReady(az, a, r.canary) : undefined;
  // Revision labels stay where they are (each is a revision's own URL, which a shift must not take away):
  // on the stable and canary entries, and as weight-0 entries for any other revision.
  const labelOf = (rev: string) => now.find((t) => t.revisionName === rev && t.label)?.label;
  const withLabel = (revisionName: string, weight: number): TrafficWeight => {
    const label = labelOf(revisionName);
    return { revisionName, weight, ...(label ? { label } : {}) };
  };
  const want: TrafficWeight[] = [withLabel(r.stable, 100 - percent), withLabel(r.canary, percent)];
  for (const t of now) if (t.label && !want.some((w) => w.label === t.label)) want.push({ revisionName: t.revisionName, weight: 0, label: t.label });
  const op = `${phase}:revisions`;
  let changed = false;
  let resumed = false;
  if (!sameTraffic(now, want) || journal.isPending(op)) {
    const patch = await appPatch(a, c, { ingress: { ...c.configuration.ingress, traffic: want } });
    const res = await runOperation(az, journal, op, `setting the revision weights of ${a.name}`, (o) => patchApp(a, patch, o));
    changed = !res.skipped;
    resumed = res.resumed;
  }
  const after = await readRevisionWeights(az, r);
  if (after.canary !== percent || after.stable !== 100 - percent) {
    throw new Error(`Container App ${a.name} reports ${r.stable} ${after.stable}% / ${r.canary} ${after.canary}% after setting ${100 - percent}% / ${percent}%; retrying`);
  }
  const probe = c.template?.containers?.[0]?.probes?.find((p) => p.type === 'Liveness' || p.type === 'Readiness')?.httpGet?.path;
  return { before, changed, resumed, canaryFqdn: canary?.fqdn, probePath: probe ?? '/' };
}

/** The revision traffic as stored, "latest revision" pinned (the shape a shift records as before). */
export async function currentRevisionTraffic(az: AzureContext, r: AzureTraffic): Promise<TrafficWeight[]> {
  const c = await getApp(app(az, r));
  return pinned(c.configuration?.ingress?.traffic, c.latestRevisionName);
}

/** Puts back a traffic list recorded before the first shift. */
export async function restoreRevisions(az: AzureContext, r: AzureTraffic, journal: Journal, previous: TrafficWeight[]): Promise<boolean> {
  const a = app(az, r);
  const c = await getApp(a);
  if (sameTraffic(pinned(c.configuration?.ingress?.traffic, c.latestRevisionName), previous) && !journal.isPending('undo:revisions')) return false;
  const patch = await appPatch(a, c, { ingress: { ...c.configuration!.ingress, traffic: previous } });
  await runOperation(az, journal, 'undo:revisions', `restoring the revision weights of ${a.name}`, (o) => patchApp(a, patch, o));
  return true;
}

export async function canaryRevision(az: AzureContext, r: AzureTraffic): Promise<{ revision?: Revision; probePath: string; app: { id: string; location?: string } }> {
  const a = app(az, r);
  const c = await getApp(a);
  const revision = await azureFind(`reading revision ${r.canary}`, () => a.client.containerAppsRevisions.getRevision(a.resourceGroup, a.name, r.canary));
  const probe = c.template?.containers?.[0]?.probes?.find((p) => p.type === 'Liveness' || p.type === 'Readiness')?.httpGet?.path;
  const { subscription, resourceGroup } = armScope(r);
  const id = c.id ?? `/subscriptions/${subscription}/resourceGroups/${resourceGroup}/providers/Microsoft.App/containerApps/${a.name}`;
  return { revision, probePath: probe ?? '/', app: { id, location: c.location } };
}

// --- finalize: blue retired once green has everything, brought back by the rollback ------------------

/** Deactivates the stable (blue) revision, which must serve no traffic by now; a second run finds it inactive. */
export async function retireStableRevision(az: AzureContext, r: AzureTraffic): Promise<StepOutcome> {
  const a = app(az, r);
  const w = await readRevisionWeights(az, r);
  if (w.stable > 0) {
    throw ApplicationFailure.nonRetryable(
      `${r.name}: revision ${r.stable} still gets ${w.stable}% of the traffic, so finalize cannot deactivate it; shift everything to ${r.canary} (a traffic step at 100) or roll back, then resume`,
      'NonRetryable',
    );
  }
  const rev = await azureFind(`reading revision ${r.stable}`, () => a.client.containerAppsRevisions.getRevision(a.resourceGroup, a.name, r.stable));
  if (!rev || rev.active === false) {
    return { summary: `${r.name}: revision ${r.stable} ${rev ? 'already inactive' : 'no longer exists'}; ${r.canary} serves everything`, figures: { [`${r.name}.stableDeactivated`]: false }, undo: { deactivated: false } };
  }
  await azureCall(`deactivating revision ${r.stable}`, () => a.client.containerAppsRevisions.deactivateRevision(a.resourceGroup, a.name, r.stable));
  return { summary: `${r.name}: revision ${r.stable} deactivated; ${r.canary} serves everything`, figures: { [`${r.name}.stableDeactivated`]: true }, undo: { deactivated: true } };
}

/** Reactivates the stable revision finalize deactivated (or, without its record, an inactive one), healthy before the traffic goes back to it. */
export async function reactivateStableRevision(az: AzureContext, input: UndoInput, r: AzureTraffic): Promise<StepOutcome> {
  const a = app(az, r);
  if ((input.undo as { deactivated?: boolean } | undefined)?.deactivated === false) return { summary: `${r.name}: finalize deactivated nothing`, figures: {} };
  const rev = await azureFind(`reading revision ${r.stable}`, () => a.client.containerAppsRevisions.getRevision(a.resourceGroup, a.name, r.stable));
  if (!rev) throw ApplicationFailure.nonRetryable(`${r.name}: revision ${r.stable} no longer exists, so the rollback cannot send traffic back to it; deploy it again (or restore it from its image), then resume`, 'NonRetryable');
  const was = rev.active !== false;
  if (!was) await azureCall(`activating revision ${r.stable}`, () => a.client.containerAppsRevisions.activateRevision(a.resourceGroup, a.name, r.stable));
  const ready = await revisionReady(az, a, r.stable);
  return { summary: `${r.name}: revision ${r.stable} ${was ? 'already active' : 'reactivated'}, healthy with ${ready.replicas ?? 0} replicas`, figures: { [`${r.name}.stableReactivated`]: !was } };
}
