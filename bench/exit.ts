// The bench's sandbox lives in a temporary home and runs detached processes (PostgreSQL, Temporal,
// Azurite, HAProxy, apps): any exit that skips the teardown leaves them running. So the teardown runs on
// every way out: the normal end (the caller's finally), SIGINT, SIGTERM, and a crash (an uncaught
// exception or unhandled rejection, e.g. an 'error' event nobody listened to).

/**
 * Registers the handlers; `teardown` must be idempotent (it may be reached from two paths at once).
 * `absorb` is asked first about a crash: when it takes the error (a benchmark that failed), the run goes on.
 */
export function teardownOnExit(teardown: () => Promise<void>, log: (line: string) => void, absorb: (err: Error) => boolean = () => false): void {
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
  const crashed = (err: Error) => {
    if (!exiting && absorb(err)) return;
    leave(1, `crashed: ${err.stack ?? err.message}`);
  };
  process.on('uncaughtException', crashed);
  process.on('unhandledRejection', (reason) => crashed(reason instanceof Error ? reason : new Error(String(reason))));
}
