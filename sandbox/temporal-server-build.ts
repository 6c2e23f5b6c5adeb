// The real Temporal server (not the CLI's dev server) for `tiershift sandbox up --temporal cluster`: built
// from the Go module proxy with `go install`, once, into .tools/temporal-server/bin, with a version file
// beside the binaries so a later call knows it has nothing to do. Temporal publishes no server binary in
// any registry this project may use, and the module proxy is one: building is how the server gets here.
import { spawn } from 'node:child_process';
import { accessSync, constants, createWriteStream, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../contract/errors';
import { PROJECT_ROOT } from '../contract/home';
import { findBinary } from './binaries';

export const TEMPORAL_SERVER_VERSION = 'v1.32.2';
/** The server's go.mod asks for a newer Go than Debian's; `go` fetches this toolchain from the module proxy. */
export const GO_TOOLCHAIN = 'go1.27.3';
const MODULE = 'go.temporal.io/server';
/** `server` runs the services; `sql` (temporal-sql-tool) creates and upgrades their PostgreSQL schema. */
const PACKAGES = { server: `${MODULE}/cmd/server`, sql: `${MODULE}/cmd/tools/sql` } as const;
/**
 * What a cold build compiles (measured with `go install -v` for v1.32.2), only to turn the package
 * count into a percentage while it runs; a different count changes nothing but that figure.
 */
const APPROX_PACKAGES = 1_450;

export const TEMPORAL_SERVER_DIR = path.join(PROJECT_ROOT, '.tools', 'temporal-server');
const BIN_DIR = path.join(TEMPORAL_SERVER_DIR, 'bin');
const STAMP = path.join(TEMPORAL_SERVER_DIR, 'version');
const BUILD_LOG = path.join(TEMPORAL_SERVER_DIR, 'build.log');
const STAMP_TEXT = `${TEMPORAL_SERVER_VERSION} ${GO_TOOLCHAIN}`;

export interface TemporalServerBinaries {
  server: string;
  sql: string;
}

const binaries = (): TemporalServerBinaries => ({ server: path.join(BIN_DIR, 'server'), sql: path.join(BIN_DIR, 'sql') });

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The built binaries when both are there and the version file says they are this version; else undefined. */
export function builtTemporalServer(): TemporalServerBinaries | undefined {
  const bins = binaries();
  let stamp = '';
  try {
    stamp = readFileSync(STAMP, 'utf8').trim();
  } catch {
    return undefined;
  }
  return stamp === STAMP_TEXT && executable(bins.server) && executable(bins.sql) ? bins : undefined;
}

/** The binaries, or a one-sentence UserError saying how to build them. */
export function requireTemporalServer(): TemporalServerBinaries {
  const bins = builtTemporalServer();
  if (!bins) {
    throw new UserError(
      `the Temporal server ${TEMPORAL_SERVER_VERSION} is not built yet; run \`npm run setup -- --with-temporal-server\` (about 8 minutes the first time on 2 cores, seconds once Go's caches are warm).`,
    );
  }
  return bins;
}

export interface BuildResult extends TemporalServerBinaries {
  /** False when the binaries were already there at this version. */
  built: boolean;
  seconds: number;
}

/**
 * Builds the server and its SQL tool unless they are there at this version. Progress goes to `log`: the
 * modules being downloaded, then a line every `everyMs` with the packages compiled so far.
 */
export async function buildTemporalServer(opts: { log?: (line: string) => void; everyMs?: number; timeoutMs?: number } = {}): Promise<BuildResult> {
  const log = opts.log ?? ((line: string) => console.error(`temporal-server: ${line}`));
  const started = Date.now();
  const existing = builtTemporalServer();
  if (existing) {
    log(`${TEMPORAL_SERVER_VERSION} already built in ${BIN_DIR}`);
    return { ...existing, built: false, seconds: 0 };
  }
  const go = findBinary('go');
  mkdirSync(BIN_DIR, { recursive: true });
  // The stamp goes last: a build interrupted half-way is simply done again.
  rmSync(STAMP, { force: true });
  log(`building ${MODULE}@${TEMPORAL_SERVER_VERSION} (server and SQL tool) with ${GO_TOOLCHAIN} into ${BIN_DIR}; full output in ${BUILD_LOG}`);
  const file = createWriteStream(BUILD_LOG);
  const env = {
    ...process.env,
    GOTOOLCHAIN: GO_TOOLCHAIN,
    GOBIN: BIN_DIR,
    // Pure Go (its SQLite is too): no C compiler needed, and a static binary.
    CGO_ENABLED: '0',
  };
  const args = ['install', '-v', ...Object.values(PACKAGES).map((p) => `${p}@${TEMPORAL_SERVER_VERSION}`)];
  let downloads = 0;
  let compiled = 0;
  let phase: 'starting' | 'downloading' | 'compiling' = 'starting';
  const tail: string[] = [];
  const elapsed = () => `${Math.round((Date.now() - started) / 1000)} s`;
  const progress = () =>
    phase === 'compiling'
      ? `compiling: ${compiled} packages (~${Math.min(99, Math.round((compiled / APPROX_PACKAGES) * 100))}%), ${elapsed()}`
      : phase === 'downloading'
        ? `downloading modules: ${downloads} so far, ${elapsed()}`
        : `starting go, ${elapsed()}`;
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(go, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const ticker = setInterval(() => log(progress()), opts.everyMs ?? 15_000);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 45 * 60_000);
    let pending = '';
    const onData = (chunk: Buffer) => {
      file.write(chunk);
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        if (line.startsWith('go: downloading ')) {
          if (phase !== 'downloading') log(`downloading modules (the ${GO_TOOLCHAIN} toolchain and the server's dependencies)`);
          phase = 'downloading';
          downloads++;
        } else if (/^[\w.\-~]+(\/[\w.\-~+]+)*$/.test(line.trim())) {
          // `go install -v` names each package as it compiles it.
          if (phase !== 'compiling') log(`compiling (after ${downloads} module downloads, ${elapsed()})`);
          phase = 'compiling';
          compiled++;
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (err) => {
      clearInterval(ticker);
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (exit, signal) => {
      clearInterval(ticker);
      clearTimeout(timer);
      resolve(exit ?? (signal ? 128 : 1));
    });
  });
  file.end();
  if (code !== 0) {
    const reason = tail.filter((l) => l.trim()).slice(-3).join(' | ');
    throw new UserError(`building the Temporal server failed (${reason.slice(0, 300)}); see ${BUILD_LOG}, fix the cause (network to the Go module proxy, disk space) and run \`npm run setup -- --with-temporal-server\` again.`);
  }
  const bins = binaries();
  if (!executable(bins.server) || !executable(bins.sql)) {
    throw new UserError(`go install finished but ${BIN_DIR} lacks the server or sql binary; see ${BUILD_LOG}.`);
  }
  writeFileSync(STAMP, `${STAMP_TEXT}\n`);
  const seconds = Math.round((Date.now() - started) / 1000);
  log(`built ${TEMPORAL_SERVER_VERSION} in ${seconds} s (${downloads} module downloads, ${compiled} packages compiled)`);
  return { ...bins, built: true, seconds };
}
