// `sql`: statements (or a file of them) on a PostgreSQL resource, in a transaction where PostgreSQL allows
// one, with an optional undo a rollback runs. On a pair an earlier data step replicates, schema changes
// run on the target first and then on the source (the target must be able to take what the source
// sends), changes of rows only on the source (replication carries them), and schema changes that would
// break the replication mid-sync are refused.
import { z } from 'zod';
import { breaksReplication, concurrentIndex, isSchemaChange, needsOwnTransaction, oneLine, splitStatements } from '../sql';
import type { SqlExecution, SqlStep, Step } from '../types';
import { phaseKind, resourceName, retryDetail, stepCommon, type CheckContext, type PathPart } from './kit';

const source = {
  /** Statements in order; each item may hold several, separated by semicolons. */
  statements: z.array(z.string().min(1).max(100_000)).min(1).optional(),
  /** A file of statements, relative to the plan, read when the plan loads (its text is part of the plan's hash). */
  file: z.string().min(1).max(1000).optional(),
};
const body = z.strictObject({
  ...stepCommon,
  resource: resourceName,
  ...source,
  /** What a rollback runs: the statements that take this step's change back. */
  undo: z.strictObject(source).optional(),
});
type Body = z.infer<typeof body>;

/** The statements of a body (or of its undo), split. */
function statementsOf(b: { statements?: string[]; file?: string }, read: (file: string) => string | undefined): string[] {
  if (b.statements) return b.statements.flatMap(splitStatements);
  const text = b.file ? read(b.file) : undefined;
  return text === undefined ? [] : splitStatements(text);
}

const execution = (on: string, statement: string): SqlExecution => {
  const index = concurrentIndex(statement)?.name;
  return { on, statement, transactional: !needsOwnTransaction(statement), ...(index ? { index } : {}) };
};

/** The pair a data step before this one replicates (and no finalize has cut over yet) that `resource` is a side of. */
function replicatingPair(resource: string, steps: readonly Step[]): { source: string; target: string } | undefined {
  for (let i = steps.length - 1; i >= 0; i--) {
    const s = steps[i]!;
    if (s.kind !== 'data' || (s.from !== resource && s.to !== resource)) continue;
    const cutOver = steps.slice(i + 1).some((f) => f.kind === 'finalize' && f.syncedFrom[s.to] === s.from);
    return cutOver ? undefined : { source: s.from, target: s.to };
  }
  return undefined;
}

function checkedPair(resource: string, ctx: CheckContext): { source: string; target: string } | undefined {
  const pairs = [...ctx.seen.syncedInto].filter(([to, from]) => (to === resource || from === resource) && ctx.resources[to]?.kind === 'postgres' && !ctx.seen.cutOver.has(to));
  const last = pairs.at(-1);
  return last ? { source: last[1], target: last[0] } : undefined;
}

export const sql = phaseKind<Body>({
  schema: () => body,
  resolve(b, ctx) {
    const read = (file: string) => ctx.readText(file);
    const statements = statementsOf(b, read);
    const undo = b.undo ? statementsOf(b.undo, read) : undefined;
    const pair = ctx.resources[b.resource]?.kind === 'postgres' ? replicatingPair(b.resource, ctx.steps) : undefined;
    const executions = pair
      ? [...statements.filter(isSchemaChange).map((s) => execution(pair.target, s)), ...statements.map((s) => execution(pair.source, s))]
      : statements.map((s) => execution(b.resource, s));
    // Undone the other way round: the source stops sending (say) a column before the target loses it.
    const undone = undo && (pair ? [...undo.map((s) => execution(pair.source, s)), ...undo.filter(isSchemaChange).map((s) => execution(pair.target, s))] : undo.map((s) => execution(b.resource, s)));
    const what = b.file ? b.file : `${statements.length} statement${statements.length === 1 ? '' : 's'}`;
    const step: SqlStep = {
      ...ctx.base(),
      kind: 'sql',
      title: ctx.title(`Run ${what} on ${pair ? `${pair.target}, then ${pair.source}` : b.resource}`),
      resource: b.resource,
      executions,
      ...(undone ? { undo: undone } : {}),
      ...(pair ? { replicating: pair } : {}),
    };
    return [step];
  },
  check(b, ctx) {
    const resource = ctx.ref(ctx.at('resource'), b.resource, ['postgres']);
    if (resource?.kind === 'postgres' && !resource.connection && !ctx.runs(resource.provider, 'sql')) {
      ctx.problem(
        ctx.at('resource'),
        `expected a postgres resource whose provider connects sql steps, or one with a connection reference, got "${b.resource}" on provider ${resource.provider}, which does not connect them itself; give ${b.resource} a connection (a secret reference to its connection string)`,
      );
    }
    const sources = (at: PathPart[], s: { statements?: string[]; file?: string }) => {
      if (!!s.statements === !!s.file) ctx.problem(at, `expected statements or a file (exactly one), got ${s.statements ? 'both' : 'neither'}`);
    };
    sources(ctx.at(), b);
    if (b.undo) sources(ctx.at('undo'), b.undo);
    const read = (at: PathPart[]) => (file: string) => ctx.readText(at, file);
    const pair = checkedPair(b.resource, ctx);
    const check = (statements: string[], at: PathPart[], undo: boolean) => {
      if (b.file && !statements.length && !undo) ctx.problem(at, `expected at least one statement in ${b.file}, got none`);
      for (const s of statements) {
        const index = concurrentIndex(s);
        if (index && !index.named) {
          ctx.problem(at, `expected a name for the index "${oneLine(s, 60)}" builds concurrently (a resumed step finds it by name to keep it or build it again), got none`);
        }
        const broken = pair && !undo ? breaksReplication(s) : undefined;
        if (broken) {
          ctx.problem(at, `expected no schema change that breaks the replication of ${pair!.source} to ${pair!.target} mid-sync, got "${oneLine(s, 60)}", which ${broken.what}; ${broken.instead}`);
        }
      }
    };
    check(statementsOf(b, read(ctx.at(b.file ? 'file' : 'statements'))), ctx.at(b.file ? 'file' : 'statements'), false);
    if (b.undo) check(statementsOf(b.undo, read(ctx.at('undo', b.undo.file ? 'file' : 'statements'))), ctx.at('undo'), true);
  },
  undo: (step) => (step.kind === 'sql' && step.undo?.length ? `Run the undo of ${step.id} (${step.undo.length} statement${step.undo.length === 1 ? '' : 's'}${step.replicating ? `, on ${step.replicating.source} first` : ''})` : undefined),
  describe(step) {
    if (step.kind !== 'sql') return '';
    const lines = step.executions.map((e, i) => `${i + 1}. on ${e.on}${e.transactional ? '' : ' (alone, outside a transaction' + (e.index ? `; resumed: an invalid ${e.index} is dropped and built again, a valid one kept` : '') + ')'}: ${oneLine(e.statement)}`);
    const where = step.replicating
      ? `; ${step.replicating.source} replicates to ${step.replicating.target}: schema changes run on ${step.replicating.target} first, then everything on ${step.replicating.source} (rows reach ${step.replicating.target} by replication)`
      : '; statements in a row on one database commit together';
    return `${retryDetail(step)}${where}:\n      ${lines.join('\n      ')}`;
  },
  allowedAfterFinalize: true,
});
