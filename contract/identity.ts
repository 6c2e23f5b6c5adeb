// Who decided: the statement every decision signs, the proof that comes with it, and what the worker
// verified. Temporal does not tell workflow code who called it, so each decision (start, approve,
// reject, resume, rollback) carries its own proof, and the workflow verifies it before anything changes.
import { z } from 'zod';
import { canonicalJson, sha256Base64url } from './digest';

/** How a plan's decisions are proven; a plan chooses one, and the worker's policy may refuse it. */
export type IdentityPolicy =
  | { mode: 'unverified' }
  /** Tokens from the organisation's identity provider; `audience` is the client id tiershift signs in as. */
  | { mode: 'oidc'; issuer: string; audience: string; groupsClaim: string }
  /** SSH signatures; `allowedSigners` is the content of an allowed-signers file (principal, key type, key per line). */
  | { mode: 'ssh'; allowedSigners: string };

export type DecisionAction = 'start' | 'approve' | 'reject' | 'resume' | 'rollback';

/**
 * What a decision says, bound to one migration, run, gate, plan and evidence: a token or signature
 * for it cannot be replayed on another gate, run, or migration, or after the evidence changed.
 */
export interface DecisionStatement {
  v: 1;
  migration: string;
  /** The run's first execution id; empty for a start, which has no run yet. */
  run: string;
  action: DecisionAction;
  gate?: string;
  /** The plan hash the workflow computes (contract/digest.ts planDigest). */
  planHash: string;
  /** The digest of the evidence shown to the person deciding (contract/digest.ts evidenceDigest). */
  evidence: string;
  /** A comment or reason, signed too so that nobody can change it afterwards. */
  note?: string;
  /** A rollback past the point of no return, confirmed. */
  confirm?: boolean;
}

/**
 * The statement of a decision, built one way for the workflow that verifies it and the CLI that signs
 * it: a token or signature is valid only if both build exactly this. A start has no run yet.
 */
export function decisionStatement(on: { migration: string; run: string; planHash: string; evidence: string }, action: DecisionAction, extra: { gate?: string; note?: string; confirm?: boolean } = {}): DecisionStatement {
  return {
    v: 1,
    migration: on.migration,
    run: action === 'start' ? '' : on.run,
    action,
    ...(extra.gate !== undefined ? { gate: extra.gate } : {}),
    planHash: on.planHash,
    evidence: on.evidence,
    ...(extra.note !== undefined ? { note: extra.note } : {}),
    ...(extra.confirm ? { confirm: true } : {}),
  };
}

/** The SSH signature namespace (`ssh-keygen -Y sign -n`): a tiershift signature is valid for nothing else. */
export const SSH_NAMESPACE = 'tiershift-decision';

/** The exact text an SSH key signs, and the statement a token's nonce is the digest of. */
export function statementText(s: DecisionStatement): string {
  return `tiershift decision v1\n${canonicalJson(s)}\n`;
}

/** The OIDC nonce of a statement: a token carrying it was issued for this decision only. */
export function statementNonce(s: DecisionStatement): string {
  return sha256Base64url(statementText(s));
}

/** The proof a decision carries: an ID token from the plan's issuer, or an SSH signature (SSHSIG armour). */
export const proofSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('oidc'), token: z.string().regex(/^[\w-]+\.[\w-]+\.[\w-]+$/, { error: 'expected a JWT' }).max(16_000) }),
  z.strictObject({
    kind: z.literal('ssh'),
    signature: z.string().regex(/^-----BEGIN SSH SIGNATURE-----\n[A-Za-z0-9+/=\n]+-----END SSH SIGNATURE-----\n?$/, { error: 'expected an armoured SSH signature' }).max(16_000),
  }),
]);
export type Proof = z.infer<typeof proofSchema>;

/** Who a verified proof names, and what it was checked with: enough to verify it again offline. */
export interface VerifiedIdentity {
  /** The token's `sub`, or the allowed-signers principal: what approver lists and four eyes compare. */
  subject: string;
  /** A display name (`name` or `preferred_username`); shown, never compared. */
  name?: string;
  /** Group claims, for approver lists that name `group:<name>`. */
  groups: string[];
  method: 'oidc' | 'ssh';
  /** OIDC: the issuer, and the public key (JWK) that signed the token, pinned in history. */
  issuer?: string;
  key?: Record<string, unknown>;
  /** SSH: the signing key's SHA256 fingerprint. */
  fingerprint?: string;
  /** sha256 (hex) of the token or signature. */
  proofDigest: string;
  issuedAt?: string;
  expiresAt?: string;
}

/** A verifier's answer: who, or one sentence saying why not and what to do. */
export type Verification = { ok: true; identity: VerifiedIdentity } | { ok: false; refusal: string };

/** One decision as history keeps it: the statement, its proof, and who it proved. Unverified ones carry no proof. */
export interface DecisionRecord {
  statement: DecisionStatement;
  at: string;
  subject: string;
  /** What was typed (`--by`), kept apart from the subject so that a display name never passes for one. */
  claimedBy?: string;
  verified: boolean;
  identity?: VerifiedIdentity;
  proof?: Proof;
}
