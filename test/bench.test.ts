// The bench harness itself, by a whole (quick) run of its two cheapest benchmarks on a sandbox of its
// own: a benchmark forced to fail (TIERSHIFT_BENCH_FAIL) is a row of RESULTS' Failed table with how long it
// ran and its error, the next benchmark still runs, the exit code says something failed, and the Machine
// section states measured figures and the conditions derived from them, not a fixed note.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { SandboxState } from '../contract/home';
import os from 'node:os';
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../contract/home';

const dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-bench-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `stopWhen` is asked on every output; once it says so, the bench gets SIGTERM (as Ctrl-C or CI's timeout would send). */
function bench(args: string[], env: NodeJS.ProcessEnv, stopWhen?: (output: string) => boolean): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    // The bench's own environment, minus the test run's sandbox: it brings up and purges one of its own.
    const { TIERSHIFT_HOME: _home, ...rest } = process.env;
    const child = spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', ...args], { cwd: PROJECT_ROOT, env: { ...rest, ...env } });
    let output = '';
    let stopped = false;
    const onData = (d: Buffer) => {
      output += d.toString();
      if (stopWhen && !stopped && stopWhen(output)) {
        stopped = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    // SIGTERM lets the bench tear its sandbox down (bench/exit.ts).
    const timer = setTimeout(() => child.kill('SIGTERM'), 280_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, output });
    });
  });
}

it('records a forced failure as a row of the Failed table, runs the next benchmark, and exits non-zero', { timeout: 300_000 }, async () => {
  const out = path.join(dir, 'RESULTS.md');
  const run = await bench(['--quick', '--only', '1,2', '--out', out], { TIERSHIFT_BENCH_FAIL: '1' });
  expect(run.code, run.output).toBe(1);
  expect(existsSync(out)).toBe(true);
  const results = readFileSync(out, 'utf8');

  expect(results).toMatch(/\n## Failed\n[\s\S]*\| benchmark \| what failed \| after \| error \(first line\) \|/);
  expect(results).toMatch(/\n\| 1\. approval latency \| the whole benchmark \| \d+\.\d s \| forced failure: TIERSHIFT_BENCH_FAIL=1 names benchmark 1 \|\n/);
  // The run went on: benchmark 2's section has its table, and it is not a failure.
  expect(results).toMatch(/\n## 2\. Orchestration overhead\n[\s\S]*\| runs \| 3 \| 3 \|/);
  expect(results).not.toMatch(/\| 2\. orchestration overhead \|/);
  expect(results).toMatch(/- Benchmark 1 \(approval latency\): the whole benchmark failed after \d+\.\d s: forced failure/);

  // Measured, not asserted: the load before, during and after, the steal where /proc/stat has it, the other processes.
  expect(results).not.toContain('shared its 2 CPUs');
  expect(results).toMatch(/\| load average \(1\/5\/15 min\) before the run \| [\d.]+ \/ [\d.]+ \/ [\d.]+ \|/);
  expect(results).toMatch(/\| load average \(1 min\) during the run, \d+ samples/);
  expect(results).toMatch(/\| load average \(1\/5\/15 min\) after the run \|/);
  expect(results).toMatch(/\| CPU steal (\(share of all CPU time\): before \/ during \(median, max\) \/ after \| [\d.]+%|\| not readable)/);
  expect(results).toMatch(/\| other processes' CPU, all together .* \| [\d.]+% \/ [\d.]+%, [\d.]+% \/ [\d.]+% \|/);
  expect(results).toMatch(/\n\*\*Conditions: (idle|busy)\.\*\* /);
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

it("takes benchmark 7's second sandbox (the Temporal cluster) down by pid when the run is stopped while the fleet runs on it", { timeout: 300_000 }, async () => {
  const out = path.join(dir, 'RESULTS.stopped.md');
  let clusterHome: string | undefined;
  let pids: number[] = [];
  const run = await bench(['--quick', '--only', '7', '--fleet', '1', '--out', out], {}, (output) => {
    // Stopped once the fleet runs on the cluster: its sandbox is up, with a worker child and a client on it.
    if (!/fleet of 1 on one worker, cluster\n/.test(output)) return false;
    clusterHome = /initialised the source cluster in (\S+-cluster)\/data\/pg-source/.exec(output)?.[1];
    const state = JSON.parse(readFileSync(path.join(clusterHome!, 'state.json'), 'utf8')) as SandboxState;
    pids = [state.temporal, state.azurite, state.haproxy, state.idp, ...Object.values(state.postgres), ...Object.values(state.apps)].flatMap((r) => (r ? [r.pid] : []));
    return true;
  });
  expect(run.code, run.output).toBe(130);
  expect(run.output).toContain('SIGTERM: stopping');
  expect(clusterHome, run.output).toMatch(/tiershift-bench-\w+-cluster$/);
  // Its Temporal server, both PostgreSQL clusters, Azurite, HAProxy, the app and the identity provider: all stopped, the home purged.
  expect(pids.length).toBeGreaterThanOrEqual(6);
  expect(pids.filter(alive), run.output).toEqual([]);
  expect(existsSync(clusterHome!)).toBe(false);
  // The results say how far it got: benchmark 7 interrupted.
  expect(readFileSync(out, 'utf8')).toMatch(/\| 7\. fleet \| the whole benchmark \(the run was stopped\) \|/);
});
