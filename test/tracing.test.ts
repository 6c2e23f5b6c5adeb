// OpenTelemetry traces (contract/tracing.ts), end to end as a user turns them on: the OTEL_* variables for a
// `tiershift worker` process and for the CLI's `start` and `approve`, a collector on loopback that takes
// OTLP/HTTP JSON on /v1/traces, and a migration with a step and a gate on the sandbox.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { migrationStatus } from '../client/migrations';
import { PROJECT_ROOT } from '../contract/home';
import { isOneSentence, spawnWorker, tiershift } from './support/cli';
import { migrationSuite, uniqueName } from './support/local-ops';
import { eventually } from './support/temporal';
import { sandboxPlanYaml } from './support/plans';

const suite = migrationSuite();
const RECORDER = path.join(PROJECT_ROOT, 'test', 'support', 'loaded-modules.mjs');

interface Span {
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  attributes: Record<string, unknown>;
}

type AnyValue = { stringValue?: string; intValue?: number | string; boolValue?: boolean; doubleValue?: number };
type KeyValue = { key: string; value: AnyValue };
const plain = (kvs: KeyValue[] | undefined) => Object.fromEntries((kvs ?? []).map(({ key, value }) => [key, value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue ?? value]));

/** A collector on loopback: every OTLP/HTTP JSON request on /v1/traces, and its spans flattened. */
async function collector(port = 0): Promise<{ url: string; spans: Span[]; bodies: string[]; requests: () => number; close: () => Promise<void> }> {
  const spans: Span[] = [];
  const bodies: string[] = [];
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces' && /json/.test(req.headers['content-type'] ?? '')) {
        bodies.push(body);
        const parsed = JSON.parse(body) as { resourceSpans?: { resource?: { attributes?: KeyValue[] }; scopeSpans?: { spans?: (Omit<Span, 'service' | 'attributes'> & { attributes?: KeyValue[] })[] }[] }[] };
        for (const rs of parsed.resourceSpans ?? []) {
          const service = String(plain(rs.resource?.attributes)['service.name']);
          for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push({ ...s, service, attributes: plain(s.attributes) });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    spans,
    bodies,
    requests: () => requests,
    close: () => new Promise<void>((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-tracing-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Check the sandbox's source database, then wait at a gate that bob approves. */
function writePlan(name: string): string {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    sandboxPlanYaml({
      name,
      head: 'approvers: [alice, bob]',
      resources: { sourceDb: '{ kind: postgres, provider: local, cluster: source, database: shop }' },
      phases: `
  - check: { resources: [sourceDb] }
  - gate: { name: go }`,
    }),
  );
  return file;
}

describe('OpenTelemetry traces', () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });

  /** Starts `plan` with the CLI, approves its gate once it waits there, and waits for it to complete. */
  async function runMigration(name: string, env: NodeJS.ProcessEnv, approveEnv: NodeJS.ProcessEnv = env): Promise<{ id: string; startMs: number }> {
    const plan = writePlan(name);
    const id = `migration-${name}`;
    const began = Date.now();
    const started = await tiershift(['start', plan, '--by', 'alice', '--json'], env);
    const startMs = Date.now() - began;
    expect(started.code, started.stderr).toBe(0);
    await eventually(() => migrationStatus(suite.temporal.client, id), (s) => s.state === 'awaiting-approval', 60_000);
    const approved = await tiershift(['approve', id, '--gate', 'go', '--by', 'bob'], approveEnv);
    expect(approved.code, approved.stderr).toBe(0);
    await eventually(() => migrationStatus(suite.temporal.client, id), (s) => s.state === 'completed', 60_000);
    return { id, startMs };
  }

  it('sends the client\'s start, the workflow\'s run and its activities as one trace, and the approval as the parent of its handling', async () => {
    const otel = await collector();
    stops.push(otel.close);
    // Short batches, so the test need not wait the default 5 s for each export.
    const base = { OTEL_EXPORTER_OTLP_ENDPOINT: otel.url, OTEL_BSP_SCHEDULE_DELAY: '200' };
    const worker = spawnWorker({ ...base });
    stops.unshift(worker.stop);
    const approver = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${otel.url}/v1/traces`, OTEL_SERVICE_NAME: 'tiershift-approver' };
    const { id } = await runMigration(uniqueName('traced'), base, approver);

    // Every span of this migration names it, the workflow's own included (theirs carry no temporalWorkflowId).
    const byName = (name: string, service: string) => otel.spans.filter((s) => s.name === name && s.service === service && s.attributes['tiershift.migration'] === id);
    const spans = await eventually(
      async () => otel.spans,
      () => byName('StartWorkflow:migration', 'tiershift').length === 1 && byName('RunWorkflow:migration', 'tiershift-worker').length === 1 && byName('HandleUpdate:approve', 'tiershift-worker').length === 1,
      30_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message.slice(0, 200)}\nspans: ${otel.spans.map((s) => `${s.service}/${s.name}`).join(', ')}\nworker: ${worker.output()}`);
    });
    expect(worker.output()).toContain(`traces to ${otel.url}/v1/traces`);

    // start -> the workflow's run -> the activities it scheduled, in the trace the CLI's start opened.
    const start = byName('StartWorkflow:migration', 'tiershift')[0]!;
    const run = byName('RunWorkflow:migration', 'tiershift-worker')[0]!;
    expect(run.traceId).toBe(start.traceId);
    expect(run.parentSpanId).toBe(start.spanId);
    const activities = spans.filter((s) => s.traceId === start.traceId && s.name.startsWith('RunActivity:'));
    expect(activities.map((s) => s.name)).toContain('RunActivity:checkHealth');
    const check = activities.find((s) => s.name === 'RunActivity:checkHealth')!;
    expect(check).toMatchObject({ service: 'tiershift-worker', attributes: { 'tiershift.migration': id, 'tiershift.step': '0-check', 'tiershift.step_kind': 'check' } });
    // Scheduled by the workflow: its StartActivity span, a child of the run, is the activity's parent.
    const scheduled = spans.find((s) => s.spanId === check.parentSpanId)!;
    expect(scheduled).toMatchObject({ name: 'StartActivity:checkHealth', parentSpanId: run.spanId, service: 'tiershift-worker' });

    // `approve`, another process (with its own service name, from the specific variable): its own trace,
    // the parent of the workflow's handling of the update.
    const approve = byName('StartWorkflowUpdate:approve', 'tiershift-approver')[0]!;
    expect(approve, 'the approve span, from the service OTEL_SERVICE_NAME names').toBeDefined();
    const handled = byName('HandleUpdate:approve', 'tiershift-worker')[0]!;
    expect(handled.traceId).toBe(approve.traceId);
    expect(handled.parentSpanId).toBe(approve.spanId);

    // Nothing from a payload leaves the worker: no memo, no plan, no connection string.
    const keys = new Set(spans.flatMap((s) => Object.keys(s.attributes)));
    for (const payload of ['memo', 'lastResult', 'searchAttributes', 'typedSearchAttributes']) expect(keys.has(payload), payload).toBe(false);
    expect(otel.bodies.join('\n')).not.toMatch(/postgres(ql)?:\/\/|password|apiVersion/);

    // A refused decision ends the CLI through its error path (a non-zero exit), and its spans are sent
    // before that exit too: the batch's default 5 s delay never comes.
    const approverSpans = () => otel.spans.filter((s) => s.service === 'tiershift-approver').length;
    const before = approverSpans();
    const again = await tiershift(['approve', id, '--gate', 'go', '--by', 'bob'], approver);
    expect(again.code, again.stderr).not.toBe(0);
    await eventually(async () => approverSpans(), (n) => n > before, 10_000);
  }, 240_000);

  it('sends nothing and loads no exporter when the variables are unset', async () => {
    // The exporter's own default is http://localhost:4318: a collector there would take what a stray default sent.
    const otel = await collector(4318).catch(() => undefined);
    if (otel) stops.push(otel.close);
    const loaded = (name: string) => ({ NODE_OPTIONS: `--import ${RECORDER}`, TIERSHIFT_LOADED_MODULES: path.join(dir, `${name}.txt`) });
    const unset = { OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '' };
    const worker = spawnWorker({ ...unset, ...loaded('worker') });
    stops.unshift(worker.stop);
    await runMigration(uniqueName('untraced'), { ...unset, ...loaded('start') }, { ...unset, ...loaded('approve') });
    await worker.stop();
    expect(worker.output()).not.toContain('traces to');

    const modules = (name: string) => readFileSync(path.join(dir, `${name}.txt`), 'utf8').split('\n');
    for (const name of ['worker', 'start', 'approve']) {
      // The recorder saw the process run: an empty list would pass for the wrong reason.
      expect(modules(name).some((m) => /@temporalio\/client\//.test(m)), name).toBe(true);
      expect(modules(name).filter((m) => /@opentelemetry\/(exporter-trace-otlp-http|sdk-trace-base|context-async-hooks)\//.test(m)), name).toEqual([]);
    }
    if (otel) expect(otel.requests()).toBe(0);
  }, 240_000);

  it('a collector that does not answer neither fails nor holds up a migration; a malformed endpoint is one sentence', async () => {
    // A port that nothing listens on: every export is refused.
    const closed = await collector();
    await closed.close();
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: closed.url, OTEL_BSP_SCHEDULE_DELAY: '200' };
    const worker = spawnWorker(env);
    stops.unshift(worker.stop);
    const { startMs } = await runMigration(uniqueName('no-collector'), env);
    expect(startMs).toBeLessThan(30_000);
    await eventually(async () => worker.output(), (out) => out.includes('traces could not be sent to'), 30_000);
    expect(worker.output()).toMatch(/migrations are not affected/);

    for (const [name, value] of [
      ['OTEL_EXPORTER_OTLP_ENDPOINT', 'collector:4318'],
      ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'ftp://user:secret@collector/v1/traces'],
    ] as const) {
      const r = await tiershift(['list'], { [name]: value });
      expect(r.code, r.stderr).toBe(2);
      expect(isOneSentence(r.stderr), r.stderr).toBe(true);
      expect(r.stderr).toContain(name);
      expect(r.stderr).not.toContain('secret');
    }
    const refused = await tiershift(['worker'], { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' });
    expect(refused.code).toBe(2);
    expect(isOneSentence(refused.stderr), refused.stderr).toBe(true);
  }, 240_000);
});
