// No payload can wedge a migration: every signal and Update handler checks the shape of what it gets
// before reading it, refusals are recorded (and capped), and a plan whose gate can never pass ends at
// once. On the time-skipping server with scripted activities, like test/engine.test.ts.
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatStatus } from '../client/format';
import { approveGate, migrationStatus, refuseUnreachableGates, resumeMigration, startMigration } from '../client/migrations';
import { buildReport, reportMarkdown } from '../client/report';
import { EXIT } from '../client/errors';
import { UserError } from '../contract/errors';
import { approveArgsSchema, operatorArgsSchema, rejectArgsSchema } from '../contract/messages';
import { REFUSALS_KEPT, TASK_QUEUE, type MigrationStatus } from '../contract/status';
import { unreachableGate } from '../plan/gates';
import { parsePlan } from '../plan/load';
import { workflowBundle } from '../worker/worker';
import { workflowSpanSinks } from '../worker/tracing';
import type { migration } from '../workflows/migration';
import { ActivityScript } from './support/scripted-activities';
import { refusal, startWorker, statusWhen, timeSkippingEnv } from './support/temporal';

let env: TestWorkflowEnvironment;
let stopWorker: () => Promise<void>;
const script = new ActivityScript();

beforeAll(async () => {
  env = await timeSkippingEnv();
  ({ stop: stopWorker } = await startWorker({ connection: env.nativeConnection, activities: script.activities() }));
});

afterAll(async () => {
  await stopWorker?.();
  await env?.teardown();
});

function planYaml(name: string, go = '{ name: go, approvers: [bob] }'): string {
  return `
apiVersion: tiershift/v1
identity: unverified
name: ${name}
approvers: [bob, carol]
defaults:
  retry: { maximumAttempts: 2, initialInterval: 100ms, backoffCoefficient: 1, maximumInterval: 100ms }
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target }
phases:
  - backup: { resources: [sourceDb] }
  - gate: ${go}
  - infra: { resource: targetDb, settings: { max_connections: 200 } }
  - gate: { name: final }
`;
}

async function start(name: string) {
  const handle = await startMigration(env.client, parsePlan(planYaml(name), `${name}.yaml`), 'alice');
  return { handle, id: handle.workflowId };
}

const waitFor = (id: string, ok: (s: MigrationStatus) => boolean, timeoutMs = 15_000) => statusWhen(env, id, ok, { timeoutMs, skip: false });

/**
 * Replays a history on the current code; with RECORD_HISTORIES=<name> it is also kept in test/histories/
 * as <name>-<what>.json, which test/replay.test.ts replays on every later version.
 */
async function replayAndRecord(handle: WorkflowHandle, what: string): Promise<void> {
  const history = await handle.fetchHistory();
  await Worker.runReplayHistory({ workflowBundle: await workflowBundle(), sinks: workflowSpanSinks() }, history, handle.workflowId);
  if (process.env.RECORD_HISTORIES) {
    const file = path.join(path.dirname(fileURLToPath(import.meta.url)), 'histories', `${process.env.RECORD_HISTORIES}-${what}.json`);
    writeFileSync(file, historyToJSON(history));
  }
}

/** The failure a wedged migration shows: a workflow task that failed (and fails again on every replay). */
async function failedWorkflowTasks(handle: WorkflowHandle): Promise<string[]> {
  const { events } = await handle.fetchHistory();
  return (events ?? []).flatMap((e) => (e.workflowTaskFailedEventAttributes ? [e.workflowTaskFailedEventAttributes.failure?.message ?? 'failed'] : []));
}

/** No argument at all, as `temporal workflow signal --name approve-signal` without `--input` sends. */
const NOTHING = Symbol('no payload');
type Payload = unknown;
const argsOf = (payload: Payload): unknown[] => (payload === NOTHING ? [] : [payload]);

const SIGNALS = ['approve-signal', 'reject-signal'] as const;
const UPDATES = ['approve', 'reject', 'resume', 'rollback'] as const;
type Handler = (typeof SIGNALS)[number] | (typeof UPDATES)[number];
const SCHEMA = {
  approve: approveArgsSchema,
  'approve-signal': approveArgsSchema,
  reject: rejectArgsSchema,
  'reject-signal': rejectArgsSchema,
  resume: operatorArgsSchema,
  rollback: operatorArgsSchema,
} as const;

const HUGE = 'x'.repeat(200_000);
/** The payloads that broke handlers, or could: nothing, null, the wrong type, wrong-typed fields, huge values. */
const KILLERS: Payload[] = [
  NOTHING,
  undefined,
  null,
  [],
  [{ gate: 'go', by: 'bob' }],
  '',
  'go',
  HUGE,
  0,
  -1.5,
  true,
  {},
  { gate: 1, by: [] },
  { gate: null, by: null, reason: null },
  { gate: 'go' },
  { by: 'bob', confirm: 'yes' },
  { by: 'two words' },
  { gate: 'go', by: HUGE },
  { gate: HUGE, by: 'bob' },
  { gate: 'go', by: 'bob', comment: HUGE },
  { gate: 'go', by: 'bob', comment: 5 },
  { gate: 'go', by: 'bob', planHash: 'not-a-hash' },
  { gate: 'go', by: 'bob', extra: true },
  { gate: 'go', by: 'bob', reason: { text: 'nested' } },
  { [HUGE.slice(0, 5000)]: 1 },
  { gate: 'go', by: 'mallory' },
  { gate: 'nope', by: 'bob', reason: 'no such gate' },
];

/** A payload the migration would act on (pass the gate, roll back): the property is about the others. */
function wouldAct(handler: Handler, payload: Payload): boolean {
  const parsed = SCHEMA[handler].safeParse(payload === NOTHING ? undefined : payload);
  if (!parsed.success) return false;
  if (handler === 'approve' || handler === 'approve-signal') return (parsed.data as { gate: string; by: string }).gate === 'go' && (parsed.data as { by: string }).by === 'bob';
  // A well-formed resume is refused: nothing waits for an operator.
  return handler !== 'resume';
}

async function send(handle: WorkflowHandle<typeof migration>, handler: Handler, payload: Payload): Promise<'refused-update' | 'signalled'> {
  if (handler === 'approve-signal' || handler === 'reject-signal') {
    await handle.signal(handler, ...argsOf(payload));
    return 'signalled';
  }
  await refusal(handle.executeUpdate(handler, { args: argsOf(payload) as [unknown] }));
  return 'refused-update';
}

describe('handlers under malformed payloads', () => {
  it('refuses and records a signal with no payload, null or wrong-typed fields, and still passes the gate', async () => {
    const { id, handle } = await start('signal-killers');
    await waitFor(id, (s) => s.pendingGate?.gate === 'go');
    await handle.signal('approve-signal');
    await handle.signal('approve-signal', null);
    await handle.signal('reject-signal', { gate: 'go', by: 7, reason: null });
    const refused = await waitFor(id, (s) => (s.refusedSignals ?? 0) >= 3);
    expect(await failedWorkflowTasks(handle)).toEqual([]);
    expect(refused.errors.map((e) => [e.stepId, e.error])).toEqual([
      ['signal:approve-signal', expect.stringMatching(/^signal refused: the approval is malformed \(.*expected object.*\); send \{ "gate": string, "by"\?: string/)],
      ['signal:approve-signal', expect.stringMatching(/^signal refused: the approval is malformed \(.*expected object.*\)/)],
      ['gate:go', expect.stringMatching(/^signal refused: the rejection is malformed \(by: expected a user name; reason: expected a reason as text\)/)],
    ]);
    expect(refused.state).toBe('awaiting-approval');

    await handle.signal('approve-signal', { gate: 'go', by: 'bob' });
    await waitFor(id, (s) => s.pendingGate?.gate === 'final');
    await approveGate(env.client, id, { gate: 'final', by: 'carol' });
    expect((await handle.result()).state).toBe('completed');
    expect(await failedWorkflowTasks(handle)).toEqual([]);
    await replayAndRecord(handle, 'malformed-signals');
  });

  it('refuses a resume with no payload or null while a step waits for an operator, then resumes a proper one', async () => {
    const { id, handle } = await start('resume-killers');
    script.failures.set(`${id}/2-infra`, 2);
    await waitFor(id, (s) => s.pendingGate?.gate === 'go');
    await approveGate(env.client, id, { gate: 'go', by: 'bob' });
    await waitFor(id, (s) => s.state === 'awaiting-operator');
    expect(await refusal(handle.executeUpdate('resume', { args: [] }))).toMatch(/^the resume is malformed \(.*expected object.*\); send \{ "by"\?: string, "reason"\?: string, "confirm"\?: boolean, "evidence"\?: string, "proof"\?: \{\.\.\.\} \}$/);
    expect(await refusal(handle.executeUpdate('resume', { args: [null] }))).toMatch(/^the resume is malformed/);
    expect(await refusal(handle.executeUpdate('rollback', { args: [{ by: 'carol', confirm: 'yes' }] }))).toMatch(/^the rollback is malformed \(confirm: expected true or false\)/);
    expect((await migrationStatus(env.client, id)).state).toBe('awaiting-operator');
    expect(await failedWorkflowTasks(handle)).toEqual([]);

    await resumeMigration(env.client, id, 'carol');
    await waitFor(id, (s) => s.pendingGate?.gate === 'final');
    await approveGate(env.client, id, { gate: 'final', by: 'carol' });
    expect((await handle.result()).state).toBe('completed');
  });

  it('refuses a malformed call in the client too, before anything is sent', async () => {
    await expect(approveGate(env.client, 'migration-not-sent', { gate: 'go', by: 'bob', comment: 'y'.repeat(2001) })).rejects.toThrow(
      new UserError('the approval is malformed (comment: expected a comment of at most 2000 characters); correct it and run the command again.', EXIT.invalid),
    );
  });

  it(`keeps only the last ${REFUSALS_KEPT} refused signals, and counts them all in status and report`, async () => {
    const { id, handle } = await start('refusal-flood');
    await waitFor(id, (s) => s.pendingGate?.gate === 'go');
    const total = REFUSALS_KEPT + 15;
    for (let i = 0; i < total; i++) await handle.signal('approve-signal', { gate: 'go', by: `intruder-${i}` });
    const status = await waitFor(id, (s) => s.refusedSignals === total);
    const refusals = status.errors.filter((e) => e.error.startsWith('signal refused: '));
    expect(refusals).toHaveLength(REFUSALS_KEPT);
    // The oldest went first: the last one kept is the last one sent.
    expect(refusals[0]!.error).toMatch(/intruder-15 may not decide gate "go"/);
    expect(refusals.at(-1)!.error).toMatch(new RegExp(`intruder-${total - 1} may not decide gate "go"`));
    expect(formatStatus(status)).toContain(`Refused signals: ${total} (the last ${REFUSALS_KEPT} with their reasons: tiershift report ${id})`);
    const report = buildReport(status);
    expect(report.refusedSignals).toBe(total);
    expect(reportMarkdown(report)).toContain(`${total} signals were refused in all; only the last ${REFUSALS_KEPT} are listed.`);
    await handle.terminate('test done');
  });

  it('stays healthy and completes whatever JSON reaches every signal and Update handler (property)', async () => {
    const { id, handle } = await start('property');
    await waitFor(id, (s) => s.pendingGate?.gate === 'go');
    let signalled = 0;
    let refusedUpdates = 0;
    const payload = fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom(...KILLERS) },
      { weight: 3, arbitrary: fc.anything({ maxDepth: 3 }) },
      { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
      {
        weight: 3,
        arbitrary: fc.record(
          { gate: fc.oneof(fc.constantFrom('go', 'final', 'nope'), fc.anything()), by: fc.oneof(fc.constantFrom('bob', 'mallory', 'alice'), fc.anything()), comment: fc.anything(), reason: fc.anything(), planHash: fc.anything(), confirm: fc.anything() },
          { requiredKeys: [] },
        ),
      },
    );
    const handler = fc.constantFrom<Handler>(...SIGNALS, ...UPDATES);
    await fc.assert(
      fc.asyncProperty(handler, payload, async (h, p) => {
        fc.pre(!wouldAct(h, p));
        if ((await send(handle, h, p)) === 'signalled') {
          signalled += 1;
          await waitFor(id, (s) => s.refusedSignals === signalled, 5_000);
        } else {
          refusedUpdates += 1;
        }
        expect(await failedWorkflowTasks(handle)).toEqual([]);
      }),
      // Bounded to keep the test well under 30 s; a wedged workflow is not worth shrinking against.
      { numRuns: 300, endOnFailure: true, examples: KILLERS.flatMap((p) => [...SIGNALS, ...UPDATES].map((h): [Handler, Payload] => [h, p])) },
    );
    // Every handler got its share of the killers and of random payloads.
    expect(signalled).toBeGreaterThan(50);
    expect(refusedUpdates).toBeGreaterThan(100);
    const status = await migrationStatus(env.client, id);
    expect(status).toMatchObject({ state: 'awaiting-approval', refusedSignals: signalled, decisions: [] });
    expect(status.errors.length).toBeLessThanOrEqual(REFUSALS_KEPT);
    // A refusal names fields, never the values sent: nothing huge lands in the status.
    expect(Math.max(...status.errors.map((e) => e.error.length))).toBeLessThan(1000);

    await approveGate(env.client, id, { gate: 'go', by: 'bob' });
    await waitFor(id, (s) => s.pendingGate?.gate === 'final');
    await approveGate(env.client, id, { gate: 'final', by: 'carol' });
    expect((await handle.result()).state).toBe('completed');
    expect(await failedWorkflowTasks(handle)).toEqual([]);
    // And the history of all that replays on the current code.
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle(), sinks: workflowSpanSinks() }, await handle.fetchHistory(), id);
  });
});

describe('gates that can never pass', () => {
  const unreachable = '{ name: go, approvers: [alice, bob], requiredApprovals: 2, fourEyes: true }';
  const SENTENCE =
    'gate "go" can never pass: it needs 2 approvals, but with four eyes alice, who starts it, may not approve, so only bob may approve; have another approver start the migration, add approvers to the gate, or lower its requiredApprovals.';

  it('says which gate and what to do, counting four eyes, the starter and an escalation list', () => {
    const plan = (go: string) => parsePlan(planYaml('rule', go), 'rule.yaml');
    expect(unreachableGate(plan(unreachable), 'alice')).toBe(SENTENCE);
    expect(unreachableGate(plan(unreachable), 'carol')).toBeUndefined();
    expect(unreachableGate(plan('{ name: go, approvers: [alice, bob], requiredApprovals: 2 }'), 'alice')).toBeUndefined();
    expect(unreachableGate(plan('{ name: go, approvers: [alice], fourEyes: true }'), 'alice')).toMatch(/it needs 1 approval, but with four eyes alice, who starts it, may not approve, so nobody may approve;/);
    // Anyone may approve a gate without approvers; an escalation widens the list.
    expect(unreachableGate(plan('{ name: go, requiredApprovals: 2, fourEyes: true }'), 'alice')).toBeUndefined();
    expect(
      unreachableGate(plan(`{ name: go, approvers: [alice, bob], requiredApprovals: 2, fourEyes: true, notify: { webhook: 'http://127.0.0.1:9/h', escalateAfter: 1h, escalateTo: [dave] } }`), 'alice'),
    ).toBeUndefined();
    // A point of no return's gate is a gate too.
    const ponr = parsePlan(
      planYaml('rule-ponr').replace('  - gate: { name: final }\n', '  - data: { from: sourceDb, to: targetDb }\n  - finalize: { resources: [targetDb], pointOfNoReturn: { approvers: [alice, bob], requiredApprovals: 2, fourEyes: true } }\n'),
      'rule-ponr.yaml',
    );
    expect(unreachableGate(ponr, 'bob')).toMatch(/^gate "point-of-no-return" can never pass: .* so only alice may approve;/);
  });

  it('is refused by the client, and a start around it ends aborted at once, before any step runs', async () => {
    const plan = parsePlan(planYaml('never-passes', unreachable), 'never-passes.yaml');
    expect(() => refuseUnreachableGates(plan, 'alice')).toThrow(new UserError(SENTENCE, EXIT.invalid));
    await expect(startMigration(env.client, plan, 'alice')).rejects.toThrow(SENTENCE);

    // What `temporal workflow start --input ...` does: straight to the workflow, no client check.
    const workflowId = 'migration-never-passes-raw';
    const handle = await env.client.workflow.start<typeof migration>('migration', { taskQueue: TASK_QUEUE, workflowId, args: [{ plan, startedBy: 'alice' }] });
    const status = await Promise.race([
      handle.result(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the migration did not end: it waits at a gate that can never pass')), 10_000)),
    ]);
    expect(status.state).toBe('aborted');
    expect(status.errors).toEqual([{ stepId: 'start', error: SENTENCE, at: expect.any(String) }]);
    expect(status.steps.every((s) => s.state === 'pending')).toBe(true);
    expect(script.callsOf(workflowId)).toEqual([]);
    await replayAndRecord(handle, 'unreachable-gate');

    // Someone else may start the same plan: both approvers can then approve.
    const other = await startMigration(env.client, plan, 'carol', { id: 'migration-never-passes-carol' });
    await waitFor(other.workflowId, (s) => s.pendingGate?.gate === 'go');
    await other.terminate('test done');
  });
});
