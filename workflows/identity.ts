// Who may decide, on verified subjects: the rules the workflow applies after the worker verified a
// decision's proof (activities/identity.ts). The verdict is an activity's result, so history keeps it
// (and the issuer's key it names) and replays it; an activity rather than a local one, because the SDK
// records a local activity's result in a marker without passing it through the codec, and history may
// be encrypted (codec/).
import * as wf from '@temporalio/workflow';
import type { IdentityActivities } from '../activities/identity';
import type { DecisionRecord, DecisionStatement, IdentityPolicy, Proof, Verification } from '../contract/identity';

const verifier = wf.proxyActivities<IdentityActivities>({ startToCloseTimeout: '20s', retry: { maximumAttempts: 3, initialInterval: '1s' } });

/** The worker's verdict on a proof. Not cancellable: a cancelled workflow still needs its rollback decided. */
export async function verifyProof(policy: IdentityPolicy, statement: DecisionStatement, proof: Proof, at: string): Promise<Verification> {
  try {
    return await wf.CancellationScope.nonCancellable(() => verifier.verifyDecision.executeWithOptions({ summary: `Verify who made the ${statement.action} decision`, startToCloseTimeout: '20s', retry: { maximumAttempts: 3, initialInterval: '1s' } }, [{ policy, statement, proof, at }]));
  } catch (err) {
    if (!(err instanceof wf.ActivityFailure)) throw err;
    const cause = err.cause instanceof Error ? err.cause.message : 'the worker could not verify it';
    return { ok: false, refusal: `the decision could not be verified (${cause.replace(/\.$/, '')}); try again` };
  }
}

/** Whether this worker runs a plan proven this way. */
export function checkIdentityPolicy(policy: IdentityPolicy): Promise<{ refusal?: string }> {
  return verifier.checkIdentityPolicy({ policy });
}

/** Who a decision is by, as the rules compare people. */
export interface Person {
  subject: string;
  groups: string[];
  /** An SSH key's fingerprint: the same key under two principals is still one person. */
  fingerprint?: string;
}

export function personOf(record: DecisionRecord): Person {
  return { subject: record.subject, groups: record.identity?.groups ?? [], ...(record.identity?.fingerprint ? { fingerprint: record.identity.fingerprint } : {}) };
}

/** A list of subjects and `group:<name>` entries; an empty list lets anyone the plan's identity proves decide. */
export function mayDecide(list: readonly string[], who: Person): boolean {
  return list.length === 0 || list.includes(who.subject) || who.groups.some((g) => list.includes(`group:${g}`));
}

export function samePerson(a: Person, b: Person): boolean {
  return a.subject === b.subject || (a.fingerprint !== undefined && a.fingerprint === b.fingerprint);
}
