// A run step's command on the worker: an argument list spawned without a shell, its environment only
// what the plan's secret references resolve to (and PATH, HOME and the like), its output streamed into
// the heartbeat, bounded by a timeout that ends its whole process group.
//
// At most once per migration unless the plan says rerunnable: before spawning, a marker is written and
// flushed to disk under the tiershift home (runs/<migration>/<run>/<step>.json), and the start is also
// sent in the heartbeat (which Temporal keeps with the activity, for workers on other machines). When the
// command ends, the marker records its exit. A later attempt that finds a marker does not run the command
// again: it reports the recorded exit, or, when the attempt that started it died before it ended, refuses
// and says how to decide.
import { Context, heartbeat } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/activity';
import { spawn } from 'node:child_process';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { sandboxHome } from '../contract/home';
import { showCommand } from '../plan/phases/run';
import type { Command, RunStep } from '../plan/types';
import { resolveSecret } from './secrets';
import type { StepInput, StepOutcome } from './types';

/** Lines of output the heartbeat and the report keep. */
const TAIL = 20;
/** The worker's variables a command gets besides its own: enough to find programs, never the worker's secrets. */
const PASSED = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'TIERSHIFT_HOME'];

interface Marker {
  startedAt: string;
  attempt: number;
  endedAt?: string;
  exitCode?: number | null;
  signal?: string | null;
  tail?: string;
}

export function markerFile(input: StepInput<RunStep>): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, '_');
  return path.join(sandboxHome(), 'runs', safe(input.migrationId), safe(input.runId ?? 'run'), `${safe(input.step.id)}.json`);
}

/** Written to a temporary file, flushed, then renamed: a crash leaves the old marker or the new one, never half. */
function writeMarker(file: string, marker: Marker): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, JSON.stringify(marker));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

function readMarker(file: string): Marker | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Marker;
  } catch {
    return undefined;
  }
}

export async function runStepCommand(input: StepInput<RunStep>): Promise<StepOutcome> {
  const { step } = input;
  const ctx = Context.current();
  const file = markerFile(input);
  if (!step.rerunnable) {
    const fromHeartbeat = (ctx.info.heartbeatDetails as { run?: { startedAt?: string } } | undefined)?.run?.startedAt;
    const marker = readMarker(file) ?? (fromHeartbeat ? { startedAt: fromHeartbeat, attempt: 0 } : undefined);
    if (marker) return alreadyRan(step, marker, file);
    writeMarker(file, { startedAt: new Date().toISOString(), attempt: ctx.info.attempt });
  }
  let result: Ended;
  try {
    // The heartbeat carries the start too, for an attempt on a worker that cannot see this one's marker.
    const started = step.rerunnable ? undefined : () => heartbeat({ run: { startedAt: new Date().toISOString() } });
    result = await spawnCommand(step.command, step.timeout, `step ${step.id}`, started);
  } catch (err) {
    // It never started (no such program, a secret that did not resolve): nothing ran, so nothing to guard.
    if (!step.rerunnable) rmSync(file, { force: true });
    throw err;
  }
  if (!step.rerunnable) writeMarker(file, { ...readMarker(file)!, endedAt: new Date().toISOString(), exitCode: result.code, signal: result.signal, tail: result.tail });
  return judge(step, result);
}

/** The undo command; compensation retries may run it again, so it must be safe to repeat. */
export async function undoStepCommand(input: StepInput<RunStep>): Promise<StepOutcome> {
  const { step } = input;
  const result = await spawnCommand(step.undo!, step.timeout, `the undo of step ${step.id}`);
  if (result.timedOut || result.code === null || !step.successCodes.includes(result.code)) {
    throw new Error(`the undo of ${step.id} (${showCommand(step.undo!)}) ${ending(result, step.timeout)}${lastLines(result.tail)}`);
  }
  return { summary: `undo of ${step.id} exited ${result.code}${lastLines(result.tail)}`, figures: { 'run.undoExitCode': result.code } };
}

function alreadyRan(step: RunStep, marker: Marker, file: string): StepOutcome {
  if (marker.endedAt !== undefined) {
    const ended = { code: marker.exitCode ?? null, signal: marker.signal ?? null, tail: marker.tail ?? '', timedOut: false, ms: 0 };
    // The command ended, but the attempt that ran it did not report back: its recorded exit is the result.
    if (ended.code !== null && step.successCodes.includes(ended.code)) return { ...judge(step, ended), summary: `ran once already (started ${marker.startedAt}): exit ${ended.code}${lastLines(ended.tail)}` };
    throw ApplicationFailure.nonRetryable(
      `${showCommand(step.command)} already ran for this migration (started ${marker.startedAt}) and ${ending(ended, step.timeout)}; it runs at most once, so fix what it needed, delete ${file} and resume to run it again, or roll back`,
      'NonRetryable',
    );
  }
  throw ApplicationFailure.nonRetryable(
    `${showCommand(step.command)} was started at ${marker.startedAt} by an attempt that stopped before it reported an exit (the worker was killed or lost); it runs at most once per migration, so check what it did, then delete ${file} and resume to run it again, or skip it by rolling back`,
    'NonRetryable',
  );
}

interface Ended {
  code: number | null;
  signal: string | null;
  tail: string;
  timedOut: boolean;
  ms: number;
}

function judge(step: RunStep, r: Ended): StepOutcome {
  if (r.timedOut || r.code === null || !step.successCodes.includes(r.code)) {
    throw ApplicationFailure.nonRetryable(`${showCommand(step.command)} ${ending(r, step.timeout)}${lastLines(r.tail)}`, 'NonRetryable');
  }
  return { summary: `exit ${r.code} after ${(r.ms / 1000).toFixed(1)} s${lastLines(r.tail)}`, figures: { 'run.exitCode': r.code, 'run.seconds': Math.round(r.ms / 100) / 10 } };
}

const ending = (r: Ended, timeout: string) =>
  r.timedOut ? `did not finish within ${timeout} and was stopped` : r.code === null ? `was ended by ${r.signal ?? 'a signal'}` : `exited ${r.code}`;
const lastLines = (tail: string) => (tail ? `; last lines:\n${tail}` : '');

async function spawnCommand(command: Command, timeout: string, what: string, onSpawn?: () => void): Promise<Ended> {
  const env: Record<string, string> = {};
  for (const name of PASSED) if (process.env[name] !== undefined) env[name] = process.env[name]!;
  const secrets: string[] = [];
  for (const [name, ref] of Object.entries(command.env ?? {})) {
    env[name] = await resolveSecret(ref, `${what}: ${name}`);
    secrets.push(env[name]);
  }
  // A secret the command prints stays out of the heartbeat, the status and the report.
  const redact = (line: string) => secrets.reduce((l, s) => (s.length >= 4 ? l.split(s).join('***') : l), line);
  const started = Date.now();
  const tail: string[] = [];
  const ctx = Context.current();
  return new Promise<Ended>((resolve, reject) => {
    const [program, ...args] = command.argv;
    // Its own process group, so a timeout or a cancellation ends whatever it started too.
    const child = spawn(program!, args, { cwd: command.cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = { out: '', err: '' };
    const take = (which: 'out' | 'err') => (chunk: Buffer) => {
      const text = partial[which] + chunk.toString('utf8');
      const lines = text.split('\n');
      partial[which] = lines.pop()!;
      for (const line of lines) tail.push(redact(line).slice(0, 500));
      tail.splice(0, Math.max(0, tail.length - TAIL));
      heartbeat({ run: { tail: tail.join('\n') } });
    };
    if (onSpawn) child.once('spawn', onSpawn);
    child.stdout!.on('data', take('out'));
    child.stderr!.on('data', take('err'));
    let timedOut = false;
    const stop = () => {
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        // Already gone.
      }
      setTimeout(() => {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }, 5_000).unref();
    };
    const timer = setTimeout(() => ((timedOut = true), stop()), durationMs(timeout));
    const onCancel = () => stop();
    ctx.cancellationSignal.addEventListener('abort', onCancel, { once: true });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(ApplicationFailure.nonRetryable(`${what} could not start ${command.argv[0]}: ${err.message}; check the command's path`, 'NonRetryable'));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      for (const rest of [partial.out, partial.err]) if (rest) tail.push(redact(rest).slice(0, 500));
      tail.splice(0, Math.max(0, tail.length - TAIL));
      resolve({ code, signal, tail: tail.join('\n'), timedOut, ms: Date.now() - started });
    });
  });
}

function durationMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(n) * units[unit!]!;
  return total;
}
