// `tiershift audit` / `tiershift verify`: every decision of a migration checked again, offline, from what
// its status or report keeps: the statement, the proof, and the issuer's key pinned when it was verified
// (or the plan's allowed signers). Nothing is fetched: a key the issuer has since rotated away still
// verifies what it signed, and an altered decision does not.
import { sha256Hex } from '../contract/digest';
import { statementNonce, statementText, type DecisionRecord } from '../contract/identity';
import type { Decision, IdentityStatus } from '../contract/status';
import { verifyIdToken } from './oidc';
import { verifySshSignature } from './ssh';

export interface AuditInput {
  migrationId: string;
  plan: { hash: string };
  startedBy: string;
  identity?: IdentityStatus;
  decisionLog?: DecisionRecord[];
  decisions?: Decision[];
}

export interface AuditResult {
  /** One line per decision: what it was, who, and whether it verified. */
  lines: string[];
  /** One sentence per problem; empty when every decision verified. */
  problems: string[];
}

export async function auditDecisions(input: AuditInput): Promise<AuditResult> {
  const lines: string[] = [];
  const problems: string[] = [];
  const identity = input.identity;
  if (!identity) return { lines, problems: [`${input.migrationId} started before decisions were proven: its decisions are names as typed and cannot be verified`] };
  const log = input.decisionLog ?? [];
  for (const [i, record] of log.entries()) {
    const what = `${i + 1}. ${record.statement.action}${record.statement.gate ? ` "${record.statement.gate}"` : ''} by ${record.subject} at ${record.at}`;
    const problem = await checkRecord(input, identity, record);
    lines.push(`${problem ? 'FAIL' : 'ok  '} ${what}${problem ? `: ${problem}` : record.verified ? ` (${record.identity?.issuer ?? record.identity?.fingerprint})` : ''}`);
    if (problem) problems.push(`decision ${what}: ${problem}`);
  }
  // The readable parts of the report must say what the proven log says.
  const start = log.find((d) => d.statement.action === 'start');
  if (!start) problems.push('the decision log has no start');
  else if (start.subject !== input.startedBy) problems.push(`the report says ${input.startedBy} started it, but the proven start is ${start.subject}'s`);
  for (const d of input.decisions ?? []) {
    const match = log.some((r) => r.statement.action === d.decision && r.statement.gate === d.gate && r.subject === d.by && (r.statement.note ?? undefined) === (d.comment ?? undefined));
    if (!match) problems.push(`the ${d.decision} of gate "${d.gate}" by ${d.by} matches no proven decision`);
  }
  return { lines, problems };
}

async function checkRecord(input: AuditInput, identity: IdentityStatus, record: DecisionRecord): Promise<string | undefined> {
  const s = record.statement;
  if (s.migration !== input.migrationId) return `its statement names migration ${s.migration}`;
  if (s.planHash !== input.plan.hash) return `its statement names plan sha256 ${s.planHash.slice(0, 12)}, not ${input.plan.hash.slice(0, 12)}`;
  if (s.run !== (s.action === 'start' ? '' : identity.run)) return `its statement names another run (${s.run})`;
  const policy = identity.policy;
  if (policy.mode === 'unverified') return record.verified ? 'it claims a proof, but the plan ran unverified' : 'unverified: the plan ran with identity: unverified';
  if (!record.verified || !record.proof || !record.identity) return 'it carries no proof';
  if (sha256Hex(record.proof.kind === 'oidc' ? record.proof.token : record.proof.signature) !== record.identity.proofDigest) return 'its proof is not the one whose digest was recorded';
  if (policy.mode === 'oidc') {
    if (record.proof.kind !== 'oidc' || !record.identity.key) return 'it carries no token and pinned key';
    const verdict = await verifyIdToken(record.proof.token, {
      issuer: policy.issuer,
      audience: policy.audience,
      nonce: statementNonce(s),
      at: new Date(record.at),
      groupsClaim: policy.groupsClaim,
      keys: [record.identity.key],
    });
    if (!verdict.ok) return verdict.refusal;
    if (verdict.identity.subject !== record.subject) return `its token is ${verdict.identity.subject}'s, not ${record.subject}'s`;
    return undefined;
  }
  if (record.proof.kind !== 'ssh') return 'it carries no SSH signature';
  const verdict = await verifySshSignature(statementText(s), record.proof.signature, policy.allowedSigners);
  if (!verdict.ok) return verdict.refusal;
  if (verdict.identity.subject !== record.subject || verdict.identity.fingerprint !== record.identity.fingerprint) return `its signature is ${verdict.identity.subject}'s, not ${record.subject}'s`;
  return undefined;
}
