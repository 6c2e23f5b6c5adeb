// The worker of benchmark 7 in a process of its own, so its memory can be read from /proc: no-op
// activities on the task queue it is given; prints "ready" once polling, stops on SIGTERM. It reaches
// the Temporal of the sandbox in TIERSHIFT_HOME as `tiershift worker` does (contract/connection.ts), so
// the cluster's client certificate, and whatever else that resolution adds, comes with it.
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { createWorker } from '../worker/worker';
import { workerIdentityPolicy } from '../activities/identity';
import { resolveConnection } from '../contract/connection';
import { noopActivities } from '../test/support/scripted-activities';

const taskQueue = process.env.BENCH_TASK_QUEUE;
if (!process.env.TIERSHIFT_HOME || !taskQueue) {
  console.error('fleet-worker: TIERSHIFT_HOME (the sandbox to reach) and BENCH_TASK_QUEUE are required');
  process.exit(2);
}
Runtime.install({ logger: new DefaultLogger('WARN') });
const { address, tls, apiKey, metadata, apiKeySource, namespace } = await resolveConnection();
const connection = await NativeConnection.connect({ address, tls, apiKey, ...(metadata ? { metadata } : {}) });
apiKeySource?.onRenew((token) => connection.setApiKey(token));
const worker = await createWorker({ identityPolicy: workerIdentityPolicy({ sandbox: true }), connection, namespace, taskQueue, activities: noopActivities() });
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => worker.shutdown());
const running = worker.run();
process.stdout.write('ready\n');
await running;
await connection.close();
