// `tiershift worker` leaves its pid in the tiershift home while it runs, so `tiershift sandbox down` (and an
// operator, as the README says) can stop it without having kept the shell's `$!`.
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { workersDir, type WorkerRecord } from '../contract/home';

/** This process's command line, NUL-separated as /proc/<pid>/cmdline has it (argv joined where there is no /proc). */
function ownCmdline(): string {
  try {
    return readFileSync('/proc/self/cmdline', 'utf8');
  } catch {
    return [process.execPath, ...process.execArgv, ...process.argv.slice(1)].join('\0');
  }
}

/** Writes `<home>/workers/<pid>.json` and returns its path; removed again on any exit (see removeWorkerPidFile). */
export function writeWorkerPidFile(home: string, address: string): string {
  const dir = workersDir(home);
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${process.pid}.json`);
  const record: WorkerRecord = { pid: process.pid, cmdline: ownCmdline(), address, startedAt: new Date().toISOString() };
  // Renamed into place: `sandbox down` never reads half a record.
  writeFileSync(`${file}.tmp`, `${JSON.stringify(record)}\n`);
  renameSync(`${file}.tmp`, file);
  // However the process ends short of SIGKILL (a crash, process.exit in an error path), the file goes with it.
  process.once('exit', () => removeWorkerPidFile(file));
  return file;
}

export function removeWorkerPidFile(file: string): void {
  rmSync(file, { force: true });
}
