// Temporal environments for tests: the time-skipping server for workflow logic, the sandbox's dev
// server for end-to-end runs. Both use binaries installed by setup (found on PATH or in .tools/bin).
import { Client, Connection, isGrpcCancelledError, isGrpcDeadlineError, WorkflowUpdateFailedError } from '@temporalio/client';
import { migrationStatus } from '../../client/migrations';
import type { MigrationStatus } from '../../contract/status';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll } from 'vitest';
import { findBinary } from '../../sandbox/binaries';
import { SEARCH_ATTRIBUTES } from '../../contract/search-attributes';
import { readState, sandboxHome } from '../../contract/home';
import { resolveConnection } from '../../contract/connection';
import { createWorker, type WorkerOptions } from '../../worker/worker';
import { workerIdentityPolicy } from '../../activities/identity';
import type { ActivityScript } from './scripted-activities';

let runtimeInstalled = false;
/** The SDK logs every worker state change at INFO and every expected activity failure at WARN; tests assert on those instead. */
export function quietRuntime(): void {
  if (runtimeInstalled) return;
  Runtime.install({ logger: new DefaultLogger('ERROR') });
  runtimeInstalled = true;
}

export async function timeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  quietRuntime();
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: findBinary('temporal-test-server') } },
  });
  // The dev server gets these at start (sandbox/temporal.ts); the test server only through the operator API.
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(SEARCH_ATTRIBUTES.map((key) => [key.name, INDEXED_VALUE_TYPE[key.type]!])),
  });
  return env;
}

/**
 * For a test file of workflow logic: the time-skipping server and a worker running `script`'s activities,
 * up before the file's first test and torn down after its last.
 */
export function engineSuite(script: ActivityScript): { env: TestWorkflowEnvironment } {
  const suite = {} as { env: TestWorkflowEnvironment };
  let stopWorker: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    suite.env = await timeSkippingEnv();
    ({ stop: stopWorker } = await startWorker({ connection: suite.env.nativeConnection, activities: script.activities() }));
  });
  afterAll(async () => {
    await stopWorker?.();
    await suite.env?.teardown();
  });
  return suite;
}

const INDEXED_VALUE_TYPE: Record<string, temporal.api.enums.v1.IndexedValueType> = {
  KEYWORD: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  INT: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
};

export interface SandboxTemporal {
  client: Client;
  connection: NativeConnection;
  address: string;
  /** The dev server's Web UI; empty on the cluster, which runs none. */
  uiUrl: string;
  close(): Promise<void>;
}

/** A client and a worker connection to the test run's sandbox dev server. */
export async function sandboxTemporal(): Promise<SandboxTemporal> {
  quietRuntime();
  const temporal = readState(sandboxHome())?.temporal;
  if (!temporal) throw new Error(`no sandbox Temporal in ${sandboxHome()}`);
  // The cluster (`--temporal cluster`) requires the sandbox's client certificate and a token (its service
  // client's, as the CLI and worker take it); the dev server neither.
  const { tls, apiKey, apiKeySource } = await resolveConnection({ address: temporal.address });
  const clientConnection = await Connection.connect({ address: temporal.address, tls, ...(apiKeySource ? { apiKey: () => apiKeySource.current() } : {}) });
  const connection = await NativeConnection.connect({ address: temporal.address, tls, apiKey });
  apiKeySource?.onRenew((token) => connection.setApiKey(token));
  return {
    client: new Client({ connection: clientConnection }),
    connection,
    address: temporal.address,
    uiUrl: temporal.uiUrl ?? '',
    async close() {
      apiKeySource?.stop();
      await clientConnection.close();
      await connection.close();
    },
  };
}

export async function startWorker(opts: WorkerOptions): Promise<{ worker: Worker; stop: () => Promise<void> }> {
  // Tests run rehearsals (identity: unverified) and trust the sandbox's identity provider, as a sandbox worker does.
  const worker = await createWorker({ identityPolicy: workerIdentityPolicy({ sandbox: true }), ...opts });
  const running = worker.run();
  return {
    worker,
    async stop() {
      worker.shutdown();
      await running;
    },
  };
}

/** Polls until the predicate holds: for states reached by other processes or by the workflow itself. */
export async function eventually<T>(read: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await read();
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`condition not met within ${timeoutMs} ms; last value: ${JSON.stringify(last)?.slice(0, 2000)}`);
}

/**
 * A query takes milliseconds; past this one is taken for the stall below and sent again (a slow answer on a
 * loaded machine is only sent again too, up to QUERY_ATTEMPTS times).
 */
const QUERY_DEADLINE_MS = 2_000;
const QUERY_ATTEMPTS = 10;

/**
 * A migration's status on the time-skipping server. A status query that races a run continuing as new is
 * sometimes answered only about 90 s later (the test server's race: the workflow is idle by then, and the
 * same query sent again is answered in milliseconds). Those stalls were the unit tier's unexplained
 * minutes (test/decisions.test.ts continues as new every 20 events); so each query gets a deadline and is
 * sent again past it. A query only reads: sending it twice changes nothing. The same race sometimes ends
 * with the server resetting the stream (RST_STREAM CANCEL, which grpc-js reports as CANCELLED 'Call
 * cancelled'; seen once in CI, 2026-12-01): that query is sent again too.
 */
export async function queryStatus(env: TestWorkflowEnvironment, id: string, deadlineMs = QUERY_DEADLINE_MS): Promise<MigrationStatus> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await env.client.withDeadline(Date.now() + deadlineMs, () => migrationStatus(env.client, id));
    } catch (err) {
      if (!(isGrpcDeadlineError(err) || isGrpcCancelledError(err)) || attempt >= QUERY_ATTEMPTS) throw err;
    }
  }
}

/**
 * Polls a migration's status until `ok` holds. On the time-skipping server time stands still while a test
 * polls, so by default each poll moves it on a minute (bakes elapse; gate timeouts are hours); `skip: false`
 * polls in real time instead, for tests where moving the clock would fire a timer they do not want.
 */
export async function statusWhen(
  env: TestWorkflowEnvironment,
  id: string,
  ok: (s: MigrationStatus) => boolean,
  { timeoutMs = 30_000, skip = true }: { timeoutMs?: number; skip?: boolean } = {},
): Promise<MigrationStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await queryStatus(env, id);
    if (ok(status)) return status;
    if (Date.now() > deadline) throw new Error(`timed out; last status ${JSON.stringify(status, null, 1).slice(0, 1500)}`);
    if (skip) await env.sleep('1m');
    else await new Promise((r) => setTimeout(r, 50));
  }
}

/** The reason an Update was refused with; throws when it was accepted. */
export async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (err) {
    if (!(err instanceof WorkflowUpdateFailedError)) throw err;
    return (err.cause as Error).message;
  }
  throw new Error('the update was accepted');
}
