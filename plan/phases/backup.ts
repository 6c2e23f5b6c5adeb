// `backup`: databases dumped (and proven to restore) and containers copied aside before the change.
import { z } from 'zod';
import { list, phaseKind, resourceName, retryDetail, stepCommon, type ResolveContext } from './kit';

const body = z.strictObject({
  ...stepCommon,
  resources: z.array(resourceName).min(1),
  /** Where dumps go: a blob resource. */
  destination: resourceName.optional(),
  verifyRestore: z.boolean().optional(),
});

function provenTitle(b: z.infer<typeof body>, ctx: ResolveContext): string {
  const databases = b.resources.filter((n) => ctx.resources[n]?.kind === 'postgres');
  if (!databases.length) return '';
  if (b.verifyRestore === false) return ' (restore not verified: verifyRestore is off)';
  const unproven = databases.filter((n) => !ctx.provesRestore(n));
  if (!unproven.length) return ' and prove it restores';
  return unproven.length === databases.length ? ' (its restore is not verified)' : `, proving only ${list(databases.filter((n) => !unproven.includes(n)))} restores`;
}

export const backup = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve: (b, ctx) => [
    {
      ...ctx.base(),
      kind: 'backup',
      // Only a provider that restores its dumps once proves anything; an unproven backup's title says so.
      title: ctx.title(`Back up ${list(b.resources)}${b.destination ? ` to ${b.destination}` : ''}${provenTitle(b, ctx)}`),
      resources: b.resources,
      destination: b.destination,
      verifyRestore: b.verifyRestore ?? true,
    },
  ],
  check(b, ctx) {
    b.resources.forEach((n, j) => ctx.ref(ctx.at('resources', j), n, ['postgres', 'blob']));
    if (b.destination) ctx.ref(ctx.at('destination'), b.destination, ['blob']);
  },
  undo: (step) => (step.kind === 'backup' ? `Keep the backup of ${list(step.resources)} (a rollback does not delete it)` : undefined),
  describe: retryDetail,
});
