// The minimal slice, end to end, as an operator runs it: CLI processes against the real sandbox.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findBinary } from '../sandbox/binaries';
import type { MigrationStatus } from '../contract/status';
import { isOneSentence, spawnWorker, tiershift } from './support/cli';
import { eventually, sandboxTemporal, type SandboxTemporal } from './support/temporal';

let temporal: SandboxTemporal;
let worker: ReturnType<typeof spawnWorker>;

beforeAll(async () => {
  temporal = await sandboxTemporal();
  worker = spawnWorker();
});

afterAll(async () => {
  await worker?.stop();
  await temporal?.close();
});

async function status(id: string): Promise<MigrationStatus> {
  const result = await tiershift(['status', id, '--json']);
  if (result.code !== 0) throw new Error(`status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as MigrationStatus;
}

describe('tiershift CLI on the sandbox', () => {
  it('runs the minimal plan from start through approve to completion, visible with its search attributes', async () => {
    const id = `migration-minimal-${Date.now().toString(36)}`;
    const started = await tiershift(['start', 'plans/minimal.yaml', '--id', id, '--by', 'alice', '--json']);
    expect(started.stderr).toBe('');
    expect(started.code).toBe(0);
    expect(JSON.parse(started.stdout)).toMatchObject({ workflowId: id, url: `${temporal.uiUrl}/namespaces/default/workflows/${id}` });

    const atGate = await eventually(() => status(id), (s) => s.pendingGate?.gate === 'go');
    expect(atGate.state).toBe('awaiting-approval');
    const check = atGate.steps[0]!;
    expect(check).toMatchObject({ kind: 'check', state: 'done' });
    // A real health check of the seeded source database: its tables and size were measured.
    expect(check.figures['sourceDb.tables']).toBeGreaterThanOrEqual(4);
    expect(check.summary).toMatch(/sourceDb healthy: PostgreSQL 1\d/);

    const text = await tiershift(['status', id]);
    expect(text.stdout).toContain(`approve: tiershift approve ${id} --gate go`);
    // Where the gate's deadline would be, it says there is none; `list` reads that from the memo.
    expect(text.stdout).toContain('\n  no deadline: it waits until someone decides\n');
    const row = await eventually(
      // Filtered by plan: the suite's other files leave many migrations waiting, more than one page of the list.
      async () => (await tiershift(['list', '--plan', 'minimal'])).stdout.split('\n').find((l) => l.startsWith(`${id} `)) ?? '',
      (l) => l.includes('go (no deadline)'),
    );
    expect(row).toMatch(/awaiting-approval\s+gate\s+go \(no deadline\)/);

    const wrongGate = await tiershift(['approve', id, '--gate', 'nope', '--by', 'bob']);
    expect(wrongGate.code).toBe(4);
    expect(wrongGate.stderr).toMatch(/^tiershift: refused: unknown gate "nope"; this plan's gates are: go\.\n$/);
    // Checked with the workflow's own schema before it is sent: nothing reaches the migration.
    const tooLong = await tiershift(['approve', id, '--gate', 'go', '--by', 'bob', '--comment', 'x'.repeat(2001)]);
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toBe('tiershift: the approval is malformed (comment: expected a comment of at most 2000 characters); correct it and run the command again.\n');

    const approved = await tiershift(['approve', id, '--gate', 'go', '--by', 'bob', '--comment', 'source is healthy']);
    expect(approved.code).toBe(0);
    expect(approved.stdout).toContain('approved gate "go" as bob');

    const done = await eventually(() => status(id), (s) => s.state === 'completed');
    expect(done.steps.map((s) => s.state)).toEqual(['done', 'done', 'done']);
    expect(done.steps[2]!.summary).toMatch(/targetDb healthy/);
    expect(done.decisions).toMatchObject([{ gate: 'go', decision: 'approve', by: 'bob', comment: 'source is healthy' }]);

    // The UI's list view filters on the custom search attributes; visibility catches up asynchronously.
    const listed = await eventually(
      async () => {
        const ids: string[] = [];
        for await (const wf of temporal.client.workflow.list({ query: `PlanName = "minimal" AND MigrationState = "completed"` })) ids.push(wf.workflowId);
        return ids;
      },
      (ids) => ids.includes(id),
    );
    expect(listed).toContain(id);
  });

  it('explains an unknown migration, a bad plan and a running duplicate in one sentence with distinct exit codes', async () => {
    const unknown = await tiershift(['status', 'migration-does-not-exist']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/no migration migration-does-not-exist was found; run `tiershift list`/);
    expect(isOneSentence(unknown.stderr)).toBe(true);

    const dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-plan-'));
    try {
      const bad = path.join(dir, 'bad.yaml');
      await import('node:fs').then((fs) => fs.writeFileSync(bad, 'apiVersion: tiershift/v1\nidentity: unverified\nname: bad\nresources: {}\nphases:\n  - check: { resources: [nowhere] }\n'));
      const invalid = await tiershift(['start', bad]);
      expect(invalid.code).toBe(2);
      expect(invalid.stderr).toContain('phases[0].check.resources[0]');
      expect(isOneSentence(invalid.stderr)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    const id = `migration-dup-${Date.now().toString(36)}`;
    expect((await tiershift(['start', 'plans/minimal.yaml', '--id', id])).code).toBe(0);
    const again = await tiershift(['start', 'plans/minimal.yaml', '--id', id]);
    expect(again.code).toBe(4);
    expect(again.stderr).toMatch(new RegExp(`${id} is already running`));
    expect((await tiershift(['rollback', id, '--reason', 'test cleanup'])).code).toBe(0);
    await eventually(() => status(id), (s) => s.state === 'rolled-back');
  });

  it('refuses to start a plan whose gate can never pass given four eyes and the starter, and starts nothing', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-plan-'));
    try {
      const file = path.join(dir, 'never-passes.yaml');
      writeFileSync(
        file,
        'apiVersion: tiershift/v1\nidentity: unverified\nname: never-passes\nresources:\n  sourceDb: { kind: postgres, provider: local, cluster: source, database: shop }\nphases:\n' +
          '  - check: { resources: [sourceDb] }\n  - gate: { name: go, approvers: [alice, bob], requiredApprovals: 2, fourEyes: true }\n',
      );
      const refused = await tiershift(['start', file, '--by', 'alice', '--id', 'migration-never-passes']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toBe(
        'tiershift: gate "go" can never pass: it needs 2 approvals, but with four eyes alice, who starts it, may not approve, so only bob may approve; have another approver start the migration, add approvers to the gate, or lower its requiredApprovals.\n',
      );
      expect(isOneSentence(refused.stderr)).toBe(true);
      expect((await tiershift(['status', 'migration-never-passes'])).code).toBe(3);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each(['temporal', 'pg_ctl', 'haproxy'])('names what to install when `%s` is missing, before starting anything', async (missing) => {
    // A bare machine: only node on PATH, and a bin dir holding every sandbox binary but one.
    const bare = mkdtempSync(path.join(os.tmpdir(), 'tiershift-bare-'));
    try {
      const bin = path.join(bare, 'bin');
      mkdirSync(bin);
      for (const name of ['temporal', 'pg_ctl', 'initdb', 'postgres', 'psql', 'pg_dump', 'pg_restore', 'haproxy', 'azurite-blob']) {
        if (name !== missing) symlinkSync(findBinary(name), path.join(bin, name));
      }
      const home = path.join(bare, 'home');
      const result = await tiershift(['sandbox', 'up'], {
        PATH: path.dirname(process.execPath),
        TIERSHIFT_BIN_DIRS: bin,
        TIERSHIFT_HOME: home,
      });
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(new RegExp(`\`${missing}\` was not found on PATH; install .*(npm run setup|apt-get install|pip install)`));
      expect(isOneSentence(result.stderr)).toBe(true);
      expect(existsSync(path.join(home, 'state.json'))).toBe(false);
    } finally {
      rmSync(bare, { recursive: true, force: true });
    }
  });
});
