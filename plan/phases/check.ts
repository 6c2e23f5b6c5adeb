// `check`: read-only health checks of resources before anything changes (the runbook's prerequisites).
import { z } from 'zod';
import { list, phaseKind, resourceName, retryDetail, stepCommon } from './kit';

const body = z.strictObject({ ...stepCommon, resources: z.array(resourceName).min(1) });

export const check = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve: (b, ctx) => [{ ...ctx.base(), kind: 'check', title: ctx.title(`Check ${list(b.resources)} healthy`), resources: b.resources }],
  check: (b, ctx) => b.resources.forEach((n, j) => ctx.ref(ctx.at('resources', j), n, ['postgres', 'blob', 'traffic', 'app'])),
  // Reads change nothing: no undo.
  describe: retryDetail,
  allowedAfterFinalize: true,
});
