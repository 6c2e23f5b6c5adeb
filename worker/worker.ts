// The worker runs the migration workflow and the provider activities on the `tiershift` task queue; with
// `--task-queue`, only the activities of the resources a plan pins to that queue (plan/queues.ts).
import { bundleWorkflowCode, NativeConnection, Worker, type WorkerDeploymentOptions, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities, type Providers } from '../activities';
import { loadProviders } from '../activities/registry';
import { createIdentityActivities, workerIdentityPolicy, type WorkerIdentityPolicy } from '../activities/identity';
import { readState, sandboxHome } from '../contract/home';
import { resolveConnection, type ConnectionFlags } from '../contract/connection';
import { loadCodecKeys, tiershiftDataConverter } from '../codec';
import type { DataConverter } from '@temporalio/common';
import { TASK_QUEUE } from '../contract/status';
import { UserError } from '../contract/errors';
import { taskQueueName } from '../plan/schema';
import { HEARTBEAT_THROTTLE_MS } from '../contract/progress';
import { faultInterceptor, faultsFromEnv, type FaultInjection } from './chaos';
import { redactionInterceptor } from './redaction';
import { countMigrations, metricsAddress, serveMetrics } from './metrics';

import { prebuiltBundle, workflowBundleOptions } from './bundle';
import { startTracing, stopTracing, type Tracing } from '../contract/tracing';
import { tracingInterceptor, workflowSpanSinks } from './tracing';
import { removeWorkerPidFile, writeWorkerPidFile } from './pid-file';
import { deploymentOptions, type DeploymentFlags } from './deployment';

export { WORKFLOWS_PATH } from './bundle';

const bundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();
/**
 * Bundling takes seconds; a process that starts several workers (tests, fleets) bundles once. The
 * failure converter runs inside the workflow sandbox, so encrypted history needs its own bundle.
 */
export function workflowBundle(failureConverterPath?: string): Promise<WorkflowBundleWithSourceMap> {
  const key = failureConverterPath ?? '';
  let bundle = bundles.get(key);
  if (!bundle) {
    bundle = bundleWorkflowCode(workflowBundleOptions(quietBundlerLogger, failureConverterPath));
    bundles.set(key, bundle);
  }
  return bundle;
}

const quietBundlerLogger = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (message: string) => console.warn(message),
  error: (message: string) => console.error(message),
  log: () => undefined,
};

export interface WorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  taskQueue?: string;
  providers?: Providers;
  /** Replaces the provider activities entirely (workflow tests on the time-skipping server). */
  activities?: object;
  identity?: string;
  /** Chaos rehearsal: every activity fails its first attempts (see chaos.ts). */
  faults?: FaultInjection;
  /** Defaults to the configured codec (codec/keys.ts); clients must use the same one. */
  dataConverter?: DataConverter;
  /**
   * Which identity providers this worker trusts and whether it runs unverified rehearsals. Defaults to
   * the environment's (TIERSHIFT_TRUSTED_ISSUERS, TIERSHIFT_ALLOW_UNVERIFIED) with no sandbox trust.
   */
  identityPolicy?: WorkerIdentityPolicy;
  /**
   * Activities only, no workflows: a worker on a resource's own task queue (plan/queues.ts). No workflow
   * is ever started there, so it need not bundle the workflow code, and starts in a fraction of the time.
   */
  activitiesOnly?: boolean;
  /** A version of a Worker Deployment (deployment.ts); without it the worker is unversioned. */
  deployment?: WorkerDeploymentOptions;
  /** OpenTelemetry traces (contract/tracing.ts): spans for the activities, and the workflow's sent on. */
  tracing?: Tracing;
}

export async function createWorker(opts: WorkerOptions): Promise<Worker> {
  const dataConverter = opts.dataConverter ?? tiershiftDataConverter();
  const prebuilt = prebuiltBundle(dataConverter.failureConverterPath);
  return Worker.create({
    connection: opts.connection,
    dataConverter,
    namespace: opts.namespace ?? 'default',
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    // Bundled ahead of time when this is the compiled worker (polling in about a second), else here; a
    // worker of activities only runs no workflow and needs none.
    ...(opts.activitiesOnly ? {} : { workflowBundle: prebuilt ? { codePath: prebuilt } : await workflowBundle(dataConverter.failureConverterPath) }),
    activities: {
      // Decisions are verified by this worker whatever activities it runs for the steps.
      ...createIdentityActivities(opts.identityPolicy ?? workerIdentityPolicy({ sandbox: false })),
      ...(opts.activities ?? createActivities(opts.providers ?? (await loadProviders()))),
    },
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...(opts.deployment ? { workerDeploymentOptions: opts.deployment } : {}),
    // A heartbeat carries the step's progress, which `watch` and the UI read from Temporal: sent at most
    // every 5 s rather than every 0.8 x the heartbeat timeout (48 s for a 1m timeout), so it stays live.
    maxHeartbeatThrottleInterval: HEARTBEAT_THROTTLE_MS,
    defaultHeartbeatThrottleInterval: HEARTBEAT_THROTTLE_MS,
    // Redaction outside the faults: it also sees what an injected fault throws. Tracing outside both: the
    // error its span records is the redacted one.
    interceptors: { activity: [...(opts.tracing ? [tracingInterceptor(opts.tracing)] : []), redactionInterceptor, ...(opts.faults ? [faultInterceptor(opts.faults)] : [])] },
    sinks: workflowSpanSinks(opts.tracing),
  });
}

/**
 * The provider activities, callable before the providers have loaded: importing their SDKs (Azure's above all)
 * is a good part of a worker's start, and a worker that already polls can take a workflow task meanwhile. Each
 * activity waits for `load()`, which runWorker starts as soon as the worker runs; a failure to load fails it.
 */
function activitiesOnceLoaded(loadAll: () => Promise<Providers>): { activities: Record<string, (input: never) => Promise<unknown>>; load: () => Promise<unknown> } {
  type Activity = (input: never) => Promise<unknown>;
  let loaded: Promise<Record<string, Activity>> | undefined;
  const load = () => (loaded ??= loadAll().then((providers) => createActivities(providers) as Record<string, Activity>));
  // Which activities there are does not depend on the providers: the same functions are made for none. (That
  // also sets no secret resolvers, until the real ones, made after it, set theirs.)
  const names = Object.keys(createActivities({}));
  return { activities: Object.fromEntries(names.map((name) => [name, async (input: never) => (await load())[name]!(input)])), load };
}

/** `tiershift worker`: runs until SIGINT/SIGTERM, then finishes in-flight tasks and exits. */
export async function runWorker(flags: ConnectionFlags & DeploymentFlags & { metrics?: string; taskQueue?: string }, log: (line: string) => void = console.log): Promise<void> {
  // Checked before connecting, like a plan's: a name Temporal would refuse is the user's to fix.
  if (flags.taskQueue !== undefined && !taskQueueName.safeParse(flags.taskQueue).success) {
    throw new UserError(`--task-queue takes up to 100 letters, digits, ., _ and -, starting with a letter or digit; got "${flags.taskQueue}".`, 2);
  }
  const deployment = deploymentOptions(flags);
  const taskQueue = flags.taskQueue ?? TASK_QUEUE;
  const activitiesOnly = taskQueue !== TASK_QUEUE;
  // On the sandbox's cluster with no token given, the sandbox service client's, renewed below before it expires.
  const { address, namespace, tls, apiKey, metadata, apiKeySource } = await resolveConnection(flags);
  const faults = faultsFromEnv();
  const metrics = metricsAddress(flags.metrics);
  // The exporter belongs to the SDK's runtime, which the first connection creates: it goes first.
  if (metrics) serveMetrics(metrics);
  // Before connecting: a malformed endpoint is the user's to fix, like a malformed --metrics.
  const tracing = await startTracing('tiershift-worker', { onExportError: log });
  // Written before connecting, so `sandbox down` also stops a worker that is still starting.
  const pidFile = writeWorkerPidFile(sandboxHome(), address);
  const connection = await NativeConnection.connect({ address, tls, apiKey, ...(metadata ? { metadata } : {}) }).catch((err: unknown) => {
    apiKeySource?.stop();
    removeWorkerPidFile(pidFile);
    void stopTracing();
    throw err;
  });
  apiKeySource?.onRenew((token) => connection.setApiKey(token));
  const stopCounting = metrics ? countMigrations(connection, namespace) : undefined;
  try {
    const keys = loadCodecKeys();
    // A worker on the sandbox's Temporal trusts the sandbox's identity provider and runs rehearsals.
    const sandbox = readState(sandboxHome())?.temporal?.address === address;
    const identityPolicy = workerIdentityPolicy({ sandbox });
    const providers = activitiesOnceLoaded(() => loadProviders());
    const worker = await createWorker({ connection, namespace, taskQueue, activitiesOnly, faults, identityPolicy, activities: providers.activities, dataConverter: tiershiftDataConverter(keys ?? null), ...(deployment ? { deployment } : {}), ...(tracing ? { tracing } : {}) });
    log(`decisions: ${identityPolicy.trustedIssuers.length ? `tokens trusted from ${identityPolicy.trustedIssuers.join(', ')}` : 'no identity provider trusted'}; SSH signers as plans list them; unverified rehearsals ${identityPolicy.allowUnverified ? 'allowed' : 'refused'}`);
    if (keys) log(`history encrypted with codec key "${keys.current}" from ${keys.source}`);
    if (faults) log(`chaos rehearsal: the first ${faults.attempts} attempt(s) of ${faults.activities?.join(', ') ?? 'every activity'} fail ${faults.when} running`);
    if (deployment) {
      const { deploymentName, buildId } = deployment.version;
      log(`build ${buildId} of worker deployment "${deploymentName}" (auto-upgrade); make it current with \`temporal worker deployment set-current-version --deployment-name ${deploymentName} --build-id ${buildId}\``);
    }
    if (tracing) log(`traces to ${tracing.endpoint} (OpenTelemetry, service "${String(tracing.resource.attributes['service.name'])}")`);
    if (metrics) log(`metrics for Prometheus at http://${metrics}/metrics (the SDK's temporal_* and tiershift_*)`);
    // The identity (<pid>@<host>, the SDK's default) is what Temporal shows as the activity's last worker.
    log(
      `worker ${worker.options.identity} polling task queue "${taskQueue}"${activitiesOnly ? ' for the activities of the resources pinned to it' : ''} on ${address} (namespace ${namespace}); Ctrl-C stops it`,
    );
    const running = worker.run();
    // Once the worker polls; a provider that cannot load stops it here rather than at its first activity.
    setImmediate(() =>
      providers.load().catch((err: unknown) => {
        log(`the worker stops: its providers could not be loaded (${(err as Error).message})`);
        process.exitCode = 1;
        worker.shutdown();
      }),
    );
    await running;
  } finally {
    apiKeySource?.stop();
    stopCounting?.();
    removeWorkerPidFile(pidFile);
    await connection.close();
    // The spans of the last tasks, sent before the process ends.
    await stopTracing();
  }
}
