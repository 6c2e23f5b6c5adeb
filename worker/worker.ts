// The worker runs the migration workflow and the provider activities on the `tiershift` task queue.
import { bundleWorkflowCode, NativeConnection, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { fileURLToPath } from 'node:url';
import { createActivities, type Providers } from '../activities';
import { azureProvider } from '../activities/azure';
import { localProvider } from '../activities/local';
import { connectionOptions, type ConnectionFlags } from '../client/connection';
import { TASK_QUEUE } from '../workflows/shared';
import { faultInterceptor, faultsFromEnv, type FaultInjection } from './chaos';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
/** Bundling takes seconds; a process that starts several workers (tests, fleets) bundles once. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger });
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
}

export async function createWorker(opts: WorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace ?? 'default',
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    workflowBundle: await workflowBundle(),
    activities: opts.activities ?? createActivities(opts.providers ?? { local: localProvider, azure: azureProvider }),
    ...(opts.identity ? { identity: opts.identity } : {}),
    ...(opts.faults ? { interceptors: { activity: [faultInterceptor(opts.faults)] } } : {}),
  });
}

/** `tiershift worker`: runs until SIGINT/SIGTERM, then finishes in-flight tasks and exits. */
export async function runWorker(flags: ConnectionFlags, log: (line: string) => void = console.log): Promise<void> {
  const { address, namespace, tls, apiKey } = connectionOptions(flags);
  const faults = faultsFromEnv();
  const connection = await NativeConnection.connect({ address, tls, apiKey });
  try {
    const worker = await createWorker({ connection, namespace, faults });
    if (faults) log(`chaos rehearsal: the first ${faults.attempts} attempt(s) of ${faults.activities?.join(', ') ?? 'every activity'} fail ${faults.when} running`);
    log(`worker polling task queue "${TASK_QUEUE}" on ${address} (namespace ${namespace}); Ctrl-C stops it`);
    await worker.run();
  } finally {
    await connection.close();
  }
}
