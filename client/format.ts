// Human-readable renderings of a migration's status, for `status` and the progress lines of `start --watch`.
import type { MigrationStatus, StepStatus } from '../workflows/shared';

const MARK: Record<StepStatus['state'], string> = {
  pending: ' ',
  running: '>',
  done: '✓',
  failed: '✗',
  skipped: '-',
  compensated: '↺',
  'compensation-failed': '!',
};

export function formatStatus(status: MigrationStatus): string {
  const lines = [
    `${status.migrationId}  ${status.state}  (plan ${status.plan.name}, sha256 ${status.plan.hash.slice(0, 12)}, started by ${status.startedBy} at ${status.startedAt})`,
  ];
  for (const step of status.steps) {
    const figures = Object.entries(step.figures)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    lines.push(`  [${MARK[step.state]}] ${step.id.padEnd(18)} ${step.title}`);
    if (step.summary) lines.push(`        ${step.summary}`);
    if (figures) lines.push(`        ${figures}`);
    if (step.error) lines.push(`        error: ${step.error}`);
  }
  if (status.traffic) {
    const t = status.traffic;
    lines.push(`Traffic: ${100 - t.weight}% ${t.stable} / ${t.weight}% ${t.canary}`);
  }
  const gate = status.pendingGate;
  if (gate) {
    lines.push(
      `Waiting at gate "${gate.gate}": ${gate.approvedBy.length}/${gate.requiredApprovals} approvals` +
        (gate.approvers.length ? ` (approvers: ${gate.approvers.join(', ')}${gate.fourEyes ? '; four eyes' : ''})` : ''),
    );
    if (gate.instructions) lines.push(`  ${gate.instructions}`);
    lines.push(`  approve: tiershift approve ${status.migrationId} --gate ${gate.gate}`);
    lines.push(`  reject:  tiershift reject ${status.migrationId} --gate ${gate.gate} --reason "..."`);
  }
  if (status.failure) {
    lines.push(`Failed at ${status.failure.stepId}: ${status.failure.error}`);
    lines.push(`  resume:   tiershift resume ${status.migrationId}`);
    lines.push(`  rollback: tiershift rollback ${status.migrationId} --reason "..."`);
  }
  if (status.rollback) {
    const rb = status.rollback;
    lines.push(`Rollback (${rb.trigger}${rb.by ? ` by ${rb.by}` : ''}): ${rb.reason}`);
    for (const a of rb.actions) lines.push(`  [${a.state}] ${a.stepId}: ${a.action}${a.error ? ` — ${a.error}` : ''}`);
  }
  for (const d of status.decisions) {
    lines.push(`Decision: ${d.decision} gate "${d.gate}" by ${d.by} at ${d.at}${d.comment ? ` — ${d.comment}` : ''}`);
  }
  return lines.join('\n');
}
