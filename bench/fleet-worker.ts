// The worker of benchmark 7 in a process of its own, so its memory can be read from /proc: no-op
// activities on the task queue it is given; prints "ready" once polling, stops on SIGTERM.
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import { createWorker } from '../worker/worker';
import { workerIdentityPolicy } from '../activities/identity';
import { noopActivities } from '../test/support/scripted-activities';

const address = process.env.BENCH_TEMPORAL_ADDRESS;
const taskQueue = process.env.BENCH_TASK_QUEUE;
if (!address || !taskQueue) {
  console.error('fleet-worker: BENCH_TEMPORAL_ADDRESS and BENCH_TASK_QUEUE are required');
  process.exit(2);
}
Runtime.install({ logger: new DefaultLogger('WARN') });
const connection = await NativeConnection.connect({ address });
const worker = await createWorker({ identityPolicy: workerIdentityPolicy({ sandbox: true }), connection, taskQueue, activities: noopActivities() });
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => worker.shutdown());
const running = worker.run();
process.stdout.write('ready\n');
await running;
await connection.close();
