// Encrypted history on the sandbox: a real migration through the dev server with the codec on, its
// history read with and without the key, a key rotated in the middle of the run, and the codec
// endpoint the Temporal UI decodes with.
import { Client } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { temporal as proto } from '@temporalio/proto';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { approveGate, migrationStatusAnyState, rollbackMigration, startMigration } from '../client/migrations';
import { AesGcmCodec, ENCRYPTED_ENCODING, generateKey, KEY_ID_METADATA, loadCodecKeys, tiershiftDataConverter, uiCodecEndpoint, type CodecKeys } from '../codec';
import { startCodecServer, type CodecServer } from '../codec/server';
import { parsePlan } from '../plan/load';
import type { MigrationStatus } from '../contract/status';
import { ARTIFACTS, launchBrowser, UI_TIMEOUT_MS } from './support/browser';
import { isOneSentence, tiershift } from './support/cli';
import { eventually, sandboxTemporal, startWorker, type SandboxTemporal } from './support/temporal';

const secret = randomBytes(4).toString('hex');
/** Strings only the plan, the operator and the failing database hold: none may be readable in history. */
const MARKERS = {
  name: `codec-secret-${secret}`,
  description: `classified description ${secret}`,
  title: `Inspect the ledger ${secret}`,
  resource: `ledgerDb${secret}`,
  instructions: `approve only after the audit ${secret}`,
  comment: `audited by carol ${secret}`,
  database: `nosuchdb_${secret}`,
};

const plan = parsePlan(
  `
apiVersion: tiershift/v1
identity: unverified
name: ${MARKERS.name}
description: ${MARKERS.description}
defaults: { retry: { maximumAttempts: 1 } }
resources:
  ${MARKERS.resource}: { kind: postgres, provider: local, cluster: source, database: shop }
  ghostDb: { kind: postgres, provider: local, cluster: target, database: ${MARKERS.database} }
phases:
  - check: { resources: [${MARKERS.resource}], title: "${MARKERS.title}" }
  - gate: { name: go, instructions: "${MARKERS.instructions}" }
  - check: { resources: [ghostDb] }
`,
  'codec-test.yaml',
);

const keyDir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-codec-'));
const keyFile = path.join(keyDir, 'keys.json');
let oldKeys: CodecKeys;
let rotatedKeys: CodecKeys;
let temporal: SandboxTemporal;
const withKeys = (keys: CodecKeys | null) => new Client({ connection: temporal.client.connection, dataConverter: tiershiftDataConverter(keys) });
const workflowId = `migration-codec-${secret}`;

interface FoundPayload {
  path: string;
  payload: Payload;
}

/** Every payload in a raw history event, with where it sits. */
function payloadsIn(value: unknown, at = ''): FoundPayload[] {
  if (!value || typeof value !== 'object' || ArrayBuffer.isView(value)) return [];
  const record = value as Record<string, unknown>;
  if (record.data instanceof Uint8Array && record.metadata && typeof record.metadata === 'object') return [{ path: at, payload: record as Payload }];
  return Object.entries(record).flatMap(([k, v]) => payloadsIn(v, `${at}.${k}`));
}

const utf8 = (b: Uint8Array | null | undefined) => Buffer.from(b ?? []).toString('utf8');
/** Everything the server stores for this run, as text, the way someone reading its database would see it. */
function historyText(value: unknown): string {
  if (value instanceof Uint8Array) return utf8(value);
  if (typeof value === 'string') return value;
  if (!value || typeof value !== 'object') return '';
  return Object.entries(value).map(([k, v]) => `${k}=${historyText(v)}`).join('\n');
}

let history: proto.api.history.v1.IHistory;
let finalStatus: MigrationStatus;

beforeAll(async () => {
  temporal = await sandboxTemporal();
  generateKey(keyFile, { id: 'k-old' });
  oldKeys = loadCodecKeys({ TIERSHIFT_CODEC_KEYS: keyFile })!;

  // Before the rotation: the worker and the operator's client only know k-old.
  let worker = await startWorker({ connection: temporal.connection, dataConverter: tiershiftDataConverter(oldKeys) });
  try {
    await startMigration(withKeys(oldKeys), plan, 'alice', { id: workflowId });
    await eventually(() => migrationStatusAnyState(withKeys(oldKeys), workflowId), (s) => s.pendingGate?.gate === 'go', 120_000);
  } finally {
    await worker.stop();
  }

  // Rotation while the migration waits: a new current key, k-old kept for what is already in history.
  generateKey(keyFile, { id: 'k-new', rotate: true });
  rotatedKeys = loadCodecKeys({ TIERSHIFT_CODEC_KEYS: keyFile })!;
  worker = await startWorker({ connection: temporal.connection, dataConverter: tiershiftDataConverter(rotatedKeys) });
  try {
    const client = withKeys(rotatedKeys);
    await approveGate(client, workflowId, { gate: 'go', by: 'bob', comment: MARKERS.comment });
    // The last check fails (no such database) and holds the migration for an operator: an error to hide too.
    await eventually(() => migrationStatusAnyState(client, workflowId), (s) => s.state === 'awaiting-operator', 120_000);
    await rollbackMigration(client, workflowId, 'bob', 'codec test done');
    finalStatus = (await client.workflow.getHandle(workflowId).result()) as MigrationStatus;
  } finally {
    await worker.stop();
  }
  history = await withKeys(null).workflow.getHandle(workflowId).fetchHistory();
}, 360_000);

afterAll(async () => {
  await temporal?.close();
  rmSync(keyDir, { recursive: true, force: true });
});

describe('encrypted history', () => {
  it('keeps plan, figures, decisions and errors out of the history a client without the key reads', () => {
    expect(finalStatus.state).toBe('rolled-back');
    const found = (history.events ?? []).flatMap((e, i) => payloadsIn(e, `events[${i}]`));
    // Search attributes are what Temporal filters on, so the server must read them: the plan name is
    // there by design (README, "Encrypted history"); everything else the plan or a person wrote is sealed.
    // Patch markers hold only the workflow code's patch id ("drift-check"), written by the SDK's core
    // without the codec.
    // The OpenTelemetry interceptors' header (workflows/tracing.ts) goes out as the SDK writes headers, without
    // the codec: it may hold the W3C trace context (a trace id and a span id) and nothing else.
    const tracerData = found.filter((f) => /header\.fields\._tracer-data$/.test(f.path));
    for (const { path: at, payload } of tracerData) {
      const context = JSON.parse(utf8(payload.data)) as Record<string, unknown>;
      expect(Object.keys(context).every((k) => k === 'traceparent' || k === 'tracestate'), at).toBe(true);
      expect(String(context.traceparent), at).toMatch(/^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
    }
    const sealed = found.filter((f) => !/searchAttributes|patch-data/.test(f.path) && !tracerData.includes(f));
    expect(sealed.length).toBeGreaterThan(10);
    for (const { path: at, payload } of sealed) {
      expect(utf8(payload.metadata?.encoding), at).toBe(ENCRYPTED_ENCODING);
      expect(['k-old', 'k-new'], at).toContain(utf8(payload.metadata?.[KEY_ID_METADATA]));
    }
    const ids = new Set(sealed.map((f) => utf8(f.payload.metadata?.[KEY_ID_METADATA])));
    expect([...ids].sort()).toEqual(['k-new', 'k-old']);

    const text = historyText(history);
    for (const [what, marker] of Object.entries(MARKERS)) {
      if (what === 'name') continue;
      expect(text, `${what} readable in history`).not.toContain(marker);
    }
    const nameOutsideSearchAttributes = sealed.some((f) => utf8(f.payload.data).includes(MARKERS.name));
    expect(nameOutsideSearchAttributes).toBe(false);
    // The activity's error text is sealed in the failure's encoded attributes, not left in its message.
    const failed = (history.events ?? []).find((e) => e.activityTaskFailedEventAttributes)?.activityTaskFailedEventAttributes?.failure;
    expect(failed?.message).toBe('Encoded failure');
    expect(utf8(failed?.encodedAttributes?.metadata?.encoding)).toBe(ENCRYPTED_ENCODING);
  });

  it('shows the whole plan, the decisions and the error to a client with the key, the rotated-out key included', async () => {
    const status = await migrationStatusAnyState(withKeys(rotatedKeys), workflowId);
    expect(status.plan.name).toBe(MARKERS.name);
    expect(status.steps[0]!.title).toBe(MARKERS.title);
    expect(JSON.stringify(status)).toContain(MARKERS.comment);
    expect(JSON.stringify(status)).toContain(MARKERS.database);

    // The start input was sealed with k-old, before the rotation; the key file still has it.
    const input = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads!;
    expect(utf8(input[0]!.metadata?.[KEY_ID_METADATA])).toBe('k-old');
    const [decoded] = await new AesGcmCodec(rotatedKeys).decode(input as Payload[]);
    expect(utf8(decoded!.metadata?.encoding)).toBe('json/plain');
    expect(utf8(decoded!.data)).toContain(MARKERS.resource);
  });

  it('names the key id it lacks, in one sentence, instead of guessing', async () => {
    const input = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads! as Payload[];
    const onlyNew: CodecKeys = { current: 'k-new', keys: new Map([['k-new', rotatedKeys.keys.get('k-new')!]]), source: 'a test key set' };
    await expect(new AesGcmCodec(onlyNew).decode(input)).rejects.toThrow(/^this history is encrypted with codec key "k-old", which a test key set does not have; .*\.$/);

    // The CLI of an operator without any key: the status of the finished migration is in its sealed result.
    const cli = await tiershift(['status', workflowId]);
    expect(cli.code).toBe(2);
    expect(isOneSentence(cli.stderr)).toBe(true);
    expect(cli.stderr).toMatch(/codec key "k-new" and no codec key is configured here/);
    // `list` reads visibility, whose search attributes are not encrypted: it still lists the migration
    // (only the gate memo, encrypted, is left out) instead of failing for everyone in the namespace.
    const listed = await tiershift(['list', '--plan', MARKERS.name]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain(workflowId);
    // ...and with the key file, the same command reads it.
    const keyed = await tiershift(['status', workflowId, '--json'], { TIERSHIFT_CODEC_KEYS: keyFile });
    expect(keyed.stderr).toBe('');
    expect((JSON.parse(keyed.stdout) as MigrationStatus).plan.name).toBe(MARKERS.name);
  });
});

describe('the codec endpoint', () => {
  const token = `viewer-${secret}`;
  let server: CodecServer;
  const uiOrigin = () => temporal.uiUrl;
  const sealedInput = () =>
    (history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads! as Payload[]).map((p) => ({
      metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? []).toString('base64')])),
      data: Buffer.from(p.data ?? []).toString('base64'),
    }));
  const post = (route: string, headers: Record<string, string> = {}, payloads: unknown = sealedInput()) =>
    fetch(`${server.url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify({ payloads }) });

  beforeAll(async () => {
    server = await startCodecServer({ keys: rotatedKeys, token, origins: [uiOrigin()], namespaces: ['default'] });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('decodes payloads fetched from history for a request with the viewer token', async () => {
    const res = await post('/default/decode', { Authorization: `Bearer ${token}` });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { payloads: { metadata: Record<string, string>; data: string }[] };
    expect(Buffer.from(body.payloads[0]!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
    const input = JSON.parse(Buffer.from(body.payloads[0]!.data, 'base64').toString()) as { plan: { name: string; steps: { title: string }[] } };
    expect(input.plan.name).toBe(MARKERS.name);
    expect(input.plan.steps[0]!.title).toBe(MARKERS.title);

    // The UI's form: the namespace in a header, the operation the last path segment.
    const viaHeader = await post('/decode', { Authorization: `Bearer ${token}`, 'X-Namespace': 'default' });
    expect(viaHeader.status).toBe(200);
  });

  it('refuses without the token (401) and with a wrong one or another namespace (403)', async () => {
    const none = await post('/default/decode');
    expect(none.status).toBe(401);
    expect(await none.text()).not.toContain(MARKERS.name);
    expect((await post('/default/decode', { Authorization: 'Bearer guess' })).status).toBe(403);
    expect((await post('/other/decode', { Authorization: `Bearer ${token}` })).status).toBe(403);
  });

  it('lets the UI origin in (CORS with credentials) and a browser that logged in with the token', async () => {
    const preflight = await fetch(`${server.url}/default/decode`, {
      method: 'OPTIONS',
      headers: { Origin: uiOrigin(), 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(uiOrigin());
    expect(preflight.headers.get('access-control-allow-credentials')).toBe('true');
    const stranger = await fetch(`${server.url}/default/decode`, { method: 'OPTIONS', headers: { Origin: 'http://evil.example' } });
    expect(stranger.status).toBe(403);
    expect(stranger.headers.get('access-control-allow-origin')).toBeNull();

    expect((await fetch(`${server.url}/login?token=guess`)).status).toBe(403);
    const login = await fetch(`${server.url}/login?token=${token}`);
    expect(login.status).toBe(200);
    const cookie = login.headers.get('set-cookie')!.split(';')[0]!;
    const res = await post('/decode', { Cookie: cookie, Origin: uiOrigin(), 'X-Namespace': 'default' });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(uiOrigin());
  });

  it('lets the Temporal UI show the decoded history in a browser that logged in, and only there', async () => {
    const { browser, page } = await launchBrowser();
    try {
      const workflowPage = `${temporal.uiUrl}/namespaces/default/workflows/${encodeURIComponent(workflowId)}`;
      // The Input card: ciphertext, or the workflow's decoded arguments.
      const inputText = async () => {
        const main = await page.locator('main').innerText();
        const at = main.indexOf('Input\n');
        return at < 0 ? '' : main.slice(at, main.indexOf('Result', at) < 0 ? undefined : main.indexOf('Result', at));
      };
      // Without the codec endpoint the UI has only ciphertext to show.
      await page.goto(workflowPage);
      await expect.poll(async () => (await inputText()).length, { timeout: UI_TIMEOUT_MS }).toBeGreaterThan(200);
      expect(await inputText()).not.toContain(MARKERS.name);

      // A viewer with the token: logs in to the codec endpoint, points the UI at it with credentials.
      expect((await page.goto(`${server.url}/login?token=${token}`))?.status()).toBe(200);
      await page.goto(workflowPage);
      await page.getByRole('button', { name: 'Configure Codec Server' }).click();
      await page.getByText('Use my browser setting and ignore Cluster-level setting.').click();
      await page.getByPlaceholder('Paste your endpoint here').fill(server.url);
      await page.getByText('Include cross-origin credentials').click();
      await page.getByRole('button', { name: 'Apply' }).click();
      await page.reload();
      await expect.poll(inputText, { timeout: UI_TIMEOUT_MS }).toContain(`"name": "${MARKERS.name}"`);
      const shown = await inputText();
      expect(shown).toContain(MARKERS.description);
      expect(shown).toContain(MARKERS.resource);
      await page.screenshot({ path: path.join(ARTIFACTS, 'ui-codec-decoded.png'), fullPage: true });

      // The same browser without its login cookie is refused, and sees ciphertext again.
      await page.context().clearCookies();
      await page.reload();
      await expect.poll(async () => (await inputText()).length, { timeout: UI_TIMEOUT_MS }).toBeGreaterThan(200);
      expect(await inputText()).not.toContain(MARKERS.name);
    } finally {
      await browser.close();
    }
  });

  it('encodes with the current key what it decodes again', async () => {
    const plain = [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('"hello"').toString('base64') }];
    const encoded = (await (await post('/default/encode', { Authorization: `Bearer ${token}` }, plain)).json()) as { payloads: { metadata: Record<string, string> }[] };
    expect(Buffer.from(encoded.payloads[0]!.metadata[KEY_ID_METADATA]!, 'base64').toString()).toBe('k-new');
    const decoded = (await (await post('/default/decode', { Authorization: `Bearer ${token}` }, encoded.payloads)).json()) as { payloads: unknown[] };
    expect(decoded.payloads).toEqual(plain);
  });
});

describe('configuration', () => {
  it('is off without a key, and points the sandbox UI at the codec endpoint only when on', () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'tiershift-codec-home-'));
    onTestFinished(() => rmSync(home, { recursive: true, force: true }));
    expect(loadCodecKeys({}, home)).toBeUndefined();
    expect(uiCodecEndpoint({}, home)).toBeUndefined();
    expect(uiCodecEndpoint({ TIERSHIFT_CODEC_KEYS: keyFile }, home)).toBe('http://127.0.0.1:8235');
    expect(uiCodecEndpoint({ TIERSHIFT_CODEC_ENDPOINT: 'https://codec.example/tiershift/' }, home)).toBe('https://codec.example/tiershift');
    const envKey = randomBytes(32).toString('base64');
    const both = loadCodecKeys({ TIERSHIFT_CODEC_KEYS: keyFile, TIERSHIFT_CODEC_KEY: envKey, TIERSHIFT_CODEC_KEY_ID: 'k-env' }, home)!;
    expect(both.current).toBe('k-env');
    expect([...both.keys.keys()].sort()).toEqual(['k-env', 'k-new', 'k-old']);
    expect(() => loadCodecKeys({ TIERSHIFT_CODEC_KEY: 'c2hvcnQ=', TIERSHIFT_CODEC_KEY_ID: 'k-short' }, home)).toThrow(/^codec key "k-short" in TIERSHIFT_CODEC_KEY must be 32 bytes in base64/);
  });
});
