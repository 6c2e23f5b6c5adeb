// `tiershift`: the operator's command line.
import { Command, CommanderError, Option } from 'commander';
import os from 'node:os';
import { loadPlan, PlanError } from '../plan/load';
import { describePlan, describePlanJson } from '../plan/describe';
import { UserError } from '../sandbox/binaries';
import { sandboxDown, sandboxStatus, sandboxUp } from '../sandbox';
import { resetSandbox } from '../sandbox/reset';
import { readState, sandboxHome, type SandboxPorts } from '../sandbox/state';
import { runWorker } from '../worker/worker';
import { TERMINAL_STATES, type MigrationStatus } from '../workflows/shared';
import { connectClient, workflowUrl, type ConnectionFlags } from './connection';
import { runDemo } from './demo';
import { asUserError, EXIT, runAction } from './errors';
import { formatStatus } from './format';
import {
  approveGate,
  migrationStatus,
  rejectGate,
  resumeMigration,
  rollbackMigration,
  startMigration,
} from './migrations';

const program = new Command('tiershift')
  .description('Durable, approvable migration runbooks on Temporal')
  .option('--json', 'print machine-readable JSON')
  .addOption(new Option('--address <host:port>', 'Temporal frontend').env('TEMPORAL_ADDRESS'))
  .addOption(new Option('--namespace <name>', 'Temporal namespace').env('TEMPORAL_NAMESPACE'))
  .addOption(new Option('--tls-cert <file>', 'TLS client certificate').env('TEMPORAL_TLS_CLIENT_CERT_PATH'))
  .addOption(new Option('--tls-key <file>', 'TLS client key').env('TEMPORAL_TLS_CLIENT_KEY_PATH'))
  .addOption(new Option('--api-key <key>', 'Temporal Cloud API key').env('TEMPORAL_API_KEY'))
  .showHelpAfterError('(run `tiershift --help` for usage)');

type GlobalFlags = ConnectionFlags & { json?: boolean };
const globals = (): GlobalFlags => program.opts<GlobalFlags>();
const me = (by?: string): string => by ?? process.env.TIERSHIFT_USER ?? os.userInfo().username;

function print(json: unknown, text: string): void {
  console.log(globals().json ? JSON.stringify(json, null, 2) : text);
}

// ---- sandbox ---------------------------------------------------------------------------------

const sandbox = program.command('sandbox').description('the local sandbox: Temporal, PostgreSQL, Azurite, HAProxy, demo app');

const PORT_NAMES = ['temporal', 'temporalUi', 'azurite', 'pgSource', 'pgTarget', 'haproxy', 'haproxyStats', 'haproxyRuntime', 'appBlue', 'appGreen'];
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
  .action((opts: { rows?: number; port?: Partial<SandboxPorts> }) =>
    runAction(async () => {
      if (opts.rows !== undefined && !(Number.isInteger(opts.rows) && opts.rows > 0)) {
        throw new UserError('--rows takes a positive whole number.', EXIT.invalid);
      }
      const state = await sandboxUp({ seedRows: opts.rows, ports: opts.port, log: (line) => console.error(line) });
      const status = await sandboxStatus({ home: state.home });
      print({ state, status }, [
        ...status.map((s) => `${s.healthy ? 'ok  ' : 'DOWN'} ${s.name.padEnd(16)} ${s.detail}`),
        '',
        `Temporal UI: ${state.temporal?.uiUrl ?? '(not running)'}`,
        `Demo app through HAProxy: ${state.haproxy?.frontendUrl ?? '(not running)'}`,
      ].join('\n'));
    }),
  );

sandbox
  .command('down')
  .description('stop what `sandbox up` started; data stays unless --purge')
  .option('--purge', 'also delete the data directories')
  .action((opts: { purge?: boolean }) =>
    runAction(() => sandboxDown({ purge: opts.purge, log: (line) => console.error(line) })),
  );

sandbox
  .command('reset')
  .description('back to before the migration: traffic on blue, green stopped, target database emptied')
  .action(() =>
    runAction(async () => {
      const state = readState(sandboxHome());
      if (!state) throw new UserError('the sandbox is not running; start it with `tiershift sandbox up`.', EXIT.unavailable);
      await resetSandbox(state, (line) => console.error(line));
    }),
  );

sandbox
  .command('status')
  .description('health of every sandbox service')
  .action(() =>
    runAction(async () => {
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
        plan = loadPlan(file);
      } catch (err) {
        // The dry run is where authors fix plans: list every problem, not just the first.
        if (!(err instanceof PlanError) || err.issues.length < 2) throw err;
        if (globals().json) console.log(JSON.stringify({ valid: false, problems: err.issues }, null, 2));
        else console.error(`tiershift: ${err.source} has ${err.issues.length} problems:\n${err.issues.map((i) => `  - ${i.message}`).join('\n')}`);
        process.exit(EXIT.invalid);
      }
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
      const { status, reads, writes } = await runDemo({ plan: opts.plan, autoApprove: opts.yes ?? !process.stdout.isTTY, by: me(opts.by) });
      if (status.state !== 'completed' || reads.failed + writes.failed > 0) process.exitCode = EXIT.failure;
    }),
  );

program
  .command('worker')
  .description('run a worker that executes migrations')
  .action(() => runAction(() => runWorker(globals())));

program
  .command('start')
  .argument('<plan>', 'plan file (YAML)')
  .option('--id <id>', 'workflow id (default migration-<plan name>)')
  .option('--by <name>', 'who starts it (default: your OS user)')
  .option('--watch', 'follow progress until the migration ends')
  .description('start a migration from a plan')
  .action((file: string, opts: { id?: string; by?: string; watch?: boolean }) =>
    runAction(async () => {
      const plan = loadPlan(file);
      const { client, resolved } = await connectClient(globals());
      const handle = await startMigration(client, plan, me(opts.by), { id: opts.id });
      const url = workflowUrl(resolved, handle.workflowId);
      print({ workflowId: handle.workflowId, url }, `started ${handle.workflowId}${url ? `\nTemporal UI: ${url}` : ''}`);
      if (opts.watch) await watch(handle.workflowId);
    }),
  );

program
  .command('status')
  .argument('<id>', 'migration id (migration-<plan name>)')
  .description("a migration's state, steps, figures, gate and errors")
  .action((id: string) =>
    runAction(async () => {
      const { client } = await connectClient(globals());
      const status = await migrationStatus(client, id);
      print(status, formatStatus(status));
    }),
  );

program
  .command('approve')
  .argument('<id>', 'migration id')
  .requiredOption('--gate <name>', 'the gate to approve')
  .option('--by <name>', 'approver (default: your OS user)')
  .option('--comment <text>', 'recorded with the approval')
  .description('approve a pending gate')
  .action((id: string, opts: { gate: string; by?: string; comment?: string }) =>
    runAction(async () => {
      const { client } = await connectClient(globals());
      const status = await approveGate(client, id, { gate: opts.gate, by: me(opts.by), comment: opts.comment });
      const pending = status.pendingGate?.gate === opts.gate ? status.pendingGate : undefined;
      print(status, pending
        ? `approved gate "${opts.gate}" as ${me(opts.by)}; ${pending.approvedBy.length}/${pending.requiredApprovals} approvals, waiting for more`
        : `approved gate "${opts.gate}" as ${me(opts.by)}; the migration continues`);
    }),
  );

program
  .command('reject')
  .argument('<id>', 'migration id')
  .requiredOption('--gate <name>', 'the gate to reject')
  .requiredOption('--reason <text>', 'why (recorded)')
  .option('--by <name>', 'who rejects (default: your OS user)')
  .description('reject a pending gate: the migration rolls back')
  .action((id: string, opts: { gate: string; reason: string; by?: string }) =>
    runAction(async () => {
      const { client } = await connectClient(globals());
      const status = await rejectGate(client, id, { gate: opts.gate, by: me(opts.by), reason: opts.reason });
      print(status, `rejected gate "${opts.gate}"; ${id} is rolling back`);
    }),
  );

program
  .command('resume')
  .argument('<id>', 'migration id')
  .option('--by <name>', 'operator (default: your OS user)')
  .description('retry the failed step of a migration awaiting an operator')
  .action((id: string, opts: { by?: string }) =>
    runAction(async () => {
      const { client } = await connectClient(globals());
      const status = await resumeMigration(client, id, me(opts.by));
      print(status, `resuming ${id} at ${status.failure?.stepId ?? status.currentStep ?? 'its failed step'}`);
    }),
  );

program
  .command('rollback')
  .argument('<id>', 'migration id')
  .requiredOption('--reason <text>', 'why (recorded)')
  .option('--by <name>', 'operator (default: your OS user)')
  .description('roll a migration back: traffic first, then app, then infrastructure')
  .action((id: string, opts: { reason: string; by?: string }) =>
    runAction(async () => {
      const { client } = await connectClient(globals());
      const status = await rollbackMigration(client, id, me(opts.by), opts.reason);
      print(status, `${id} is rolling back`);
    }),
  );

/** Prints a line per change until the migration ends; exits non-zero unless it completed. */
async function watch(id: string): Promise<void> {
  const { client } = await connectClient(globals());
  let last = '';
  for (;;) {
    const status: MigrationStatus = await migrationStatus(client, id);
    const line = progressLine(status);
    if (line !== last) {
      console.log(globals().json ? JSON.stringify(status) : line);
      last = line;
    }
    if (TERMINAL_STATES.includes(status.state)) {
      if (status.state !== 'completed') process.exitCode = EXIT.failure;
      return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function progressLine(status: MigrationStatus): string {
  const step = status.steps.find((s) => s.id === status.currentStep);
  const gate = status.pendingGate;
  if (gate) return `${status.state}: gate "${gate.gate}" (${gate.approvedBy.length}/${gate.requiredApprovals}); approve with: tiershift approve ${status.migrationId} --gate ${gate.gate}`;
  if (status.failure) return `${status.state}: ${status.failure.stepId} failed: ${status.failure.error}; run tiershift resume ${status.migrationId} or tiershift rollback ${status.migrationId} --reason ...`;
  return `${status.state}${step ? `: ${step.title}` : ''}`;
}

program.exitOverride();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : EXIT.invalid);
  const userError = asUserError(err);
  if (!userError) throw err;
  console.error(`tiershift: ${userError.message}`);
  process.exit(userError.exitCode);
}
