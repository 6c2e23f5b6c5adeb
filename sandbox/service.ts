// What every sandbox service shares: where its files go, the context `up` passes around, and the
// keep-or-restart decision that makes `up` idempotent.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../contract/errors';
import { isOurProcess, stopProcess, withTimeout, type ProcessSpec } from './process';
import type { PortPlanner } from './ports';
import { writeState, type ProcessRecord, type SandboxPorts, type SandboxState } from '../contract/home';

export type Log = (line: string) => void;

export interface Health {
  healthy: boolean;
  detail: string;
}

export interface UpContext {
  state: SandboxState;
  ports: PortPlanner;
  log: Log;
  seedRows: number;
}

export const logsDir = (home: string): string => path.join(home, 'logs');
export const dataDir = (home: string): string => path.join(home, 'data');

/** `<home>/logs/<name>.log`, creating the directory. */
export function logFile(home: string, name: string): string {
  mkdirSync(logsDir(home), { recursive: true });
  return path.join(logsDir(home), `${name}.log`);
}

/** Runs a health probe; a probe that throws or hangs is simply unhealthy, with its reason. */
export async function probe(check: () => Promise<Health>, timeoutMs = 5_000, what = 'health check'): Promise<Health> {
  try {
    return await withTimeout(check(), timeoutMs, what);
  } catch (err) {
    return { healthy: false, detail: err instanceof Error ? err.message : String(err) };
  }
}

/**
 * Decides whether a recorded service can stay: alive, still our program, and healthy. A live but
 * unhealthy one is stopped so the caller starts it afresh. Ports it holds are reserved.
 */
export async function keepRunning(
  ctx: UpContext,
  record: ProcessRecord | undefined,
  spec: ProcessSpec,
  health: () => Promise<Health>,
  portNames: (keyof SandboxPorts)[] = [],
): Promise<boolean> {
  if (!record) return false;
  if (!isOurProcess(record.pid, spec)) {
    ctx.log(`${spec.label}: pid ${record.pid} is gone; starting it again`);
    return false;
  }
  const status = await probe(health);
  if (!status.healthy) {
    ctx.log(`${spec.label}: pid ${record.pid} is unhealthy (${status.detail}); restarting it`);
    await stopProcess(record.pid, spec);
    return false;
  }
  for (const name of portNames) {
    const wanted = ctx.ports.explicit(name);
    const current = ctx.state.ports[name];
    if (wanted !== undefined && wanted !== current) {
      throw new UserError(`${spec.label} already runs on port ${current}; run \`tiershift sandbox down\` first to move ${name} to port ${wanted}.`);
    }
    ctx.ports.reserve(current);
  }
  ctx.log(`${spec.label}: already running (pid ${record.pid})`);
  return true;
}

/** Records a started process at once, so a failure later in `up` still lets `down` stop it. */
export function saveRecord(ctx: UpContext, update: (state: SandboxState) => void): void {
  update(ctx.state);
  writeState(ctx.state);
}
