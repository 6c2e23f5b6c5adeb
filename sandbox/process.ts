// Spawning, probing and stopping the sandbox's processes. The sandbox outlives the CLI that starts it,
// so everything here works from a pid recorded in the state file, not from a ChildProcess handle.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { TransientError, UserError } from '../contract/errors';

/** How to recognise and stop one kind of sandbox process. */
export interface ProcessSpec {
  /** Name in log lines and messages, e.g. "temporal". */
  label: string;
  /** Graceful stop signal: PostgreSQL's fast shutdown is SIGINT, the others stop on SIGTERM. */
  signal: NodeJS.Signals;
  /** Signal the whole process group (our detached children lead their own group). */
  group: boolean;
  /** A word of its command line: guards against signalling a recycled pid that now runs something else. */
  match: string;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts a long-running process that survives us: its own process group, stdio to its log file,
 * not keeping our event loop alive. Returns its pid.
 */
export function spawnDetached(
  command: string,
  args: string[],
  opts: { log: string; env?: NodeJS.ProcessEnv; cwd?: string },
): number {
  const fd = openSync(opts.log, 'a');
  try {
    const child = spawn(command, args, { detached: true, stdio: ['ignore', fd, fd], env: opts.env ?? process.env, cwd: opts.cwd });
    // A spawn failure (ENOENT, EACCES) is reported asynchronously; the missing pid already tells us.
    child.on('error', () => undefined);
    if (child.pid === undefined) throw new UserError(`could not start ${command}; check that it exists and is executable.`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export interface RunResult {
  code: number;
  output: string;
}

/** Runs a short command to completion, capturing stdout and stderr together. */
export function run(command: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), output });
    });
  });
}

/** Alive and not a zombie: an orphan whose parent does not reap it still answers kill(pid, 0). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const stat = readProc(pid, 'stat');
  // Field 3 of /proc/<pid>/stat, after the parenthesised command name.
  return stat === undefined || stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

function readProc(pid: number, file: string): string | undefined {
  const p = `/proc/${pid}/${file}`;
  try {
    return existsSync(p) ? readFileSync(p, 'utf8') : undefined;
  } catch {
    return undefined;
  }
}

/** Alive and, where /proc tells us its command line, still the program we started. */
export function isOurProcess(pid: number, spec: ProcessSpec): boolean {
  if (!isAlive(pid)) return false;
  const cmdline = readProc(pid, 'cmdline');
  return cmdline === undefined || cmdline.includes(spec.match);
}

function signal(pid: number, sig: NodeJS.Signals, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, sig);
  } catch {
    // Not a group leader (or already gone): fall back to the process itself.
    try {
      process.kill(pid, sig);
    } catch {
      /* gone */
    }
  }
}

export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

/** Graceful signal, then SIGKILL to the whole group when it has not exited in time. */
export async function stopProcess(pid: number, spec: ProcessSpec, timeoutMs = 15_000): Promise<void> {
  if (!isAlive(pid)) return;
  signal(pid, spec.signal, spec.group);
  if (await waitForExit(pid, timeoutMs)) return;
  signal(pid, 'SIGKILL', true);
  if (!(await waitForExit(pid, 5_000))) throw new Error(`${spec.label} (pid ${pid}) did not exit even after SIGKILL`);
}

/** The last non-empty lines of a log, for error messages that point at the cause. */
export function logTail(file: string, lines = 1): string {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .slice(-lines)
      .join(' | ');
  } catch {
    return '';
  }
}

/**
 * Polls `probe` until it succeeds. Fails early, pointing at the log, when the process dies meanwhile,
 * so a crash at start-up is reported in a second rather than after the whole timeout.
 */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  opts: { pid?: number; log?: string; timeoutMs?: number; intervalMs?: number },
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let lastError = '';
  for (;;) {
    try {
      const result = await probe();
      if (result !== undefined) return result;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    const where = opts.log ? `; see ${opts.log}` : '';
    if (opts.pid !== undefined && !isAlive(opts.pid)) {
      const tail = opts.log ? logTail(opts.log) : '';
      throw new UserError(`${what} exited during start-up${tail ? ` (last log line: ${JSON.stringify(tail.slice(0, 300))})` : ''}${where}.`);
    }
    if (Date.now() > deadline) {
      // Slow, not broken (a loaded machine, a port still in TIME_WAIT): a retry may well succeed.
      throw new TransientError(`${what} did not become ready within ${Math.round((opts.timeoutMs ?? 60_000) / 1000)} s${lastError ? ` (${lastError.slice(0, 200)})` : ''}${where}.`);
    }
    await sleep(opts.intervalMs ?? 250);
  }
}

/** Bounds a probe so one hung service cannot stall `status`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
