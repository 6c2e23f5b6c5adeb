// The payloads of the calls people make on a migration (approve, reject, resume, rollback), as zod
// schemas: the CLI checks what it sends with them and the workflow checks what it receives with the
// same ones, before anything else reads a field. zod is plain deterministic JS, so the workflow bundle
// may import this file.
import { z } from 'zod';
import { proofSchema } from './identity';

// The same rule as the CLI's --by and the plan's approvers: a decision's author is one of those names.
const person = z.string({ error: 'expected a user name' }).regex(/^[^\s,]{1,100}$/, { error: 'expected a user name without spaces or commas' });
// Loose on purpose: an unknown name gets the workflow's own answer, which lists the plan's gates.
const gate = z.string({ error: 'expected a gate name' }).min(1, { error: 'expected a gate name' }).max(100, { error: 'expected a gate name of at most 100 characters' });
// Bounded so that one call cannot push the status (and every query of it) towards Temporal's payload limit.
const text = (what: string) => z.string({ error: `expected ${what} as text` }).max(2000, { error: `expected ${what} of at most 2000 characters` });
const planHash = z.string({ error: 'expected a plan hash' }).regex(/^[0-9a-f]{64}$/, { error: 'expected a plan sha256 of 64 hex digits' });
const evidence = z.string({ error: 'expected an evidence digest' }).regex(/^[0-9a-f]{64}$/, { error: 'expected an evidence sha256 of 64 hex digits' });
/**
 * What proves who decides (contract/identity.ts): required by a plan with an identity provider or SSH
 * signers, where `by` is only what was typed, and checked against the proof's subject.
 */
const proven = { proof: proofSchema.optional(), evidence: evidence.optional() };

export const approveArgsSchema = z.strictObject({
  gate,
  by: person.optional(),
  comment: text('a comment').optional(),
  /** The plan hash the approver reviewed; a different one is refused. */
  planHash: planHash.optional(),
  ...proven,
});
export const rejectArgsSchema = z.strictObject({ gate, by: person.optional(), reason: text('a reason'), planHash: planHash.optional(), ...proven });
export const operatorArgsSchema = z.strictObject({
  by: person.optional(),
  ...proven,
  reason: text('a reason').optional(),
  /** Past the point of no return, a rollback must be confirmed: it moves data back, not just traffic. */
  confirm: z.boolean({ error: 'expected true or false' }).optional(),
});

export type ApproveArgs = z.infer<typeof approveArgsSchema>;
export type RejectArgs = z.infer<typeof rejectArgsSchema>;
export type OperatorArgs = z.infer<typeof operatorArgsSchema>;

/** What each call expects, for the refusal of one that does not match. */
const EXPECTED = new Map<z.ZodType, string>([
  [approveArgsSchema, '{ "gate": string, "by"?: string, "comment"?: string, "planHash"?: string, "evidence"?: string, "proof"?: {...} }'],
  [rejectArgsSchema, '{ "gate": string, "by"?: string, "reason": string, "planHash"?: string, "evidence"?: string, "proof"?: {...} }'],
  [operatorArgsSchema, '{ "by"?: string, "reason"?: string, "confirm"?: boolean, "evidence"?: string, "proof"?: {...} }'],
]);

/**
 * Why `payload` is not a well-formed `call` (e.g. "approval"), in one sentence ending in `hint` (by
 * default, the payload expected), or undefined when it is. The sentence names fields and what they
 * expect, never the values sent: a refusal is recorded, and a huge or secret value must not be.
 */
export function payloadProblem(schema: z.ZodType, call: string, payload: unknown, hint?: string): string | undefined {
  const result = schema.safeParse(payload);
  if (result.success) return undefined;
  const issues = result.error.issues.slice(0, 3).map((issue) => {
    const where = issue.path.length ? issue.path.map(String).join('.').slice(0, 60) : '';
    const message =
      issue.code === 'unrecognized_keys'
        ? `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.slice(0, 3).map((k) => JSON.stringify(k.slice(0, 40))).join(', ')}`
        : issue.message;
    return where ? `${where}: ${message}` : message;
  });
  const more = result.error.issues.length > 3 ? ` and ${result.error.issues.length - 3} more` : '';
  return `the ${call} is malformed (${issues.join('; ')}${more}); ${hint ?? `send ${EXPECTED.get(schema) ?? 'the documented payload'}`}`;
}
