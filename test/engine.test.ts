// The migration engine's behaviour on the time-skipping server: gates, failures, rollback, visibility.
import { describe, expect, it } from 'vitest';
import { defaultPayloadConverter } from '@temporalio/common';
import { formatList, formatStatus } from '../client/format';
import { buildReport, reportMarkdown } from '../client/report';
import { watchMigration } from '../client/watch';
import { GATE_MEMO_KEY, gateDeadline, type GateMemo } from '../contract/deadline';
import { parsePlan } from '../plan/load';
import { approveGate, migrationStatus, rejectGate, resumeMigration, rollbackMigration, startMigration } from '../client/migrations';
import { approveSignal, resumePreviewQuery } from '../workflows/shared';
import { type MigrationStatus } from '../contract/status';
import { ActivityScript } from './support/scripted-activities';
import { engineSuite, refusal, statusWhen } from './support/temporal';

const script = new ActivityScript();
const engine = engineSuite(script);

interface PlanOptions {
  gate?: string;
  traffic?: boolean;
}

/** A plan shaped like the seeds' small->medium runbook, with fast retries so failures surface quickly. */
function planYaml(name: string, { gate = '{ name: go }', traffic = true }: PlanOptions = {}): string {
  return `
apiVersion: tiershift/v1
identity: unverified
name: ${name}
approvers: [alice, bob, carol]
defaults:
  retry: { maximumAttempts: 2, initialInterval: 100ms, backoffCoefficient: 1, maximumInterval: 100ms }
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target }
  api: { kind: app, provider: local }
  front: { kind: traffic, provider: local, backend: app, stable: blue, canary: green }
phases:
  - backup: { resources: [sourceDb] }
  - gate: ${gate}
  - infra: { resource: targetDb, settings: { max_connections: 200 } }
  - app: { resource: api, version: v2, database: targetDb }
  - data: { from: sourceDb, to: targetDb }
${traffic ? `  - traffic: { resource: front, steps: [ { weight: 10, bake: 10m }, { weight: 100, bake: 10m } ] }\n` : ''}  - gate: { name: final }
  - finalize: { resources: [sourceDb] }
`;
}

async function start(name: string, opts?: PlanOptions, startedBy = 'alice') {
  const plan = parsePlan(planYaml(name, opts), `${name}.yaml`);
  const handle = await startMigration(engine.env.client, plan, startedBy);
  return { plan, handle, id: handle.workflowId };
}

const waitFor = (id: string, ok: (s: MigrationStatus) => boolean) => statusWhen(engine.env, id, ok);

const atGate = (gate: string) => (s: MigrationStatus) => s.pendingGate?.gate === gate;

describe('migration engine', () => {
  it('runs every phase in plan order through approved gates to completion', async () => {
    const { id, handle } = await start('happy-path');
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob', comment: 'backup verified' });
    await waitFor(id, atGate('final'));
    await approveGate(engine.env.client, id, { gate: 'final', by: 'carol' });
    const status = await handle.result();

    expect(status.state).toBe('completed');
    expect(script.callsOf(id)).toEqual([
      'backupDatabase:0-backup',
      'prepareInfra:2-infra',
      'updateApp:3-app',
      'syncData:4-data',
      'shiftTraffic:5-traffic-10',
      'bakeTraffic:5-traffic-10',
      'shiftTraffic:5-traffic-100',
      'bakeTraffic:5-traffic-100',
      'finalizeMigration:7-finalize',
    ]);
    expect(status.steps.every((s) => s.state === 'done')).toBe(true);
    expect(status.traffic).toMatchObject({ stable: 'blue', canary: 'green', weight: 100 });
    expect(status.decisions.map((d) => [d.gate, d.decision, d.by, d.comment])).toEqual([
      ['go', 'approve', 'bob', 'backup verified'],
      ['final', 'approve', 'carol', undefined],
    ]);
    const description = await handle.describe();
    expect(description.typedSearchAttributes.getAll().map((p) => [p.key.name, p.value])).toEqual(
      expect.arrayContaining([
        ['MigrationState', 'completed'],
        ['PlanName', 'happy-path'],
        ['TrafficWeight', 100],
      ]),
    );
  });

  it('refuses a second start of a running migration', async () => {
    const { plan, id } = await start('twice');
    await waitFor(id, atGate('go'));
    await expect(startMigration(engine.env.client, plan, 'bob')).rejects.toThrow(/already started|already running/i);
    await rollbackMigration(engine.env.client, id, 'alice', 'test done');
  });

  it('applies every gate rule with a reason the CLI can print', async () => {
    const { id, handle } = await start('gate-rules', { gate: '{ name: go, approvers: [alice, bob, carol], requiredApprovals: 2, fourEyes: true }' });
    await waitFor(id, atGate('go'));
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'nope', by: 'bob' }))).toMatch(/unknown gate "nope"; this plan's gates are: go, final/);
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'final', by: 'bob' }))).toMatch(/gate "final" is not pending; it is waiting at gate "go"/);
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'go', by: 'mallory' }))).toMatch(/mallory may not decide gate "go"; its approvers are: alice, bob, carol/);
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'go', by: 'alice' }))).toMatch(/needs four eyes: alice started this migration/);

    const afterOne = await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    expect(afterOne.pendingGate).toMatchObject({ gate: 'go', approvedBy: ['bob'], requiredApprovals: 2 });
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'go', by: 'bob' }))).toMatch(/bob already approved gate "go"; it needs 2 distinct approvers \(1 so far\)/);
    expect(await refusal(rejectGate(engine.env.client, id, { gate: 'go', by: 'carol', reason: ' ' }))).toMatch(/needs a reason/);

    await approveGate(engine.env.client, id, { gate: 'go', by: 'carol' });
    const atFinal = await waitFor(id, atGate('final'));
    expect(atFinal.steps.find((s) => s.id === '1-gate')).toMatchObject({ state: 'done', summary: 'approved by bob, carol' });
    await handle.cancel();
    expect((await handle.result()).state).toBe('rolled-back');
  });

  it('accepts approvals as plain signals and records refused ones', async () => {
    const { id, handle } = await start('signals');
    await waitFor(id, atGate('go'));
    await handle.signal(approveSignal, { gate: 'go', by: 'mallory' });
    const refused = await waitFor(id, (s) => s.errors.length > 0);
    expect(refused.errors[0]?.error).toMatch(/signal refused: mallory may not decide gate "go"/);
    await handle.signal(approveSignal, { gate: 'go', by: 'bob' });
    await waitFor(id, atGate('final'));
    await rollbackMigration(engine.env.client, id, 'alice', 'done');
    expect((await handle.result()).state).toBe('rolled-back');
  });

  it('rolls back when a gate times out, and aborts without undoing when the plan says abort', async () => {
    const { id, handle } = await start('gate-timeout', { gate: '{ name: go, timeout: 1h, onTimeout: rollback }' });
    await waitFor(id, atGate('go'));
    await engine.env.sleep('2h');
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(status.rollback).toMatchObject({ trigger: 'gate-timeout', reason: 'gate "go" was not approved within 1h' });
    // The gate no longer shows as waiting: it failed, with why.
    expect(status.steps.find((s) => s.id === '1-gate')).toMatchObject({ state: 'failed', error: 'gate "go" was not approved within 1h', endedAt: expect.any(String) });

    const aborted = await start('gate-abort', { gate: '{ name: go, timeout: 1h, onTimeout: abort }' });
    await waitFor(aborted.id, atGate('go'));
    await engine.env.sleep('2h');
    const abortedStatus = await aborted.handle.result();
    expect(abortedStatus.state).toBe('aborted');
    expect(abortedStatus.rollback).toBeUndefined();
    expect(abortedStatus.steps.find((s) => s.id === '1-gate')).toMatchObject({ state: 'failed', error: 'gate "go" was not approved within 1h' });
    expect(script.callsOf(aborted.id).filter((c) => c.startsWith('undoStep'))).toEqual([]);
  });

  it('waits for an operator when a step exhausts its retries, then resumes it', async () => {
    const { id, handle } = await start('resume-after-failure');
    script.failures.set(`${id}/2-infra`, 2); // both attempts of the retry policy fail
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    const failed = await waitFor(id, (s) => s.state === 'awaiting-operator');
    expect(failed.failure).toMatchObject({ stepId: '2-infra', error: 'injected failure of 2-infra' });
    // Both of Temporal's attempts count.
    expect(failed.steps.find((s) => s.id === '2-infra')).toMatchObject({ state: 'failed', attempts: 2 });
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'final', by: 'bob' }))).toMatch(/not pending/);

    await resumeMigration(engine.env.client, id, 'carol');
    await waitFor(id, atGate('final'));
    await approveGate(engine.env.client, id, { gate: 'final', by: 'bob' });
    const status = await handle.result();
    expect(status.state).toBe('completed');
    expect(status.steps.find((s) => s.id === '2-infra')).toMatchObject({ state: 'done', attempts: 3 });
    expect(status.resumes).toEqual([{ stepId: '2-infra', by: 'carol', at: expect.any(String) }]);
    expect(script.callsOf(id).filter((c) => c === 'prepareInfra:2-infra')).toHaveLength(3);
    // A closed migration takes no more decisions.
    await expect(resumeMigration(engine.env.client, id, 'carol')).rejects.toThrow();
  });

  it('rolls back on the operator\'s command after a failure, undoing what was done in reverse', async () => {
    const { id, handle } = await start('rollback-after-failure');
    script.failures.set(`${id}/3-app`, 2);
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    await waitFor(id, (s) => s.state === 'awaiting-operator');
    await rollbackMigration(engine.env.client, id, 'carol', 'app does not start');
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(status.rollback).toMatchObject({ trigger: 'operator', by: 'carol', reason: 'app does not start' });
    // The failed app step is undone too (it may have half-started), before infra; the backup is kept.
    expect(script.callsOf(id).filter((c) => c.startsWith('undoStep'))).toEqual(['undoStep:3-app', 'undoStep:2-infra', 'undoStep:0-backup']);
    expect(status.rollback?.actions.every((a) => a.state === 'done')).toBe(true);
    expect(status.steps.find((s) => s.id === '0-backup')?.state).toBe('compensated');
  });

  it('rolls back automatically when traffic analysis fails, traffic first', async () => {
    const { id, handle } = await start('analysis-breach');
    script.failingAnalysis.add(`${id}/5-traffic-100`);
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(status.rollback?.trigger).toBe('analysis');
    expect(status.rollback?.reason).toMatch(/error rate 0.5 of 5-traffic-100/);
    const undone = script.callsOf(id).filter((c) => c.startsWith('undoStep'));
    expect(undone[0]).toMatch(/^undoStep:5-traffic-/);
    expect(undone.slice(-4)).toEqual(['undoStep:4-data', 'undoStep:3-app', 'undoStep:2-infra', 'undoStep:0-backup']);
    expect(status.traffic?.weight).toBe(0);
    // watch and the report say what each undo itself reported, traffic first.
    const lines: string[] = [];
    await watchMigration(engine.env.client, id, { live: false, out: { write: (t: string) => lines.push(...t.split('\n').filter(Boolean)) } });
    const undoneLines = lines.map((l) => l.slice(9)).filter((l) => l.includes(' undone'));
    expect(undoneLines[0]).toBe('↺ 5-traffic-10 undone: undone 5-traffic-10');
    expect(undoneLines.slice(-4)).toEqual(['↺ 4-data undone: undone 4-data', '↺ 3-app undone: undone 3-app', '↺ 2-infra undone: undone 2-infra', '↺ 0-backup undone: undone 0-backup']);
    expect(lines.join('\n')).not.toMatch(/undone: updateApp/);
    const timeline = buildReport(status).timeline.filter((e) => e.event === 'undone').map((e) => e.text);
    expect(timeline[0]).toMatch(/^Shift 10% of front to green, bake 10m undone: undone 5-traffic-10$/);
    expect(timeline.indexOf('Deploy api v2 on targetDb and wait until healthy undone: undone 3-app')).toBeGreaterThan(0);
  });

  it('waits for an operator when the canary is too quiet for a verdict, and bakes again on resume', async () => {
    const { id, handle } = await start('quiet-canary');
    script.quietAnalysis.add(`${id}/5-traffic-10`);
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    const waiting = await waitFor(id, (s) => s.state === 'awaiting-operator');
    expect(waiting.rollback).toBeUndefined();
    expect(waiting.failure).toMatchObject({ stepId: '5-traffic-10' });
    expect(waiting.failure?.error).toBe(
      "the canary's analysis was inconclusive after a bake of 10m: not enough traffic: 3 requests, the plan asks for at least 20. Resume to shift and bake again, or roll back",
    );
    script.quietAnalysis.delete(`${id}/5-traffic-10`);
    await resumeMigration(engine.env.client, id, 'bob');
    await waitFor(id, atGate('final'));
    expect(script.callsOf(id).filter((c) => c.endsWith(':5-traffic-10'))).toEqual(['shiftTraffic:5-traffic-10', 'bakeTraffic:5-traffic-10', 'shiftTraffic:5-traffic-10', 'bakeTraffic:5-traffic-10']);
    await handle.cancel();
    expect((await handle.result()).state).toBe('rolled-back');
  });

  it('rolls back a quiet canary when the plan says inconclusive: rollback', async () => {
    const plan = parsePlan(
      planYaml('quiet-rollback').replace('steps: [ { weight: 10, bake: 10m }', 'analysis: { minRequests: 20, inconclusive: rollback }, steps: [ { weight: 10, bake: 10m }'),
      'quiet-rollback.yaml',
    );
    const handle = await startMigration(engine.env.client, plan, 'alice');
    const id = handle.workflowId;
    script.quietAnalysis.add(`${id}/5-traffic-10`);
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(status.rollback).toMatchObject({ trigger: 'analysis', reason: 'not enough traffic: 3 requests, the plan asks for at least 20.' });
    // A reason ends with its own period: the report and status sentences around it do not double it.
    expect(reportMarkdown(buildReport(status))).not.toMatch(/\.[.;)]/);
    expect(formatStatus(status)).toContain('Rollback (analysis): not enough traffic: 3 requests, the plan asks for at least 20\n');
  });

  it('rolls back when the workflow is cancelled', async () => {
    const { id, handle } = await start('cancelled');
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    await waitFor(id, atGate('final'));
    await handle.cancel();
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(status.rollback?.trigger).toBe('cancelled');
    expect(script.callsOf(id).filter((c) => c.startsWith('undoStep'))[0]).toMatch(/^undoStep:5-traffic-/);
    // The rollback interrupted the gate: nobody decided it, and status and the report no longer show it waiting.
    expect(status.steps.find((s) => s.id === '6-gate')).toMatchObject({ state: 'skipped', summary: 'not decided: the migration rolled back (cancelled)' });
    expect(formatStatus(status)).toMatch(/\[-\] 6-gate/);
    expect(buildReport(status).timeline.map((e) => e.text)).toContain('Approval gate "final" skipped: not decided: the migration rolled back (cancelled)');
  });

  it('rolls back when a gate is rejected, and refuses a second rollback', async () => {
    const { id, handle } = await start('rejected');
    await waitFor(id, atGate('go'));
    await rejectGate(engine.env.client, id, { gate: 'go', by: 'bob', reason: 'backup too old' });
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(status.rollback).toMatchObject({ trigger: 'gate-rejected', reason: 'gate "go" rejected by bob: backup too old' });
    expect(status.decisions).toMatchObject([{ gate: 'go', decision: 'reject', by: 'bob', comment: 'backup too old' }]);
    expect(status.steps.find((s) => s.id === '1-gate')).toMatchObject({ state: 'failed', error: 'gate "go" rejected by bob: backup too old' });
    expect(buildReport(status).timeline.map((e) => e.text).join('\n')).not.toMatch(/passed/);
    await expect(rollbackMigration(engine.env.client, id, 'bob')).rejects.toThrow();
  });

  it("counts Temporal's retries of a step as its attempts", async () => {
    const { id, handle } = await start('retried-step');
    script.failures.set(`${id}/2-infra`, 1); // the first attempt fails, Temporal's second succeeds
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    const at = await waitFor(id, atGate('final'));
    expect(at.steps.find((s) => s.id === '2-infra')).toMatchObject({ state: 'done', attempts: 2 });
    expect(at.steps.find((s) => s.id === '3-app')).toMatchObject({ state: 'done', attempts: 1 });
    expect(buildReport(at).timeline.map((e) => e.text)).toContain('Prepare targetDb: max_connections=200 done after 2 attempts: prepareInfra 2-infra');
    await handle.cancel();
    await handle.result();
  });

  it("shows a waiting gate's deadline and what happens then: status, the list's memo, the UI's details and the gate's timer", async () => {
    const { id, handle } = await start('gate-deadline', { gate: '{ name: go, timeout: 24h, onTimeout: rollback }' });
    const status = await waitFor(id, atGate('go'));
    const gate = status.pendingGate!;
    expect(Date.parse(gate.deadline!) - Date.parse(gate.openedAt)).toBe(24 * 3600_000);
    const short = `${gate.deadline!.slice(0, 16).replace('T', ' ')}Z`;
    expect(formatStatus(status)).toMatch(new RegExp(`Waiting at gate "go".*\\n  deadline ${short} \\((in|passed) [^)]+\\), then it rolls back\\n`));
    expect(gateDeadline(gate, Date.parse(gate.openedAt) + 60_000)).toBe(`deadline ${short} (in 23h 59m), then it rolls back`);
    const details = (await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata')).currentDetails;
    expect(details).toContain(`Waiting for approval at gate **go** (0/1); deadline ${short} (1d 00h after it opened), then it rolls back.`);
    // `tiershift list` reads the memo, without asking the workflow.
    const memo = (await handle.describe()).memo?.[GATE_MEMO_KEY];
    expect(memo).toEqual({ gate: 'go', openedAt: gate.openedAt, onTimeout: 'rollback', deadline: gate.deadline });
    const row = { id, runId: '', state: 'awaiting-approval', pendingGate: 'go', gateDeadline: memo as GateMemo, temporalStatus: 'RUNNING' as const, startedAt: status.startedAt };
    expect(formatList([row], Date.parse(gate.openedAt) + 3600_000)).toContain(`go (rollback at ${short}, in 23h 00m)`);
    // The UI's timeline labels the gate's timer.
    const history = await handle.fetchHistory();
    const summaries = history.events!.filter((e) => e.timerStartedEventAttributes).map((e) => e.userMetadata?.summary && defaultPayloadConverter.fromPayload(e.userMetadata.summary));
    expect(summaries).toContain(`gate go: rollback at ${short}; approve: tiershift approve ${id} --gate go`);
    // Gates without a deadline say so.
    expect(gateDeadline({ ...gate, deadline: undefined })).toBe('no deadline: it waits until someone decides');

    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    await waitFor(id, atGate('final'));
    expect((await handle.describe()).memo?.[GATE_MEMO_KEY]).toMatchObject({ gate: 'final' });
    // A gate without deadline waits on a labelled timer too: the timeline, the UI's first screen, shows it.
    const later = (await handle.fetchHistory()).events!.filter((e) => e.timerStartedEventAttributes).map((e) => e.userMetadata?.summary && defaultPayloadConverter.fromPayload(e.userMetadata.summary));
    expect(later).toContain(`gate final: waiting for approval, no deadline; approve: tiershift approve ${id} --gate final`);
    expect(formatStatus(await migrationStatus(engine.env.client, id))).toContain('  no deadline: it waits until someone decides');
    await handle.cancel();
    const ended = await handle.result();
    expect(ended.state).toBe('rolled-back');
    expect((await handle.describe()).memo?.[GATE_MEMO_KEY]).toBeUndefined();
  });

  it('keeps history small on a plan with hundreds of steps by continuing as new', async () => {
    const checks = Array.from({ length: 200 }, () => '  - check: { resources: [sourceDb] }').join('\n');
    const plan = parsePlan(
      `apiVersion: tiershift/v1\nidentity: unverified\nname: many-steps\nresources:\n  sourceDb: { kind: postgres, provider: local, cluster: source }\nphases:\n${checks}\n  - gate: { name: last }\n`,
      'many-steps.yaml',
    );
    const handle = await startMigration(engine.env.client, plan, 'alice', { historyLimit: 300 });
    const id = handle.workflowId;
    await waitFor(id, atGate('last'));
    await approveGate(engine.env.client, id, { gate: 'last', by: 'bob' });
    const status = await handle.result();
    expect(status.state).toBe('completed');
    expect(status.steps.filter((s) => s.state === 'done')).toHaveLength(201);
    expect(script.callsOf(id)).toHaveLength(200);
    // The first run handed over to a new one; no run's history grew past the limit by more than a step.
    const first = await engine.env.client.workflow.getHandle(id, handle.firstExecutionRunId).describe();
    expect(first.status.name).toBe('CONTINUED_AS_NEW');
    expect(first.historyLength).toBeLessThan(360);
  });

  it('binds each decision to the plan hash and to the evidence measured so far', async () => {
    const { id, handle, plan } = await start('evidence');
    await waitFor(id, atGate('go'));
    const other = 'f'.repeat(64);
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'go', by: 'bob', planHash: other }))).toBe(
      `this decision was made on plan sha256 ffffffffffff, but the migration runs plan sha256 ${plan.hash.slice(0, 12)}; review what runs with \`tiershift status ${id}\` and decide again`,
    );
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob', comment: 'backup checked', planHash: plan.hash });
    await waitFor(id, atGate('final'));
    await approveGate(engine.env.client, id, { gate: 'final', by: 'carol' });
    const status = await handle.result();
    const [go, final] = status.decisions;
    expect(go).toMatchObject({ gate: 'go', by: 'bob', comment: 'backup checked', planHash: plan.hash, evidence: { '0-backup': { '0-backup.calls': 1 } } });
    expect(Object.keys(go!.evidence!)).toEqual(['0-backup']);
    // The final decision saw everything measured up to it, the traffic analysis included.
    expect(final!.evidence).toMatchObject({ '5-traffic-100': { '5-traffic-100.errorRate': 0 }, '4-data': { '4-data.calls': 1 } });
  });

  it('notifies when a gate opens, reminds, escalates once, and lets the escalation list approve', async () => {
    const { id, handle } = await start('notified', {
      gate: `{ name: go, approvers: [bob], notify: { webhook: 'http://127.0.0.1:9/hook', every: 1h, escalateAfter: 150m, escalateTo: [dave] } }`,
      traffic: false,
    });
    await waitFor(id, (s) => s.pendingGate?.gate === 'go' && (s.notifications ?? []).some((n) => n.kind === 'escalation'));
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'go', by: 'erin' }))).toMatch(/its approvers are: bob, dave/);
    await approveGate(engine.env.client, id, { gate: 'go', by: 'dave' });
    await waitFor(id, atGate('final'));
    await approveGate(engine.env.client, id, { gate: 'final', by: 'bob' });
    const status = await handle.result();
    const sent = script.notifications.filter((n) => n.migrationId === id);
    expect(sent.map((n) => (n.payload as { kind: string }).kind)).toEqual(['opened', 'reminder', 'reminder', 'escalation']);
    expect(sent[3]!.payload).toMatchObject({ recipients: ['dave'], approve: `tiershift approve ${id} --gate go`, plan: { name: 'notified' } });
    expect(status.notifications?.map((n) => [n.kind, n.to, n.ok])).toEqual([
      ['opened', 'http://127.0.0.1:9', true],
      ['reminder', 'http://127.0.0.1:9', true],
      ['reminder', 'http://127.0.0.1:9', true],
      ['escalation', 'http://127.0.0.1:9', true],
    ]);
  });

  it('crosses the point of no return only through its own gate, then rolls back only when confirmed, data first', async () => {
    const plan = parsePlan(planYaml('ponr-crossed', { traffic: true }).replace(
      '  - gate: { name: final }\n  - finalize: { resources: [sourceDb] }\n',
      '  - finalize:\n      resources: [targetDb]\n      pointOfNoReturn: { approvers: [alice, bob, carol], requiredApprovals: 2, fourEyes: true }\n  - check: { resources: [targetDb] }\n  - gate: { name: complete }\n',
    ), 'ponr-crossed.yaml');
    const handle = await startMigration(engine.env.client, plan, 'alice');
    const id = handle.workflowId;
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    const before = await waitFor(id, atGate('point-of-no-return'));
    expect(before.pointOfNoReturn).toMatchObject({ stepId: '6-finalize', gate: 'point-of-no-return', crossed: false });
    expect(before.pointOfNoReturn?.recoveryPlan).toMatch(/reverse sync \(targetDb -> sourceDb\)/);
    // Which side of it the migration is on: in the UI's current details and in `tiershift status`.
    const details = async () => (await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata')).currentDetails;
    expect(await details()).toContain('Point of no return: **not crossed** (6-finalize, after gate point-of-no-return). Rolling back is a simple undo.');
    expect(formatStatus(before)).toContain('Point of no return: not crossed (6-finalize, after gate "point-of-no-return"); rolling back is a simple undo');

    // Nobody crosses it but its approvers, the starter not at all, and one approval is not two.
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'point-of-no-return', by: 'mallory' }))).toMatch(/may not decide/);
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'point-of-no-return', by: 'alice' }))).toMatch(/four eyes/);
    expect(await refusal(approveGate(engine.env.client, id, { gate: 'complete', by: 'bob' }))).toMatch(/not pending/);
    await handle.signal(approveSignal, { gate: 'point-of-no-return', by: 'mallory' });
    await approveGate(engine.env.client, id, { gate: 'point-of-no-return', by: 'bob' });
    await engine.env.sleep('1h');
    const half = await migrationStatus(engine.env.client, id);
    expect(half.pendingGate).toMatchObject({ gate: 'point-of-no-return', approvedBy: ['bob'] });
    expect(half.pointOfNoReturn?.crossed).toBe(false);
    expect(script.callsOf(id)).not.toContain('finalizeMigration:6-finalize');

    await approveGate(engine.env.client, id, { gate: 'point-of-no-return', by: 'carol' });
    const after = await waitFor(id, atGate('complete'));
    expect(after.pointOfNoReturn).toMatchObject({ crossed: true, crossedAt: expect.any(String) });
    expect(await details()).toMatch(/Point of no return: \*\*crossed\*\* at .+ \(6-finalize\)\. Rolling back now means a reverse sync .+, and needs `--confirm`\./);
    expect(formatStatus(after)).toMatch(/Point of no return: CROSSED at .+; rolling back now means a reverse sync \(targetDb -> sourceDb\).+needs --confirm/);
    expect(script.callsOf(id)).toContain('finalizeMigration:6-finalize');

    // Past it, a rejection or an unconfirmed rollback is refused with what a rollback would do.
    expect(await refusal(rejectGate(engine.env.client, id, { gate: 'complete', by: 'bob', reason: 'slow' }))).toMatch(/past the point of no return.*--confirm/);
    const unconfirmed = await refusal(rollbackMigration(engine.env.client, id, 'carol', 'orders look wrong'));
    expect(unconfirmed).toMatch(/crossed its point of no return \(6-finalize, at .+\), so rolling back means a reverse sync \(targetDb -> sourceDb\)/);
    expect(unconfirmed).toContain(`tiershift rollback ${id} --reason "..." --confirm`);
    expect((await migrationStatus(engine.env.client, id)).state).toBe('awaiting-approval');

    await rollbackMigration(engine.env.client, id, 'carol', 'orders look wrong', true);
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(script.callsOf(id).filter((c) => c.startsWith('undoStep'))).toEqual([
      'undoStep:6-finalize/start',
      'undoStep:5-traffic-10',
      'undoStep:4-data',
      'undoStep:3-app',
      // Only once v2 is stopped does nothing write to the target any more.
      'undoStep:6-finalize/finish',
      'undoStep:2-infra',
      'undoStep:0-backup',
    ]);
    expect(status.errors.some((e) => /signal refused: mallory may not decide/.test(e.error))).toBe(true);
  });

  it('rolls back before the point of no return as a simple undo, without --confirm', async () => {
    const plan = parsePlan(
      planYaml('ponr-not-crossed', { traffic: false }).replace('  - gate: { name: final }\n  - finalize: { resources: [sourceDb] }\n', '  - finalize: { resources: [targetDb], pointOfNoReturn: {} }\n'),
      'ponr-not-crossed.yaml',
    );
    const handle = await startMigration(engine.env.client, plan, 'alice');
    const id = handle.workflowId;
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    await waitFor(id, atGate('point-of-no-return'));
    await rollbackMigration(engine.env.client, id, 'carol', 'not today');
    const status = await handle.result();
    expect(status.state).toBe('rolled-back');
    expect(status.pointOfNoReturn?.crossed).toBe(false);
    expect(script.callsOf(id)).not.toContain('finalizeMigration:5-finalize');
    expect(script.callsOf(id).filter((c) => c.startsWith('undoStep'))).toEqual(['undoStep:4-data', 'undoStep:3-app', 'undoStep:2-infra', 'undoStep:0-backup']);
  });

  describe('past the write point (v2 on the replicated target)', () => {
    /** The shipped runbook's order: sync, then v2 on the target, so v2's writes exist only there. */
    const writing = (name: string, finalGate = '{ name: final }') =>
      parsePlan(
        planYaml(name)
          .replace('  - app: { resource: api, version: v2, database: targetDb }\n  - data: { from: sourceDb, to: targetDb }\n', '  - data: { from: sourceDb, to: targetDb }\n  - app: { resource: api, version: v2, database: targetDb }\n')
          .replace('  - gate: { name: final }', `  - gate: ${finalGate}`),
        `${name}.yaml`,
      );
    const RECOVERY_ORDER = ['undoStep:4-app/start', 'undoStep:5-traffic-10', 'undoStep:4-app', 'undoStep:4-app/finish', 'undoStep:3-data', 'undoStep:2-infra', 'undoStep:0-backup'];

    async function toFinalGate(name: string, finalGate?: string) {
      const handle = await startMigration(engine.env.client, writing(name, finalGate), 'alice');
      const id = handle.workflowId;
      await waitFor(id, atGate('go'));
      await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
      return { handle, id };
    }

    it('refuses a plain rollback with the rows only the target has; --confirm copies them back before users return, then undoes', async () => {
      const { handle, id } = await toFinalGate('writes-refused');
      const atFinal = await waitFor(id, atGate('final'));
      expect(atFinal.targetWrites).toMatchObject({ stepId: '4-app', database: 'targetDb', source: 'sourceDb', recovery: 'reverse-sync', crossed: true, crossedAt: expect.any(String) });
      expect(formatStatus(atFinal)).toMatch(/Write point: crossed at .+ \(4-app\); targetDb takes writes sourceDb lacks; a rollback copies them back to sourceDb before users return to it/);

      script.targetWrites.set(id, { targetOnly: 7, differing: 1 });
      const refused = await refusal(rollbackMigration(engine.env.client, id, 'carol', 'v2 is slow'));
      expect(refused).toBe(
        `targetDb holds 7 rows sourceDb lacks and 1 rows both hold differently, written since 4-app put the new version on it; \`tiershift rollback ${id} --reason "..." --confirm\` first copies the 7 rows only targetDb has to sourceDb (rows both changed keep sourceDb's version and are reported at risk), then rolls back`,
      );
      const held = await migrationStatus(engine.env.client, id);
      expect(held.state).toBe('awaiting-approval');
      expect(held.targetWrites).toMatchObject({ targetOnlyRows: 7, differingRows: 1, measuredAt: expect.any(String) });
      expect(script.callsOf(id).filter((c) => c.startsWith('undoStep'))).toEqual([]);

      script.recoveries.set(id, { recovered: 7, atRisk: 1 });
      await rollbackMigration(engine.env.client, id, 'carol', 'v2 is slow', true);
      const status = await handle.result();
      expect(status.state).toBe('rolled-back');
      expect(script.callsOf(id).filter((c) => c.startsWith('undoStep'))).toEqual(RECOVERY_ORDER);
      // Both parts copied 7 (the scripted activity says so); the last part's at-risk count stands.
      expect(status.rollback).toMatchObject({ trigger: 'operator', rowsRecovered: 14, rowsAtRisk: 1 });
      expect(formatStatus(status)).toContain('rows recovered to the source: 14; at risk: 1');
    });

    it('rolls back without --confirm when the target took nothing the source lacks, still recovering first', async () => {
      const { handle, id } = await toFinalGate('writes-none');
      await waitFor(id, atGate('final'));
      await rollbackMigration(engine.env.client, id, 'carol', 'not today');
      const status = await handle.result();
      expect(status.state).toBe('rolled-back');
      expect(script.callsOf(id)).toContain('measureTargetWrites:4-app');
      expect(script.callsOf(id).filter((c) => c.startsWith('undoStep'))).toEqual(RECOVERY_ORDER);
      expect(status.rollback).toMatchObject({ rowsRecovered: 0, rowsAtRisk: 0 });
    });

    it('with acceptWriteLoss: refuses a plain rollback that would lose rows, and a confirmed one counts them as at risk', async () => {
      const plan = parsePlan(
        planYaml('writes-loss')
          .replace('  - app: { resource: api, version: v2, database: targetDb }\n  - data: { from: sourceDb, to: targetDb }\n', '  - data: { from: sourceDb, to: targetDb }\n  - app: { resource: api, version: v2, database: targetDb, acceptWriteLoss: true }\n'),
        'writes-loss.yaml',
      );
      const handle = await startMigration(engine.env.client, plan, 'alice');
      const id = handle.workflowId;
      await waitFor(id, atGate('go'));
      await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
      expect((await waitFor(id, atGate('final'))).targetWrites).toMatchObject({ recovery: 'none', crossed: true });
      script.targetWrites.set(id, { targetOnly: 5, differing: 0 });
      expect(await refusal(rollbackMigration(engine.env.client, id, 'carol', 'no'))).toMatch(
        /^targetDb holds 5 rows sourceDb lacks and 0 rows both hold differently, written since 4-app put the new version on it, and the plan accepts losing them \(acceptWriteLoss\), so `tiershift rollback \S+ --reason "\.\.\." --confirm` rolls back and loses them$/,
      );
      await rollbackMigration(engine.env.client, id, 'carol', 'no', true);
      const status = await handle.result();
      expect(script.callsOf(id).filter((c) => c.startsWith('undoStep'))).toEqual(['undoStep:5-traffic-10', 'undoStep:4-app', 'undoStep:3-data', 'undoStep:2-infra', 'undoStep:0-backup']);
      expect(status.rollback).toMatchObject({ rowsRecovered: 0, rowsAtRisk: 5 });
    });

    it('recovers by itself when the analysis at 100% fails or the gate times out: nobody is there to confirm', async () => {
      const failing = await toFinalGate('writes-analysis');
      script.failingAnalysis.add(`${failing.id}/5-traffic-100`);
      script.recoveries.set(failing.id, { recovered: 3, atRisk: 0 });
      const analysed = await failing.handle.result();
      expect(analysed.rollback).toMatchObject({ trigger: 'analysis', rowsRecovered: 6, rowsAtRisk: 0 });
      expect(script.callsOf(failing.id).filter((c) => c.startsWith('undoStep'))).toEqual(RECOVERY_ORDER);

      const waiting = await toFinalGate('writes-timeout', '{ name: final, timeout: 2h }');
      await waitFor(waiting.id, atGate('final'));
      script.recoveries.set(waiting.id, { recovered: 2, atRisk: 1 });
      await engine.env.sleep('3h');
      const timedOut = await waiting.handle.result();
      expect(timedOut.rollback).toMatchObject({ trigger: 'gate-timeout', rowsRecovered: 4, rowsAtRisk: 1 });
      expect(script.callsOf(waiting.id).filter((c) => c.startsWith('undoStep'))).toEqual(RECOVERY_ORDER);
    });
  });

  it('holds a step whose resources drifted until an operator resumes, and previews what resume will do', async () => {
    const { id, handle } = await start('drifted');
    script.drift.set(`${id}/4-data`, ['targetDb: max_connections expected 200, found 100']);
    await waitFor(id, atGate('go'));
    await approveGate(engine.env.client, id, { gate: 'go', by: 'bob' });
    const held = await waitFor(id, (s) => s.state === 'awaiting-operator');
    expect(held.failure).toMatchObject({ stepId: '4-data', error: 'drift: targetDb: max_connections expected 200, found 100; put it back as the plan expects (or roll back), then resume' });
    expect(script.callsOf(id)).not.toContain('syncData:4-data');
    // The data step's check expects what the infra step set on its target.
    expect(script.driftChecks.get(`${id}/4-data`)).toEqual({ settings: { targetDb: { max_connections: 200 } } });

    const preview = await handle.query(resumePreviewQuery);
    expect(preview.steps.map((s) => `${s.id} ${s.verdict}`)).toEqual([
      '0-backup skip: done',
      '1-gate skip: gate passed',
      '2-infra skip: done',
      '3-app skip: done',
      '4-data run again',
      '5-traffic-10 run',
      '5-traffic-100 run',
      '6-gate wait for approval',
      '7-finalize run',
    ]);
    const before = [...script.callsOf(id)];
    script.drift.delete(`${id}/4-data`);
    await resumeMigration(engine.env.client, id, 'carol');
    await waitFor(id, atGate('final'));
    await approveGate(engine.env.client, id, { gate: 'final', by: 'bob' });
    const status = await handle.result();
    expect(status.state).toBe('completed');
    // What the preview said: done steps did not run again, the held one and the rest did.
    const after = script.callsOf(id).slice(before.length).map((c) => c.split(':')[1]);
    expect([...new Set(after)]).toEqual(['4-data', '5-traffic-10', '5-traffic-100', '7-finalize']);
    expect(script.driftChecks.get(`${id}/5-traffic-10`)).toEqual({ weights: { front: 0 } });
    expect(script.driftChecks.get(`${id}/5-traffic-100`)).toEqual({ weights: { front: 10 } });
  });

  it('observes each mutating step once, before its first attempt, and hands that to its undo, also after a failed step and across continue-as-new', async () => {
    const checks = Array.from({ length: 30 }, () => '  - check: { resources: [sourceDb] }').join('\n');
    const plan = parsePlan(
      `apiVersion: tiershift/v1
identity: unverified
name: observed
defaults:
  retry: { maximumAttempts: 2, initialInterval: 100ms, backoffCoefficient: 1, maximumInterval: 100ms }
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target }
  api: { kind: app, provider: local }
phases:
  - infra: { resource: targetDb, settings: { max_connections: 200 } }
${checks}
  - app: { resource: api, version: v2, database: targetDb }
`,
      'observed.yaml',
    );
    const infra = plan.steps[0]!.id;
    const app = plan.steps.at(-1)!.id;
    const handle = await startMigration(engine.env.client, plan, 'alice', { historyLimit: 120 });
    const id = handle.workflowId;
    // Two rounds of the retry policy fail (the activity "acted" each time and reported nothing).
    script.failures.set(`${id}/${app}`, 4);
    await waitFor(id, (s) => s.state === 'awaiting-operator' && s.failure?.stepId === app);
    await resumeMigration(engine.env.client, id, 'carol');
    // Two rounds of two of Temporal's attempts each.
    await waitFor(id, (s) => s.state === 'awaiting-operator' && s.steps.find((x) => x.id === app)!.attempts === 4);
    await rollbackMigration(engine.env.client, id, 'carol', 'app does not start');
    expect((await handle.result()).state).toBe('rolled-back');

    // The history was handed over to new runs between the infra and the app step.
    expect((await engine.env.client.workflow.getHandle(id, handle.firstExecutionRunId).describe()).status.name).toBe('CONTINUED_AS_NEW');
    // Once each, however often the step was attempted or resumed.
    expect(script.observed.get(id)).toEqual([infra, app]);
    // The failed step recorded nothing, yet its undo has what was there before it.
    expect(script.undoInputs.get(`${id}/${app}`)).toMatchObject({ before: { observed: app }, runId: handle.firstExecutionRunId });
    expect(script.undoInputs.get(`${id}/${app}`)!.undo).toBeUndefined();
    // Carried across continue-as-new with the undo records.
    expect(script.undoInputs.get(`${id}/${infra}`)).toMatchObject({ before: { observed: infra }, undo: { step: infra } });
  });
});

