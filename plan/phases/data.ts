// `data`: a database replicated (logical replication or a read replica, then verified) or a container copied
// server-side, from the resource serving today to the one taking over.
import { z } from 'zod';
import { phaseKind, resourceName, retryDetail, stepCommon } from './kit';

const body = z.strictObject({ ...stepCommon, from: resourceName, to: resourceName, verify: z.boolean().optional() });

export const data = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve: (b, ctx) => [{ ...ctx.base(), kind: 'data', title: ctx.title(`Sync ${b.from} to ${b.to} and verify`), from: b.from, to: b.to, verify: b.verify ?? true }],
  check(b, ctx) {
    ctx.seen.syncedInto.set(b.to, b.from);
    const from = ctx.ref(ctx.at('from'), b.from, ['postgres', 'blob']);
    const to = ctx.ref(ctx.at('to'), b.to, ['postgres', 'blob']);
    if (b.from === b.to) ctx.problem(ctx.at('to'), `expected a resource other than the source, got "${b.to}" for both`);
    else if (from && to && from.kind !== to.kind) ctx.problem(ctx.at('to'), `expected a ${from.kind} resource like ${b.from}, got "${b.to}", a ${to.kind} resource`);
  },
  undo: (step) => (step.kind === 'data' ? `Stop syncing ${step.from} to ${step.to} and remove what the sync created; ${step.from} stays untouched` : undefined),
  describe: (step) => `${retryDetail(step)}; ${KEYLESS}`,
});

/** What `tiershift plan` says about tables without a primary key: the sandbox's logical replication and chunked verification need one. */
export const KEYLESS = 'local PostgreSQL: tables without a primary key are refused before any copy (add one to each first)';
