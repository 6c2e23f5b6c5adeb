// Heartbeats carry two things: progress a retried attempt resumes from, and proof the worker is alive.
// Providers heartbeat when they have progress to record; `keepAlive` re-sends the latest in between, so
// long quiet work (a schema copy, checksums of a big table, a restore) never looks like a dead worker.
// Work that hangs is still bounded by the step's startToClose timeout.
//
// Every heartbeat is merged into the details recorded so far (this attempt's, else the previous
// attempt's), never replacing them: a progress line ("waiting for the replica", "copying x") must not
// erase a journal's before-state, its `created` flags or the list of blobs created so far, which a
// retry and its undo depend on.
import { Context } from '@temporalio/activity';
import { progressOf } from '../contract/progress';

export async function keepAlive<T>(fn: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  // Until this attempt reports progress of its own, the previous attempt's must survive the keepalive.
  let latest: unknown = ctx.info.heartbeatDetails;
  const send = ctx.heartbeat;
  // `heartbeat()` from @temporalio/activity calls the current context's method: record what passes through.
  const writable = ctx as { heartbeat: (details?: unknown) => void };
  writable.heartbeat = (details?: unknown) => {
    latest = mergeDetails(latest, details);
    send(latest);
  };
  const every = Math.max(500, Math.min(10_000, (ctx.info.heartbeatTimeoutMs || 30_000) / 3));
  const timer = setInterval(() => send(latest), every);
  try {
    return await fn();
  } finally {
    clearInterval(timer);
    writable.heartbeat = send;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * `next` over `previous`: keys `next` sets win, the others stay; where both hold a list of names (done
 * operations, created blobs) the result holds both, since a retry only ever adds to what was done.
 */
export function mergeDetails(previous: unknown, next: unknown): unknown {
  if (!isRecord(previous) || !isRecord(next)) return next;
  const merged: Record<string, unknown> = { ...previous, ...next };
  for (const [key, value] of Object.entries(next)) {
    const old = previous[key];
    // A progress reading (contract/progress.ts) is whole: merged into the last one, a new phase would
    // keep the old phase's total and ETA. Nothing resumes from it, so replacing it loses nothing.
    if (key === 'progress' && progressOf(next)) continue;
    if (Array.isArray(old) && Array.isArray(value) && [...old, ...value].every((x) => typeof x === 'string')) {
      merged[key] = [...new Set([...(old as string[]), ...(value as string[])])];
    } else if (isRecord(old) && isRecord(value)) {
      merged[key] = mergeDetails(old, value);
    }
  }
  return merged;
}
