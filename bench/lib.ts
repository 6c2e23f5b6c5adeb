// What every benchmark shares: the context it runs in, statistics, Markdown tables, and child processes
// that are always stopped (by pid) at the end. Fixtures shared with the tests live in test/support.
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { NativeConnection } from '@temporalio/worker';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { ResolvedPlan } from '../plan/types';
import { readState, type SandboxState } from '../contract/home';
import type { migration } from '../workflows/migration';
import type { MigrationStatus } from '../contract/status';
import type { Sizes } from './sizes';

export interface BenchContext {
  home: string;
  quick: boolean;
  sizes: Sizes;
  client: Client;
  connection: NativeConnection;
  /** host:port of the sandbox's Temporal dev server. */
  address: string;
  log: (line: string) => void;
  /** Past this time (ms since epoch) a benchmark starts no further runs; it reports those it did. */
  deadline: number;
}

/** One section of RESULTS.md. */
export interface Section {
  title: string;
  /** What is measured and how, in a sentence or two. */
  method: string;
  /** Markdown lines: the table (tiershift beside its alternative), then any notes. */
  body: string[];
  /** Where the figures fall short of the issue's goals, one sentence each. */
  shortfalls: string[];
  /** Comparisons (one side, one size) that failed while the rest of the benchmark ran: rows of RESULTS.md's failures. */
  failed?: FailedComparison[];
}

/** A comparison that failed: what, after how long, with what error. */
export interface FailedComparison {
  /** What failed, e.g. "~2.2M rows, tiershift". */
  what: string;
  afterMs: number;
  /** The error's first line. */
  error: string;
}

/** The row for a failure: the error's first line (a stack or a long cause adds nothing to a table). */
export function failedComparison(what: string, afterMs: number, err: unknown): FailedComparison {
  const message = err instanceof Error ? err.message : String(err);
  return { what, afterMs, error: (message.split('\n')[0] ?? '').trim() || (err instanceof Error ? err.name : 'unknown error') };
}

/** The sandbox as its state file says now: activities and sandbox functions rewrite it as they go. */
export function sandbox(ctx: Pick<BenchContext, 'home'>): SandboxState {
  const state = readState(ctx.home);
  if (!state) throw new Error(`no sandbox state in ${ctx.home}`);
  return state;
}

export const now = (): number => performance.now();
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---- statistics -------------------------------------------------------------------------------

export function median(values: number[]): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile (p in 0..100): the smallest value with at least p% of the values at or below it. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const ms = (v: number, digits = 1): string => (Number.isFinite(v) ? `${v.toFixed(digits)} ms` : 'n/a');
export const secs = (v: number, digits = 1): string => (Number.isFinite(v) ? `${(v / 1000).toFixed(digits)} s` : 'n/a');
export const mib = (bytes: number, digits = 1): string => `${(bytes / 1024 / 1024).toFixed(digits)} MiB`;
export const pct = (fraction: number, digits = 1): string => (Number.isFinite(fraction) ? `${(fraction * 100).toFixed(digits)}%` : 'n/a');
export const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');

export function table(headers: string[], rows: (string | number)[][]): string[] {
  const cell = (v: string | number) => String(v).replaceAll('|', '\\|').replaceAll('\n', ' ');
  return [`| ${headers.map(cell).join(' | ')} |`, `|${headers.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)];
}

// ---- waiting ----------------------------------------------------------------------------------

export async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number, what: string, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      last = await read();
      if (ok(last)) return last;
    } catch (err) {
      lastError = err;
    }
    await sleep(everyMs);
  }
  throw new Error(`${what}: not reached within ${timeoutMs} ms${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
}

// ---- Temporal ---------------------------------------------------------------------------------

/** Starts the migration workflow on a task queue of the benchmark's own (startMigration always uses `tiershift`). */
export function startOn(client: Client, plan: ResolvedPlan, taskQueue: string, workflowId: string): Promise<WorkflowHandle<typeof migration>> {
  return client.workflow.start<typeof migration>('migration', { taskQueue, workflowId, args: [{ plan, startedBy: 'alice' }] });
}

export const stamp = (): string => `${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}`;

/** A finished migration's status, with the reason when it did not complete. */
export async function completed(handle: WorkflowHandle<typeof migration>): Promise<MigrationStatus> {
  const status = await handle.result();
  if (status.state !== 'completed') throw new Error(`${handle.workflowId} ended ${status.state}: ${JSON.stringify(status.failure ?? status.rollback ?? status.errors)}`);
  return status;
}

// ---- child processes --------------------------------------------------------------------------

const children = new Set<ChildProcess>();

/** Spawns a process that `stopChildren` stops (by its pid) if the benchmark does not. */
export function spawnTracked(command: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  const child = spawn(command, args, opts);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export async function stopChild(child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  await new Promise<void>((resolve) => {
    const kill = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    process.kill(child.pid!, 'SIGTERM');
  });
}

/** Every child still running, stopped by pid (SIGTERM, then SIGKILL). */
export async function stopChildren(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c, 5_000).catch(() => undefined)));
}

/** Resident set size of a process in bytes (VmRSS), or its peak so far (VmHWM); 0 once it is gone. */
export function rssOf(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU time (user + system) a process has used so far, in ms; 0 once it is gone. Linux clock ticks are 1/100 s. */
export function cpuMsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

/** Runs `fn` at most `timeoutMs`; past that the benchmark is reported as failed (its work is abandoned). */
export function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
