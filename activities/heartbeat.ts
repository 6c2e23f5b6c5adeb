// Heartbeats carry two things: progress a retried attempt resumes from, and proof the worker is alive.
// Providers heartbeat when they have progress to record; `keepAlive` re-sends the latest in between, so
// long quiet work (a schema copy, checksums of a big table, a restore) never looks like a dead worker.
// Work that hangs is still bounded by the step's startToClose timeout.
import { Context } from '@temporalio/activity';

export async function keepAlive<T>(fn: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  // Until this attempt reports progress of its own, the previous attempt's must survive the keepalive.
  let latest: unknown = ctx.info.heartbeatDetails;
  const send = ctx.heartbeat;
  // `heartbeat()` from @temporalio/activity calls the current context's method: record what passes through.
  const writable = ctx as { heartbeat: (details?: unknown) => void };
  writable.heartbeat = (details?: unknown) => {
    latest = details;
    send(details);
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
