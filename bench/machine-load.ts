// What else the machine was doing while the benchmarks ran, measured rather than assumed: the load
// average, the CPU steal (/proc/stat, where the kernel reports it), and the other busy processes by name
// and CPU share (/proc/<pid>/stat), sampled before the run, every few seconds during it, and after it.
// "Other" excludes the bench's own process tree (its ancestors up to `npm run bench` and everything it
// started) and its sandbox (every process whose command line names the bench's home, with its children:
// the PostgreSQL clusters, started through pg_ctl, are not the bench's children). The Machine section of
// RESULTS.md states these figures, and the one sentence about the conditions is derived from them by the
// rule in `conditions` (bench/README.md states it too).
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';

/** Linux reports CPU times in clock ticks of 1/100 s (USER_HZ), whatever the kernel's own HZ. */
const TICKS_PER_SECOND = 100;

interface Proc {
  pid: number;
  ppid: number;
  name: string;
  /** user + system CPU time so far, in ticks. */
  ticks: number;
  /** When it started, in ticks since boot: tells a reused pid from the process seen before. */
  startTicks: number;
}

interface Snapshot {
  /** Seconds since boot (/proc/uptime), the clock process start times are on. */
  uptime: number;
  at: number;
  procs: Map<number, Proc>;
  /** All CPUs' ticks, and the stolen ones among them; undefined where /proc/stat has no steal column. */
  cpu?: { total: number; steal: number };
  /** The pids that are the bench's or its sandbox's at this moment. */
  own: Set<number>;
}

export interface Busy {
  name: string;
  /** Percent of one CPU. */
  share: number;
}

/** One interval between two snapshots. */
export interface Window {
  phase: 'before' | 'during' | 'after';
  /** The interval's end, ISO. */
  at: string;
  seconds: number;
  /** 1, 5 and 15 min load averages at its end. */
  load: [number, number, number];
  /** Percent of all CPU time stolen by the hypervisor; undefined where not readable. */
  stealPct?: number;
  /** The other processes together, percent of one CPU. */
  othersPct: number;
  /** The other processes by name (summed over processes of the same name), busiest first, percent of one CPU. */
  busy: Busy[];
}

function readProcs(): Map<number, Proc> {
  const procs = new Map<number, Proc>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // The name is in parentheses and may itself contain spaces or parentheses: split after the last one.
      const open = stat.indexOf('(');
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' ');
      procs.set(Number(entry), {
        pid: Number(entry),
        ppid: Number(fields[1]),
        name: stat.slice(open + 1, close),
        ticks: Number(fields[11]) + Number(fields[12]),
        startTicks: Number(fields[19]),
      });
    } catch {
      // gone between the listing and the read
    }
  }
  return procs;
}

function readCpu(): Snapshot['cpu'] {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n').find((l) => l.startsWith('cpu '));
    const values = line?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is already in user.
    if (values.length < 8) return undefined;
    return { total: values.slice(0, 8).reduce((a, b) => a + b, 0), steal: values[7]! };
  } catch {
    return undefined;
  }
}

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** The bench's own pids: its ancestors, itself, the processes naming its home, and all their descendants. */
function ownPids(procs: Map<number, Proc>, self: number, marker: string | undefined): Set<number> {
  const own = new Set<number>();
  for (let pid = self; pid > 1 && !own.has(pid); pid = procs.get(pid)?.ppid ?? 0) own.add(pid);
  const roots = [self, ...(marker ? [...procs.keys()].filter((pid) => readCmdline(pid).includes(marker)) : [])];
  const children = new Map<number, number[]>();
  for (const p of procs.values()) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const queue = [...roots];
  while (queue.length) {
    const pid = queue.pop()!;
    own.add(pid);
    for (const child of children.get(pid) ?? []) if (!own.has(child)) queue.push(child);
  }
  return own;
}

function uptime(): number {
  try {
    return Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
  } catch {
    return os.uptime();
  }
}

function snapshot(marker: string | undefined): Snapshot {
  const procs = readProcs();
  return { uptime: uptime(), at: Date.now(), procs, cpu: readCpu(), own: ownPids(procs, process.pid, marker) };
}

/** The interval between two snapshots: what the processes other than the bench's used, and the steal. */
function windowBetween(a: Snapshot, b: Snapshot, phase: Window['phase']): Window {
  const seconds = Math.max(0.001, (b.at - a.at) / 1000);
  const byName = new Map<string, number>();
  let others = 0;
  for (const p of b.procs.values()) {
    if (b.own.has(p.pid) || a.own.has(p.pid)) continue;
    const before = a.procs.get(p.pid);
    // Seen before: what it used since. Started within the interval: all it used. A reused pid is a new process.
    const used =
      before && before.startTicks === p.startTicks ? p.ticks - before.ticks : p.startTicks >= a.uptime * TICKS_PER_SECOND ? p.ticks : 0;
    if (used <= 0) continue;
    const share = (used / TICKS_PER_SECOND / seconds) * 100;
    others += share;
    byName.set(p.name, (byName.get(p.name) ?? 0) + share);
  }
  const steal =
    a.cpu && b.cpu && b.cpu.total > a.cpu.total ? ((b.cpu.steal - a.cpu.steal) / (b.cpu.total - a.cpu.total)) * 100 : undefined;
  const [l1, l5, l15] = os.loadavg();
  return {
    phase,
    at: new Date(b.at).toISOString(),
    seconds,
    load: [l1 ?? 0, l5 ?? 0, l15 ?? 0],
    ...(steal === undefined ? {} : { stealPct: steal }),
    othersPct: others,
    busy: [...byName].map(([name, share]) => ({ name, share })).sort((x, y) => y.share - x.share),
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Samples the machine before, during (every `everyMs`) and after the run. */
export class LoadMonitor {
  readonly windows: Window[] = [];
  private last?: Snapshot;
  private timer?: NodeJS.Timeout;

  /** `marker`: the bench's home, which every sandbox process's command line names. */
  constructor(
    private readonly marker: string | undefined,
    private readonly everyMs = 10_000,
  ) {}

  /** A window of its own, `ms` long, now (before and after the run). */
  async measure(phase: 'before' | 'after', ms = 3_000): Promise<void> {
    const a = snapshot(this.marker);
    await sleep(ms);
    this.windows.push(windowBetween(a, snapshot(this.marker), phase));
  }

  /** From now on, a window every `everyMs` until `stop`. */
  start(): void {
    this.last = snapshot(this.marker);
    this.timer = setInterval(() => this.tick(), this.everyMs);
    // The sampler must never keep the bench alive.
    this.timer.unref();
  }

  private tick(): void {
    if (!this.last) return;
    const next = snapshot(this.marker);
    this.windows.push(windowBetween(this.last, next, 'during'));
    this.last = next;
  }

  /** Ends the periodic sampling with a last, shorter window. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.last && Date.now() - this.last.at >= 1_000) this.tick();
    this.last = undefined;
  }
}

// ---- what the figures say ---------------------------------------------------------------------

/** The rule (bench/README.md): idle when, in every window, the others stayed under these. */
export const IDLE = {
  /** All other processes together, percent of one CPU. */
  othersPct: 10,
  /** Any one other process (by name), percent of one CPU. */
  processPct: 5,
  /** Stolen CPU time, percent of all CPU time. */
  stealPct: 2,
} as const;

/** A process name is listed when it took at least this share of one CPU, on average or in some window. */
const LISTED = { meanPct: 5, peakPct: 20 } as const;

export interface Summary {
  rows: [string, string][];
  conditions: string;
}

const pct = (v: number) => `${v.toFixed(v < 10 ? 1 : 0)}%`;
const loads = (l: [number, number, number]) => l.map((v) => v.toFixed(2)).join(' / ');
const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** Per process name over some windows: time-weighted mean and peak share of one CPU. */
function busiest(windows: Window[]): { name: string; mean: number; peak: number }[] {
  const seconds = windows.reduce((n, w) => n + w.seconds, 0);
  const names = new Map<string, { cpuSeconds: number; peak: number }>();
  for (const w of windows) {
    for (const b of w.busy) {
      const n = names.get(b.name) ?? { cpuSeconds: 0, peak: 0 };
      n.cpuSeconds += (b.share / 100) * w.seconds;
      n.peak = Math.max(n.peak, b.share);
      names.set(b.name, n);
    }
  }
  return [...names]
    .map(([name, n]) => ({ name, mean: seconds ? (n.cpuSeconds / seconds) * 100 : 0, peak: n.peak }))
    .filter((n) => n.mean >= LISTED.meanPct || n.peak >= LISTED.peakPct)
    .sort((a, b) => b.mean - a.mean);
}

/** The Machine section's measured rows and the sentence about the conditions, from the windows alone. */
export function summarize(windows: Window[], cpus = os.cpus().length): Summary {
  const rows: [string, string][] = [];
  const of = (phase: Window['phase']) => windows.filter((w) => w.phase === phase);
  const before = of('before').at(-1);
  const during = of('during');
  const after = of('after').at(-1);
  const full = `${cpus} CPUs = ${cpus * 100}%`;
  if (before) rows.push(['load average (1/5/15 min) before the run', loads(before.load)]);
  if (during.length) {
    const l1 = during.map((w) => w.load[0]);
    rows.push([
      `load average (1 min) during the run, ${during.length} samples about every ${Math.round(median(during.map((w) => w.seconds)))} s (min / median / max)`,
      `${Math.min(...l1).toFixed(2)} / ${median(l1).toFixed(2)} / ${Math.max(...l1).toFixed(2)} (the bench's own work included)`,
    ]);
  }
  if (after) rows.push(['load average (1/5/15 min) after the run', loads(after.load)]);
  const steals = windows.filter((w) => w.stealPct !== undefined);
  if (!steals.length) rows.push(['CPU steal', 'not readable here (no steal column in /proc/stat)']);
  else {
    const s = (w?: Window) => (w?.stealPct === undefined ? 'n/a' : pct(w.stealPct));
    const ds = during.flatMap((w) => (w.stealPct === undefined ? [] : [w.stealPct]));
    rows.push([
      'CPU steal (share of all CPU time): before / during (median, max) / after',
      `${s(before)} / ${ds.length ? `${pct(median(ds))}, ${pct(Math.max(...ds))}` : 'n/a'} / ${s(after)}`,
    ]);
  }
  const othersMean = (ws: Window[]) => {
    const seconds = ws.reduce((n, w) => n + w.seconds, 0);
    return seconds ? ws.reduce((n, w) => n + w.othersPct * w.seconds, 0) / seconds : 0;
  };
  rows.push([
    `other processes' CPU, all together (% of one CPU; ${full}): before / during (mean, max) / after`,
    `${before ? pct(before.othersPct) : 'n/a'} / ${during.length ? `${pct(othersMean(during))}, ${pct(Math.max(...during.map((w) => w.othersPct)))}` : 'n/a'} / ${after ? pct(after.othersPct) : 'n/a'}`,
  ]);
  const top = busiest(during.length ? during : windows);
  rows.push([
    `other busy processes during the run, by name (mean, peak % of one CPU; listed from ${LISTED.meanPct}% mean or ${LISTED.peakPct}% peak)`,
    top.length ? top.slice(0, 8).map((t) => `${t.name} ${pct(t.mean)}, ${pct(t.peak)}`).join('; ') : 'none',
  ]);
  return { rows, conditions: conditions(windows, cpus) };
}

/** The one sentence about the conditions, by the rule in IDLE. */
export function conditions(windows: Window[], cpus = os.cpus().length): string {
  if (!windows.length) return 'No sample of the machine was taken, so nothing is said about the conditions.';
  const maxOthers = Math.max(...windows.map((w) => w.othersPct));
  const maxProcess = Math.max(0, ...windows.flatMap((w) => w.busy.map((b) => b.share)));
  const steals = windows.flatMap((w) => (w.stealPct === undefined ? [] : [w.stealPct]));
  const maxSteal = steals.length ? Math.max(...steals) : undefined;
  const stealText = maxSteal === undefined ? 'the CPU steal was not readable' : `the CPU steal stayed at or under ${pct(maxSteal)}`;
  const idle = maxOthers < IDLE.othersPct && maxProcess < IDLE.processPct && (maxSteal === undefined || maxSteal < IDLE.stealPct);
  if (idle) {
    return (
      `**Conditions: idle.** In all ${windows.length} samples the other processes together took at most ${pct(maxOthers)} of one CPU ` +
      `(the rule: under ${IDLE.othersPct}%, no single one ${IDLE.processPct}% or more) and ${stealText}.`
    );
  }
  const why: string[] = [];
  const during = windows.filter((w) => w.phase === 'during');
  const top = busiest(during.length ? during : windows).slice(0, 3);
  if (maxOthers >= IDLE.othersPct || maxProcess >= IDLE.processPct) {
    why.push(
      `other processes took up to ${pct(maxOthers)} of one CPU together (${cpus} CPUs = ${cpus * 100}%)` +
        (top.length ? `, the busiest ${top.map((t) => `${t.name} (${pct(t.mean)} on average, ${pct(t.peak)} at most)`).join(', ')}` : ''),
    );
  }
  if (maxSteal !== undefined && maxSteal >= IDLE.stealPct) why.push(`the hypervisor stole up to ${pct(maxSteal)} of the CPU time`);
  return (
    `**Conditions: busy.** ${why.join('; ').replace(/^./, (c) => c.toUpperCase())}, in ${windows.length} samples ` +
    `(the rule for idle: under ${IDLE.othersPct}% of one CPU for the others together, under ${IDLE.processPct}% for any one of them, steal under ${IDLE.stealPct}%, in every sample). ` +
    'Absolute times are therefore pessimistic; each comparison ran its two sides under the same conditions, so the ratios are the more meaningful part.'
  );
}
