// Human-readable renderings of a migration's status and of the migration list, for `status`, `list`
// and `watch`.
import { gateDeadline, shortTime, span, type GateMemo } from '../contract/deadline';
import type { IdentityPolicy } from '../contract/identity';
import type { MigrationListing } from './migrations';
import { HEARTBEAT_THROTTLE_MS, type Progress } from '../contract/progress';
import { REFUSALS_KEPT, TERMINAL_STATES, type Figures, type MigrationStatus, type StepStatus } from '../contract/status';

export const MARK: Record<StepStatus['state'], string> = {
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
    const figures = formatFigures(step.figures);
    lines.push(`  [${MARK[step.state]}] ${step.id.padEnd(18)} ${step.title}`);
    if (step.summary) lines.push(`        ${step.summary}`);
    if (step.progress) lines.push(`        ${formatProgress(step.progress)}`);
    if (step.waiting) lines.push(`        waiting: ${step.waiting}`);
    if (figures) lines.push(`        ${figures}`);
    if (step.error) lines.push(`        error: ${step.error}`);
  }
  if (status.traffic) {
    lines.push(`Traffic: ${formatTraffic(status.traffic)}`);
  }
  const ponr = formatPointOfNoReturn(status);
  if (ponr) lines.push(ponr);
  const writes = status.targetWrites;
  if (writes?.crossed && !TERMINAL_STATES.includes(status.state) && !status.pointOfNoReturn?.crossed) {
    const counted = writes.measuredAt ? ` (${writes.targetOnlyRows} rows only on ${writes.database}, ${writes.differingRows} differing, at ${writes.measuredAt})` : '';
    lines.push(
      `Write point: crossed at ${writes.crossedAt} (${writes.stepId}); ${writes.database} takes writes ${writes.source} lacks${counted}; ` +
        (writes.recovery === 'none' ? 'the plan accepts losing them on a rollback' : `a rollback copies them back to ${writes.source} before users return to it`),
    );
  }
  const gate = status.pendingGate;
  if (gate) {
    lines.push(
      `Waiting at gate "${gate.gate}": ${gate.approvedBy.length}/${gate.requiredApprovals} approvals` +
        (gate.approvers.length ? ` (approvers: ${gate.approvers.join(', ')}${gate.fourEyes ? '; four eyes' : ''})` : ''),
    );
    lines.push(`  ${gateDeadline(gate, Date.now())}`);
    if (gate.instructions) lines.push(`  ${gate.instructions}`);
    lines.push(`  approve: tiershift approve ${status.migrationId} --gate ${gate.gate}`);
    lines.push(`  reject:  tiershift reject ${status.migrationId} --gate ${gate.gate} --reason "..."`);
  }
  if (status.failure) {
    lines.push(`Failed at ${status.failure.stepId}: ${status.failure.error}`);
    lines.push(`  resume:   tiershift resume ${status.migrationId}`);
    lines.push(`  rollback: ${rollbackCommand(status)}`);
  }
  if (status.rollback) {
    const rb = status.rollback;
    lines.push(`Rollback (${rb.trigger}${rb.by ? ` by ${rb.by}` : ''}): ${clause(rb.reason)}`);
    for (const a of rb.actions) {
      lines.push(`  [${a.state}] ${a.stepId}: ${a.action}${a.error ? ` — ${a.error}` : a.summary ? ` — ${clause(a.summary)}` : ''}`);
      if (a.progress) lines.push(`      ${formatProgress(a.progress)}`);
    }
    if (rb.rowsRecovered !== undefined) lines.push(`  rows recovered to the source: ${rb.rowsRecovered}; at risk: ${rb.rowsAtRisk ?? 0}`);
  }
  const identity = status.identity;
  if (identity) lines.push(`Decisions: ${provenBy(identity.policy)}`);
  for (const d of status.decisionLog ?? []) {
    if (d.statement.action === 'approve' || d.statement.action === 'reject') continue;
    lines.push(`Decision: ${d.statement.action}${d.statement.confirm ? ' (confirmed)' : ''} by ${d.subject} at ${d.at}${d.verified ? '' : ' (unverified)'}${d.statement.note ? ` — ${d.statement.note}` : ''}`);
  }
  for (const d of status.decisions) {
    // Where decisions are proven, the name is the verified subject; a rehearsal's is only what was typed.
    const mark = identity && identity.policy.mode === 'unverified' ? ' (unverified)' : '';
    lines.push(`Decision: ${d.decision} gate "${d.gate}" by ${d.by}${mark} at ${d.at}${d.comment ? ` — ${d.comment}` : ''}`);
  }
  if (status.refusedSignals) {
    const kept = Math.min(status.refusedSignals, REFUSALS_KEPT);
    lines.push(`Refused signals: ${status.refusedSignals} (the last ${kept} with their reasons: tiershift report ${status.migrationId})`);
  }
  return lines.join('\n');
}

/** Which side of the point of no return the migration is on, in one line; undefined without one or once ended. */
export function formatPointOfNoReturn(status: MigrationStatus): string | undefined {
  const ponr = status.pointOfNoReturn;
  if (!ponr || TERMINAL_STATES.includes(status.state)) return undefined;
  return ponr.crossed
    ? `Point of no return: CROSSED at ${ponr.crossedAt} (${ponr.stepId}); rolling back now means ${ponr.recoveryPlan}, and needs --confirm`
    : `Point of no return: not crossed (${ponr.stepId}, after gate "${ponr.gate}"); rolling back is a simple undo`;
}

export function rollbackCommand(status: MigrationStatus): string {
  return `tiershift rollback ${status.migrationId} --reason "..."${status.pointOfNoReturn?.crossed ? ' --confirm' : ''}`;
}

/** How a migration's decisions are proven, in a few words. */
export function provenBy(policy: IdentityPolicy): string {
  if (policy.mode === 'oidc') return `verified, with ID tokens from ${policy.issuer}`;
  if (policy.mode === 'ssh') return "verified, with SSH signatures by the plan's allowed signers";
  return 'UNVERIFIED (identity: unverified, a rehearsal): every name is as typed';
}

/** What a decision would be made on: the plan, and every figure measured so far, step by step. */
export function formatEvidence(status: MigrationStatus): string {
  const lines = [`Evidence for ${status.migrationId} (plan ${status.plan.name}, sha256 ${status.plan.hash.slice(0, 12)}):`];
  for (const step of status.steps) {
    if (Object.keys(step.figures).length) lines.push(`  ${step.id.padEnd(18)} ${step.state.padEnd(10)} ${formatFigures(step.figures)}`);
  }
  if (lines.length === 1) lines.push('  nothing measured yet');
  return lines.join('\n');
}

/** A text without its closing punctuation, to sit inside a sentence: "… 1.0%." → "… 1.0%". */
export function clause(text: string): string {
  return text.replace(/[\s.;,]+$/, '');
}

export function formatFigures(figures: Figures): string {
  return Object.entries(figures)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

export function formatTraffic(t: NonNullable<MigrationStatus['traffic']>): string {
  return `${100 - t.weight}% ${t.stable} / ${t.weight}% ${t.canary}`;
}

/** `tiershift list`: one row per migration, the columns the UI's list view can filter on. */
export function formatList(rows: MigrationListing[], now = Date.now()): string {
  const table = [
    ['ID', 'STATE', 'PHASE', 'GATE', 'WEIGHT', 'PLAN', 'STARTED'],
    ...rows.map((r) => [
      r.id,
      r.state,
      r.phase ?? '',
      r.pendingGate ? `${r.pendingGate}${r.gateDeadline ? ` (${listDeadline(r.gateDeadline, now)})` : ''}` : '',
      r.trafficWeight === undefined ? '' : `${r.trafficWeight}%`,
      r.plan ?? '',
      r.startedAt.replace('T', ' ').slice(0, 19),
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  const problems = rows.filter((r) => r.problem).map((r) => `! ${r.id}: ${r.problem!.message}`);
  return [...table.map((row) => row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()), ...(problems.length ? ['', ...problems] : [])].join('\n');
}

/** A list cell: "rollback at 2026-12-02 01:04Z, in 23h 59m", or "no deadline". */
function listDeadline(g: GateMemo, now: number): string {
  if (!g.deadline) return 'no deadline';
  const at = Date.parse(g.deadline);
  return `${g.onTimeout} at ${shortTime(g.deadline)}, ${at > now ? `in ${span(at - now)}` : `${span(now - at)} overdue`}`;
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, '0')}m`;
}

export interface ProgressFormat {
  /** The clock the reading's age is measured on (tests pass one). */
  now?: number;
  /** A reading older than this says how old it is instead of passing for live. */
  staleAfterMs?: number;
  /** Characters between the bar's brackets. */
  barWidth?: number;
}

/**
 * How old a reading may be before it is called stale: three polls, but never less than three heartbeat
 * throttle intervals, since Temporal only receives a heartbeat that often and a live reading is that old.
 */
export const staleAfter = (pollMs = 1000): number => 3 * Math.max(pollMs, HEARTBEAT_THROTTLE_MS);

/**
 * One line for a long phase:
 * `[#########-----------] 43%  4.3M of 10.0M rows, 1.2 GB of 2.6 GB, 85k rows/s, ETA 1m 05s (initial copy)`.
 * Without a total there is no bar, only what is done and the rate; a total passed by `done` (an estimate)
 * shows a full bar and "finishing" rather than an ETA of nothing.
 */
export function formatProgress(p: Progress, opts: ProgressFormat = {}): string {
  const amount = (n: number) => (p.unit === 'bytes' ? bytes(n) : count(n));
  const unit = p.unit === 'bytes' ? '' : ` ${p.unit}`;
  const parts: string[] = [];
  let bar = '';
  if (p.total !== undefined && p.total > 0) {
    const fraction = Math.min(1, p.done / p.total);
    bar = `${progressBar(fraction, opts.barWidth)} ${String(Math.floor(fraction * 100)).padStart(3)}%  `;
    parts.push(`${amount(p.done)} of ${amount(p.total)}${unit}`);
  } else {
    parts.push(`${amount(p.done)}${unit} so far`);
  }
  if (p.bytesDone !== undefined && p.unit !== 'bytes') parts.push(p.bytesTotal ? `${bytes(p.bytesDone)} of ${bytes(p.bytesTotal)}` : bytes(p.bytesDone));
  if (p.rate !== undefined) parts.push(p.unit === 'bytes' ? `${bytes(p.rate)}/s` : `${count(p.rate)} ${p.unit}/s`);
  if (p.total !== undefined && p.done >= p.total) parts.push('finishing');
  else if (p.etaSeconds !== undefined) parts.push(`ETA ${duration(p.etaSeconds * 1000)}`);
  const age = (opts.now ?? Date.now()) - Date.parse(p.at);
  const stale = age > (opts.staleAfterMs ?? staleAfter());
  return `${bar}${parts.join(', ')} (${p.phase}${stale ? `; last reading ${duration(age)} ago` : ''})`;
}

/** `[#####---------------]` for a fraction between 0 and 1. */
export function progressBar(fraction: number, width = 20): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

/** 850, 8.5k, 85k, 4.3M, 1.2G: a count in three or four characters. */
function count(n: number): string {
  const scaled = (value: number, suffix: string) => `${value < 10 ? value.toFixed(1) : Math.round(value)}${suffix}`;
  if (n >= 1e9) return scaled(n / 1e9, 'G');
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return scaled(n / 1e3, 'k');
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

/** Decimal units, as disks and network links count. */
function bytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(1)} ${units[i]}`;
}
