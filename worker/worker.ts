// The worker runs the migration workflow and the provider activities on the `tiershift` task queue.
import { bundleWorkflowCode, NativeConnection, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { createActivities, type Providers } from '../activities';
import { loadProviders } from '../activities/registry';
import { connectionOptions, type ConnectionFlags } from '../contract/connection';
import { loadCodecKeys, tiershiftDataConverter } from '../codec';
import type { DataConverter } from '@temporalio/common';
import { TASK_QUEUE } from '../contract/status';
import { faultInterceptor, faultsFromEnv, type FaultInjection } from './chaos';
import { redactionInterceptor } from './redaction';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

const bundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();
/**
 * Bundling takes seconds; a process that starts several workers (tests, fleets) bundles once. The
 * failure converter runs inside the workflow sandbox, so encrypted history needs its own bundle.
 */
export function workflowBundle(failureConverterPath?: string): Promise<WorkflowBundleWithSourceMap> {
  const key = failureConverterPath ?? '';
  let bundle = bundles.get(key);
  if (!bundle) {
    bundle = bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger, ...(failureConverterPath ? { failureConverterPath } : {}) });
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
}

export async function createWorker(opts: WorkerOptions): Promise<Worker> {
  const dataConverter = opts.dataConverter ?? tiershiftDataConverter();
  return Worker.create({
    connection: opts.connection,
    dataConverter,
    namespace: opts.namespace ?? 'default',
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    workflowBundle: await workflowBundle(dataConverter.failureConverterPath),
    activities: opts.activities ?? createActivities(opts.providers ?? (await loadProviders())),
    ...(opts.identity ? { identity: opts.identity } : {}),
    // Redaction outermost: it also sees what an injected fault throws.
    interceptors: { activity: [redactionInterceptor, ...(opts.faults ? [faultInterceptor(opts.faults)] : [])] },
  });
}

/** `tiershift worker`: runs until SIGINT/SIGTERM, then finishes in-flight tasks and exits. */
export async function runWorker(flags: ConnectionFlags, log: (line: string) => void = console.log): Promise<void> {
  const { address, namespace, tls, apiKey } = connectionOptions(flags);
  const faults = faultsFromEnv();
  const connection = await NativeConnection.connect({ address, tls, apiKey });
  try {
    const keys = loadCodecKeys();
    const worker = await createWorker({ connection, namespace, faults, dataConverter: tiershiftDataConverter(keys ?? null) });
    if (keys) log(`history encrypted with codec key "${keys.current}" from ${keys.source}`);
    if (faults) log(`chaos rehearsal: the first ${faults.attempts} attempt(s) of ${faults.activities?.join(', ') ?? 'every activity'} fail ${faults.when} running`);
    log(`worker polling task queue "${TASK_QUEUE}" on ${address} (namespace ${namespace}); Ctrl-C stops it`);
    await worker.run();
  } finally {
    await connection.close();
  }
}
