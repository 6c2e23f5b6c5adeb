// Azurite (blob only) with two accounts standing for the primary and secondary regions, and a small
// deterministic `assets` container in the primary for the blob sync to copy.
import { BlobServiceClient } from '@azure/storage-blob';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { findBinary } from './binaries';
import { HOST } from './ports';
import { spawnDetached, waitUntil, type ProcessSpec } from './process';
import { dataDir, keepRunning, logFile, saveRecord, type Health, type Log, type UpContext } from './service';
import type { SandboxState, StorageAccount } from '../contract/home';

export const AZURITE_PROCESS: ProcessSpec = { label: 'azurite', signal: 'SIGTERM', group: true, match: 'azurite' };
export const STORAGE_ACCOUNTS = [
  { role: 'primary', name: 'tsprimary' },
  { role: 'secondary', name: 'tssecondary' },
] as const;
export const ASSETS_CONTAINER = 'assets';

type AzuriteRecord = NonNullable<SandboxState['azurite']>;

/** `AZURITE_ACCOUNTS`: `name:key;name:key`. */
export function azuriteAccountsEnv(accounts: Pick<StorageAccount, 'name' | 'key'>[]): string {
  return accounts.map((a) => `${a.name}:${a.key}`).join(';');
}

function account(role: StorageAccount['role'], name: string, key: string, port: number): StorageAccount {
  const blobEndpoint = `http://${HOST}:${port}/${name}`;
  return {
    role,
    name,
    key,
    blobEndpoint,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${name};AccountKey=${key};BlobEndpoint=${blobEndpoint};`,
  };
}

/**
 * Account keys are generated once per home and kept beside Azurite's data (as well as in the state
 * file), so connection strings stay valid across restarts and `down`/`up` until a purge.
 */
function accountKeys(home: string, previous: StorageAccount[] | undefined): Record<string, string> {
  const file = path.join(dataDir(home), 'azurite-keys.json');
  const keys: Record<string, string> = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>) : {};
  for (const { name } of STORAGE_ACCOUNTS) {
    keys[name] ??= previous?.find((a) => a.name === name)?.key ?? randomBytes(64).toString('base64');
  }
  writeFileSync(file, `${JSON.stringify(keys, null, 2)}\n`, { mode: 0o600 });
  return keys;
}

export async function azuriteHealth(azurite: AzuriteRecord): Promise<Health> {
  const found: string[] = [];
  for (const acc of azurite.accounts) {
    // No SDK retries: its back-off would turn "not listening yet" into seconds of waiting.
    const service = BlobServiceClient.fromConnectionString(acc.connectionString, { retryOptions: { maxTries: 1, tryTimeoutInMs: 3_000 } });
    const containers: string[] = [];
    for await (const c of service.listContainers()) containers.push(c.name);
    found.push(`${acc.name} (${acc.role}, ${containers.length} containers)`);
  }
  const origin = azurite.accounts[0] ? new URL(azurite.accounts[0].blobEndpoint).origin : 'nowhere';
  return { healthy: true, detail: `Azurite blob at ${origin}: ${found.join(', ')}` };
}

/** Starts (or keeps) Azurite; `portsFree` resolves when it may claim its port (see sandboxUp). */
export async function ensureAzurite(ctx: UpContext, portsFree: Promise<void>): Promise<void> {
  const { state } = ctx;
  if (await keepRunning(ctx, state.azurite, AZURITE_PROCESS, () => azuriteHealth(state.azurite!), ['azurite'])) {
    await seedAssets(state.azurite!.accounts, ctx.log);
    return;
  }

  await portsFree;
  const port = (state.ports.azurite = await ctx.ports.claim('azurite'));
  const location = path.join(dataDir(state.home), 'azurite');
  mkdirSync(location, { recursive: true });
  const keys = accountKeys(state.home, state.azurite?.accounts);
  const accounts = STORAGE_ACCOUNTS.map(({ role, name }) => account(role, name, keys[name]!, port));
  const log = logFile(state.home, 'azurite');
  // The npm shim is a node script: run it with our own node so PATH need not contain one.
  const script = realpathSync(findBinary('azurite-blob'));
  const [command, prefix] = script.endsWith('.js') ? [process.execPath, [script]] : [script, []];
  const pid = spawnDetached(
    command,
    [
      ...prefix,
      '--blobHost', HOST,
      '--blobPort', String(port),
      '--location', location,
      '--skipApiVersionCheck',
      '--loose',
      '--disableProductStyleUrl',
      // Telemetry would send traffic off the machine; the sandbox talks to 127.0.0.1 only.
      '--disableTelemetry',
    ],
    { log, env: { ...process.env, AZURITE_ACCOUNTS: azuriteAccountsEnv(accounts) } },
  );
  const azurite: AzuriteRecord = { pid, log, dataDir: location, accounts };
  saveRecord(ctx, (s) => (s.azurite = azurite));
  await waitUntil('Azurite', async () => ((await azuriteHealth(azurite)).healthy ? true : undefined), { pid, log, timeoutMs: 30_000 });
  await seedAssets(accounts, ctx.log);
  ctx.log(`azurite: started (pid ${pid}) at http://${HOST}:${port} with accounts ${accounts.map((a) => a.name).join(', ')}`);
}

/** The demo blobs: deterministic names, sizes and bytes, so two sandboxes hold identical data. */
export function demoBlobs(): { name: string; size: number; contentType: string }[] {
  const sizes = [2_048, 4_096, 7_168, 12_288, 16_384, 24_576, 32_768, 49_152, 65_536, 98_304, 131_072, 196_608, 262_144, 393_216, 524_288, 786_432, 1_048_576, 3_072, 10_240, 20_480];
  const kinds = [
    { dir: 'images', ext: 'jpg', contentType: 'image/jpeg' },
    { dir: 'docs', ext: 'pdf', contentType: 'application/pdf' },
    { dir: 'exports', ext: 'csv', contentType: 'text/csv' },
    { dir: 'thumbs', ext: 'png', contentType: 'image/png' },
  ];
  return sizes.map((size, i) => {
    const kind = kinds[i % kinds.length]!;
    return { name: `${kind.dir}/item-${String(i + 1).padStart(3, '0')}.${kind.ext}`, size, contentType: kind.contentType };
  });
}

/** Pseudo-random but reproducible bytes: a SHA-256 chain seeded by the blob name. */
export function demoBlobContent(name: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(name).digest();
  for (let offset = 0; offset < size; offset += block.length) {
    block.copy(out, offset);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** Uploads whichever demo blobs are missing, so a start interrupted half-way completes next time. */
export async function seedAssets(accounts: StorageAccount[], log: Log): Promise<void> {
  const primary = accounts.find((a) => a.role === 'primary');
  if (!primary) return;
  const container = BlobServiceClient.fromConnectionString(primary.connectionString).getContainerClient(ASSETS_CONTAINER);
  await container.createIfNotExists();
  const present = new Set<string>();
  for await (const blob of container.listBlobsFlat()) present.add(blob.name);
  const missing = demoBlobs().filter((b) => !present.has(b.name));
  for (const blob of missing) {
    const body = demoBlobContent(blob.name, blob.size);
    await container.getBlockBlobClient(blob.name).uploadData(body, {
      blobHTTPHeaders: { blobContentType: blob.contentType },
      metadata: { source: 'tiershift-sandbox' },
    });
  }
  if (missing.length) log(`azurite: seeded ${primary.name}/${ASSETS_CONTAINER} with ${missing.length} blobs`);
}
