// Drives the `tiershift` CLI as a user would: separate processes, real exit codes, real output.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { PROJECT_ROOT } from '../../contract/home';

const BIN = path.join(PROJECT_ROOT, 'bin', 'tiershift.mjs');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function tiershift(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tiershift ${args.join(' ')} did not finish within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** `tiershift worker` (with `args`, e.g. `--task-queue q`) as a background process; stopped by its pid. */
export function spawnWorker(env: NodeJS.ProcessEnv = {}, args: string[] = []): { child: ChildProcess; output: () => string; stop: () => Promise<void> } {
  const child = spawn(process.execPath, [BIN, 'worker', ...args], { cwd: PROJECT_ROOT, env: { ...process.env, ...env } });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  return {
    child,
    output: () => output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
        child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

/** A user-facing error is one line, and never a stack trace. */
export function isOneSentence(stderr: string): boolean {
  const lines = stderr.trim().split('\n').filter((l) => !l.startsWith('npm warn'));
  return lines.length === 1 && !/\n\s+at /.test(stderr) && /^tiershift: .+[.]$/.test(lines[0]!);
}

export interface RunningCli {
  child: ChildProcess;
  output: () => string;
  /** Resolves with everything printed so far once the output matches; rejects at the deadline or on exit. */
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<string>;
  /** The finished process, like `tiershift()`'s result. */
  exited: Promise<CliResult>;
  stop: () => Promise<void>;
}

/** A long-running `tiershift` (e.g. `watch`) whose output a test reads while it runs, piped like in a script. */
export function spawnTiershift(args: string[], env: NodeJS.ProcessEnv = {}): RunningCli {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: PROJECT_ROOT, env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  const listeners = new Set<() => void>();
  const changed = () => listeners.forEach((l) => l());
  child.stdout!.on('data', (d: Buffer) => ((stdout += d.toString()), changed()));
  child.stderr!.on('data', (d: Buffer) => ((stderr += d.toString()), changed()));
  const exited = new Promise<CliResult>((resolve) => child.on('close', (code) => (resolve({ code: code ?? -1, stdout, stderr }), changed())));
  const done = () => child.exitCode !== null || child.signalCode !== null;
  return {
    child,
    output: () => stdout,
    exited,
    waitFor: (pattern, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (pattern.test(stdout)) finish(() => resolve(stdout));
          else if (done()) finish(() => reject(new Error(`tiershift ${args.join(' ')} exited (${child.exitCode}) before printing ${pattern}\n${stdout}\n${stderr}`)));
        };
        const timer = setTimeout(() => finish(() => reject(new Error(`tiershift ${args.join(' ')} did not print ${pattern} within ${timeoutMs} ms\n${stdout}\n${stderr}`))), timeoutMs);
        const finish = (settle: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          settle();
        };
        listeners.add(check);
        check();
      }),
    stop: async () => {
      if (!done()) child.kill('SIGTERM');
      await exited;
    },
  };
}
