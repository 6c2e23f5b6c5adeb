// The bench's sandbox lives in a temporary home and runs detached processes (PostgreSQL, Temporal,
// Azurite, HAProxy, apps): any exit that skips the teardown leaves them running. So the teardown runs on
// every way out: the normal end (the caller's finally), SIGINT, SIGTERM, and a crash (an uncaught
// exception or unhandled rejection, e.g. an 'error' event nobody listened to).

/** Registers the handlers; `teardown` must be idempotent (it may be reached from two paths at once). */
export function teardownOnExit(teardown: () => Promise<void>, log: (line: string) => void): void {
  let exiting = false;
  const leave = (code: number, why: string) => {
    if (exiting) return;
    exiting = true;
    log(why);
    // A teardown that hangs must not keep the bench alive forever either.
    const guard = setTimeout(() => process.exit(code), 120_000);
    guard.unref();
    void teardown()
      .catch((err: unknown) => console.error(`bench: teardown failed: ${(err as Error).message}`))
      .finally(() => process.exit(code));
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => leave(130, `${signal}: stopping`));
  process.on('uncaughtException', (err) => leave(1, `crashed: ${err.stack ?? err.message}`));
  process.on('unhandledRejection', (reason) => leave(1, `crashed: ${(reason as Error)?.stack ?? String(reason)}`));
}
