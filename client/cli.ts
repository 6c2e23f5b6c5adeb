// `tiershift`: the operator's command line.
//
// Only what defines the commands is imported here (commander and the contract's plain modules): `--version`,
// `--help` and a usage error load no Temporal, Azure, pg or zod module. Each command imports what it uses when
// it runs, so `status` pays for the Temporal client and not for the worker SDK or the plan schema.
import type { Client } from '@temporalio/client';
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { PlanError } from '../plan/load';
import { UserError } from '../contract/errors';
import { stopTracing } from '../contract/tracing';
import { PROJECT_ROOT, readState, sandboxHome, type SandboxPorts } from '../contract/home';
import { MIGRATION_STATES, migrationId, type MigrationState, type MigrationStatus } from '../contract/status';
import type { ConnectionFlags, ResolvedConnection } from '../contract/connection';
import { workflowListUrl, workflowUrl } from '../contract/ui-links';
import { asUserError, EXIT, exitCli, printError, runAction } from './errors';

const VERSION = (JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

// The modules behind the commands, loaded by the commands that use them.
const connectClient = async (flags: ConnectionFlags) => (await import('./connection')).connectClient(flags);
const migrations = () => import('./migrations');
const shared = () => import('../workflows/shared');
const format = () => import('./format');
const identity = () => import('./identity');

const program = new Command('tiershift')
  .description('Durable, approvable migration runbooks on Temporal')
  .version(VERSION, '-V, --version', 'print the version')
  .option('--json', 'print machine-readable JSON')
  .addOption(new Option('--address <host:port>', 'Temporal frontend').env('TEMPORAL_ADDRESS'))
  .addOption(new Option('--namespace <name>', 'Temporal namespace').env('TEMPORAL_NAMESPACE'))
  .addOption(new Option('--tls-cert <file>', 'TLS client certificate').env('TEMPORAL_TLS_CLIENT_CERT_PATH'))
  .addOption(new Option('--tls-key <file>', 'TLS client key').env('TEMPORAL_TLS_CLIENT_KEY_PATH'))
  .addOption(new Option('--api-key <key>', 'Temporal Cloud API key').env('TEMPORAL_API_KEY'))
  // Read by @temporalio/envconfig as the Temporal CLI reads it (TEMPORAL_PROFILE too): contract/connection.ts.
  .option('--profile <name>', 'profile of temporal.toml (TEMPORAL_CONFIG_FILE), as `temporal --profile`')
  // Set before any subcommand exists: commander copies these into each one when it is created. A
  // usage mistake is then one sentence and exit code 2 like every other user error, not commander's 1.
  .exitOverride()
  .configureOutput({
    outputError: (text) => {
      const sentence = text.trim().replace(/^error: /, '').replace(/\.$/, '');
      printError(`${sentence}; run \`tiershift --help\` for usage.`, EXIT.invalid);
    },
  });

// The sandbox, the worker and the demo load the worker SDK and every provider: seconds of startup that
// `approve` or `status` should not pay, so they are imported only by the commands that use them.
const sandboxModule = () => import('../sandbox');
// Plans are parsed with zod; only `plan` and `start` need it.
const loadPlan = async (file: string) => (await import('../plan/load')).loadPlan(file);

type GlobalFlags = ConnectionFlags & { json?: boolean };
const globals = (): GlobalFlags => program.opts<GlobalFlags>();
/** Who acts: `--by`, else TIERSHIFT_USER, else the OS account (a container may have no passwd entry). */
function me(by?: string): string {
  if (by !== undefined) {
    if (!/^[^\s,]{1,100}$/.test(by)) throw new UserError(`--by takes a user name without spaces or commas; got "${by}".`, EXIT.invalid);
    return by;
  }
  if (process.env.TIERSHIFT_USER) return process.env.TIERSHIFT_USER;
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? process.env.LOGNAME ?? 'unknown';
  }
}

function print(json: unknown, text: string): void {
  console.log(globals().json ? JSON.stringify(json, null, 2) : text);
}

// ---- sandbox ---------------------------------------------------------------------------------

const sandbox = program.command('sandbox').description('the local sandbox: Temporal, PostgreSQL, Azurite, HAProxy, demo app');

const PORT_NAMES = ['temporal', 'temporalUi', 'azurite', 'pgSource', 'pgTarget', 'haproxy', 'haproxyStats', 'haproxyRuntime', 'appBlue', 'appGreen', 'idp'];
function parsePort(value: string, previous: Partial<SandboxPorts> = {}): Partial<SandboxPorts> {
  const match = /^([a-zA-Z]+)=(\d{1,5})$/.exec(value);
  if (!match || !PORT_NAMES.includes(match[1]!) || Number(match[2]) > 65535) {
    throw new UserError(`--port takes name=number with a name of ${PORT_NAMES.join(', ')}; got "${value}".`, EXIT.invalid);
  }
  return { ...previous, [match[1]!]: Number(match[2]) };
}

sandbox
  .command('up')
  .description('start the sandbox (idempotent) and print where everything is')
  .option('--rows <n>', 'orders in the demo dataset', (v) => Number(v))
  .option('--port <name=number>', `use this port (repeatable): ${PORT_NAMES.join(', ')}`, parsePort)
  .option('--temporal <kind>', 'dev: the Temporal dev server (default); cluster: the real Temporal server on the sandbox\'s PostgreSQL (built by `npm run setup -- --with-temporal-server`)')
  .action((opts: { rows?: number; port?: Partial<SandboxPorts>; temporal?: string }) =>
    runAction(async () => {
      if (opts.rows !== undefined && !(Number.isInteger(opts.rows) && opts.rows > 0)) {
        throw new UserError('--rows takes a positive whole number.', EXIT.invalid);
      }
      const { sandboxUp, sandboxStatus, TEMPORAL_KINDS } = await sandboxModule();
      const temporal = opts.temporal as (typeof TEMPORAL_KINDS)[number] | undefined;
      if (temporal !== undefined && !TEMPORAL_KINDS.includes(temporal)) {
        throw new UserError(`--temporal takes ${TEMPORAL_KINDS.join(' or ')}; got "${temporal}".`, EXIT.invalid);
      }
      const state = await sandboxUp({ seedRows: opts.rows, ports: opts.port, temporal, log: (line) => console.error(line) });
      const status = await sandboxStatus({ home: state.home });
      print({ state, status }, [
        ...status.map((s) => `${s.healthy ? 'ok  ' : 'DOWN'} ${s.name.padEnd(16)} ${s.detail}`),
        '',
        state.temporal?.kind === 'cluster'
          ? `Temporal server (cluster): ${state.temporal.address} (no Web UI; use \`tiershift list\` or the \`temporal\` CLI)`
          : `Temporal UI: ${state.temporal?.uiUrl ?? '(not running)'}`,
        `Demo app through HAProxy: ${state.haproxy?.frontendUrl ?? '(not running)'}`,
      ].join('\n'));
    }),
  );

sandbox
  .command('down')
  .description('stop what `sandbox up` started; data stays unless --purge')
  .option('--purge', 'also delete the data directories')
  .action((opts: { purge?: boolean }) =>
    runAction(async () => {
      const { sandboxDown } = await sandboxModule();
      await sandboxDown({ purge: opts.purge, log: (line) => console.error(line) });
      if (globals().json) print({ stopped: true, purged: Boolean(opts.purge) }, '');
    }),
  );

sandbox
  .command('reset')
  .description('back to before the migration: traffic on blue, green stopped, target database emptied')
  .action(() =>
    runAction(async () => {
      const state = readState(sandboxHome());
      if (!state) throw new UserError('the sandbox is not running; start it with `tiershift sandbox up`.', EXIT.unavailable);
      const { resetSandbox } = await import('../sandbox/reset');
      await resetSandbox(state, (line) => console.error(line));
      if (globals().json) print({ reset: true }, '');
    }),
  );

sandbox
  .command('status')
  .description('health of every sandbox service')
  .action(() =>
    runAction(async () => {
      const { sandboxStatus } = await sandboxModule();
      const status = await sandboxStatus();
      print(status, status.length ? status.map((s) => `${s.healthy ? 'ok  ' : 'DOWN'} ${s.name.padEnd(16)} ${s.detail}`).join('\n') : 'the sandbox is not running; start it with `tiershift sandbox up`');
      if (status.length === 0 || status.some((s) => !s.healthy)) process.exitCode = EXIT.unavailable;
    }),
  );

// ---- plans and migrations ---------------------------------------------------------------------

program
  .command('plan')
  .argument('<file>', 'plan file (YAML)')
  .description('validate a plan and print its steps, gates and rollback order, without running anything')
  .action((file: string) =>
    runAction(async () => {
      let plan;
      try {
        plan = await loadPlan(file);
      } catch (err) {
        // The dry run is where authors fix plans: list every problem, not just the first.
        if (!(err instanceof Error && err.name === 'PlanError') || (err as PlanError).issues.length < 2) throw err;
        const planError = err as PlanError;
        if (globals().json) console.log(JSON.stringify({ valid: false, problems: planError.issues }, null, 2));
        else console.error(`tiershift: ${planError.source} has ${planError.issues.length} problems:\n${planError.issues.map((i) => `  - ${i.message}`).join('\n')}`);
        process.exit(EXIT.invalid);
      }
      const { describePlan, describePlanJson } = await import('../plan/describe');
      print(describePlanJson(plan), describePlan(plan));
    }),
  );

program
  .command('demo')
  .option('--plan <file>', 'plan to run (default plans/demo.yaml)')
  .option('--yes', 'approve every gate automatically (default when not on a terminal)')
  .option('--no-yes', 'wait for approvals from another terminal')
  .option('--by <name>', 'who starts it (default: your OS user)')
  .description('bring up the sandbox and a worker, run the demo migration end to end, print the outcome')
  .action((opts: { plan?: string; yes?: boolean; by?: string }) =>
    runAction(async () => {
      const { runDemo } = await import('./demo');
      const { status, reads, writes } = await runDemo({ plan: opts.plan, autoApprove: opts.yes ?? !process.stdout.isTTY, by: me(opts.by), ...(globals().json ? { log: (line: string) => console.error(line) } : {}) });
      if (globals().json) print({ status, reads, writes }, '');
      if (status.state !== 'completed' || reads.failed + writes.failed > 0) process.exitCode = EXIT.failure;
    }),
  );

program
  .command('worker')
  .description('run a worker that executes migrations')
  .option('--metrics <host:port>', 'serve Prometheus metrics there (the SDK\'s and tiershift\'s); default: TIERSHIFT_METRICS, else none')
  .option('--task-queue <name>', 'run the activities of the resources a plan pins to this queue (`taskQueue:` on a resource), instead of the migrations themselves')
  .option('--build-id <id>', 'poll as this build of a Worker Deployment, moving waiting migrations to whichever build is made current (README: upgrading); default: TIERSHIFT_BUILD_ID, else unversioned')
  .option('--deployment <name>', 'the Worker Deployment that --build-id belongs to; default: TIERSHIFT_DEPLOYMENT, else tiershift')
  .action((opts: { metrics?: string; taskQueue?: string; buildId?: string; deployment?: string }) =>
    runAction(async () =>
      (await import('../worker/worker')).runWorker({
        ...globals(),
        ...(opts.metrics ? { metrics: opts.metrics } : {}),
        ...(opts.taskQueue ? { taskQueue: opts.taskQueue } : {}),
        ...(opts.buildId !== undefined ? { buildId: opts.buildId } : {}),
        ...(opts.deployment !== undefined ? { deployment: opts.deployment } : {}),
      }),
    ),
  );

program
  .command('start')
  .argument('<plan>', 'plan file (YAML)')
  .option('--id <id>', 'workflow id (default migration-<plan name>)')
  .option('--by <name>', 'who starts it (default: your OS user; with a proven plan, whoever the proof names)')
  .option('--key <file>', 'SSH key to sign with, for a plan with SSH signers (default: $TIERSHIFT_SSH_KEY, else ~/.ssh/id_ed25519)')
  .option('--watch', 'follow progress until the migration ends')
  .description('start a migration from a plan')
  .action((file: string, opts: { id?: string; by?: string; key?: string; watch?: boolean }) =>
    runAction(async () => {
      const plan = await loadPlan(file);
      const { needsProof, proofFor, startStatement } = await identity();
      const { refuseUnreachableGates, startMigration } = await migrations();
      const proven = needsProof(plan.identity);
      // With a proven plan, who starts it is whoever the proof names; --by, if given, must be that person.
      const by = proven ? (opts.by ?? '') : me(opts.by);
      // Before connecting: a plan that can never pass is the author's to fix, whether Temporal is up or not.
      refuseUnreachableGates(plan, by);
      const { client, resolved } = await connectClient(globals());
      const id = opts.id ?? migrationId(plan.name);
      const startProof = proven ? await proofFor(plan.identity!, startStatement(id, plan.hash), opts) : undefined;
      const handle = await startMigration(client, plan, by, { id, startProof });
      if (plan.identity) await startVerdict(client, handle.workflowId);
      const url = workflowUrl(resolved, handle.workflowId);
      const listUrl = await migrationsUrl(resolved);
      if (opts.watch) {
        // The watch's own first lines say what started; JSON consumers get one object per line from here.
        if (!globals().json) console.log(`started ${handle.workflowId}`);
        await watch(handle.workflowId);
      } else {
        print(
          { workflowId: handle.workflowId, url, ...(listUrl ? { listUrl } : {}) },
          [`started ${handle.workflowId}`, ...(await uiLinks(resolved, handle.workflowId)), `follow it with: tiershift watch ${handle.workflowId}`].join('\n'),
        );
      }
    }),
  );

/** Every migration, as a link to the Temporal UI's list (when the sandbox runs the UI). */
async function migrationsUrl(resolved: ResolvedConnection): Promise<string | undefined> {
  return workflowListUrl(resolved, (await migrations()).listQuery({}, { ui: true }));
}

/** The search attributes the UI's list can show as columns, by the names its column settings use. */
const SEARCH_ATTRIBUTE_COLUMNS = 'MigrationState, MigrationPhase, PendingGate and TrafficWeight';

/**
 * Where to look in the Temporal UI: the migration's page, whose first tab (the timeline) names the gate
 * it waits at and the approve command, and the list of every migration.
 */
async function uiLinks(resolved: ResolvedConnection, id: string): Promise<string[]> {
  const url = workflowUrl(resolved, id);
  const listUrl = await migrationsUrl(resolved);
  return [...(url ? [`Temporal UI: ${url}`] : []), ...(listUrl ? [`All migrations: ${listUrl}`] : [])];
}

program
  .command('status')
  .argument('<id>', 'migration id (migration-<plan name>)')
  .description("a migration's state, steps, figures, gate and errors")
  .action((id: string) =>
    runAction(async () => {
      const [{ client, resolved }, { migrationStatusAnyState }, { formatStatus }] = await Promise.all([connectClient(globals()), migrations(), format()]);
      const status = await migrationStatusAnyState(client, id);
      print(status, [formatStatus(status), ...(await uiLinks(resolved, id))].join('\n'));
    }),
  );

program
  .command('watch')
  .argument('<id>', 'migration id')
  .description('follow a migration until it ends: redrawn in place on a terminal, one line per change when piped')
  .action((id: string) => runAction(() => watch(id)));

function parseStates(value: string, previous: MigrationState[] = []): MigrationState[] {
  const states = value.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = states.filter((s) => !(MIGRATION_STATES as readonly string[]).includes(s));
  if (unknown.length || !states.length) {
    throw new UserError(`--state takes one or more of ${MIGRATION_STATES.join(', ')}; got "${value}".`, EXIT.invalid);
  }
  return [...new Set([...previous, ...(states as MigrationState[])])];
}

program
  .command('list')
  .option('--state <states>', `only these states, comma-separated or repeated: ${MIGRATION_STATES.join(', ')}`, parseStates)
  .option('--plan <name>', 'only migrations of this plan')
  .option('--limit <n>', 'at most this many, newest first (default 50)', (v) => Number(v))
  .description('migrations from Temporal visibility, filtered on their search attributes')
  .action((opts: { state?: MigrationState[]; plan?: string; limit?: number }) =>
    runAction(async () => {
      if (opts.plan !== undefined && !/^[a-z0-9-]{1,50}$/.test(opts.plan)) {
        throw new UserError(`--plan takes a plan name (lowercase letters, digits and dashes); got "${opts.plan}".`, EXIT.invalid);
      }
      if (opts.limit !== undefined && !(Number.isInteger(opts.limit) && opts.limit > 0)) {
        throw new UserError('--limit takes a positive whole number.', EXIT.invalid);
      }
      const [{ client, resolved }, { listMigrations, listQuery }, { formatList }] = await Promise.all([connectClient(globals()), migrations(), format()]);
      const filters = { states: opts.state, plan: opts.plan, limit: opts.limit };
      const rows = await listMigrations(client, filters);
      const filtered = opts.state || opts.plan ? ` matching ${listQuery(filters).split(' AND ').slice(2).join(' AND ')}` : '';
      const listUrl = workflowListUrl(resolved, listQuery(filters, { ui: true }));
      // The UI lists them with its default columns: state, phase, gate and weight are columns only once a
      // person adds them in that browser (a link cannot carry columns).
      const footer = listUrl ? ['', `Temporal UI: ${listUrl}`, `  to see them there, add the columns ${SEARCH_ATTRIBUTE_COLUMNS} (kept per browser); a migration's page names its gate and the approve command`] : [];
      print(rows, [rows.length ? formatList(rows) : `no migrations${filtered}; start one with \`tiershift start PLAN\``, ...footer].join('\n'));
    }),
  );

program
  .command('report')
  .argument('<id>', 'migration id')
  .description('the record of a migration: timeline, decisions with who and why, every figure, errors and rollback (Markdown, or --json)')
  .action((id: string) =>
    runAction(async () => {
      const [{ client, resolved }, { migrationStatusAnyState }, { buildReport, reportMarkdown }] = await Promise.all([connectClient(globals()), migrations(), import('./report')]);
      const report = buildReport(await migrationStatusAnyState(client, id), { url: workflowUrl(resolved, id) });
      if (globals().json) print(report, '');
      else process.stdout.write(reportMarkdown(report));
    }),
  );

program
  .command('approve')
  .argument('<id>', 'migration id')
  .requiredOption('--gate <name>', 'the gate to approve')
  .option('--by <name>', 'approver (default: your OS user; with a proven plan, whoever the proof names)')
  .option('--key <file>', 'SSH key to sign with, for a plan with SSH signers')
  .option('--comment <text>', 'recorded with the approval')
  .option('--plan <file>', 'the plan file you reviewed: refused unless the migration runs exactly this plan')
  .option('--yes', 'do not ask for confirmation (the default when not on a terminal)')
  .description('show the evidence measured so far, then approve a pending gate')
  .action((id: string, opts: { gate: string; by?: string; key?: string; comment?: string; plan?: string; yes?: boolean }) =>
    runAction(async () => {
      const [{ client }, { approveGate }, { decisionFields }] = await Promise.all([connectClient(globals()), migrations(), identity()]);
      const { hash: planHash, status: shown } = await reviewedPlanHash(client, id, opts.plan, `approve gate "${opts.gate}"`, opts.yes);
      const fields = await decisionFields(shown, 'approve', { gate: opts.gate, note: opts.comment }, { ...opts, me: () => me(opts.by) });
      const status = await decide(client, id, 'approve', () => approveGate(client, id, { gate: opts.gate, comment: opts.comment, planHash, ...fields }));
      const by = decidedBy(status, fields.by);
      // The update answers before the workflow closes the gate: a full count means it has passed.
      const pending = status.pendingGate?.gate === opts.gate && status.pendingGate.approvedBy.length < status.pendingGate.requiredApprovals ? status.pendingGate : undefined;
      print(status, pending
        ? `approved gate "${opts.gate}" as ${by}; ${pending.approvedBy.length}/${pending.requiredApprovals} approvals, waiting for more`
        : `approved gate "${opts.gate}" as ${by}; the migration continues`);
    }),
  );

program
  .command('reject')
  .argument('<id>', 'migration id')
  .requiredOption('--gate <name>', 'the gate to reject')
  .requiredOption('--reason <text>', 'why (recorded)')
  .option('--by <name>', 'who rejects (default: your OS user; with a proven plan, whoever the proof names)')
  .option('--key <file>', 'SSH key to sign with, for a plan with SSH signers')
  .description('reject a pending gate: the migration rolls back')
  .action((id: string, opts: { gate: string; reason: string; by?: string; key?: string }) =>
    runAction(async () => {
      const [{ client }, { migrationHandle, rejectGate }, { statusQuery }, { decisionFields }] = await Promise.all([connectClient(globals()), migrations(), shared(), identity()]);
      const shown = await decide(client, id, 'reject', () => migrationHandle(client, id).query(statusQuery));
      const fields = await decisionFields(shown, 'reject', { gate: opts.gate, note: opts.reason }, { ...opts, me: () => me(opts.by) });
      const status = await decide(client, id, 'reject', () => rejectGate(client, id, { gate: opts.gate, reason: opts.reason, ...fields }));
      print(status, `rejected gate "${opts.gate}"; ${id} is rolling back`);
    }),
  );

program
  .command('resume')
  .argument('<id>', 'migration id')
  .option('--by <name>', 'operator (default: your OS user; with a proven plan, whoever the proof names)')
  .option('--key <file>', 'SSH key to sign with, for a plan with SSH signers')
  .option('--preview', 'only list which steps would run again and which are skipped as done')
  .description('retry the failed step of a migration awaiting an operator')
  .action((id: string, opts: { by?: string; key?: string; preview?: boolean }) =>
    runAction(async () => {
      const [{ client }, { migrationHandle, resumeMigration }, { resumePreviewQuery, statusQuery }, { decisionFields }] = await Promise.all([connectClient(globals()), migrations(), shared(), identity()]);
      if (opts.preview) {
        const preview = await decide(client, id, 'preview', () => migrationHandle(client, id).query(resumePreviewQuery));
        print(preview, [`${id} is ${preview.state}; \`tiershift resume ${id}\` would:`, ...preview.steps.map((s) => `  ${s.verdict.padEnd(18)} ${s.id.padEnd(18)} ${s.title}`)].join('\n'));
        return;
      }
      const shown = await decide(client, id, 'resume', () => migrationHandle(client, id).query(statusQuery));
      const fields = await decisionFields(shown, 'resume', {}, { ...opts, me: () => me(opts.by) });
      const status = await decide(client, id, 'resume', () => resumeMigration(client, id, fields));
      print(status, `resuming ${id} at ${status.failure?.stepId ?? status.currentStep ?? 'its failed step'}`);
    }),
  );

program
  .command('rollback')
  .argument('<id>', 'migration id')
  .requiredOption('--reason <text>', 'why (recorded)')
  .option('--by <name>', 'operator (default: your OS user; with a proven plan, whoever the proof names)')
  .option('--key <file>', 'SSH key to sign with, for a plan with SSH signers')
  .option('--confirm', 'needed past the point of no return, where rolling back also moves data back (reverse sync)')
  .description('roll a migration back: traffic first, then app, then infrastructure (past the point of no return: data first, with --confirm)')
  .action((id: string, opts: { reason: string; by?: string; key?: string; confirm?: boolean }) =>
    runAction(async () => {
      const [{ client }, { migrationHandle, rollbackMigration }, { statusQuery }, { decisionFields }] = await Promise.all([connectClient(globals()), migrations(), shared(), identity()]);
      const shown = await decide(client, id, 'roll back', () => migrationHandle(client, id).query(statusQuery));
      const fields = await decisionFields(shown, 'rollback', { note: opts.reason, confirm: opts.confirm }, { ...opts, me: () => me(opts.by) });
      const status = await decide(client, id, 'roll back', () => rollbackMigration(client, id, fields, opts.reason, opts.confirm));
      const ponr = status.pointOfNoReturn;
      print(status, ponr?.crossed ? `${id} is rolling back past its point of no return: ${ponr.recoveryPlan}` : `${id} is rolling back`);
    }),
  );

// ---- identity ---------------------------------------------------------------------------------

program
  .command('login')
  .option('--issuer <url>', "the identity provider (default: the plan's with --plan, else the sandbox's)")
  .option('--plan <file>', 'sign in to the identity provider this plan names')
  .option('--client-id <id>', "tiershift's client id at the provider (default: the plan's audience, else tiershift)")
  .option('--user <name>', "sign in on the provider's form with this user (the sandbox's: alice, bob, carol; their passwords are read from the sandbox)")
  .option('--password-stdin', 'read the password for --user from stdin')
  .description("sign in to the identity provider that proves your decisions; the session is kept in your config (0600)")
  .action((opts: { issuer?: string; plan?: string; clientId?: string; user?: string; passwordStdin?: boolean }) =>
    runAction(async () => {
      const plan = opts.plan ? await loadPlan(opts.plan) : undefined;
      const policy = plan?.identity?.mode === 'oidc' ? plan.identity : undefined;
      if (plan && !policy) throw new UserError(`${opts.plan} does not prove decisions with an identity provider (identity: ${plan.identity?.mode ?? 'none'}); nothing to sign in to.`, EXIT.invalid);
      const issuer = opts.issuer ?? policy?.issuer ?? readState(sandboxHome())?.idp?.issuer;
      if (!issuer) throw new UserError('no identity provider to sign in to; pass --issuer URL or --plan FILE, or start the sandbox with `tiershift sandbox up`.', EXIT.invalid);
      if (opts.user !== undefined && !/^[^\s,]{1,100}$/.test(opts.user)) throw new UserError(`--user takes a user name without spaces or commas; got "${opts.user}".`, EXIT.invalid);
      const password = opts.passwordStdin ? (await readStdin()).replace(/\r?\n$/, '') : undefined;
      const { login } = await import('../identity/oidc-login');
      const who = await login({ issuer, clientId: opts.clientId ?? policy?.audience ?? 'tiershift', user: opts.user, password });
      print({ issuer, ...who }, `signed in to ${issuer} as ${who.subject}${who.name && who.name !== who.subject ? ` (${who.name})` : ''}`);
    }),
  );

/** Every decision of a migration or report verified again offline; exit code 1 when any fails. */
async function auditAndPrint(input: import('../identity/audit').AuditInput): Promise<void> {
  const { auditDecisions } = await import('../identity/audit');
  const result = await auditDecisions(input);
  print(result, [`${input.migrationId}: ${result.lines.length} decision${result.lines.length === 1 ? '' : 's'}`, ...result.lines.map((l) => `  ${l}`)].join('\n'));
  if (result.problems.length) {
    throw new UserError(`${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}: ${result.problems[0]}${result.problems.length > 1 ? ` (and ${result.problems.length - 1} more above)` : ''}; the record does not prove who decided.`, EXIT.failure);
  }
}

program
  .command('audit')
  .argument('<id>', 'migration id')
  .description("verify every decision of a migration again, offline: each proof against its statement and the key pinned when it was verified")
  .action((id: string) =>
    runAction(async () => {
      const [{ client }, { migrationStatusAnyState }] = await Promise.all([connectClient(globals()), migrations()]);
      await auditAndPrint(await migrationStatusAnyState(client, id));
    }),
  );

program
  .command('verify')
  .argument('<report>', 'a report saved with `tiershift report ID --json > report.json`')
  .description('verify every decision in a saved report, offline: fails if a single one was altered')
  .action((file: string) =>
    runAction(async () => {
      let report: unknown;
      try {
        report = JSON.parse((await import('node:fs')).readFileSync(file, 'utf8'));
      } catch (err) {
        throw new UserError(`cannot read ${file} as a JSON report (${(err as Error).message.split('\n')[0]}); save one with \`tiershift report ID --json > report.json\`.`, EXIT.invalid);
      }
      const r = report as Partial<import('../identity/audit').AuditInput>;
      if (!r || typeof r !== 'object' || typeof r.migrationId !== 'string' || typeof r.plan?.hash !== 'string' || typeof r.startedBy !== 'string') {
        throw new UserError(`${file} is not a tiershift report; save one with \`tiershift report ID --json > report.json\`.`, EXIT.invalid);
      }
      await auditAndPrint(r as import('../identity/audit').AuditInput);
    }),
  );

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

// ---- encrypted history ------------------------------------------------------------------------

const codec = program.command('codec').description('encrypted history: codec keys, and the codec endpoint the Temporal UI decodes with');

codec
  .command('keygen')
  .option('--file <path>', 'key file (default: $TIERSHIFT_CODEC_KEYS, else codec-keys.json in the sandbox home)')
  .option('--rotate', 'add a new current key to an existing file; the old keys stay to decrypt older history')
  .option('--id <id>', 'id of the new key (default: k<date>-<random>)')
  .description('create a codec key file, or rotate its current key')
  .action((opts: { file?: string; rotate?: boolean; id?: string }) =>
    runAction(async () => {
      const { text, ...result } = (await import('../codec/commands')).codecKeygen(opts);
      print(result, text);
    }),
  );

codec
  .command('serve')
  .option('--port <n>', 'port (default 8235)', (v) => Number(v))
  .option('--host <ip>', 'address to bind (default 127.0.0.1)')
  .option('--origin <url>', 'another browser origin allowed to call it (repeatable; the sandbox UI is allowed)', (v: string, all: string[] = []) => [...all, v])
  .description('serve the codec endpoint the Temporal UI and CLI decode history with, for holders of the viewer token')
  .action((opts: { port?: number; host?: string; origin?: string[] }) =>
    runAction(async () => {
      const { codecServe } = await import('../codec/commands');
      const { connectionOptions } = await import('../contract/connection');
      await codecServe({ ...opts, namespace: connectionOptions(globals()).namespace, json: globals().json });
    }),
  );

/**
 * Sends a decision. Temporal answers "not found" for an update to a run that has closed; the operator
 * needs to hear that the migration has ended, which is a refusal, not a wrong id.
 */
/**
 * A decision binds to the plan it was made on: the file the approver reviewed (`--plan`) or, without
 * one, the plan the migration runs, after showing what it measured so far and asking on a terminal.
 */
async function reviewedPlanHash(client: Client, id: string, planFile: string | undefined, action: string, yes: boolean | undefined): Promise<{ hash: string; status: MigrationStatus }> {
  const [{ migrationHandle }, { statusQuery }] = await Promise.all([migrations(), shared()]);
  const status = await decide(client, id, 'decide', () => migrationHandle(client, id).query(statusQuery));
  const hash = planFile ? (await loadPlan(planFile)).hash : status.plan.hash;
  const interactive = !yes && !globals().json && process.stdin.isTTY && process.stderr.isTTY;
  if (!interactive) return { hash, status };
  console.error((await format()).formatEvidence(status));
  const rl = (await import('node:readline/promises')).createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(`${action} on plan ${status.plan.name} (sha256 ${hash.slice(0, 12)})? [y/N] `).finally(() => rl.close());
  if (!/^y(es)?$/i.test(answer.trim())) throw new UserError('nothing was decided; run the command again and answer y to decide.', EXIT.refused);
  return { hash, status };
}

/** Who the workflow recorded for the decision just made: the verified subject, or the name given. */
function decidedBy(status: MigrationStatus, named: string | undefined): string {
  const last = status.decisionLog?.at(-1);
  return last ? `${last.subject}${last.verified ? '' : ' (unverified)'}` : (named ?? 'unknown');
}

/**
 * A proven plan's start is verified by the workflow before its first step: wait for that verdict, so a
 * refused start ends here, in one sentence, like every other refused decision.
 */
async function startVerdict(client: Client, id: string): Promise<void> {
  const [{ migrationHandle }, { statusQuery }] = await Promise.all([migrations(), shared()]);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const status = await migrationHandle(client, id).query(statusQuery).catch(() => undefined);
    if (status?.identity?.startVerified) return;
    const refused = status?.errors.find((e) => e.stepId === 'start' && e.error.startsWith('start refused: '));
    if (refused) throw new UserError(`${refused.error.replace(/^start refused: /, 'refused: ').replace(/\.?$/, '.')}`, EXIT.refused);
    await new Promise((r) => setTimeout(r, 300));
  }
  console.error(`tiershift: no worker has verified who started ${id} yet; it waits for one (\`tiershift worker\`).`);
}

async function decide<T>(client: Client, id: string, verb: string, send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (err) {
    const [{ WorkflowNotFoundError }, { migrationHandle, migrationStatusAnyState }] = await Promise.all([import('@temporalio/client'), migrations()]);
    if (!(err instanceof WorkflowNotFoundError)) throw err;
    const closed = await migrationHandle(client, id).describe().catch(() => undefined);
    if (!closed || closed.status.name === 'RUNNING') throw err;
    const state = closed.status.name === 'COMPLETED' ? ((await migrationStatusAnyState(client, id).catch(() => undefined))?.state ?? 'completed') : closed.status.name.toLowerCase();
    throw new UserError(`${id} has ended (${state}); there is nothing to ${verb}.`, EXIT.refused);
  }
}

/** Follows a migration until it ends; the exit code says how it ended. */
async function watch(id: string): Promise<void> {
  const [{ client, resolved }, { watchMigration }] = await Promise.all([connectClient(globals()), import('./watch')]);
  const status = await watchMigration(client, id, { json: globals().json, url: workflowUrl(resolved, id) });
  if (status.state !== 'completed') process.exitCode = EXIT.failure;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT.invalid);
  const userError = await asUserError(err);
  if (!userError) throw err;
  printError(userError.message, userError.exitCode);
  await exitCli(userError.exitCode);
} finally {
  // The command's spans, batched, are sent before the process ends (a no-op when tracing is off).
  await stopTracing();
}
