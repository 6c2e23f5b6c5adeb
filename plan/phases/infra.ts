// `infra`: a database brought to the plan's tier and settings (`az postgres flexible-server update` and
// `parameter set`), restarting only for settings that need it.
import { z } from 'zod';
import { phaseKind, resourceName, retryDetail, stepCommon } from './kit';

const body = z.strictObject({
  ...stepCommon,
  resource: resourceName,
  /** Server parameters, e.g. max_connections, shared_buffers. A provider nests its own (a tier, a SKU) under its name. */
  settings: z.record(z.string().regex(/^[a-z_][a-z0-9_.]*$/), z.union([z.string(), z.number(), z.boolean()])).optional(),
});

export const infra = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve(b, ctx) {
    const changes = [...ctx.providerWords, ...Object.entries(b.settings ?? {}).map(([k, v]) => `${k}=${v}`)];
    return [{ ...ctx.base(), kind: 'infra', resource: b.resource, title: ctx.title(`Prepare ${b.resource}: ${changes.join(', ') || 'verify settings'}`), settings: b.settings ?? {} }];
  },
  check: (b, ctx) => void ctx.ref(ctx.at('resource'), b.resource, ['postgres']),
  undo: (step) => (step.kind === 'infra' ? `Restore the previous settings of ${step.resource}${step.undoCaveat ? ` (${step.undoCaveat})` : ''}` : undefined),
  describe: retryDetail,
});
