// The Temporal dev server: a persistent SQLite file so workflow history survives a restart, and the
// migration search attributes registered at every start (re-registering on an existing file is a no-op).
import { Connection } from '@temporalio/client';
import path from 'node:path';
import { devServerSearchAttributeArgs, SEARCH_ATTRIBUTES } from '../contract/search-attributes';
import { uiCodecEndpoint } from '../codec';
import { sandboxTlsConfig } from '../contract/connection';
import { sandboxToken } from '../contract/temporal-auth';
import { findBinary } from './binaries';
import { HOST } from './ports';
import { spawnDetached, waitUntil, type ProcessSpec } from './process';
import { dataDir, keepRunning, logFile, saveRecord, type Health, type UpContext } from './service';
import type { SandboxState } from '../contract/home';

export const TEMPORAL_PROCESS: ProcessSpec = { label: 'temporal', signal: 'SIGTERM', group: true, match: 'temporal' };
const NAMESPACE = 'default';

type TemporalRecord = NonNullable<SandboxState['temporal']>;

export async function temporalHealth(temporal: TemporalRecord): Promise<Health> {
  // The cluster's authorizer lets only a token with the namespace's read role list its search attributes.
  const token = temporal.auth ? await sandboxToken(temporal.auth, 'service') : undefined;
  const connection = await Connection.connect({ address: temporal.address, tls: sandboxTlsConfig(temporal.tls), connectTimeout: 2_000, ...(token ? { apiKey: token.current() } : {}) });
  try {
    await connection.workflowService.getSystemInfo({});
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace: temporal.namespace });
    const missing = SEARCH_ATTRIBUTES.map((k) => k.name).filter((name) => !(name in (customAttributes ?? {})));
    if (missing.length) return { healthy: false, detail: `search attributes not registered: ${missing.join(', ')}` };
    const detail =
      temporal.kind === 'cluster'
        ? `Temporal server (cluster, PostgreSQL on the source cluster, JWT authorizer) at ${temporal.address}, no UI, namespace ${temporal.namespace}`
        : `Temporal dev server at ${temporal.address}, UI ${temporal.uiUrl}, namespace ${temporal.namespace}`;
    return { healthy: true, detail };
  } finally {
    token?.stop();
    await connection.close();
  }
}

export async function ensureTemporal(ctx: UpContext): Promise<void> {
  const { state } = ctx;
  if (await keepRunning(ctx, state.temporal, TEMPORAL_PROCESS, () => temporalHealth(state.temporal!), ['temporal', 'temporalUi'])) return;

  const binary = findBinary('temporal');
  const port = (state.ports.temporal = await ctx.ports.claim('temporal'));
  const uiPort = (state.ports.temporalUi = await ctx.ports.claim('temporalUi'));
  const dbFile = path.join(dataDir(state.home), 'temporal.db');
  const log = logFile(state.home, 'temporal');
  const pid = spawnDetached(
    binary,
    [
      'server', 'start-dev',
      '--ip', HOST,
      '--port', String(port),
      '--ui-port', String(uiPort),
      '--db-filename', dbFile,
      '--namespace', NAMESPACE,
      '--log-level', 'warn',
      ...devServerSearchAttributeArgs(),
      // Only with encrypted history: the UI then asks `tiershift codec serve` to decode for viewers it lets in.
      ...codecArgs(state.home),
    ],
    { log },
  );
  const temporal: TemporalRecord = { kind: 'dev', pid, log, address: `${HOST}:${port}`, uiUrl: `http://${HOST}:${uiPort}`, namespace: NAMESPACE, dbFile };
  saveRecord(ctx, (s) => (s.temporal = temporal));
  await waitUntil('the Temporal dev server', async () => ((await temporalHealth(temporal)).healthy ? true : undefined), { pid, log, timeoutMs: 90_000 });
  ctx.log(`temporal: started (pid ${pid}) at ${temporal.address}, UI ${temporal.uiUrl}`);
}

function codecArgs(home: string): string[] {
  const endpoint = uiCodecEndpoint(process.env, home);
  return endpoint ? ['--ui-codec-endpoint', endpoint] : [];
}
