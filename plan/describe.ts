// `tiershift plan FILE`: the dry run. Shows what would run, where people decide, and how it would be undone.
import { PHASES } from './phases';
import { recoveryPhrase } from './phases/finalize';
import { recoveryPoint, rollbackOrder } from './rollback';
import { allowedPrincipals } from '../identity/ssh';
import type { AppStep, FinalizeStep, ResolvedPlan, Step } from './types';

export function describePlanJson(plan: ResolvedPlan) {
  return {
    name: plan.name,
    migrationId: `migration-${plan.name}`,
    hash: plan.hash,
    source: plan.source,
    resources: plan.resources,
    steps: plan.steps,
    gates: plan.steps.filter((s) => s.kind === 'gate'),
    identity: plan.identity,
    operators: plan.operators,
    rollback: rollbackOrder(plan.steps),
  };
}

export function describePlan(plan: ResolvedPlan): string {
  const lines = [`Plan ${plan.name} (${plan.source}, sha256 ${plan.hash.slice(0, 12)}) is valid; it would run as migration-${plan.name}.`];
  if (plan.description) lines.push(plan.description.trim());
  lines.push('', 'Resources:');
  for (const r of Object.values(plan.resources)) lines.push(`  ${r.name.padEnd(14)} ${r.kind.padEnd(9)} ${r.provider}${r.taskQueue ? `  (task queue ${r.taskQueue})` : ''}`);
  lines.push('', 'Steps:');
  const width = Math.max(...plan.steps.map((s) => s.id.length));
  // The workflow's own queue goes unsaid: only a step a resource pins elsewhere needs a worker there.
  for (const step of plan.steps) lines.push(`  ${step.id.padEnd(width)}  ${step.title}${detail(step)}${step.taskQueue ? `  (runs on task queue ${step.taskQueue})` : ''}`);
  const gates = plan.steps.filter((s) => s.kind === 'gate');
  lines.push('', gates.length ? 'Gates:' : 'Gates: none; nothing waits for a person.');
  for (const g of gates) {
    const who = g.approvers.length ? g.approvers.join(', ') : 'anyone';
    const timeout = g.timeout ? `; after ${g.timeout} without a decision: ${g.onTimeout}` : '; waits without a time limit';
    lines.push(`  ${g.gate}: ${g.requiredApprovals} approval(s) from ${who}${g.fourEyes ? ', not the starter (four eyes)' : ''}${timeout}`);
  }
  lines.push('', `Decisions: ${whoDecides(plan)}`);
  const ponr = plan.steps.find((s): s is FinalizeStep => s.kind === 'finalize' && s.pointOfNoReturn !== undefined);
  if (ponr?.pointOfNoReturn) {
    lines.push(
      '',
      `Point of no return: ${ponr.id}, once gate "${ponr.pointOfNoReturn.gate}" passes. After it, rolling back means ${recoveryPhrase(ponr.pointOfNoReturn.recovery, ponr.syncedFrom)}, and needs \`tiershift rollback --confirm\`.`,
    );
  }
  const writes = plan.steps.find((s): s is AppStep => s.kind === 'app' && s.targetWrites !== undefined);
  if (writes?.targetWrites) {
    const { database, source, acceptWriteLoss } = writes.targetWrites;
    const point = recoveryPoint([writes]);
    lines.push(
      '',
      acceptWriteLoss
        ? `Write point: ${writes.id}. From when it starts, ${database} takes writes ${source} lacks, and a rollback LOSES them (acceptWriteLoss: true); a plain \`tiershift rollback\` that would lose any is refused with their count, \`--confirm\` accepts the loss.`
        : `Write point: ${writes.id}. From when it starts, ${database} takes writes ${source} lacks, so ${ponr ? `until ${ponr.id} ` : ''}a rollback first does "${point!.start}" (before traffic returns) and "${point!.finish}" (after ${writes.resource} ${writes.version} stops); a plain \`tiershift rollback\` that has rows to copy back is refused with their count.`,
    );
  }
  lines.push('', 'Rollback order (on rejection, timeout, failed analysis, operator command or cancellation):');
  const order = rollbackOrder(plan.steps);
  if (!order.length) lines.push('  nothing to undo: checks and gates change nothing.');
  order.forEach((a, i) => lines.push(`  ${i + 1}. ${a.stepId}: ${a.action}${a.part || plan.steps.find((s) => s.id === a.stepId)?.kind === 'finalize' ? (plan.steps.find((s) => s.id === a.stepId)?.kind === 'app' ? ' (only once the new version took writes)' : ' (only past the point of no return)') : ''}`));
  lines.push('', `Nothing was run. Start it with: tiershift start ${plan.source}`);
  return lines.join('\n');
}

function detail(step: Step): string {
  const text = PHASES[step.kind].describe?.(step) ?? '';
  return text ? `  [${text}]` : '';
}

/** How the plan's decisions are proven, and who may resume and roll back. */
function whoDecides(plan: ResolvedPlan): string {
  const operators = `operators (resume, rollback): ${plan.operators?.length ? plan.operators.join(', ') : 'anyone the identity proves'}`;
  const id = plan.identity;
  if (!id) return 'names as typed (a plan from before decisions were proven)';
  if (id.mode === 'unverified') return `UNVERIFIED (identity: unverified): names as typed, for rehearsals only; ${operators}`;
  if (id.mode === 'oidc') return `proven with ID tokens from ${id.issuer} (audience ${id.audience}), checked by the worker; ${operators}`;
  return `proven with SSH signatures by the plan's allowed signers (${allowedPrincipals(id.allowedSigners).join(', ')}), checked by the worker; ${operators}`;
}
