// `app`: the new version deployed beside the old one (a Container App revision, the sandbox's green app)
// and waited on until healthy. On a database an earlier data phase replicates into, this step is the write
// point: from here the target takes writes its source lacks, and a rollback must bring them back.
import { z } from 'zod';
import type { AppStep, TargetWrites } from '../types';
import { phaseKind, resourceName, retryDetail, stepCommon } from './kit';

const body = z.strictObject({
  ...stepCommon,
  resource: resourceName,
  version: z.string().min(1).max(100),
  /** The database resource the new version uses. */
  database: resourceName.optional(),
  /**
   * On a replicated target whose providers cannot copy the new version's writes back: a rollback loses
   * them, and the plan says it knows (shown in the dry run).
   */
  acceptWriteLoss: z.literal(true, { error: 'expected true (or leave acceptWriteLoss out)' }).optional(),
  // A provider nests how it runs the version (an image, CPU, replicas) under its name.
});

export const app = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve(b, ctx) {
    const { id: _id, title: _t, retry: _r, timeouts: _to, acceptWriteLoss, ...spec } = b;
    const step: AppStep = { ...ctx.base(), ...spec, kind: 'app', title: ctx.title(`Deploy ${b.resource} ${b.version}${b.database ? ` on ${b.database}` : ''}${ctx.providerWords.length ? ` (${ctx.providerWords.join(', ')})` : ''} and wait until healthy`) };
    // The last data step into the database is the replication the new version's writes diverge from.
    const sync = [...ctx.steps].reverse().find((s) => s.kind === 'data' && s.to === b.database && ctx.resources[s.to]?.kind === 'postgres');
    if (b.database && sync?.kind === 'data') {
      const writes: TargetWrites = { database: b.database, source: sync.from, ...(acceptWriteLoss ? { acceptWriteLoss: true } : { recovery: 'reverse-sync' }) };
      step.targetWrites = writes;
    }
    return [step];
  },
  check(b, ctx) {
    ctx.ref(ctx.at('resource'), b.resource, ['app']);
    if (b.database) ctx.ref(ctx.at('database'), b.database, ['postgres']);
    const source = b.database && ctx.resources[b.database]?.kind === 'postgres' ? ctx.seen.syncedInto.get(b.database) : undefined;
    if (!source) {
      if (b.acceptWriteLoss) ctx.problem(ctx.at('acceptWriteLoss'), `expected acceptWriteLoss only on an app whose database an earlier data phase replicates into, got it on ${b.database ? `database ${b.database}, which no earlier data phase syncs into` : 'an app without a database'}`);
      return;
    }
    if (b.acceptWriteLoss) return;
    const unable = [b.database!, source].map((r) => ctx.resources[r]?.provider).find((p) => p && !ctx.recovers(p, 'reverse-sync'));
    const problem = unable ? undefined : ctx.recoveryProblem(b.database!, 'reverse-sync');
    if (problem) ctx.problem(ctx.at('database'), `${problem}; or add acceptWriteLoss: true to this app phase to accept that a rollback loses the writes ${b.version} makes to ${b.database}`);
    if (unable) {
      ctx.problem(
        ctx.at('database'),
        `expected a database whose provider can copy the new version's writes back on a rollback, got ${b.database} (replicated from ${source}) on provider ${unable}, which cannot; add acceptWriteLoss: true to this app phase to accept that a rollback loses the writes ${b.version} makes to ${b.database}`,
      );
    }
  },
  undo: (step) => (step.kind === 'app' ? `Stop ${step.resource} ${step.version} and keep the previous version serving` : undefined),
  describe: (step) => {
    const writes = step.kind === 'app' ? step.targetWrites : undefined;
    if (!writes) return retryDetail(step);
    const what = writes.acceptWriteLoss
      ? `write point: a rollback LOSES what ${writes.database} takes (acceptWriteLoss: true)`
      : `write point: a rollback first copies back to ${writes.source} every row only ${writes.database} has`;
    return `${retryDetail(step)}; ${what}`;
  },
});
