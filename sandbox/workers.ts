// `sandbox down` also stops the workers started against the sandbox: each `tiershift worker` leaves a pid file
// in the home (worker/pid-file.ts). A pid is signalled only while it is still that worker.
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { workersDir, type WorkerRecord } from '../contract/home';
import { isAlive, stopProcess } from './process';

/** A worker drains on SIGTERM (the SDK finishes its current tasks); past this it is killed. */
export const WORKER_STOP_TIMEOUT_MS = 15_000;

function readRecord(file: string): WorkerRecord | undefined {
  try {
    const record = JSON.parse(readFileSync(file, 'utf8')) as Partial<WorkerRecord>;
    return Number.isInteger(record.pid) && typeof record.cmdline === 'string' ? (record as WorkerRecord) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` is still the `tiershift worker` that wrote the record: its /proc/<pid>/cmdline is the one
 * recorded, and that is a tiershift command whose subcommand is `worker`. Without /proc (not Linux) nothing
 * can be verified, so nothing is signalled.
 */
export function isTiershiftWorker(record: WorkerRecord): boolean {
  if (!isAlive(record.pid)) return false;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${record.pid}/cmdline`, 'utf8');
  } catch {
    return false;
  }
  const args = cmdline.split('\0');
  const entry = args.findIndex((a) => /^tiershift(\.mjs)?$|^cli\.[jt]s$/.test(path.basename(a)));
  return cmdline === record.cmdline && entry >= 0 && args.slice(entry + 1).includes('worker');
}

/** Stops every worker with a pid file in `home` (SIGTERM, then SIGKILL after a bound) and removes the files. */
export async function stopWorkers(home: string, log: (line: string) => void, timeoutMs = WORKER_STOP_TIMEOUT_MS): Promise<void> {
  const dir = workersDir(home);
  if (!existsSync(dir)) return;
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  await Promise.all(
    files.map(async (name) => {
      const file = path.join(dir, name);
      const record = readRecord(file);
      if (!record) log(`worker: ${name} is not a worker pid file; removed`);
      else if (!isAlive(record.pid)) log(`worker: pid ${record.pid} not running`);
      else if (!isTiershiftWorker(record)) log(`worker: pid ${record.pid} is no longer a tiershift worker; left alone`);
      else {
        // Not the group: the worker shares its group with the shell (or test) that started it.
        await stopProcess(record.pid, { label: `worker (pid ${record.pid})`, signal: 'SIGTERM', group: false, match: 'worker' }, timeoutMs);
        log(`worker: stopped (pid ${record.pid})`);
      }
      rmSync(file, { force: true });
    }),
  );
}
