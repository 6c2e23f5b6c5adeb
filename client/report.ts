// `tiershift report`: the record of a migration for a change ticket or a post-mortem — what ran when,
// who decided what on which evidence, every figure measured, what failed and what was undone.
import type { DecisionRecord } from '../contract/identity';
import { REFUSALS_KEPT, type Decision, type IdentityStatus, type Figures, type GateNotification, type MigrationState, type MigrationStatus, type PendingGate, type RollbackStatus, type StepState } from '../contract/status';
import { gateDeadline } from '../contract/deadline';
import { clause, duration } from './format';

export interface TimelineEntry {
  at: string;
  /** What kind of thing happened, for scripts that filter the timeline. */
  event:
    | 'started'
    | 'step-started'
    | 'step-ended'
    | 'gate-opened'
    | 'decision'
    | 'error'
    | 'notification'
    | 'rollback-started'
    | 'undone'
    | 'rollback-ended'
    | 'point-of-no-return'
    | 'resumed'
    | 'ended';
  stepId?: string;
  text: string;
}

export interface ReportStep {
  id: string;
  kind: string;
  title: string;
  state: StepState;
  attempts: number;
  startedAt?: string;
  endedAt?: string;
  durationMs?: number;
  summary?: string;
  error?: string;
  figures: Figures;
}

export interface MigrationReport {
  migrationId: string;
  plan: MigrationStatus['plan'];
  state: MigrationState;
  startedBy: string;
  startedAt: string;
  endedAt?: string;
  durationMs?: number;
  url?: string;
  timeline: TimelineEntry[];
  steps: ReportStep[];
  /** Approvals and rejections, each with who, when, the comment and the evidence it was made on. */
  decisions: Decision[];
  /** Every figure measured, by step id. */
  figures: Record<string, Figures>;
  errors: MigrationStatus['errors'];
  /** Every signal refused, including those `errors` no longer keeps. */
  refusedSignals: number;
  rollback?: RollbackStatus;
  /** The gate the migration waits at, with its deadline and what happens then. */
  pendingGate?: PendingGate;
  notifications: GateNotification[];
  traffic?: MigrationStatus['traffic'];
  pointOfNoReturn?: MigrationStatus['pointOfNoReturn'];
  targetWrites?: MigrationStatus['targetWrites'];
  /** How decisions were proven, and each one with its proof: `tiershift verify report.json` checks them again. */
  identity?: IdentityStatus;
  decisionLog: DecisionRecord[];
}

const span = (from?: string, to?: string): number | undefined => (from && to ? Date.parse(to) - Date.parse(from) : undefined);

export function buildReport(status: MigrationStatus, opts: { url?: string } = {}): MigrationReport {
  const title = new Map(status.steps.map((s) => [s.id, s.title]));
  const timeline: TimelineEntry[] = [{ at: status.startedAt, event: 'started', text: `started by ${status.startedBy} from plan ${status.plan.name}` }];
  // An approval is why a gate passes and the next step starts: at the same instant it comes first.
  for (const d of status.decisions) {
    timeline.push({
      at: d.at,
      event: 'decision',
      text: `${d.by} ${d.decision === 'approve' ? 'approved' : 'rejected'} gate "${d.gate}"${d.comment ? `: ${d.comment}` : ''}`,
    });
  }
  for (const s of status.steps) {
    if (s.kind === 'gate') {
      if (s.startedAt) timeline.push({ at: s.startedAt, event: 'gate-opened', stepId: s.id, text: `${s.title}: waiting for approval` });
    } else if (s.startedAt) {
      timeline.push({ at: s.startedAt, event: 'step-started', stepId: s.id, text: `${s.title} started` });
    }
    if (s.endedAt) {
      // What happened when the step ended: a step the rollback undid later was done then (its undo has its own line).
      const state = s.state === 'compensated' || s.state === 'compensation-failed' ? 'done' : s.state;
      const outcome =
        s.kind === 'gate'
          ? state === 'done'
            ? `passed${s.summary ? ` (${clause(s.summary)})` : ''}`
            : state === 'failed'
              ? `failed: ${clause(s.error ?? 'not approved')}`
              : `${state}${s.summary ? `: ${clause(s.summary)}` : ''}`
          : `${state}${s.attempts > 1 ? ` after ${s.attempts} attempts` : ''}${s.summary ? `: ${clause(s.summary)}` : ''}`;
      timeline.push({ at: s.endedAt, event: 'step-ended', stepId: s.id, text: `${s.title} ${outcome}` });
    }
  }
  for (const e of status.errors) {
    timeline.push({ at: e.at, event: 'error', stepId: e.stepId, text: `${title.get(e.stepId) ?? e.stepId} failed: ${e.error}` });
  }
  for (const r of status.resumes ?? []) {
    timeline.push({ at: r.at, event: 'resumed', stepId: r.stepId, text: `${r.by} resumed ${title.get(r.stepId) ?? r.stepId}` });
  }
  for (const n of status.notifications ?? []) {
    timeline.push({ at: n.at, event: 'notification', text: `gate "${n.gate}" ${n.kind} sent to ${n.to}${n.ok ? '' : ` (failed: ${n.error ?? 'unknown error'})`}` });
  }
  const ponr = status.pointOfNoReturn;
  if (ponr?.crossedAt) {
    timeline.push({ at: ponr.crossedAt, event: 'point-of-no-return', stepId: ponr.stepId, text: `crossed the point of no return (${ponr.stepId}); from here a rollback means ${ponr.recoveryPlan}` });
  }
  if (status.rollback) {
    const rb = status.rollback;
    timeline.push({ at: rb.startedAt, event: 'rollback-started', text: `rollback started (${rb.trigger}${rb.by ? ` by ${rb.by}` : ''}): ${clause(rb.reason)}` });
    // In the rollback's order (traffic first), each with what its undo reported.
    for (const a of rb.actions) {
      if (a.state === 'done' && a.endedAt) timeline.push({ at: a.endedAt, event: 'undone', stepId: a.stepId, text: `${title.get(a.stepId) ?? a.stepId} undone: ${a.summary ? clause(a.summary) : a.action}` });
    }
    if (rb.endedAt) {
      const failed = rb.actions.filter((a) => a.state === 'failed').length;
      timeline.push({ at: rb.endedAt, event: 'rollback-ended', text: `rollback ended: ${rb.actions.length - failed} of ${rb.actions.length} actions done` });
    }
  }
  if (status.endedAt) timeline.push({ at: status.endedAt, event: 'ended', text: `ended: ${status.state}` });
  // Stable: entries recorded at the same instant keep the order they were added in (start before end).
  timeline.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));

  return {
    migrationId: status.migrationId,
    plan: status.plan,
    state: status.state,
    startedBy: status.startedBy,
    startedAt: status.startedAt,
    endedAt: status.endedAt,
    durationMs: span(status.startedAt, status.endedAt),
    url: opts.url,
    timeline,
    steps: status.steps.map((s) => ({
      id: s.id,
      kind: s.kind,
      title: s.title,
      state: s.state,
      attempts: s.attempts,
      startedAt: s.startedAt,
      endedAt: s.endedAt,
      durationMs: span(s.startedAt, s.endedAt),
      summary: s.summary,
      error: s.error,
      figures: s.figures,
    })),
    decisions: status.decisions,
    ...(status.identity ? { identity: status.identity } : {}),
    decisionLog: status.decisionLog ?? [],
    figures: Object.fromEntries(status.steps.filter((s) => Object.keys(s.figures).length).map((s) => [s.id, s.figures])),
    errors: status.errors,
    refusedSignals: status.refusedSignals ?? 0,
    rollback: status.rollback,
    ...(status.pendingGate ? { pendingGate: status.pendingGate } : {}),
    notifications: status.notifications ?? [],
    traffic: status.traffic,
    pointOfNoReturn: status.pointOfNoReturn,
    targetWrites: status.targetWrites,
  };
}

/** A table cell: pipes and line breaks would break the row. */
const cell = (value: unknown): string => String(value ?? '').replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
const when = (iso?: string): string => (iso ? `${iso.slice(0, 10)} ${iso.slice(11, 19)}Z` : '');
const table = (head: string[], rows: unknown[][]): string[] => [
  `| ${head.join(' | ')} |`,
  `|${head.map(() => '---').join('|')}|`,
  ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
];

export function reportMarkdown(r: MigrationReport): string {
  const out: string[] = [`# Migration report: ${r.migrationId}`, ''];
  out.push(
    ...table(
      ['', ''],
      [
        ['Outcome', `**${r.state}**`],
        ['Plan', `${r.plan.name} (${r.plan.source}, sha256 ${r.plan.hash.slice(0, 12)})`],
        ['Started', `${when(r.startedAt)} by ${r.startedBy}`],
        ['Ended', r.endedAt ? `${when(r.endedAt)} (took ${duration(r.durationMs ?? 0)})` : 'still running'],
        ...(r.pendingGate
          ? [['Waiting at gate', `"${r.pendingGate.gate}" (${r.pendingGate.approvedBy.length}/${r.pendingGate.requiredApprovals} approvals); ${gateDeadline(r.pendingGate, Date.now())}`]]
          : []),
        ...(r.traffic ? [['Traffic', `${100 - r.traffic.weight}% ${r.traffic.stable} / ${r.traffic.weight}% ${r.traffic.canary}`]] : []),
        ...(r.pointOfNoReturn
          ? [['Point of no return', r.pointOfNoReturn.crossed ? `crossed at ${when(r.pointOfNoReturn.crossedAt!)} (${r.pointOfNoReturn.stepId})` : `not crossed (${r.pointOfNoReturn.stepId})`]]
          : []),
        ...(r.targetWrites
          ? [['Write point', r.targetWrites.crossed ? `crossed at ${when(r.targetWrites.crossedAt!)} (${r.targetWrites.stepId}): ${r.targetWrites.database} took writes ${r.targetWrites.source} lacks` : `not crossed (${r.targetWrites.stepId})`]]
          : []),
        ...(r.rollback?.rowsRecovered !== undefined ? [['Rows recovered / at risk', `${r.rollback.rowsRecovered} / ${r.rollback.rowsAtRisk ?? 0}`]] : []),
        ...(r.url ? [['Temporal UI', r.url]] : []),
      ],
    ),
  );

  out.push('', '## Timeline', '', ...table(['Time (UTC)', 'Event'], r.timeline.map((e) => [when(e.at), e.text])));

  out.push(
    '',
    '## Steps',
    '',
    ...table(
      ['#', 'Step', 'Kind', 'State', 'Attempts', 'Started', 'Took', 'Outcome'],
      r.steps.map((s, i) => [
        i + 1,
        `${s.title} (\`${s.id}\`)`,
        s.kind,
        s.state,
        s.attempts || '',
        when(s.startedAt),
        s.durationMs === undefined ? '' : duration(s.durationMs),
        s.error && s.state !== 'done' ? `error: ${s.error}` : (s.summary ?? ''),
      ]),
    ),
  );

  out.push('', '## Approvals and decisions', '');
  if (!r.decisions.length) out.push('No decisions were recorded.');
  else {
    out.push(
      ...table(
        ['Time (UTC)', 'Gate', 'Decision', 'By', 'Comment', 'Plan sha256'],
        r.decisions.map((d) => [when(d.at), d.gate, d.decision === 'approve' ? 'approved' : 'rejected', d.by, d.comment ?? '', d.planHash?.slice(0, 12) ?? '']),
      ),
    );
    for (const d of r.decisions) {
      const evidence = Object.entries(d.evidence ?? {});
      if (!evidence.length) continue;
      out.push('', `Evidence ${d.by} saw when ${d.decision === 'approve' ? 'approving' : 'rejecting'} "${d.gate}": ${evidence.map(([step, f]) => `${step} (${Object.entries(f).map(([k, v]) => `${k}=${v}`).join(', ')})`).join('; ')}`);
    }
  }

  if (r.identity) {
    const policy = r.identity.policy;
    out.push('', '## Who decided', '');
    out.push(
      policy.mode === 'oidc'
        ? `Decisions are proven with ID tokens from ${policy.issuer} (audience ${policy.audience}); \`tiershift verify\` checks each one again offline.`
        : policy.mode === 'ssh'
          ? "Decisions are proven with SSH signatures by the keys in the plan's allowed signers; `ssh-keygen -Y verify` or `tiershift verify` checks each one again."
          : '**Unverified**: the plan ran with `identity: unverified` (a rehearsal); every decision below is a name as typed.',
      '',
    );
    out.push(
      ...table(
        ['Time (UTC)', 'Decision', 'Subject', 'Proven by', 'Proof sha256'],
        r.decisionLog.map((d) => [
          when(d.at),
          `${d.statement.action}${d.statement.gate ? ` "${d.statement.gate}"` : ''}${d.statement.confirm ? ' (confirmed)' : ''}`,
          `${d.subject}${d.identity?.name && d.identity.name !== d.subject ? ` (${d.identity.name})` : ''}`,
          d.verified ? (d.identity?.issuer ?? d.identity?.fingerprint ?? '') : 'unverified',
          d.identity?.proofDigest.slice(0, 16) ?? '',
        ]),
      ),
    );
  }

  out.push('', '## Figures measured', '');
  const figureRows = Object.entries(r.figures).flatMap(([step, figures]) => Object.entries(figures).map(([name, value]) => [`\`${step}\``, name, value]));
  out.push(...(figureRows.length ? table(['Step', 'Figure', 'Value'], figureRows) : ['No figures were measured.']));

  out.push('', '## Errors', '');
  out.push(...(r.errors.length ? table(['Time (UTC)', 'Step', 'Error'], r.errors.map((e) => [when(e.at), e.stepId, e.error])) : ['None.']));
  if (r.refusedSignals) out.push('', refusedSignalsLine(r.refusedSignals));

  out.push('', '## Rollback', '');
  if (!r.rollback) out.push('None: nothing was rolled back.');
  else {
    const rb = r.rollback;
    out.push(`Triggered by ${rb.trigger}${rb.by ? ` (${rb.by})` : ''} at ${when(rb.startedAt)}: ${clause(rb.reason)}${rb.endedAt ? `; ended ${when(rb.endedAt)}` : '; still running'}.`, '');
    out.push(
      rb.rowsRecovered !== undefined
        ? `Rows the target took that the source lacked: ${rb.rowsRecovered} recovered to the source, ${rb.rowsAtRisk ?? 0} at risk (not on the source as the target holds them).`
        : 'Rows recovered: 0, at risk: 0 (the target took no writes of its own before the rollback).',
      '',
    );
    out.push(...(rb.actions.length ? table(['Step', 'Action', 'State', 'Outcome'], rb.actions.map((a) => [a.stepId, a.action, a.state, a.error ? `error: ${a.error}` : (a.summary ?? '')])) : ['No step needed undoing.']));
  }

  if (r.notifications.length) {
    out.push('', '## Gate notifications', '');
    out.push(...table(['Time (UTC)', 'Gate', 'Kind', 'To', 'Recipients', 'Result'], r.notifications.map((n) => [when(n.at), n.gate, n.kind, n.to, n.recipients.join(', '), n.ok ? 'sent' : `failed: ${n.error ?? ''}`])));
  }
  return `${out.join('\n')}\n`;
}

/** Refusals are capped in the status: say how many there were in all, and how many are listed. */
export function refusedSignalsLine(count: number): string {
  return `${count} signal${count === 1 ? ' was' : 's were'} refused in all${count > REFUSALS_KEPT ? `; only the last ${REFUSALS_KEPT} are listed` : ''}.`;
}
