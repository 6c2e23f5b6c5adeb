// The bench's machine monitor (bench/machine-load.ts) on this machine's real /proc: a busy process that
// is not the bench's is counted by name, the bench's own children and anything naming its home are not;
// and the conditions sentence follows the stated rule.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { conditions, IDLE, LoadMonitor, summarize, type Window } from '../bench/machine-load';

/** The `timeout` processes that bound each loop: SIGTERM to one reaches its loop too (timeout passes it on). */
const started: number[] = [];
afterEach(async () => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone (each loop ends after 30 s by itself)
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
});

/**
 * A bounded busy loop that is no longer this process's descendant (its parent shell exits at once, as
 * pg_ctl's does for the PostgreSQL server): named `name` (its comm) with `args` on its command line.
 */
function orphanBusyLoop(dir: string, name: string, args: string): number {
  const pidFile = path.join(dir, `${name}.pid`);
  const script = path.join(dir, name);
  spawnSync('sh', ['-c', `printf '#!/bin/sh\\nwhile :; do :; done\\n' > ${script} && chmod +x ${script}`]);
  const r = spawnSync('sh', ['-c', `timeout 30 ${script} ${args} >/dev/null 2>&1 & echo $! > ${pidFile}`]);
  expect(r.status).toBe(0);
  // `timeout` runs the loop as its child and passes SIGTERM on to it.
  const timeoutPid = Number(readFileSync(pidFile, 'utf8'));
  started.push(timeoutPid);
  return timeoutPid;
}

describe('LoadMonitor', () => {
  it("counts another busy process by name and CPU share, and leaves out the bench's own tree and its home's processes", { timeout: 30_000 }, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-load-'));
    try {
      const home = path.join(dir, 'bench-home');
      orphanBusyLoop(dir, 'otherburner', '');
      orphanBusyLoop(dir, 'sandboxburner', `--home ${home}`);
      // A child of this process: the bench's own tree.
      const child = spawnSync('sh', ['-c', `cp ${path.join(dir, 'otherburner')} ${path.join(dir, 'ownburner')}`]);
      expect(child.status).toBe(0);
      const own = spawn('timeout', ['30', path.join(dir, 'ownburner')], { stdio: 'ignore' });
      started.push(own.pid!);

      const monitor = new LoadMonitor(home);
      await monitor.measure('before', 2_000);
      const [w] = monitor.windows;
      const names = w!.busy.map((b) => b.name);
      expect(names).toContain('otherburner');
      expect(names).not.toContain('sandboxburner');
      expect(names).not.toContain('ownburner');
      // A busy loop gets some of a CPU (how much depends on what else runs here), never more than one.
      const other = w!.busy.find((b) => b.name === 'otherburner')!.share;
      expect(other).toBeGreaterThan(1);
      expect(other).toBeLessThanOrEqual(105);
      expect(w!.othersPct).toBeGreaterThanOrEqual(other);

      // Listed from 5% of a CPU; the loop is below that only when the machine is very busy anyway.
      const summary = summarize(monitor.windows, 2);
      if (other >= 5) expect(summary.rows.find(([k]) => k.startsWith('other busy processes'))?.[1]).toMatch(/otherburner [\d.]+%/);
      if (other >= IDLE.processPct) expect(summary.conditions).toMatch(/^\*\*Conditions: busy\.\*\* Other processes took up to [\d.]+% of one CPU together \(2 CPUs = 200%\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('conditions', () => {
  const window = (othersPct: number, busy: Window['busy'], stealPct?: number): Window => ({
    phase: 'during',
    at: '2026-12-01T00:00:00.000Z',
    seconds: 10,
    load: [0.1, 0.1, 0.1],
    othersPct,
    busy,
    ...(stealPct === undefined ? {} : { stealPct }),
  });

  it('says idle only when every sample is under the thresholds, and names what made it busy otherwise', () => {
    expect(conditions([window(3, [{ name: 'sshd', share: 2 }], 0.1), window(1, [], 0)], 2)).toMatch(/^\*\*Conditions: idle\.\*\* In all 2 samples .* at most 3\.0% .* steal stayed at or under 0\.1%\.$/);
    // One sample over the rule is enough.
    expect(conditions([window(3, [], 0), window(IDLE.othersPct, [{ name: 'node', share: IDLE.othersPct }], 0)], 2)).toMatch(/^\*\*Conditions: busy\.\*\* Other processes took up to 10% .*node/);
    expect(conditions([window(1, [], IDLE.stealPct + 1)], 2)).toMatch(/^\*\*Conditions: busy\.\*\* The hypervisor stole up to 3\.0% of the CPU time/);
    expect(conditions([window(1, [])], 2)).toMatch(/idle\.\*\* .*the CPU steal was not readable\.$/);
    expect(conditions([], 2)).toMatch(/^No sample of the machine was taken/);
  });
});
