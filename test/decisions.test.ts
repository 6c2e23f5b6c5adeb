// Proven decisions in the workflow itself, on the time-skipping server: SSH signatures (ssh-keygen, no
// identity provider needed) verified by the worker's local activity, through Updates and signals, across
// continue-as-new; a start that proves nothing ends before its first step; and the worker's own policy.
import { Worker } from '@temporalio/worker';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIdentityActivities } from '../activities/identity';
import { decisionFields, proofFor, startStatement } from '../client/identity';
import { approveGate, migrationHandle, resumeMigration, startMigration } from '../client/migrations';
import { planDigest } from '../contract/digest';
import type { MigrationStatus } from '../contract/status';
import { describePlan } from '../plan/describe';
import { parsePlan } from '../plan/load';
import { workflowBundle } from '../worker/worker';
import { workflowSpanSinks } from '../worker/tracing';
import { approveSignal, statusQuery } from '../workflows/shared';
import { ActivityScript } from './support/scripted-activities';
import { engineSuite, statusWhen } from './support/temporal';

const script = new ActivityScript();
const engine = engineSuite(script);
let dir: string;
const key = (who: string) => path.join(dir, `${who}_ed25519`);

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-decisions-'));
  const lines = ['alice', 'bob', 'mallory'].map((who) => {
    expect(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', who, '-f', key(who)]).status).toBe(0);
    return `${who} ${readFileSync(`${key(who)}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ')}`;
  });
  writeFileSync(path.join(dir, 'allowed_signers'), `${lines[0]}\n${lines[1]}\n`);
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function plan(name: string) {
  return parsePlan(
    `apiVersion: tiershift/v1
name: ${name}
identity:
  ssh: { allowedSigners: allowed_signers }
approvers: [alice, bob]
defaults:
  retry: { maximumAttempts: 1, initialInterval: 100ms, backoffCoefficient: 1, maximumInterval: 100ms }
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target }
phases:
  - backup: { resources: [sourceDb] }
  - gate: { name: go, fourEyes: true }
  - infra: { resource: targetDb, settings: { max_connections: 200 } }
  - check: { resources: [targetDb] }
`,
    path.join(dir, `${name}.yaml`),
  );
}

const when = (id: string, ok: (s: MigrationStatus) => boolean) => statusWhen(engine.env, id, ok, { skip: false });
const signedBy = (who: string) => ({ key: key(who), me: () => who });

describe('proven decisions in the workflow', () => {
  it('verifies every decision through Updates and signals, across continue-as-new, and replays', async () => {
    const p = plan('proven-engine');
    expect(describePlan(p)).toMatch(/Decisions: proven with SSH signatures by the plan's allowed signers \(alice, bob\)/);
    const id = 'migration-proven-engine';
    const startProof = await proofFor(p.identity!, startStatement(id, p.hash), signedBy('alice'));
    // A small history limit: the run continues as new between steps, carrying who decided what.
    const handle = await startMigration(engine.env.client, p, '', { id, startProof, historyLimit: 20 });
    script.failures.set(`${id}/2-infra`, 1);
    const atGate = await when(id, (s) => s.pendingGate?.gate === 'go');
    expect(atGate.startedBy).toBe('alice');

    // A signal can be proven too: verified asynchronously, refused or applied all the same.
    const mallory = await decisionFields(atGate, 'approve', { gate: 'go' }, signedBy('mallory'));
    await migrationHandle(engine.env.client, id).signal(approveSignal, { gate: 'go', ...mallory });
    const refused = await when(id, (s) => s.errors.some((e) => /allowed signers do not list/.test(e.error)));
    expect(refused.pendingGate?.approvedBy).toEqual([]);
    const bob = await decisionFields(refused, 'approve', { gate: 'go' }, signedBy('bob'));
    await migrationHandle(engine.env.client, id).signal(approveSignal, { gate: 'go', ...bob });

    const held = await when(id, (s) => s.state === 'awaiting-operator');
    const resumed = await resumeMigration(engine.env.client, id, await decisionFields(held, 'resume', {}, signedBy('bob')));
    expect(resumed.decisionLog?.at(-1)).toMatchObject({ subject: 'bob', verified: true, statement: { action: 'resume' } });
    await when(id, (s) => s.state === 'completed');
    // The run it continued in (the time-skipping server does not follow a first run's handle across runs).
    const latest = engine.env.client.workflow.getHandle(id);
    const done = (await latest.result()) as MigrationStatus;
    expect(done.state).toBe('completed');
    expect(done.decisionLog?.map((d) => `${d.statement.action}:${d.subject}`)).toEqual(['start:alice', 'approve:bob', 'resume:bob']);
    // The run the statements name is the first one, whatever run the migration continued in.
    expect(new Set(done.decisionLog!.slice(1).map((d) => d.statement.run))).toEqual(new Set([done.identity!.run]));

    expect(done.identity!.run).toBe(handle.firstExecutionRunId);
    expect((await engine.env.client.workflow.getHandle(id, handle.firstExecutionRunId).describe()).status.name).toBe('CONTINUED_AS_NEW');
    // Both runs: the first verified the start and continued as new; the last took the signals and the resume.
    for (const [what, runId] of [['first', handle.firstExecutionRunId], ['last', undefined]] as const) {
      const history = await engine.env.client.workflow.getHandle(id, runId).fetchHistory();
      await Worker.runReplayHistory({ workflowBundle: await workflowBundle(), sinks: workflowSpanSinks() }, history, handle.workflowId);
      if (process.env.RECORD_HISTORIES) {
        writeFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'histories', `${process.env.RECORD_HISTORIES}-${what}.json`), historyToJSON(history));
      }
    }
    // A whole run in real time (continue-as-new every 20 events, a worker verifying each signature with
    // ssh-keygen): about 2 s. Its 88-92 s runs were status queries the test server held after a
    // continue-as-new, which queryStatus (test/support/temporal.ts) now sends again after 2 s.
  }, 240_000);

  it('ends a start that proves nothing, or whose plan hash is not its content, before its first step', async () => {
    const unproven = await startMigration(engine.env.client, plan('unproven-start'), 'alice');
    const aborted = await unproven.result();
    expect(aborted.state).toBe('aborted');
    expect(aborted.errors[0]?.error).toMatch(/^start refused: this migration takes verified decisions only/);
    expect(aborted.steps.every((s) => s.state === 'pending')).toBe(true);
    expect(script.calls.get(unproven.workflowId)).toBeUndefined();

    const p = plan('edited-plan');
    const edited = { ...p, steps: p.steps.filter((s) => s.kind !== 'gate') };
    expect(planDigest(edited)).not.toBe(p.hash);
    const startProof = await proofFor(p.identity!, startStatement('migration-edited-plan', p.hash), signedBy('alice'));
    const tampered = await startMigration(engine.env.client, edited, '', { startProof });
    const ended = await tampered.result();
    expect(ended.state).toBe('aborted');
    expect(ended.errors[0]?.error).toMatch(/the plan's content does not match its hash/);
  });

  it('refuses an approval from the starter under four eyes, and one whose evidence changed', async () => {
    const p = plan('four-eyes-engine');
    const id = 'migration-four-eyes-engine';
    await startMigration(engine.env.client, p, '', { id, startProof: await proofFor(p.identity!, startStatement(id, p.hash), signedBy('alice')) });
    const atGate = await when(id, (s) => s.pendingGate?.gate === 'go');
    const self = approveGate(engine.env.client, id, { gate: 'go', ...(await decisionFields(atGate, 'approve', { gate: 'go' }, signedBy('alice'))) });
    await expect(self).rejects.toThrow();
    await self.catch((err: Error) => expect(String((err.cause as Error | undefined)?.message)).toMatch(/needs four eyes: alice started this migration/));
    // Signed on evidence that was not what the migration shows: refused before the signature is even checked.
    const stale = { ...atGate, steps: atGate.steps.map((s) => (s.id === '0-backup' ? { ...s, figures: { 'sourceDb.rows': 1 } } : s)) };
    const other = approveGate(engine.env.client, id, { gate: 'go', ...(await decisionFields(stale, 'approve', { gate: 'go' }, signedBy('bob'))) });
    await other.catch((err: Error) => expect(String((err.cause as Error | undefined)?.message)).toMatch(/the evidence changed since it was shown/));
    await expect(other).rejects.toThrow();
    const still = await migrationHandle(engine.env.client, id).query(statusQuery);
    expect(still.pendingGate?.approvedBy).toEqual([]);
    expect(still.decisionLog?.map((d) => d.statement.action)).toEqual(['start']);
    await migrationHandle(engine.env.client, id).terminate('test over');
  });
});

describe("the worker's identity policy", () => {
  it('refuses unverified rehearsals and untrusted issuers unless it is told otherwise', async () => {
    const strict = createIdentityActivities({ trustedIssuers: ['https://login.example.com'], allowUnverified: false });
    expect((await strict.checkIdentityPolicy({ policy: { mode: 'unverified' } })).refusal).toMatch(/verified decisions only/);
    expect((await strict.checkIdentityPolicy({ policy: { mode: 'oidc', issuer: 'https://evil.example.com', audience: 'tiershift', groupsClaim: 'groups' } })).refusal).toMatch(
      /does not trust the identity provider https:\/\/evil\.example\.com; add it to TIERSHIFT_TRUSTED_ISSUERS/,
    );
    expect(await strict.checkIdentityPolicy({ policy: { mode: 'oidc', issuer: 'https://login.example.com', audience: 'tiershift', groupsClaim: 'groups' } })).toEqual({});
    expect(await strict.checkIdentityPolicy({ policy: { mode: 'ssh', allowedSigners: 'alice ssh-ed25519 AAAA' } })).toEqual({});
    const rehearsals = createIdentityActivities({ trustedIssuers: [], allowUnverified: true });
    expect(await rehearsals.checkIdentityPolicy({ policy: { mode: 'unverified' } })).toEqual({});
  });
});
