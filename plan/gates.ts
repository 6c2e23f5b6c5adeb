// Whether every gate of a plan can pass once a given person starts it. `tiershift start` refuses such
// a plan, and the workflow aborts at once on one started another way (the raw Temporal CLI): one rule
// for both. Pure and deterministic, so the workflow may import it.
import type { GateStep, ResolvedPlan } from './types';

/**
 * Why a gate of `plan` can never collect its required approvals when `startedBy` starts the migration,
 * in one sentence that says what to do; undefined when every gate can pass.
 */
export function unreachableGate(plan: Pick<ResolvedPlan, 'steps'>, startedBy: string): string | undefined {
  for (const step of plan.steps) {
    if (step.kind !== 'gate') continue;
    const problem = gateProblem(step, startedBy);
    if (problem) return problem;
  }
  return undefined;
}

function gateProblem(gate: GateStep, startedBy: string): string | undefined {
  // No approvers means anyone may approve: there are always enough people.
  if (!gate.approvers.length) return undefined;
  // A group (`group:sre`) may hold any number of people: only the identity provider knows.
  if (gate.approvers.some((a) => a.startsWith('group:'))) return undefined;
  // An escalation widens the list (workflows/run.ts escalateGate), so its people count too. Whether it
  // fires before a timeout is not judged here: refusing a plan that can pass would be worse.
  const escalation = gate.notify?.escalateAfter ? (gate.notify.escalateTo ?? []) : [];
  const eligible = new Set([...gate.approvers, ...escalation]);
  const excluded = gate.fourEyes && eligible.delete(startedBy);
  if (eligible.size >= gate.requiredApprovals) return undefined;
  const who = eligible.size ? `only ${[...eligible].join(', ')} may approve` : 'nobody may approve';
  const why = excluded ? `with four eyes ${startedBy}, who starts it, may not approve, so ${who}` : who;
  const fix = excluded ? 'have another approver start the migration, add approvers to the gate, or lower its requiredApprovals' : 'add approvers to the gate, or lower its requiredApprovals';
  return `gate "${gate.gate}" can never pass: it needs ${gate.requiredApprovals} approval${gate.requiredApprovals === 1 ? '' : 's'}, but ${why}; ${fix}.`;
}
