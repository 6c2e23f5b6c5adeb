// `npm run bench`: brings up a sandbox of its own (temporary home, free ports), runs the nine
// benchmarks (seven from issue 7, the reverse sync from issue 8, the CLI and worker start from issue 18), writes bench/RESULTS.md (or
// bench/RESULTS.quick.md with --quick), and tears the sandbox down (purged) whatever happens. `--only 1,5` runs some of them (for debugging).
// Benchmark 7 also brings up a second sandbox with the Temporal cluster, and takes it down (also on every way out).
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sandboxDown, sandboxUp } from '../sandbox';
import { teardownOnExit } from './exit';
import { findBinary } from '../sandbox/binaries';
import { builtTemporalServer, TEMPORAL_SERVER_VERSION } from '../sandbox/temporal-server-build';
import { approvalLatency } from './approval';
import { blobSync } from './blob-sync';
import { cliStart } from './cli';
import { zeroDowntime } from './downtime';
import { fleet } from './fleet';
import { connectTo, failedComparison, stopChildren, stopSandboxesBeside, withDeadline, type BenchContext, type FailedComparison, type Section } from './lib';
import { LoadMonitor, summarize } from './machine-load';
import { orchestrationOverhead } from './overhead';
import { pgSync } from './pg-sync';
import { reverseSync } from './reverse-sync';
import { rollbackTime } from './rollback';
import { FULL, pgBudgetMs, QUICK, withPgSizes } from './sizes';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));

interface Benchmark {
  n: number;
  name: string;
  fn: (ctx: BenchContext) => Promise<Section>;
  /** Time budget (full run): past it no new runs start; at twice it the benchmark is abandoned. */
  budgetMs: number;
}

// Run order: the benchmarks that only need Temporal first, then blobs, then PostgreSQL (which reseeds
// the shop database and restores it), then the whole migrations that use the sandbox app.
const BENCHMARKS: Benchmark[] = [
  { n: 9, name: 'CLI and worker start', fn: cliStart, budgetMs: 240_000 },
  { n: 1, name: 'approval latency', fn: approvalLatency, budgetMs: 90_000 },
  { n: 2, name: 'orchestration overhead', fn: orchestrationOverhead, budgetMs: 60_000 },
  // Twice the dev server's 4 minutes: the same K run on the cluster too, after its sandbox comes up.
  { n: 7, name: 'fleet', fn: fleet, budgetMs: 600_000 },
  { n: 6, name: 'blob sync', fn: blobSync, budgetMs: 150_000 },
  { n: 5, name: 'PostgreSQL data sync', fn: pgSync, budgetMs: 600_000 },
  { n: 3, name: 'zero downtime', fn: zeroDowntime, budgetMs: 180_000 },
  { n: 4, name: 'rollback time', fn: rollbackTime, budgetMs: 150_000 },
  { n: 8, name: 'reverse sync', fn: reverseSync, budgetMs: 300_000 },
];

interface Args {
  quick: boolean;
  only?: Set<number>;
  /** Benchmark 5's datasets in rows, e.g. `--sizes 1M,10M,20M`. */
  sizes?: number[];
  /** Where the results go, under bench/. */
  out?: string;
  /** Benchmark 7's K, e.g. `--fleet 10` (a check of both servers without the long runs). */
  fleet?: number[];
}

function option(argv: string[], name: string): string | undefined {
  const i = argv.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (i < 0) return undefined;
  return argv[i]!.includes('=') ? argv[i]!.slice(name.length + 1) : argv[i + 1] ?? '';
}

function parseArgs(argv: string[]): Args {
  const quick = argv.includes('--quick');
  const onlyText = option(argv, '--only');
  const only = onlyText === undefined ? undefined : new Set(onlyText.split(',').map(Number).filter((n) => n >= 1 && n <= 9));
  const sizesText = option(argv, '--sizes');
  let sizes: number[] | undefined;
  if (sizesText !== undefined) {
    sizes = sizesText.split(',').map((t) => {
      const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(t.trim());
      if (!m) throw new Error(`--sizes takes rows like 1M,10M,20M; "${t}" is not one`);
      return Math.round(Number(m[1]) * (m[2]?.toLowerCase() === 'm' ? 1e6 : m[2]?.toLowerCase() === 'k' ? 1e3 : 1));
    });
  }
  const out = option(argv, '--out');
  const fleetText = option(argv, '--fleet');
  let fleet: number[] | undefined;
  if (fleetText !== undefined) {
    fleet = fleetText.split(',').map((t) => {
      const k = Number(t.trim());
      if (!Number.isInteger(k) || k < 1) throw new Error(`--fleet takes the numbers of concurrent migrations, like 10,100; "${t}" is not one`);
      return k;
    });
  }
  return { quick, only, sizes, ...(out ? { out } : {}), ...(fleet ? { fleet } : {}) };
}

function version(command: string, args: string[], pattern: RegExp): string {
  try {
    const r = spawnSync(command, args, { encoding: 'utf8', timeout: 15_000 });
    const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
    return pattern.exec(text)?.[1]?.trim() ?? (text.trim().split('\n')[0] || 'unknown');
  } catch (err) {
    return `unavailable (${(err as Error).message})`;
  }
}

function tryBinary(name: string): string | undefined {
  try {
    return findBinary(name);
  } catch {
    return undefined;
  }
}

function machine(): [string, string][] {
  const cpus = os.cpus();
  let osName = `${os.type()} ${os.release()}`;
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1];
    if (pretty) osName = `${pretty} (kernel ${os.release()})`;
  } catch {
    // not Linux: os.type() will do
  }
  const pg = tryBinary('postgres');
  const temporal = tryBinary('temporal');
  const pgcopydb = tryBinary('pgcopydb');
  return [
    ['CPU cores', String(cpus.length)],
    ['CPU model', cpus[0]?.model.trim() ?? 'unknown'],
    ['memory', `${(os.totalmem() / 1024 ** 3).toFixed(1)} GiB`],
    ['OS', osName],
    ['Node.js', process.version],
    ['PostgreSQL', pg ? version(pg, ['--version'], /\(PostgreSQL\)\s*(.+)/) : 'not found'],
    ['HAProxy', version(findBinary('haproxy'), ['-v'], /HAProxy version (\S+)/)],
    ['Temporal CLI', temporal ? version(temporal, ['--version'], /temporal version (.+)/) : 'not found'],
    ['Temporal server (benchmark 7\'s cluster)', builtTemporalServer() ? `${TEMPORAL_SERVER_VERSION}, built from source` : 'not built (`npm run setup -- --with-temporal-server`)'],
    ['pgcopydb', pgcopydb ? version(pgcopydb, ['--version'], /pgcopydb version (\S+)/) : 'not installed'],
    ['date', new Date().toISOString()],
  ];
}

const short = (text: string, max = 400) => (text.length > max ? `${text.slice(0, max)}…` : text);

/** A failure row with the benchmark it belongs to. */
interface FailureRow extends FailedComparison {
  benchmark: number;
}

/**
 * TIERSHIFT_BENCH_FAIL=1,5: those benchmarks fail as soon as they start, through the same path as a real
 * failure, so that the failures table, the runs after it and the exit code can be tested cheaply.
 */
function forcedFailures(env: NodeJS.ProcessEnv = process.env): Set<number> {
  const text = env.TIERSHIFT_BENCH_FAIL?.trim();
  if (!text) return new Set();
  const numbers = text.split(',').map((t) => Number(t.trim()));
  if (numbers.some((n) => !Number.isInteger(n) || n < 1 || n > 9)) {
    throw new Error(`TIERSHIFT_BENCH_FAIL takes benchmark numbers 1 to 9, comma-separated; got "${text}"`);
  }
  return new Set(numbers);
}

const afterText = (ms: number) => (ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60_000).toFixed(1)} min`);

const cell = (v: string) => v.replaceAll('|', '\\|').replaceAll('\n', ' ');
const nameOf = (n: number) => BENCHMARKS.find((b) => b.n === n)?.name ?? '';

function render(opts: {
  quick: boolean;
  command: string;
  machine: [string, string][];
  /** What else the machine did, measured (bench/machine-load.ts). */
  load: ReturnType<typeof summarize>;
  sections: Map<number, Section | Error>;
  failures: FailureRow[];
  order: number[];
  totalMs?: number;
  seedRows: number;
}): string {
  const lines: string[] = [
    `# tiershift benchmarks${opts.quick ? ' (quick mode: tiny sizes, for checking the harness only)' : ''}`,
    '',
    `Produced by \`${opts.command}\` (bench/run.ts) on a sandbox of its own: a temporary home, free loopback ports, ` +
      `the shop database seeded with ${opts.seedRows.toLocaleString('en-US')} orders, torn down and purged at the end. What each benchmark measures: bench/README.md.`,
    '',
    '## Machine',
    '',
    '| | |',
    '|---|---|',
    ...[...opts.machine, ...opts.load.rows].map(([k, v]) => `| ${cell(k)} | ${cell(v)} |`),
    ...(opts.totalMs ? [`| whole run | ${(opts.totalMs / 60_000).toFixed(1)} min |`] : []),
    '',
    opts.load.conditions,
    '',
  ];
  const shortfalls: string[] = [];
  if (opts.failures.length) {
    lines.push(
      '## Failed',
      '',
      'Each comparison that failed, and how far it got; the benchmarks after it still ran.',
      '',
      '| benchmark | what failed | after | error (first line) |',
      '|---|---|---:|---|',
      ...opts.failures.map((f) => `| ${f.benchmark}. ${cell(nameOf(f.benchmark))} | ${cell(f.what)} | ${afterText(f.afterMs)} | ${cell(short(f.error))} |`),
      '',
    );
    shortfalls.push(...opts.failures.map((f) => `Benchmark ${f.benchmark} (${nameOf(f.benchmark)}): ${f.what} failed after ${afterText(f.afterMs)}: ${short(f.error)}`));
  }
  for (const n of opts.order) {
    const s = opts.sections.get(n);
    if (!s) continue;
    if (s instanceof Error) {
      lines.push(`## ${n}. ${nameOf(n)}`, '', `**Failed:** ${short(s.message.split('\n')[0] ?? '')} (a row of the table above).`, '');
      continue;
    }
    lines.push(`## ${s.title}`, '', s.method, '', ...s.body, '');
    shortfalls.push(...s.shortfalls);
  }
  lines.push('## Where the figures fall short of the goals', '');
  if (shortfalls.length) lines.push(...shortfalls.map((s) => `- ${s}`));
  else lines.push('- Nothing in this run: every goal the issue states (0 failed requests during the migration, every blob and row verified) was met.');
  lines.push('');
  return lines.join('\n');
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const { quick, only } = args;
  const forced = forcedFailures();
  const sizes = withPgSizes(quick ? QUICK : FULL, args.sizes);
  // --out is under bench/ unless it is an absolute path (the bench's own test writes to a temporary directory).
  const out = path.resolve(BENCH_DIR, args.out ?? (quick ? 'RESULTS.quick.md' : 'RESULTS.md'));
  const command = ['npm run bench', ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : [])].join(' ');
  const log = (line: string) => console.log(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
  const started = Date.now();

  // pgcopydb for benchmark 5, from the Debian package when missing (never fatal).
  spawnSync('bash', [path.join(BENCH_DIR, 'setup.sh')], { stdio: 'inherit' });

  // The benchmarks talk only to their own sandbox: no Temporal Cloud address, key or certificate from the environment.
  for (const name of Object.keys(process.env)) if (name.startsWith('TEMPORAL_')) delete process.env[name];
  const home = mkdtempSync(path.join(os.tmpdir(), 'tiershift-bench-'));
  // Activities, the sandbox app functions and the CLI all find the sandbox through this variable.
  process.env.TIERSHIFT_HOME = home;

  const info = machine();
  // Every sandbox process names the home on its command line: the monitor counts them as the bench's own.
  const monitor = new LoadMonitor(home, quick ? 5_000 : 10_000);
  log('measuring the machine before the run (3 s)');
  await monitor.measure('before');
  const order = [1, 2, 3, 4, 5, 6, 7, 8, 9].filter((n) => !only || only.has(n));
  const sections = new Map<number, Section | Error>();
  const failures: FailureRow[] = [];
  const write = (final: boolean) =>
    writeFileSync(
      out,
      render({ quick, command, machine: info, load: summarize(monitor.windows), sections, failures, order, totalMs: final ? Date.now() - started : undefined, seedRows: sizes.seedRows }),
    );
  /** The benchmark running now, so that a crash inside it fails it instead of the whole run. */
  let running: { n: number; t0: number; fail: (err: Error) => void } | undefined;
  let tornDown: Promise<void> | undefined;
  const teardown = () =>
    (tornDown ??= (async () => {
      // Taken now: the benchmark goes on while its processes are stopped, and may end before the row is written.
      const stopped = running;
      monitor.stop();
      await stopChildren();
      // The sandboxes beside the bench's first: a purge of the bench's home is no reason to leave them running.
      await stopSandboxesBeside(log);
      log(`tearing the sandbox down (${home})`);
      await sandboxDown({ home, purge: true }).catch((err: unknown) => console.error(`bench: tearing down ${home} failed: ${(err as Error).message}`));
      // Whatever ended the run, the results say how far it got.
      if (stopped) {
        // What the benchmark reported after its processes were stopped under it is not a result.
        const interrupted = new Error('interrupted before it finished');
        sections.set(stopped.n, interrupted);
        failures.splice(0, failures.length, ...failures.filter((f) => f.benchmark !== stopped.n));
        failures.push({ benchmark: stopped.n, ...failedComparison('the whole benchmark (the run was stopped)', Date.now() - stopped.t0, interrupted) });
      }
      write(false);
    })());
  teardownOnExit(teardown, log, (err) => {
    // An error nobody caught (an 'error' event, a rejection of abandoned work) inside a benchmark is that benchmark's failure.
    if (!running) return false;
    log(`${running.n}: an uncaught error inside the benchmark fails it: ${err.message}`);
    running.fail(err);
    return true;
  });

  let close: (() => Promise<void>) | undefined;
  try {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    log(`starting the sandbox in ${home} (seed ${sizes.seedRows} orders)`);
    const state = await sandboxUp({ home, freePorts: true, seedRows: sizes.seedRows, log: (l) => log(`  ${l}`) });
    const address = state.temporal!.address;
    // The client the CLI uses (same data converter as the workers createWorker makes), and a worker connection,
    // both resolved from the sandbox's home as the CLI and `tiershift worker` resolve them.
    const connected = await connectTo(home);
    close = connected.close;
    const { client, connection } = connected;
    monitor.start();
    for (const b of BENCHMARKS) {
      // Stopped (Ctrl-C, SIGTERM): no further benchmark starts on a sandbox being torn down.
      if (tornDown) break;
      if (!order.includes(b.n)) continue;
      const budget = quick ? Math.max(60_000, b.budgetMs / 4) : (b.n === 5 || b.n === 8) && args.sizes ? Math.max(b.budgetMs, pgBudgetMs(args.sizes)) : b.budgetMs;
      const ctx: BenchContext = { home, quick, sizes, client, connection, address, log, deadline: Date.now() + budget, options: { ...(args.fleet ? { fleetK: args.fleet } : {}) } };
      log(`${b.n}. ${b.name}`);
      const t0 = Date.now();
      try {
        const crashed = new Promise<never>((_, reject) => (running = { n: b.n, t0, fail: reject }));
        const work = forced.has(b.n)
          ? Promise.reject(new Error(`forced failure: TIERSHIFT_BENCH_FAIL=${[...forced].join(',')} names benchmark ${b.n}`))
          : b.fn(ctx);
        const section = await Promise.race([withDeadline(work, budget * 2 + 120_000, `benchmark ${b.n}`), crashed]);
        sections.set(b.n, section);
        failures.push(...(section.failed ?? []).map((f) => ({ benchmark: b.n, ...f })));
        log(`${b.n}. ${b.name}: done in ${((Date.now() - t0) / 1000).toFixed(0)} s${section.failed?.length ? ` (${section.failed.length} comparison(s) failed)` : ''}`);
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        sections.set(b.n, error);
        failures.push({ benchmark: b.n, ...failedComparison('the whole benchmark', Date.now() - t0, error) });
        log(`${b.n}. ${b.name}: FAILED after ${((Date.now() - t0) / 1000).toFixed(0)} s: ${error.stack ?? error.message}`);
      } finally {
        running = undefined;
      }
      // The teardown writes the results of a stopped run itself.
      if (tornDown) break;
      await stopChildren();
      // A benchmark abandoned past its deadline may have left its second sandbox up: not during the next one.
      await stopSandboxesBeside(log);
      write(false);
    }
  } finally {
    monitor.stop();
    await close?.();
    await teardown();
  }
  log('measuring the machine after the run (3 s)');
  await monitor.measure('after');
  write(true);
  log(`wrote ${path.relative(process.cwd(), out)} in ${((Date.now() - started) / 60_000).toFixed(1)} min${failures.length ? `; ${failures.length} failed (see its Failed table)` : ''}`);
  return failures.length ? 1 : 0;
}

// The worker, the sandbox and the connections keep handles open; the exit code is decided here.
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`bench: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);
