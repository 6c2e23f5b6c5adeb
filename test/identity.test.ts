// Decisions by verified people, against the running sandbox: its identity provider, its Temporal, a real
// `tiershift worker`. Every refusal is sent both as an operator would (the CLI) and around it (the raw
// `temporal workflow update` / `signal`), and each must leave the migration as it was.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { exportJWK, generateKeyPair, importJWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evidenceDigest } from '../contract/digest';
import { PROJECT_ROOT, readState, sandboxHome } from '../contract/home';
import { statementNonce, statementText, type DecisionStatement } from '../contract/identity';
import { evidenceOf, type MigrationStatus } from '../contract/status';
import { idTokenFor } from '../identity/oidc-login';
import { signStatement } from '../identity/ssh';
import { isOneSentence, spawnWorker, tiershift } from './support/cli';
import { eventually, sandboxTemporal, type SandboxTemporal } from './support/temporal';

let temporal: SandboxTemporal;
let worker: ReturnType<typeof spawnWorker>;
let dir: string;
let issuer: string;
/** One config dir per person: each signs in for real, and their sessions never mix. */
const as = (user: string) => ({ TIERSHIFT_CONFIG_DIR: path.join(dir, 'config', user) });

beforeAll(async () => {
  temporal = await sandboxTemporal();
  worker = spawnWorker();
  dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-identity-'));
  issuer = readState(sandboxHome())!.idp!.issuer;
  for (const user of ['alice', 'bob', 'carol']) {
    const signedIn = await tiershift(['login', '--user', user], as(user));
    expect(signedIn.stderr).toBe('');
    expect(signedIn.stdout).toContain(`signed in to ${issuer} as ${user}`);
  }
});

afterAll(async () => {
  await worker?.stop();
  await temporal?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The minimal plan, proven by `identity`, with four eyes at its gate. */
function writePlan(name: string, identity: string, extra = ''): string {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `apiVersion: tiershift/v1
name: ${name}
${identity}
approvers: [alice, bob]
${extra}resources:
  sourceDb: { kind: postgres, database: shop, local: { cluster: source } }
  targetDb: { kind: postgres, database: postgres, local: { cluster: target } }
phases:
  - check: { resources: [sourceDb] }
  - gate: { name: go, fourEyes: true }
  - check: { resources: [targetDb] }
`,
  );
  return file;
}

async function status(id: string): Promise<MigrationStatus> {
  const result = await tiershift(['status', id, '--json']);
  if (result.code !== 0) throw new Error(`status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as MigrationStatus;
}

/** The raw Temporal CLI, around tiershift's own checks. */
function temporalCli(args: string[]): { code: number; out: string } {
  const r = spawnSync(path.join(PROJECT_ROOT, '.tools', 'bin', 'temporal'), [...args, '--address', temporal.address, '--namespace', 'default'], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

const rawUpdate = (id: string, name: string, input: unknown) => temporalCli(['workflow', 'update', 'execute', '--workflow-id', id, '--name', name, '--input', JSON.stringify(input)]);
const rawSignal = (id: string, name: string, input: unknown) => temporalCli(['workflow', 'signal', '--workflow-id', id, '--name', name, '--input', JSON.stringify(input)]);

/** The statement the workflow builds for an approval of `gate` now. */
function approvalStatement(s: MigrationStatus, gate: string, note?: string): DecisionStatement {
  return { v: 1, migration: s.migrationId, run: s.identity!.run, action: 'approve', gate, planHash: s.plan.hash, evidence: evidenceDigest(evidenceOf(s)), ...(note ? { note } : {}) };
}

/** Nothing changed: still waiting at the gate with no approvals, no decision but the start. */
function unchanged(s: MigrationStatus): void {
  expect(s.state).toBe('awaiting-approval');
  expect(s.pendingGate?.approvedBy).toEqual([]);
  expect(s.decisions).toEqual([]);
  expect(s.decisionLog?.map((d) => d.statement.action)).toEqual(['start']);
}

describe('decisions proven with the sandbox identity provider', () => {
  let plan: string;
  let id: string;
  let atGate: MigrationStatus;

  beforeAll(async () => {
    plan = writePlan('proven-oidc', 'identity:\n  oidc: { issuer: sandbox }');
    id = `migration-proven-oidc-${Date.now().toString(36)}`;
    const started = await tiershift(['start', plan, '--id', id], as('alice'));
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    atGate = await eventually(() => status(id), (s) => s.pendingGate?.gate === 'go');
  });

  it('starts as the verified subject, whatever the OS user is called', () => {
    expect(atGate.startedBy).toBe('alice');
    const start = atGate.decisionLog![0]!;
    expect(start).toMatchObject({ subject: 'alice', verified: true, identity: { method: 'oidc', issuer, groups: ['sre', 'dba'] } });
    expect(start.identity!.key).toMatchObject({ kty: 'EC' });
    expect(start.identity!.key).not.toHaveProperty('d');
  });

  it('refuses a forged by: through the CLI (exit 4) and through raw update and signal', async () => {
    const cli = await tiershift(['approve', id, '--gate', 'go', '--by', 'alice'], as('carol'));
    expect(cli.code).toBe(4);
    expect(isOneSentence(cli.stderr)).toBe(true);
    expect(cli.stderr).toMatch(/by alice, but its proof is carol's/);

    const update = rawUpdate(id, 'approve', { gate: 'go', by: 'alice' });
    expect(update.code).not.toBe(0);
    expect(update.out).toMatch(/takes verified decisions only/);

    const signal = rawSignal(id, 'approve-signal', { gate: 'go', by: 'bob' });
    expect(signal.code).toBe(0);
    const after = await eventually(() => status(id), (s) => s.errors.some((e) => /signal refused: .*verified decisions only/.test(e.error)));
    unchanged(after);
  });

  it('refuses a self-approval under four eyes, under another name too', async () => {
    const self = await tiershift(['approve', id, '--gate', 'go'], as('alice'));
    expect(self.code).toBe(4);
    expect(isOneSentence(self.stderr)).toBe(true);
    expect(self.stderr).toMatch(/needs four eyes: alice started this migration/);
    const renamed = await tiershift(['approve', id, '--gate', 'go', '--by', 'alice.admin'], as('alice'));
    expect(renamed.code).toBe(4);
    expect(renamed.stderr).toMatch(/by alice\.admin, but its proof is alice's/);
    unchanged(await status(id));
  });

  it('refuses someone the approver list does not name', async () => {
    const carol = await tiershift(['approve', id, '--gate', 'go'], as('carol'));
    expect(carol.code).toBe(4);
    expect(carol.stderr).toMatch(/carol may not decide gate "go"; its approvers are: alice, bob/);
    unchanged(await status(id));
  });

  it("refuses bob's real token replayed on another gate, on another run, or with other evidence", async () => {
    const s = await status(id);
    const config = as('bob').TIERSHIFT_CONFIG_DIR;
    const tokenFor = (statement: DecisionStatement) => idTokenFor({ issuer, clientId: 'tiershift', nonce: statementNonce(statement), configDir: config });
    const otherGate = await tokenFor({ ...approvalStatement(s, 'go'), gate: 'finalize' });
    const otherRun = await tokenFor({ ...approvalStatement(s, 'go'), run: 'another-run' });
    const otherMigration = await tokenFor({ ...approvalStatement(s, 'go'), migration: 'migration-other' });
    const refusedBefore = (await status(id)).refusedSignals ?? 0;
    for (const token of [otherGate, otherRun, otherMigration]) {
      const update = rawUpdate(id, 'approve', { gate: 'go', proof: { kind: 'oidc', token } });
      expect(update.code).not.toBe(0);
      expect(update.out).toMatch(/issued for another decision/);
      expect(rawSignal(id, 'approve-signal', { gate: 'go', proof: { kind: 'oidc', token } }).code).toBe(0);
    }
    const after = await eventually(() => status(id), (st) => (st.refusedSignals ?? 0) >= refusedBefore + 3);
    expect(after.errors.slice(-3).map((e) => e.error)).toEqual(Array(3).fill(expect.stringMatching(/^signal refused: the token was issued for another decision/)));
    unchanged(after);
  });

  it('refuses a token from another issuer, an expired one, and one for another audience', async () => {
    const s = await status(id);
    const nonce = statementNonce(approvalStatement(s, 'go'));
    // Another issuer: its own key, its own name.
    const other = await generateKeyPair('ES256');
    const foreign = await new SignJWT({ nonce, name: 'Bob' }).setProtectedHeader({ alg: 'ES256', kid: 'other' }).setIssuer('http://127.0.0.1:1/other').setSubject('bob').setAudience('tiershift').setIssuedAt().setExpirationTime('5m').sign(other.privateKey);
    // Expired: signed with the sandbox provider's own key, so only the expiry is wrong.
    const jwks = JSON.parse(readFileSync(path.join(sandboxHome(), 'idp', 'jwks.json'), 'utf8')) as { keys: (Record<string, unknown> & { kid: string })[] };
    const key = jwks.keys[0]!;
    const sandboxKey = await importJWK(key, 'ES256');
    const past = Math.floor(Date.now() / 1000) - 3600;
    const expired = await new SignJWT({ nonce }).setProtectedHeader({ alg: 'ES256', kid: key.kid }).setIssuer(issuer).setSubject('bob').setAudience('tiershift').setIssuedAt(past - 600).setExpirationTime(past).sign(sandboxKey);
    // Another audience: a real token bob got as another application of the same provider.
    const otherApp = path.join(dir, 'config', 'bob-other-app');
    const signedIn = await tiershift(['login', '--user', 'bob', '--client-id', 'other-app'], { TIERSHIFT_CONFIG_DIR: otherApp });
    expect(signedIn.code).toBe(0);
    const audience = await idTokenFor({ issuer, clientId: 'other-app', nonce, configDir: otherApp });

    const refusals: [string, RegExp][] = [
      [foreign, /issued by http:\/\/127\.0\.0\.1:1\/other/],
      [expired, /expired at/],
      [audience, /is for other-app, not tiershift/],
    ];
    for (const [token, why] of refusals) {
      const update = rawUpdate(id, 'approve', { gate: 'go', proof: { kind: 'oidc', token } });
      expect(update.code).not.toBe(0);
      expect(update.out).toMatch(why);
      const before = (await status(id)).refusedSignals ?? 0;
      expect(rawSignal(id, 'approve-signal', { gate: 'go', proof: { kind: 'oidc', token } }).code).toBe(0);
      const refused = await eventually(() => status(id), (st) => (st.refusedSignals ?? 0) > before);
      expect(refused.errors.at(-1)?.error).toMatch(why);
    }
    unchanged(await status(id));
    expect(JSON.stringify(await exportJWK(other.publicKey))).not.toContain('"d"');
  });

  it('refuses a resume or rollback by someone who is not an operator', async () => {
    const cli = await tiershift(['rollback', id, '--reason', 'I want to'], as('carol'));
    expect(cli.code).toBe(4);
    expect(isOneSentence(cli.stderr)).toBe(true);
    expect(cli.stderr).toMatch(/carol may not roll back this migration; its operators are: alice, bob/);
    const resume = await tiershift(['resume', id], as('carol'));
    expect(resume.code).toBe(4);
    const update = rawUpdate(id, 'rollback', { by: 'alice', reason: 'raw' });
    expect(update.code).not.toBe(0);
    expect(update.out).toMatch(/takes verified decisions only/);
    unchanged(await status(id));
  });

  it('passes the gate on a verified approval, and the record re-verifies offline until one decision is altered', async () => {
    const approved = await tiershift(['approve', id, '--gate', 'go', '--comment', 'looks right'], as('bob'));
    expect(approved.stderr).toBe('');
    expect(approved.stdout).toMatch(/approved gate "go" as bob/);
    const done = await eventually(() => status(id), (s) => s.state === 'completed');
    expect(done.decisions).toMatchObject([{ gate: 'go', decision: 'approve', by: 'bob', comment: 'looks right' }]);

    const audit = await tiershift(['audit', id]);
    expect(audit.stderr).toBe('');
    expect(audit.code).toBe(0);
    expect(audit.stdout).toMatch(/ok +1\. start by alice/);
    expect(audit.stdout).toMatch(/ok +2\. approve "go" by bob/);

    const report = await tiershift(['report', id, '--json']);
    const file = path.join(dir, 'report.json');
    writeFileSync(file, report.stdout);
    expect((await tiershift(['verify', file])).code).toBe(0);
    const saved = JSON.parse(report.stdout) as { decisionLog: { subject: string; statement: { note?: string } }[]; decisions: { comment?: string }[] };
    const alterations: [string, (r: typeof saved) => void][] = [
      ['the approver', (r) => (r.decisionLog[1]!.subject = 'carol')],
      ['the comment', (r) => (r.decisionLog[1]!.statement.note = 'lgtm', (r.decisions[0]!.comment = 'lgtm'))],
    ];
    for (const [what, alter] of alterations) {
      const copy = JSON.parse(report.stdout) as typeof saved;
      alter(copy);
      writeFileSync(file, JSON.stringify(copy));
      const verify = await tiershift(['verify', file]);
      expect(verify.code, what).toBe(1);
      expect(verify.stderr).toMatch(/does not prove who decided/);
    }
  });

  it('takes a cancel from the Temporal UI as a request for a rollback that an operator decides', async () => {
    const cancelId = `migration-proven-cancel-${Date.now().toString(36)}`;
    expect((await tiershift(['start', plan, '--id', cancelId], as('alice'))).code).toBe(0);
    await eventually(() => status(cancelId), (s) => s.pendingGate?.gate === 'go');
    expect(temporalCli(['workflow', 'cancel', '--workflow-id', cancelId]).code).toBe(0);
    const held = await eventually(() => status(cancelId), (s) => s.state === 'awaiting-operator');
    expect(held.failure?.error).toMatch(/cancelled, which asks for a rollback/);
    expect(held.rollback).toBeUndefined();
    const carol = await tiershift(['rollback', cancelId, '--reason', 'cancelled'], as('carol'));
    expect(carol.code).toBe(4);
    const bob = await tiershift(['rollback', cancelId, '--reason', 'cancelled in the UI'], as('bob'));
    expect(bob.stderr).toBe('');
    const rolledBack = await eventually(() => status(cancelId), (s) => s.state === 'rolled-back');
    expect(rolledBack.rollback).toMatchObject({ trigger: 'operator', by: 'bob' });
  });
});

describe('decisions proven with SSH signatures', () => {
  const keys: Record<string, string> = {};
  let plan: string;
  let id: string;

  beforeAll(async () => {
    for (const who of ['alice', 'bob', 'mallory']) {
      keys[who] = path.join(dir, `${who}_ed25519`);
      const made = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', who, '-f', keys[who]!], { encoding: 'utf8' });
      expect(made.status).toBe(0);
    }
    const line = (who: string) => `${who} ${readFileSync(`${keys[who]}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ')}`;
    writeFileSync(path.join(dir, 'allowed_signers'), `${line('alice')}\n${line('bob')}\n`);
    plan = writePlan('proven-ssh', 'identity:\n  ssh: { allowedSigners: allowed_signers }');
    id = `migration-proven-ssh-${Date.now().toString(36)}`;
    const started = await tiershift(['start', plan, '--id', id, '--key', keys.alice!]);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    await eventually(() => status(id), (s) => s.pendingGate?.gate === 'go');
  });

  it('refuses a signature by a key the plan does not list, through the CLI and raw update', async () => {
    const cli = await tiershift(['approve', id, '--gate', 'go', '--key', keys.mallory!]);
    expect(cli.code).toBe(4);
    expect(isOneSentence(cli.stderr)).toBe(true);
    expect(cli.stderr).toMatch(/signed by key SHA256:\S+, which the plan's allowed signers do not list/);
    const s = await status(id);
    const signature = await signStatement(statementText(approvalStatement(s, 'go')), { keyFile: keys.mallory! });
    const update = rawUpdate(id, 'approve', { gate: 'go', by: 'bob', proof: { kind: 'ssh', signature } });
    expect(update.code).not.toBe(0);
    expect(update.out).toMatch(/allowed signers do not list/);
    unchanged(await status(id));
  });

  it('passes with a listed key, and anyone can check the decision with ssh-keygen -Y verify', async () => {
    const approved = await tiershift(['approve', id, '--gate', 'go', '--key', keys.bob!]);
    expect(approved.stderr).toBe('');
    const done = await eventually(() => status(id), (s) => s.state === 'completed');
    const approval = done.decisionLog!.find((d) => d.statement.action === 'approve')!;
    expect(approval).toMatchObject({ subject: 'bob', verified: true, identity: { method: 'ssh' } });
    // What an auditor runs, with nothing of tiershift's: the statement text, the signature, the plan's signers.
    writeFileSync(path.join(dir, 'approval.sig'), approval.proof!.kind === 'ssh' ? approval.proof!.signature : '');
    const check = spawnSync('ssh-keygen', ['-Y', 'verify', '-f', path.join(dir, 'allowed_signers'), '-I', 'bob', '-n', 'tiershift-decision', '-s', path.join(dir, 'approval.sig')], {
      input: statementText(approval.statement),
      encoding: 'utf8',
    });
    expect(check.stdout).toMatch(/Good "tiershift-decision" signature for bob/);
    expect((await tiershift(['audit', id])).code).toBe(0);
  });
});

describe('a rehearsal (identity: unverified)', () => {
  it('marks every decision unverified in status and report', async () => {
    const id = `migration-rehearsal-${Date.now().toString(36)}`;
    expect((await tiershift(['start', 'plans/minimal.yaml', '--id', id, '--by', 'alice'])).code).toBe(0);
    await eventually(() => status(id), (s) => s.pendingGate?.gate === 'go');
    const approved = await tiershift(['approve', id, '--gate', 'go', '--by', 'bob']);
    expect(approved.stdout).toMatch(/as bob \(unverified\)/);
    const done = await eventually(() => status(id), (s) => s.state === 'completed');
    expect(done.decisionLog?.every((d) => !d.verified)).toBe(true);
    expect((await tiershift(['status', id])).stdout).toMatch(/Decision: approve gate "go" by bob \(unverified\)/);
    expect((await tiershift(['report', id])).stdout).toMatch(/\*\*Unverified\*\*/);
    const audit = await tiershift(['audit', id]);
    expect(audit.code).toBe(1);
  });
});
