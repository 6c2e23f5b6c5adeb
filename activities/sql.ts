// A sql step's statements, run in the order the plan resolved (plan/phases/sql.ts) on the connections the
// resources' provider gives. Consecutive statements on one database commit together; those PostgreSQL
// refuses in a transaction run alone.
//
// Idempotent across retries and worker crashes: each group of statements records itself in a journal
// table in the same transaction that applies it, so a retry skips what committed and redoes what did not.
// The journal is `tiershift.sql_journal` in the step's database, UNLOGGED so that logical replication
// (publications FOR ALL TABLES skip unlogged tables) never sends it. A concurrent index build cannot run
// in a transaction: a retry reads the catalog instead, keeps a valid index and drops and builds again one
// a crash left invalid.
import { ApplicationFailure, heartbeat } from '@temporalio/activity';
import type pg from 'pg';
import { withPgClient } from '../contract/pg';
import { oneLine } from '../plan/sql';
import type { SqlExecution, SqlStep } from '../plan/types';
import type { StepInput, StepOutcome } from './types';

interface Group {
  on: string;
  transactional: boolean;
  statements: { execution: SqlExecution; n: number }[];
}

/** Consecutive transactional statements on one database form one group; any other statement is a group alone. */
export function groupExecutions(executions: readonly SqlExecution[]): Group[] {
  const groups: Group[] = [];
  executions.forEach((execution, i) => {
    const last = groups.at(-1);
    if (last && last.transactional && execution.transactional && last.on === execution.on) last.statements.push({ execution, n: i + 1 });
    else groups.push({ on: execution.on, transactional: execution.transactional, statements: [{ execution, n: i + 1 }] });
  });
  return groups;
}

/**
 * SQLSTATE classes a retry cannot fix (the statement itself is wrong: syntax, a missing or duplicate
 * object, a constraint, bad data); anything else (a dropped connection, a terminated backend, a
 * serialization failure) fails the attempt and Temporal retries it.
 */
const PERMANENT = /^(22|23|2B|3F|42|44)/;

/**
 * The server checks every second that the worker is still there (PostgreSQL 14+), and keepalives notice
 * a vanished host: a statement whose worker was killed (a concurrent index build of minutes) is ended
 * instead of going on for nobody, holding the locks the resumed attempt then waits for. A build ended so
 * leaves its index invalid, which the resumed attempt drops and builds again.
 */
const SESSION_SETTINGS = { client_connection_check_interval: 1000, tcp_keepalives_idle: 5, tcp_keepalives_interval: 2, tcp_keepalives_count: 3 };

export async function executeSql(
  input: StepInput<SqlStep>,
  executions: readonly SqlExecution[],
  part: 'do' | 'undo',
  connect: (resource: string) => Promise<string>,
): Promise<StepOutcome> {
  const groups = groupExecutions(executions);
  const started = Date.now();
  const counts = { ran: 0, skipped: 0, kept: 0, rebuilt: 0 };
  for (const [i, group] of groups.entries()) {
    const key = `${input.migrationId}/${input.runId ?? '-'}/${input.step.id}/${part}/${i}`;
    const url = await connect(group.on);
    await withPgClient(url, async (c) => {
      await ensureJournal(c);
      if ((await c.query('select 1 from tiershift.sql_journal where key = $1', [key])).rowCount) {
        counts.skipped += group.statements.length;
        return;
      }
      heartbeat({ sql: { part, group: i + 1, of: groups.length, on: group.on } });
      if (group.transactional) {
        await c.query('begin');
        try {
          for (const s of group.statements) await run(c, s, group.on, executions.length);
          await c.query('insert into tiershift.sql_journal (key) values ($1)', [key]);
          await c.query('commit');
        } catch (err) {
          await c.query('rollback').catch(() => undefined);
          throw err;
        }
        counts.ran += group.statements.length;
        return;
      }
      const s = group.statements[0]!;
      const index = s.execution.index ? await indexState(c, s.execution.index) : undefined;
      if (index?.valid) {
        counts.kept += 1;
      } else {
        if (index) {
          // Left invalid by a build that did not finish: it would never be used, and blocks the name.
          await c.query(`drop index concurrently if exists ${index.qualified}`);
          counts.rebuilt += 1;
        }
        await run(c, s, group.on, executions.length);
        counts.ran += 1;
      }
      await c.query('insert into tiershift.sql_journal (key) values ($1) on conflict do nothing', [key]);
    }, { settings: SESSION_SETTINGS, applicationName: `tiershift: sql ${input.step.id}` });
  }
  const what = part === 'undo' ? 'undo statements' : 'statements';
  const parts = [`${counts.ran} ${what} run`, counts.skipped ? `${counts.skipped} already applied` : '', counts.kept ? `${counts.kept} valid index kept` : '', counts.rebuilt ? `${counts.rebuilt} invalid index rebuilt` : ''].filter(Boolean);
  return {
    summary: `${input.step.resource}: ${parts.join(', ')}`,
    figures: {
      [`sql.${part}.statements`]: executions.length,
      [`sql.${part}.skipped`]: counts.skipped,
      [`sql.${part}.indexesKept`]: counts.kept,
      [`sql.${part}.indexesRebuilt`]: counts.rebuilt,
      [`sql.${part}.ms`]: Date.now() - started,
    },
  };
}

async function run(c: pg.Client, s: Group['statements'][number], on: string, total: number): Promise<void> {
  try {
    await c.query(s.execution.statement);
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    const message = `statement ${s.n} of ${total} on ${on} ("${oneLine(s.execution.statement, 80)}") failed: ${(err as Error).message}`;
    if (PERMANENT.test(code)) throw ApplicationFailure.nonRetryable(`${message}; fix the statement in the plan, or roll back`, 'NonRetryable');
    throw new Error(message);
  }
}

async function ensureJournal(c: pg.Client): Promise<void> {
  // Two steps creating it at once: one wins, the other's IF NOT EXISTS sees it (or fails and retries).
  await c.query('create schema if not exists tiershift');
  await c.query('create unlogged table if not exists tiershift.sql_journal (key text primary key, done_at timestamptz not null default now())');
}

async function indexState(c: pg.Client, name: string): Promise<{ valid: boolean; qualified: string } | undefined> {
  const { rows } = await c.query<{ valid: boolean; qualified: string }>(
    `select i.indisvalid and i.indisready as valid, format('%I.%I', n.nspname, x.relname) as qualified
       from pg_index i join pg_class x on x.oid = i.indexrelid join pg_namespace n on n.oid = x.relnamespace
      where x.relname = $1 and pg_table_is_visible(x.oid)`,
    [name],
  );
  return rows[0];
}
