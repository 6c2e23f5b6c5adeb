// What every benchmark shares: the context it runs in, statistics, Markdown tables, and child processes
// that are always stopped (by pid) at the end. Fixtures shared with the tests live in test/support.
import type { Client, WorkflowHandle } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { ResolvedPlan } from '../plan/types';
import { readState, type SandboxState } from '../contract/home';
import { resolveConnection } from '../contract/connection';
import { connectClient } from '../client/connection';
import { sandboxDown, sandboxUp, type TemporalKind } from '../sandbox';
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
  /** The bench's command-line choices that only some benchmarks read. */
  options?: { /** Benchmark 7: only these K (`--fleet 10`), at the sizes' runs. */ fleetK?: number[] };
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

// ---- connections and further sandboxes ---------------------------------------------------------

/** The environment of a process whose sandbox is the one in `home`: what the CLI and a worker read. */
export const homeEnv = (home: string): NodeJS.ProcessEnv => ({ ...process.env, TIERSHIFT_HOME: home });

/**
 * A client (the CLI's, with its data converter) and a worker connection to the Temporal of the sandbox in
 * `home`, resolved as the CLI and `tiershift worker` resolve it (contract/connection.ts): whatever that
 * resolution adds (the cluster's client certificate, a profile's API key or headers) reaches the bench too.
 */
export async function connectTo(home: string): Promise<{ client: Client; connection: NativeConnection; close: () => Promise<void> }> {
  const { client } = await connectClient({}, homeEnv(home));
  try {
    const connection = await nativeConnection(homeEnv(home));
    return {
      client,
      connection,
      close: async () => {
        await client.connection.close().catch(() => undefined);
        await connection.close().catch(() => undefined);
      },
    };
  } catch (err) {
    await client.connection.close().catch(() => undefined);
    throw err;
  }
}

/** A worker's connection, from everything the resolution gives but the namespace and the UI's address. */
export async function nativeConnection(env: NodeJS.ProcessEnv = process.env): Promise<NativeConnection> {
  const { address, tls, apiKey, metadata, apiKeySource } = await resolveConnection({}, env);
  const connection = await NativeConnection.connect({ address, tls, apiKey, ...(metadata ? { metadata } : {}) });
  // The cluster's service token lives ten minutes, and a fleet of 500 may outlast it.
  apiKeySource?.onRenew((token) => connection.setApiKey(token));
  return connection;
}

/** Sandboxes a benchmark brought up beside the bench's own, until it takes them down: the run's teardown takes down those left. */
const besides = new Set<string>();

/**
 * Another sandbox, in a home of its own beside the bench's (`<home>-<kind>`, so the machine monitor,
 * which counts every process naming the bench's home as the bench's, counts its processes too), with
 * the Temporal `temporal` asks for and a token dataset. `down` stops its processes by pid and purges it.
 */
export async function sandboxBeside(ctx: Pick<BenchContext, 'home' | 'log'>, temporal: TemporalKind): Promise<{ home: string; state: SandboxState; down: () => Promise<void> }> {
  const home = `${ctx.home}-${temporal}`;
  besides.add(home);
  const down = async () => {
    if (!besides.delete(home)) return;
    ctx.log(`  tearing down the ${temporal} sandbox (${home})`);
    await sandboxDown({ home, purge: true });
  };
  try {
    // The fleet's activities are no-ops: the shop database need hold next to nothing.
    const state = await sandboxUp({ home, freePorts: true, temporal, seedRows: 100, log: (l) => ctx.log(`    ${l}`) });
    return { home, state, down };
  } catch (err) {
    // What did start is recorded in its state file: stopped by pid now, not left to the run's end.
    await down().catch((e: unknown) => ctx.log(`  tearing down ${home} failed too: ${(e as Error).message}`));
    throw err;
  }
}

/** Every sandbox a benchmark left up beside the bench's (it crashed, or the run was stopped), stopped and purged. */
export async function stopSandboxesBeside(log: (line: string) => void): Promise<void> {
  await Promise.all(
    [...besides].map(async (home) => {
      besides.delete(home);
      log(`tearing down ${home}`);
      await sandboxDown({ home, purge: true }).catch((err: unknown) => console.error(`bench: tearing down ${home} failed: ${(err as Error).message}`));
    }),
  );
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

/** /proc/<pid>/stat's fields after the command (the 3rd field, the state, is the first); undefined once it is gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/**
 * CPU time (ms) of a process and all its descendants, including the children it has reaped (cutime,
 * cstime): for a PostgreSQL postmaster that is its backends, those still connected and those gone.
 */
export function treeCpuMsOf(root: number): number {
  const parent = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const fields = statFields(pid);
    if (fields) parent.set(pid, Number(fields[1]));
  }
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p !== undefined && p > 1 && hops < 64; p = parent.get(p), hops++) if (p === root) return true;
    return false;
  };
  let ticks = 0;
  for (const pid of parent.keys()) {
    if (!inTree(pid)) continue;
    const f = statFields(pid);
    if (f) ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks * 10;
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
