// Verifying who decided, for the workflow: it runs these as activities, so each verdict (and the issuer's
// key that signed a token) is recorded in history and replays as it was given. The worker's
// own policy decides which issuers it trusts and whether it runs unverified plans at all: a plan cannot
// bring its own identity provider to a worker that does not trust it.
import { readState, sandboxHome } from '../contract/home';
import { statementNonce, statementText, type DecisionStatement, type IdentityPolicy, type Proof, type Verification } from '../contract/identity';
import { fetchIssuerKeys, verifyIdToken } from '../identity/oidc';
import { verifySshSignature } from '../identity/ssh';

export interface WorkerIdentityPolicy {
  /** Issuers whose tokens this worker accepts (exact issuer URLs). */
  trustedIssuers: string[];
  /** Whether this worker runs plans with `identity: unverified` (rehearsals). */
  allowUnverified: boolean;
}

/**
 * The policy from the environment: TIERSHIFT_TRUSTED_ISSUERS (comma-separated) and
 * TIERSHIFT_ALLOW_UNVERIFIED (1 or 0). A sandbox worker also trusts the sandbox's identity provider and,
 * unless told otherwise, runs unverified rehearsals; any other worker runs verified plans only.
 */
export function workerIdentityPolicy(opts: { sandbox: boolean }): WorkerIdentityPolicy {
  const listed = (process.env.TIERSHIFT_TRUSTED_ISSUERS ?? '').split(',').map((s) => s.trim().replace(/\/$/, '')).filter(Boolean);
  const idp = opts.sandbox ? readState(sandboxHome())?.idp?.issuer : undefined;
  const allow = process.env.TIERSHIFT_ALLOW_UNVERIFIED;
  return { trustedIssuers: [...new Set([...listed, ...(idp ? [idp] : [])])], allowUnverified: allow === undefined ? opts.sandbox : allow === '1' || allow === 'true' };
}

export interface VerifyInput {
  policy: IdentityPolicy;
  statement: DecisionStatement;
  proof: Proof;
  /** Workflow time: a token's expiry is judged against it, so the verdict replays the same. */
  at: string;
}

export function createIdentityActivities(worker: WorkerIdentityPolicy) {
  return {
    /** Whether this worker runs a plan proven this way; a refusal ends the run before its first step. */
    async checkIdentityPolicy({ policy }: { policy: IdentityPolicy }): Promise<{ refusal?: string }> {
      if (policy.mode === 'unverified' && !worker.allowUnverified) {
        return { refusal: 'this worker runs plans with verified decisions only (identity: unverified is for rehearsals); give the plan an identity provider or SSH signers' };
      }
      if (policy.mode === 'oidc' && !worker.trustedIssuers.includes(policy.issuer)) {
        return { refusal: `this worker does not trust the identity provider ${policy.issuer}; add it to TIERSHIFT_TRUSTED_ISSUERS on the worker, or use a trusted one in the plan` };
      }
      return {};
    },

    /** Verifies one decision's proof against the statement the workflow built; a refusal is an answer, not a failure. */
    async verifyDecision({ policy, statement, proof, at }: VerifyInput): Promise<Verification> {
      if (policy.mode === 'oidc') {
        if (!worker.trustedIssuers.includes(policy.issuer)) return { ok: false, refusal: `this worker does not trust the identity provider ${policy.issuer}` };
        if (proof.kind !== 'oidc') return { ok: false, refusal: `this migration takes tokens from ${policy.issuer}, not SSH signatures; sign in with \`tiershift login\`` };
        // An unreachable issuer throws: the activity retries, and the caller then says so.
        const check = (keys: Record<string, unknown>[]) =>
          verifyIdToken(proof.token, { issuer: policy.issuer, audience: policy.audience, nonce: statementNonce(statement), at: new Date(at), groupsClaim: policy.groupsClaim, keys });
        const cached = await fetchIssuerKeys(policy.issuer);
        const verdict = await check(cached.keys);
        if (verdict.ok) return verdict;
        // The issuer may have rotated its key since the keys were cached: judge once more on fresh ones.
        const fresh = await fetchIssuerKeys(policy.issuer, { fresh: true });
        return JSON.stringify(fresh.keys) === JSON.stringify(cached.keys) ? verdict : check(fresh.keys);
      }
      if (policy.mode === 'ssh') {
        if (proof.kind !== 'ssh') return { ok: false, refusal: 'this migration takes SSH signatures from the keys its plan lists, not tokens; sign with --key' };
        return verifySshSignature(statementText(statement), proof.signature, policy.allowedSigners);
      }
      return { ok: false, refusal: 'this migration takes unverified decisions; send no proof' };
    },
  };
}

export type IdentityActivities = ReturnType<typeof createIdentityActivities>;
