// An operator's day with the CLI, process by process against the real sandbox and a spawned worker:
// start and watch, decide from another terminal, fix a failure on the sandbox and resume, then list
// and report. Plans are small (checks and a gate) so the whole file stays fast.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withClient } from '../activities/local/postgres';
import type { MigrationListing } from '../client/migrations';
import type { MigrationReport } from '../client/report';
import { postgresUrl } from '../contract/home';
import type { MigrationStatus } from '../contract/status';
import { isOneSentence, spawnTiershift, spawnWorker, tiershift, type RunningCli } from './support/cli';
import { sandbox } from './support/local-ops';
import { eventually } from './support/temporal';

let worker: ReturnType<typeof spawnWorker>;
let dir: string;
const watchers: RunningCli[] = [];
const scratchDatabases: string[] = [];
const targetAdminUrl = () => postgresUrl(sandbox().postgres.target!, 'postgres');

beforeAll(() => {
  worker = spawnWorker();
  dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-cli-flow-'));
});

afterAll(async () => {
  await Promise.all(watchers.map((w) => w.stop()));
  await worker?.stop();
  // The target cluster is shared with the other test files: leave it with only its own databases.
  await withClient(targetAdminUrl(), async (client) => {
    for (const db of scratchDatabases) await client.query(`drop database if exists ${client.escapeIdentifier(db)}`);
  });
  rmSync(dir, { recursive: true, force: true });
});

/** Check the source, a four-eyes gate, then check a database on the target that the test decides about. */
function writePlan(name: string, scratchDb: string): string {
  const file = path.join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    [
      'apiVersion: tiershift/v1',
      'identity: unverified',
      `name: ${name}`,
      'description: check the source, approve, check a scratch database on the target',
      'approvers: [alice, bob]',
      'resources:',
      '  sourceDb: { kind: postgres, provider: local, cluster: source, database: shop }',
      `  scratchDb: { kind: postgres, provider: local, cluster: target, database: ${scratchDb} }`,
      'phases:',
      '  - check: { resources: [sourceDb] }',
      '  - gate: { name: go, fourEyes: true, instructions: "The source is healthy; approve to check the scratch database." }',
      // One attempt: the missing database is a fact to fix, not a blip to retry.
      '  - check: { resources: [scratchDb], retry: { maximumAttempts: 1 } }',
      '',
    ].join('\n'),
  );
  return file;
}

async function status(id: string): Promise<MigrationStatus> {
  const result = await tiershift(['status', id, '--json']);
  if (result.code !== 0) throw new Error(`status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as MigrationStatus;
}

async function listed(args: string[]): Promise<MigrationListing[]> {
  const result = await tiershift(['list', ...args, '--json']);
  if (result.code !== 0) throw new Error(`list failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as MigrationListing[];
}

describe('the tiershift CLI as an operator uses it', () => {
  it('starts and watches to the gate, refuses wrong decisions, approves from another process, resumes after a fix, lists and reports', async () => {
    const suffix = Date.now().toString(36);
    const name = `cli-flow-${suffix}`;
    const id = `migration-${name}`;
    const scratchDb = `cli_flow_${suffix}`;
    scratchDatabases.push(scratchDb);
    const plan = writePlan(name, scratchDb);

    // Piped, as in a CI job or `| tee`: plain appended lines, no cursor movement.
    const watch = spawnTiershift(['start', plan, '--by', 'alice', '--watch']);
    watchers.push(watch);
    const atGate = await watch.waitFor(/reject with: .*\n/);
    expect(atGate).toContain(`started ${id}`);
    expect(atGate).toMatch(/✓ Check sourceDb healthy: sourceDb healthy: PostgreSQL 1\d/);
    expect(atGate).toMatch(/0-check: sourceDb\.tables=\d+ sourceDb\.bytes=\d+/);
    expect(atGate).toContain('(0/1; approvers: alice, bob; four eyes): The source is healthy; approve to check the scratch database.');
    expect(atGate).toContain(`approve with: tiershift approve ${id} --gate go`);
    expect(atGate).not.toMatch(/\x1b\[/);

    // Visibility: the search attributes say where it waits, as the UI's list filters see them.
    const waiting = await eventually(() => listed(['--state', 'awaiting-approval']), (rows) => rows.some((r) => r.id === id));
    expect(waiting.find((r) => r.id === id)).toMatchObject({ state: 'awaiting-approval', phase: 'gate', pendingGate: 'go', plan: name, trafficWeight: 0, temporalStatus: 'RUNNING' });
    const table = await tiershift(['list', '--plan', name]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+STATE\s+PHASE\s+GATE\s+WEIGHT\s+PLAN\s+STARTED\n/);
    expect(table.stdout).toMatch(new RegExp(`${id}\\s+awaiting-approval\\s+gate\\s+go \\(no deadline\\)\\s+0%\\s+${name}`));
    expect(await listed(['--state', 'completed', '--plan', name])).toEqual([]);

    // Wrong decisions are refused by the workflow, each in one sentence with exit code 4.
    const wrongGate = await tiershift(['approve', id, '--gate', 'cutover', '--by', 'bob']);
    expect(wrongGate).toMatchObject({ code: 4, stdout: '', stderr: `tiershift: refused: unknown gate "cutover"; this plan's gates are: go.\n` });
    const starter = await tiershift(['approve', id, '--gate', 'go', '--by', 'alice']);
    expect(starter.code).toBe(4);
    expect(starter.stderr).toMatch(/needs four eyes: alice started this migration and cannot approve it/);
    expect(isOneSentence(starter.stderr)).toBe(true);
    const stranger = await tiershift(['approve', id, '--gate', 'go', '--by', 'mallory', '--json']);
    expect(stranger.code).toBe(4);
    expect(JSON.parse(stranger.stdout)).toEqual({ error: `refused: mallory may not decide gate "go"; its approvers are: alice, bob.`, exitCode: 4 });
    const early = await tiershift(['resume', id, '--by', 'bob']);
    expect(early).toMatchObject({ code: 4, stderr: 'tiershift: refused: there is nothing to resume; the migration is awaiting-approval.\n' });
    const noGate = await tiershift(['approve', id, '--by', 'bob']);
    expect(noGate.code).toBe(2);
    expect(isOneSentence(noGate.stderr)).toBe(true);

    // An approval bound to a plan file the migration does not run (someone edited it after the start) is refused.
    const edited = writePlan(`${name}-edited`, `${scratchDb}_x`);
    const stale = await tiershift(['approve', id, '--gate', 'go', '--by', 'bob', '--plan', edited]);
    expect(stale.code).toBe(4);
    expect(stale.stderr).toMatch(/^tiershift: refused: this decision was made on plan sha256 [0-9a-f]{12}, but the migration runs plan sha256 [0-9a-f]{12}; review what runs with `tiershift status /);

    // Another terminal approves while the first one watches, bound to the file it reviewed.
    const approved = await tiershift(['approve', id, '--gate', 'go', '--by', 'bob', '--comment', 'source looks healthy', '--plan', plan]);
    expect(approved).toMatchObject({ code: 0, stdout: 'approved gate "go" as bob (unverified); the migration continues\n' });

    // The scratch database does not exist yet: the step fails past its one attempt and waits for an operator.
    const failed = await watch.waitFor(/fix the cause, then: tiershift resume .*\n/);
    expect(failed).toContain('approved gate "go" by bob: source looks healthy');
    expect(failed).toContain(`✗ Check scratchDb healthy: database "${scratchDb}" does not exist`);
    expect(failed).toContain(`fix the cause, then: tiershift resume ${id}`);
    expect(failed.indexOf('approved gate "go" by bob')).toBeLessThan(failed.indexOf('> Check scratchDb healthy'));
    const held = await status(id);
    expect(held).toMatchObject({ state: 'awaiting-operator', failure: { stepId: '2-check' } });
    const listedHeld = await eventually(() => listed(['--state', 'awaiting-operator', '--plan', name]), (rows) => rows.length === 1);
    expect(listedHeld[0]).toMatchObject({ id, state: 'awaiting-operator', phase: 'check' });

    // The operator previews what resume will do, fixes the cause on the sandbox, then resumes.
    const preview = await tiershift(['resume', id, '--preview']);
    expect(preview.code).toBe(0);
    expect(preview.stdout.split('\n').slice(1, 4).map((l) => l.trim().split(/\s{2,}/).slice(0, 2))).toEqual([
      ['skip: done', '0-check'],
      ['skip: gate passed', '1-gate'],
      ['run again', '2-check'],
    ]);
    await withClient(targetAdminUrl(), (client) => client.query(`create database ${client.escapeIdentifier(scratchDb)}`));
    // Resume is for the plan's operators (by default its approvers), in a rehearsal by name.
    const notOperator = await tiershift(['resume', id, '--by', 'carol']);
    expect(notOperator).toMatchObject({ code: 4, stderr: 'tiershift: refused: carol may not resume this migration; its operators are: alice, bob.\n' });
    const resumed = await tiershift(['resume', id, '--by', 'bob']);
    expect(resumed).toMatchObject({ code: 0, stdout: `resuming ${id} at 2-check\n` });

    const ended = await watch.exited;
    expect(ended.code).toBe(0);
    expect(ended.stderr).toBe('');
    expect(ended.stdout).toMatch(/✓ Check scratchDb healthy: scratchDb healthy: PostgreSQL 1\d.*0 tables/);
    expect(ended.stdout).toMatch(new RegExp(`${id} completed in \\d+s; the full record: tiershift report ${id}\\n$`));

    const again = await tiershift(['resume', id, '--by', 'carol']);
    expect(again).toMatchObject({ code: 4, stderr: `tiershift: ${id} has ended (completed); there is nothing to resume.\n` });
    const done = await eventually(() => listed(['--state', 'completed', '--plan', name]), (rows) => rows.length === 1);
    expect(done[0]).toMatchObject({ id, state: 'completed', phase: 'done', temporalStatus: 'COMPLETED' });

    // The report: Markdown for the change ticket...
    const markdown = await tiershift(['report', id]);
    expect(markdown.code).toBe(0);
    const md = markdown.stdout;
    expect(md).toMatch(new RegExp(`^# Migration report: ${id}\\n`));
    expect(md).toContain('| Outcome | **completed** |');
    expect(md).toMatch(/\| Started \| \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ by alice \|/);
    expect(md).toMatch(/\| go \| approved \| bob \| source looks healthy \| [0-9a-f]{12} \|/);
    expect(md).toMatch(/Evidence bob saw when approving "go": 0-check \(sourceDb\.tables=\d+/);
    expect(md).toMatch(/\| `2-check` \| scratchDb\.tables \| 0 \|/);
    expect(md).toContain(`| 2-check | database "${scratchDb}" does not exist |`);
    expect(md).toContain('None: nothing was rolled back.');
    const timeline = md.slice(md.indexOf('## Timeline'), md.indexOf('## Steps'));
    const order = ['started by alice', 'Check sourceDb healthy done', 'bob approved gate "go": source looks healthy', 'Check scratchDb healthy failed', 'bob resumed Check scratchDb healthy', 'Check scratchDb healthy done after 2 attempts', 'ended: completed'];
    expect(order.map((text) => timeline.indexOf(text))).toEqual(order.map((text) => timeline.indexOf(text)).sort((a, b) => a - b));
    expect(order.every((text) => timeline.includes(text))).toBe(true);

    // ...and JSON for scripts.
    const json = await tiershift(['report', id, '--json']);
    expect(json.code).toBe(0);
    const report = JSON.parse(json.stdout) as MigrationReport;
    expect(report).toMatchObject({ migrationId: id, state: 'completed', startedBy: 'alice', plan: { name } });
    expect(report.decisions).toMatchObject([{ gate: 'go', decision: 'approve', by: 'bob', comment: 'source looks healthy' }]);
    expect(report.decisions[0]!.evidence?.['0-check']?.['sourceDb.tables']).toBeGreaterThanOrEqual(4);
    expect(report.figures['2-check']).toMatchObject({ 'scratchDb.tables': 0 });
    expect(report.steps.map((s) => [s.id, s.state, s.attempts])).toEqual([['0-check', 'done', 1], ['1-gate', 'done', 0], ['2-check', 'done', 2]]);
    expect(report.errors).toMatchObject([{ stepId: '2-check', error: `database "${scratchDb}" does not exist` }]);
    expect(report.durationMs).toBeGreaterThan(0);
    expect(new Set(report.timeline.map((e) => e.event))).toEqual(new Set(['started', 'step-started', 'step-ended', 'gate-opened', 'decision', 'error', 'resumed', 'ended']));
  });

  it('a rejection rolls back and `watch` exits non-zero; the OS user is the default identity; unknown ids suggest `tiershift list`', async () => {
    const suffix = Date.now().toString(36);
    const name = `cli-reject-${suffix}`;
    const id = `migration-${name}`;
    const plan = writePlan(name, `cli_reject_${suffix}`);

    const started = await tiershift(['start', plan, '--json'], { TIERSHIFT_USER: '' });
    expect(started.code).toBe(0);
    expect(JSON.parse(started.stdout)).toMatchObject({ workflowId: id });
    const watch = spawnTiershift(['watch', id]);
    watchers.push(watch);
    await watch.waitFor(/reject with: .*\n/);
    expect((await status(id)).startedBy).toBe(os.userInfo().username);

    const noReason = await tiershift(['reject', id, '--gate', 'go', '--by', 'bob']);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toMatch(/^tiershift: required option '--reason <text>' not specified; run `tiershift --help` for usage\.\n$/);
    const rejected = await tiershift(['reject', id, '--gate', 'go', '--by', 'bob', '--reason', 'maintenance window moved']);
    expect(rejected).toMatchObject({ code: 0, stdout: `rejected gate "go"; ${id} is rolling back\n` });

    const ended = await watch.exited;
    expect(ended.code).toBe(1);
    expect(ended.stdout).toContain('rejected gate "go" by bob: maintenance window moved');
    expect(ended.stdout).toContain('↺ rolling back (gate-rejected by bob)');
    expect(ended.stdout).toMatch(new RegExp(`${id} rolled back after \\d+s`));

    const report = JSON.parse((await tiershift(['report', id, '--json'])).stdout) as MigrationReport;
    expect(report).toMatchObject({ state: 'rolled-back', rollback: { trigger: 'gate-rejected', by: 'bob' } });
    expect(report.decisions).toMatchObject([{ decision: 'reject', by: 'bob', comment: 'maintenance window moved' }]);
    expect((await tiershift(['report', id])).stdout).toMatch(/## Rollback\n\nTriggered by gate-rejected \(bob\) at .*: gate "go" rejected by bob: maintenance window moved; ended /);
    const rolledBack = await eventually(() => listed(['--state', 'rolled-back,aborted', '--plan', name]), (rows) => rows.length === 1);
    expect(rolledBack[0]).toMatchObject({ id, state: 'rolled-back' });

    for (const args of [['watch', 'migration-nowhere'], ['report', 'migration-nowhere'], ['approve', 'migration-nowhere', '--gate', 'go', '--by', 'bob']]) {
      const unknown = await tiershift(args);
      expect(unknown.code, args.join(' ')).toBe(3);
      expect(unknown.stderr).toBe('tiershift: no migration migration-nowhere was found; run `tiershift list` to see the migrations.\n');
    }
    const badState = await tiershift(['list', '--state', 'paused']);
    expect(badState.code).toBe(2);
    expect(badState.stderr).toMatch(/^tiershift: --state takes one or more of running, awaiting-approval, .*; got "paused"\.\n$/);
  });
});
