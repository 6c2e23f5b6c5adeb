// The CLI's side of proven decisions: the statement the workflow will build for a decision, from what the
// migration shows, and its proof: an ID token whose nonce is the statement's digest, or an SSH signature.
import { evidenceDigest } from '../contract/digest';
import { UserError } from '../contract/errors';
import { decisionStatement, statementNonce, statementText, type DecisionAction, type DecisionStatement, type IdentityPolicy, type Proof } from '../contract/identity';
import { evidenceOf, type MigrationStatus } from '../contract/status';
import { EXIT } from './errors';

export interface SignerFlags {
  /** SSH key (private, or public with the private key in ssh-agent) for plans with SSH signers. */
  key?: string;
  /** Where the sign-in is kept (default identity/config.ts configDir()): the demo keeps one per person. */
  configDir?: string;
}

/** The statement of a decision on a running migration, exactly as its workflow will build it. */
export function statementFor(status: MigrationStatus, action: Exclude<DecisionAction, 'start'>, extra: { gate?: string; note?: string; confirm?: boolean }): DecisionStatement {
  if (!status.identity) throw new Error('the migration does not prove decisions');
  return decisionStatement({ migration: status.migrationId, run: status.identity.run, planHash: status.plan.hash, evidence: evidenceDigest(evidenceOf(status)) }, action, extra);
}

export function startStatement(migration: string, planHash: string): DecisionStatement {
  return decisionStatement({ migration, run: '', planHash, evidence: evidenceDigest({}) }, 'start');
}

/** Whether decisions under this policy need a proof (and do not take the OS user's name). */
export const needsProof = (policy: IdentityPolicy | undefined): boolean => policy !== undefined && policy.mode !== 'unverified';

/** The proof of `statement` under the plan's policy: a fresh ID token for it, or a signature of it. */
export async function proofFor(policy: IdentityPolicy, statement: DecisionStatement, flags: SignerFlags): Promise<Proof | undefined> {
  if (policy.mode === 'oidc') {
    const { idTokenFor } = await import('../identity/oidc-login');
    return { kind: 'oidc', token: await idTokenFor({ issuer: policy.issuer, clientId: policy.audience, nonce: statementNonce(statement), ...(flags.configDir ? { configDir: flags.configDir } : {}) }) };
  }
  if (policy.mode === 'ssh') {
    const { defaultSigningKey, signStatement } = await import('../identity/ssh');
    const keyFile = flags.key ?? defaultSigningKey();
    if (!keyFile) throw new UserError('this migration takes SSH-signed decisions and no key was found; pass --key FILE (or set TIERSHIFT_SSH_KEY) with a key its plan lists.', EXIT.invalid);
    return { kind: 'ssh', signature: await signStatement(statementText(statement), { keyFile }) };
  }
  return undefined;
}

/** The fields a decision sends: a proof and the evidence digest it signs, or, in a rehearsal, the name given. */
export async function decisionFields(
  status: MigrationStatus,
  action: Exclude<DecisionAction, 'start'>,
  extra: { gate?: string; note?: string; confirm?: boolean },
  flags: SignerFlags & { by?: string; me: () => string },
): Promise<{ by?: string; proof?: Proof; evidence?: string }> {
  const policy = status.identity?.policy;
  if (!policy || !needsProof(policy)) return { by: flags.me() };
  const statement = statementFor(status, action, extra);
  const proof = await proofFor(policy, statement, flags);
  return { ...(flags.by !== undefined ? { by: flags.by } : {}), proof, evidence: statement.evidence };
}
