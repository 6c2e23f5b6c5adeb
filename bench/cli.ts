// 9. CLI and worker start: what an operator waits for. Each `tiershift` command is a fresh process, timed from
// spawn to exit: `--version`, `list`, `status <id>` and `approve`, run compiled (dist/, as `npm run setup` leaves
// it) and from the sources through tsx (what runs once a source is edited), beside the `temporal` CLI doing
// the same queries (`workflow list`, `workflow describe`). And `tiershift worker` from spawn to its first poll,
// seen by Temporal (DescribeTaskQueue lists a poller with the worker's identity, `<pid>@<host>`).
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { distIsCurrent } from '../bin/dist.mjs';
import { PROJECT_ROOT } from '../contract/home';
import { TASK_QUEUE, type MigrationStatus } from '../contract/status';
import { workflowPollers } from '../client/health';
import { findBinary } from '../sandbox/binaries';
import { eventually, median, now, secs, spawnTracked, stamp, stopChild, table, type BenchContext, type Section } from './lib';

const BIN = path.join(PROJECT_ROOT, 'bin', 'tiershift.mjs');
const GOALS = { version: 300, status: 1_000, approve: 1_000, worker: 3_000 };

type Mode = 'compiled' | 'sources';
const modeEnv = (mode: Mode): NodeJS.ProcessEnv => ({ ...process.env, TIERSHIFT_FROM_SOURCE: mode === 'sources' ? '1' : '' });

/** Runs a command to its end and returns its wall time in ms; a failure is the benchmark's. */
async function timed(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const t0 = now();
  const child = spawnTracked(command, args, { cwd: PROJECT_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const elapsed = now() - t0;
  if (code !== 0) throw new Error(`${path.basename(command)} ${args.join(' ')} exited with ${code}: ${output.trim().split('\n')[0]}`);
  return elapsed;
}

const tiershift = (mode: Mode, args: string[]) => timed(process.execPath, [BIN, ...args], modeEnv(mode));

async function cliJson<T>(args: string[]): Promise<T> {
  const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { cwd: PROJECT_ROOT, encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`tiershift ${args.join(' ')} exited with ${r.status}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as T;
}

/** `tiershift worker` from spawn to its first poll as Temporal sees it; the worker is left running when `keep`. */
async function workerStart(ctx: BenchContext, mode: Mode, keep: boolean): Promise<{ ms: number; stop: () => Promise<void> }> {
  const t0 = now();
  const child = spawnTracked(process.execPath, [BIN, 'worker'], { cwd: PROJECT_ROOT, env: modeEnv(mode), stdio: 'ignore' });
  const identity = `${child.pid}@${os.hostname()}`;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`tiershift worker (${mode}) exited with ${child.exitCode} before polling`);
      if ((await workflowPollers(ctx.client, TASK_QUEUE)).some((p) => p.identity === identity)) break;
      if (now() - t0 > 120_000) throw new Error(`tiershift worker (${mode}) did not poll within 120 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } catch (err) {
    await stopChild(child);
    throw err;
  }
  const ms = now() - t0;
  if (!keep) await stopChild(child, 20_000);
  return { ms, stop: () => stopChild(child, 20_000) };
}

/** A minimal migration waiting at its gate, started through the CLI. */
async function atGate(id: string): Promise<void> {
  await cliJson(['start', 'plans/minimal.yaml', '--id', id, '--by', 'bench']);
  await eventually(() => cliJson<MigrationStatus>(['status', id]), (s) => s.pendingGate?.gate === 'go', 60_000, `${id} at its gate`, 250);
}

const cell = (values: number[]) => (values.length ? `**${secs(median(values), 2)}** (${secs(Math.min(...values), 2)}–${secs(Math.max(...values), 2)})` : 'n/a');

export async function cliStart(ctx: BenchContext): Promise<Section> {
  if (!distIsCurrent()) {
    ctx.log('  dist/ is missing or older than the sources: npm run build');
    const build = spawnSync(process.execPath, ['--import', 'tsx', path.join(PROJECT_ROOT, 'scripts', 'build.ts')], { cwd: PROJECT_ROOT, stdio: 'inherit' });
    if (build.status !== 0 || !distIsCurrent()) throw new Error('npm run build failed; the compiled CLI cannot be measured');
  }
  const runs = ctx.quick ? { cli: 3, approve: 1, worker: 1 } : { cli: 10, approve: 3, worker: 3 };
  const temporal = findBinary('temporal');
  const temporalArgs = ['--address', ctx.address, '--namespace', 'default'];
  const results: Record<string, Record<Mode | 'temporal', number[]>> = {};
  const record = (row: string, side: Mode | 'temporal', ms: number) => ((results[row] ??= { compiled: [], sources: [], temporal: [] })[side].push(ms));

  // Worker first: the last one started stays up to answer `status` and `approve`.
  const modes: Mode[] = ['compiled', 'sources'];
  let running: { stop: () => Promise<void> } | undefined;
  try {
    for (const mode of ['sources', 'compiled'] as Mode[]) {
      for (let i = 0; i < runs.worker; i++) {
        const last = mode === 'compiled' && i === runs.worker - 1;
        const w = await workerStart(ctx, mode, last);
        record('worker', mode, w.ms);
        ctx.log(`  worker (${mode}) polled after ${secs(w.ms, 2)}`);
        if (last) running = w;
      }
    }
    const id = `migration-bench-cli-${stamp()}`;
    await atGate(id);
    const gates: string[] = [];
    for (let i = 0; i < runs.approve * modes.length; i++) gates.push(`migration-bench-cli-${stamp()}`);
    for (const g of gates) await atGate(g);

    for (let i = 0; i < runs.cli; i++) {
      // Interleaved, so a busy moment of the machine weighs on every side alike.
      for (const mode of modes) {
        record('version', mode, await tiershift(mode, ['--version']));
        record('list', mode, await tiershift(mode, ['list']));
        record('status', mode, await tiershift(mode, ['status', id]));
      }
      record('list', 'temporal', await timed(temporal, ['workflow', 'list', '--limit', '50', ...temporalArgs]));
      record('status', 'temporal', await timed(temporal, ['workflow', 'describe', '-w', id, ...temporalArgs]));
    }
    for (const mode of modes) for (let i = 0; i < runs.approve; i++) record('approve', mode, await tiershift(mode, ['approve', gates.shift()!, '--gate', 'go', '--by', 'bench', '--yes']));
  } finally {
    await running?.stop();
  }

  const row = (label: string, key: string, goal: number | undefined, alternative: string) => [
    label,
    cell(results[key]!.compiled),
    cell(results[key]!.sources),
    goal ? `< ${secs(goal, 1)}` : '',
    alternative,
  ];
  const shortfalls: string[] = [];
  for (const [key, goal] of Object.entries(GOALS)) {
    const m = median(results[key]!.compiled);
    if (m >= goal) shortfalls.push(`CLI and worker start: \`${key === 'worker' ? 'tiershift worker` to its first poll' : `tiershift ${key}\``} took ${secs(m, 2)} (median, compiled), above the ${secs(goal, 1)} goal.`);
  }
  return {
    title: '9. CLI and worker start',
    method:
      `Wall time of each command as a new process, spawn to exit (median, min–max). \`tiershift\` compiled (dist/, built by \`npm run setup\`) and from the sources through tsx (what runs once a source is edited; every call ran this way before dist/, then also loading every module at start), ` +
      `${runs.cli} runs of \`--version\`, \`list\` and \`status <id>\` each, interleaved; \`approve <id> --gate go --yes\` ${runs.approve} times each, on minimal migrations waiting at their gate. ` +
      `\`tiershift worker\` from spawn to the moment Temporal lists it among the task queue's pollers (${runs.worker} starts each). **Alternative**: the \`temporal\` CLI (a Go binary) doing the same queries, \`workflow list --limit 50\` and \`workflow describe -w <id>\`.`,
    body: table(
      ['command', 'tiershift compiled', 'tiershift from sources (tsx)', 'goal', 'temporal CLI, same query'],
      [
        row('`--version`', 'version', GOALS.version, ''),
        row('`list`', 'list', undefined, `\`workflow list\`: ${cell(results.list!.temporal)}`),
        row('`status <id>`', 'status', GOALS.status, `\`workflow describe\`: ${cell(results.status!.temporal)}`),
        row('`approve <id> --gate go`', 'approve', GOALS.approve, ''),
        row('`worker`, spawn to first poll', 'worker', GOALS.worker, ''),
      ],
    ),
    shortfalls,
  };
}
