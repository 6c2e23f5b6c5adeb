// `backup`: databases dumped (and proven to restore) and containers copied aside before the change.
import { z } from 'zod';
import { list, phaseKind, resourceName, retryDetail, stepCommon } from './kit';

const body = z.strictObject({
  ...stepCommon,
  resources: z.array(resourceName).min(1),
  /** Where dumps go: a blob resource. */
  destination: resourceName.optional(),
  verifyRestore: z.boolean().optional(),
});

export const backup = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve: (b, ctx) => [
    {
      ...ctx.base(),
      kind: 'backup',
      title: ctx.title(`Back up ${list(b.resources)}${b.destination ? ` to ${b.destination}` : ''} and prove it restores`),
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
