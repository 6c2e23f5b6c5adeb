// A waiting gate's deadline and what happens then, in the words every display uses (status, watch,
// list, the report, the UI's current details and the gate's timer summary). Pure: the workflow imports it.
import type { PendingGate } from './status';

/** What the migration does when a gate's deadline passes. */
export const ON_TIMEOUT: Record<PendingGate['onTimeout'], string> = { rollback: 'rolls back', abort: 'aborts' };

/** "2026-12-02 01:04Z": a deadline to the minute, in UTC, as people read it. */
export function shortTime(iso: string): string {
  return `${iso.slice(0, 16).replace('T', ' ')}Z`;
}

/** "2d 03h", "23h 59m", "4m 05s", "12s": a time span in two units at most. */
export function span(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const [d, h, m] = [Math.floor(s / 86_400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  const two = (n: number) => String(n).padStart(2, '0');
  if (d) return `${d}d ${two(h)}h`;
  if (h) return `${h}h ${two(m)}m`;
  if (m) return `${m}m ${two(s % 60)}s`;
  return `${s}s`;
}

/**
 * "deadline 2026-12-02 01:04Z (in 23h 59m), then it rolls back". With `now`, the time left; without
 * (the UI's current details, written once and read later), how long after the gate opened.
 */
export function gateDeadline(gate: Pick<PendingGate, 'deadline' | 'onTimeout' | 'openedAt'>, now?: number): string {
  if (!gate.deadline) return 'no deadline: it waits until someone decides';
  const at = Date.parse(gate.deadline);
  const when =
    now === undefined ? `${span(at - Date.parse(gate.openedAt))} after it opened` : at > now ? `in ${span(at - now)}` : `passed ${span(now - at)} ago`;
  return `deadline ${shortTime(gate.deadline)} (${when}), then it ${ON_TIMEOUT[gate.onTimeout]}`;
}

/** The command that approves a waiting gate, as every display prints it. */
export function approveCommand(migrationId: string, gate: string): string {
  return `tiershift approve ${migrationId} --gate ${gate}`;
}

/**
 * A waiting gate's timer summary: the Temporal UI shows it in the timeline, the first thing on the
 * workflow's page (its list shows no user metadata, and the current details sit on another tab), so it
 * says what comes next and the command for it. "gate go: rollback at 2026-12-02 01:04Z; approve:
 * tiershift approve m --gate go", or for a gate without deadline "gate go: waiting for approval, no
 * deadline; approve: …".
 */
export function gateTimerSummary(gate: string, migrationId: string, next?: { what: string; atMs: number }): string {
  const until = next ? `${next.what} at ${shortTime(new Date(next.atMs).toISOString())}` : 'waiting for approval, no deadline';
  return `gate ${gate}: ${until}; approve: ${approveCommand(migrationId, gate)}`;
}

/** The memo key of the waiting gate's deadline, which `tiershift list` reads without querying the workflow. */
export const GATE_MEMO_KEY = 'pendingGate';

export interface GateMemo {
  gate: string;
  openedAt: string;
  onTimeout: PendingGate['onTimeout'];
  deadline?: string;
}
