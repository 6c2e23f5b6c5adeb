// `tiershift watch`: a migration's progress until it ends. On a terminal the whole picture is redrawn
// in place; piped, each change is one appended line (what a log or a CI job can keep); with --json,
// one status object per line.
import type { Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { Progress } from '../contract/progress';
import { TERMINAL_STATES, type MigrationStatus, type StepStatus } from '../contract/status';
import { gateDeadline } from '../contract/deadline';
import { clause, duration, formatFigures, formatPointOfNoReturn, formatProgress, formatTraffic, MARK, rollbackCommand, staleAfter } from './format';
import { MigrationProblemError } from './health';
import { migrationStatusAnyState } from './migrations';

export interface WatchOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
  rows?: number;
}

export interface WatchOptions {
  /** One JSON status per line instead of text. */
  json?: boolean;
  /** Redraw in place; default: whether the output is a terminal. */
  live?: boolean;
  out?: WatchOutput;
  intervalMs?: number;
  /** The migration's Temporal UI page, shown with the progress. */
  url?: string;
}

/** Follows a migration until it ends and returns its final status. */
export async function watchMigration(client: Client, id: string, opts: WatchOptions = {}): Promise<MigrationStatus> {
  const out = opts.out ?? process.stdout;
  const intervalMs = opts.intervalMs ?? 1000;
  const staleAfterMs = staleAfter(intervalMs);
  const mode: Renderer = opts.json
    ? new JsonRenderer(out)
    : (opts.live ?? Boolean(out.isTTY))
      ? new LiveRenderer(out, opts.url, staleAfterMs)
      : new LineRenderer(out, opts.url, staleAfterMs);
  let lastProblem = '';
  for (;;) {
    let status: MigrationStatus | undefined;
    try {
      status = await migrationStatusAnyState(client, id);
      lastProblem = '';
    } catch (err) {
      // A migration that does not exist is the user's mistake; anything else (no worker yet, a workflow
      // task failing until a fixed worker is deployed, a busy worker, Temporal briefly away) may pass,
      // and the watch waits it out, saying which of them it is (client/health.ts) when Temporal can tell.
      if (err instanceof WorkflowNotFoundError) throw err;
      const problem = err instanceof MigrationProblemError ? err.message : `no answer from the migration (${err instanceof Error ? err.message : String(err)})`;
      const same = err instanceof MigrationProblemError ? `${err.problem.kind}:${err.problem.same}` : problem;
      if (same !== lastProblem) mode.problem(`${problem.replace(/\.$/, '')}; still watching`);
      lastProblem = same;
    }
    if (status) {
      mode.show(status);
      if (TERMINAL_STATES.includes(status.state)) {
        mode.end(status);
        return status;
      }
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

interface Renderer {
  show(status: MigrationStatus): void;
  problem(message: string): void;
  end(status: MigrationStatus): void;
}

class JsonRenderer implements Renderer {
  private last = '';
  constructor(private readonly out: WatchOutput) {}
  show(status: MigrationStatus): void {
    const line = JSON.stringify(status);
    if (line !== this.last) this.out.write(`${line}\n`);
    this.last = line;
  }
  problem(message: string): void {
    this.out.write(`${JSON.stringify({ warning: message })}\n`);
  }
  end(): void {}
}

const clock = (iso: string = new Date().toISOString()): string => iso.slice(11, 19);

const since = (from: string | undefined, to?: string): string => (from ? duration(Date.parse(to ?? new Date().toISOString()) - Date.parse(from)) : '');

/** The line that says how a migration ended, and what to do about it. */
export function outcomeLine(status: MigrationStatus): string {
  const took = since(status.startedAt, status.endedAt);
  switch (status.state) {
    case 'completed':
      return `${status.migrationId} completed in ${took}; the full record: tiershift report ${status.migrationId}`;
    case 'rolled-back':
      return `${status.migrationId} rolled back after ${took}${status.rollback ? ` (${status.rollback.reason})` : ''}; what happened: tiershift report ${status.migrationId}`;
    case 'aborted':
      return `${status.migrationId} aborted after ${took}${status.errors.at(-1) ? ` (${status.errors.at(-1)!.error})` : ''}; what happened: tiershift report ${status.migrationId}`;
    default:
      return `${status.migrationId} is ${status.state}`;
  }
}

/** Piped output: one line per change, each readable on its own in a log. */
class LineRenderer implements Renderer {
  private prev?: MigrationStatus;
  private figuresShownAt = new Map<string, number>();
  private progressShownAt = new Map<string, number>();
  private progressAt = new Map<string, string>();
  constructor(
    private readonly out: WatchOutput,
    private readonly url?: string,
    private readonly staleAfterMs?: number,
  ) {}

  private say(text: string): void {
    this.out.write(`${clock()} ${text}\n`);
  }

  show(status: MigrationStatus): void {
    const prev = this.prev;
    const id = status.migrationId;
    if (!prev) {
      this.say(`watching ${id}: plan ${status.plan.name}, started by ${status.startedBy} at ${clock(status.startedAt)}, ${status.state}`);
      if (this.url) this.say(`Temporal UI: ${this.url}`);
    }
    // Decisions first: an approval is why the gate step is done and the next one runs.
    for (const d of status.decisions.slice(prev?.decisions.length ?? 0)) {
      this.say(`${d.decision === 'approve' ? 'approved' : 'rejected'} gate "${d.gate}" by ${d.by}${d.comment ? `: ${d.comment}` : ''}`);
    }
    for (const step of status.steps) this.stepChanges(prev?.steps.find((s) => s.id === step.id), step, !prev);
    const gate = status.pendingGate;
    if (gate && (prev?.pendingGate?.gate !== gate.gate)) {
      this.say(
        `? gate "${gate.gate}" waits for approval (${gate.approvedBy.length}/${gate.requiredApprovals}` +
          `${gate.approvers.length ? `; approvers: ${gate.approvers.join(', ')}` : ''}${gate.fourEyes ? '; four eyes' : ''})` +
          `${gate.instructions ? `: ${gate.instructions}` : ''}`,
      );
      this.say(`  ${gateDeadline(gate, Date.now())}`);
      this.say(`  approve with: tiershift approve ${id} --gate ${gate.gate} --comment "..."`);
      this.say(`  reject with:  tiershift reject ${id} --gate ${gate.gate} --reason "..."`);
    }
    if (status.traffic && prev?.traffic && status.traffic.weight !== prev.traffic.weight) this.say(`traffic: ${formatTraffic(status.traffic)}`);
    if (status.pointOfNoReturn?.crossed && !prev?.pointOfNoReturn?.crossed) this.say(`! ${formatPointOfNoReturn(status)}`);
    if (status.failure && (prev?.failure?.stepId !== status.failure.stepId || prev.failure.at !== status.failure.at)) {
      this.say(`! ${status.failure.stepId} failed past its retries: ${status.failure.error}`);
      this.say(`  fix the cause, then: tiershift resume ${id}   (or give up: ${rollbackCommand(status)})`);
    }
    if (status.rollback && !prev?.rollback) {
      this.say(`↺ rolling back (${status.rollback.trigger}${status.rollback.by ? ` by ${status.rollback.by}` : ''}): ${clause(status.rollback.reason)}`);
    }
    // In the rollback's order (traffic first), each undo with what it reported itself.
    const before = new Map(prev?.rollback?.actions.map((a) => [`${a.stepId}:${a.action}`, a.state]));
    for (const a of status.rollback?.actions ?? []) {
      if (before.get(`${a.stepId}:${a.action}`) !== a.state && a.state !== 'pending') {
        if (a.state === 'done') this.say(`${MARK.compensated} ${a.stepId} undone: ${a.summary ? clause(a.summary) : a.action}`);
        else this.say(`  ↺ [${a.state}] ${a.stepId}: ${a.action}${a.error ? `: ${a.error}` : ''}`);
      }
      if (a.state === 'running' && a.progress) this.progress(`rollback ${a.stepId}`, a.progress);
    }
    if (prev && prev.state !== status.state && !TERMINAL_STATES.includes(status.state)) this.say(`state: ${status.state}`);
    this.prev = status;
  }

  private stepChanges(prev: StepStatus | undefined, step: StepStatus, firstLook: boolean): void {
    const changed = prev?.state !== step.state || (step.state === 'running' && prev.attempts !== step.attempts);
    if (changed && !(firstLook && step.state === 'pending')) {
      // A quick step may be over between two polls: its start still comes first in the log.
      if (step.kind !== 'gate' && step.state !== 'running' && step.state !== 'pending' && (!prev || prev.state === 'pending')) {
        this.say(`> ${step.title}`);
      }
      switch (step.state) {
        case 'running':
          if (step.kind !== 'gate') this.say(`> ${step.title}${step.attempts > 1 ? ` (attempt ${step.attempts})` : ''}`);
          break;
        case 'done':
          this.say(`${MARK.done} ${step.title}${step.summary ? `: ${step.summary}` : ''}`);
          break;
        case 'failed':
          this.say(`${MARK.failed} ${step.title}: ${step.error ?? 'failed'}`);
          break;
        case 'compensated':
          // Said by the rollback's own lines (show), in its order and with the undo's summary.
          break;
        case 'compensation-failed':
          this.say(`${MARK['compensation-failed']} ${step.title} could not be undone: ${step.error ?? ''}`);
          break;
        case 'skipped':
          this.say(`${MARK.skipped} ${step.title} skipped`);
          break;
        case 'pending':
          break;
      }
    }
    const figures = formatFigures(step.figures);
    const figuresBefore = prev ? formatFigures(prev.figures) : '';
    // Long steps report progress on every heartbeat: a line every few seconds is enough for a log.
    const shownAt = this.figuresShownAt.get(step.id) ?? 0;
    if (figures && figures !== figuresBefore && (step.state === 'done' || Date.now() - shownAt >= 5000)) {
      this.say(`  ${step.id}: ${figures}`);
      this.figuresShownAt.set(step.id, Date.now());
    }
    if (step.state === 'running' && step.progress) this.progress(step.id, step.progress);
    // Said once while it lasts: a log that repeats it every poll says nothing new.
    if (step.state === 'running' && step.waiting && step.waiting !== prev?.waiting) this.say(`  ${step.id} waiting: ${step.waiting}`);
  }

  /** A new reading, at most every 5 s per step: often enough to follow, rare enough for a log. */
  private progress(key: string, p: Progress): void {
    const shownAt = this.progressShownAt.get(key);
    if (shownAt !== undefined && Date.now() - shownAt < 5000) return;
    // Only a new reading: a log that repeats an old one with a growing age says nothing new.
    if (p.at === this.progressAt.get(key)) return;
    this.say(`  ${key}: ${formatProgress(p, { staleAfterMs: this.staleAfterMs })}`);
    this.progressShownAt.set(key, Date.now());
    this.progressAt.set(key, p.at);
  }

  problem(message: string): void {
    this.say(`(${message})`);
  }

  end(status: MigrationStatus): void {
    this.say(outcomeLine(status));
  }
}

/** A terminal: the whole picture, redrawn in place with plain ANSI (cursor up, clear to the end). */
class LiveRenderer implements Renderer {
  private drawnLines = 0;
  private drawn = '';
  private problemLine = '';
  private last?: MigrationStatus;
  private ticker?: NodeJS.Timeout;

  constructor(
    private readonly out: WatchOutput,
    private readonly url?: string,
    private readonly staleAfterMs?: number,
  ) {
    // Elapsed times keep moving between polls.
    this.ticker = setInterval(() => this.last && this.draw(this.last), 1000);
    this.ticker.unref();
  }

  show(status: MigrationStatus): void {
    this.problemLine = '';
    this.last = status;
    this.draw(status);
  }

  problem(message: string): void {
    this.problemLine = `(${message})`;
    if (this.last) this.draw(this.last);
  }

  end(status: MigrationStatus): void {
    clearInterval(this.ticker);
    this.draw(status);
    this.out.write(`${outcomeLine(status)}\n`);
  }

  private draw(status: MigrationStatus): void {
    const width = Math.max(20, (this.out.columns ?? 100) - 1);
    const height = Math.max(5, (this.out.rows ?? 40) - 1);
    // A wrapped or scrolled-off line would break the cursor arithmetic: every line fits the screen.
    const lines = fitHeight(liveFrame(status, this.url, { staleAfterMs: this.staleAfterMs }), height).map((l) => (l.length > width ? `${l.slice(0, width - 1)}…` : l));
    if (this.problemLine) lines.push(this.problemLine.slice(0, width));
    const frame = lines.join('\n');
    if (frame === this.drawn) return;
    this.drawn = frame;
    const up = this.drawnLines ? `\x1b[${this.drawnLines}F` : '';
    this.out.write(`${up}\x1b[J${frame}\n`);
    this.drawnLines = lines.length;
  }
}

function fitHeight(lines: string[], height: number): string[] {
  if (lines.length <= height) return lines;
  return [...lines.slice(0, height - 1), `… ${lines.length - height + 1} more lines (make the terminal taller, or pipe the output)`];
}

/** What a terminal shows: the runbook with the current step, its figures, traffic, and what to do next. */
export function liveFrame(status: MigrationStatus, url?: string, opts: { staleAfterMs?: number } = {}): string[] {
  const id = status.migrationId;
  const lines = [
    `${id}  ${status.state.toUpperCase()}  plan ${status.plan.name} · started by ${status.startedBy} at ${clock(status.startedAt)} · ${since(status.startedAt, status.endedAt)}`,
    '',
  ];
  for (const step of status.steps) {
    const timing =
      step.state === 'running'
        ? `${step.kind === 'gate' ? 'waiting' : 'running'} ${since(step.startedAt)}${step.attempts > 1 ? `, attempt ${step.attempts}` : ''}`
        : step.startedAt && step.endedAt
          ? since(step.startedAt, step.endedAt)
          : '';
    lines.push(`  ${MARK[step.state]} ${step.title}${timing ? `  (${timing})` : ''}`);
    if (step.id === status.currentStep || step.state === 'failed') {
      if (step.summary) lines.push(`      ${step.summary}`);
      if (step.state === 'running' && step.progress) lines.push(`      ${formatProgress(step.progress, opts)}`);
      if (step.state === 'running' && step.waiting) lines.push(`      waiting: ${step.waiting}`);
      const figures = formatFigures(step.figures);
      if (figures) lines.push(`      ${figures}`);
      if (step.error) lines.push(`      error: ${step.error}`);
    }
  }
  lines.push('');
  if (status.traffic) lines.push(`Traffic (${status.traffic.resource}): ${formatTraffic(status.traffic)}`);
  const gate = status.pendingGate;
  if (gate) {
    lines.push(
      `Gate "${gate.gate}" waits for approval: ${gate.approvedBy.length}/${gate.requiredApprovals}` +
        `${gate.approvedBy.length ? ` (approved by ${gate.approvedBy.join(', ')})` : ''}` +
        `${gate.approvers.length ? `; approvers: ${gate.approvers.join(', ')}` : ''}${gate.fourEyes ? '; four eyes' : ''}`,
    );
    lines.push(`  ${gateDeadline(gate, Date.now())}`);
    if (gate.instructions) lines.push(`  ${gate.instructions}`);
    lines.push(`  approve: tiershift approve ${id} --gate ${gate.gate} --comment "..."`);
    lines.push(`  reject:  tiershift reject ${id} --gate ${gate.gate} --reason "..."`);
  }
  if (status.failure) {
    lines.push(`Failed: ${status.failure.stepId}: ${status.failure.error}`);
    lines.push(`  fix the cause, then: tiershift resume ${id}   or: ${rollbackCommand(status)}`);
  }
  const ponr = formatPointOfNoReturn(status);
  if (ponr) lines.push(ponr);
  if (status.rollback) {
    lines.push(`Rolling back (${status.rollback.trigger}${status.rollback.by ? ` by ${status.rollback.by}` : ''}): ${clause(status.rollback.reason)}`);
    for (const a of status.rollback.actions) {
      lines.push(`  [${a.state}] ${a.stepId}: ${a.action}${a.error ? ` — ${a.error}` : a.summary ? ` — ${clause(a.summary)}` : ''}`);
      if (a.state === 'running' && a.progress) lines.push(`      ${formatProgress(a.progress, opts)}`);
    }
  }
  if (url) lines.push(`Temporal UI: ${url}`);
  return lines;
}
