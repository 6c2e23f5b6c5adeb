// `infra`: a database brought to the plan's tier and settings (`az postgres flexible-server update` and
// `parameter set`), restarting only for settings that need it.
import { z } from 'zod';
import { phaseKind, resourceName, retryDetail, stepCommon } from './kit';

const body = z.strictObject({
  ...stepCommon,
  resource: resourceName,
  settings: z.record(z.string().regex(/^[a-z_][a-z0-9_.]*$/), z.union([z.string(), z.number(), z.boolean()])).optional(),
  sku: z.string().min(1).optional(),
  tier: z.enum(['Burstable', 'GeneralPurpose', 'MemoryOptimized']).optional(),
  storageGb: z.int().min(32).max(65536).optional(),
  highAvailability: z.boolean().optional(),
  backupRetentionDays: z.int().min(7).max(35).optional(),
});

export const infra = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve(b, ctx) {
    const changes = [
      b.tier,
      b.sku,
      b.storageGb && `${b.storageGb} GB storage`,
      b.highAvailability !== undefined && `HA ${b.highAvailability ? 'on' : 'off'}`,
      ...Object.entries(b.settings ?? {}).map(([k, v]) => `${k}=${v}`),
    ].filter(Boolean);
    const { id: _id, title: _t, retry: _r, timeouts: _to, ...spec } = b;
    return [{ ...ctx.base(), ...spec, kind: 'infra', title: ctx.title(`Prepare ${b.resource}: ${changes.join(', ') || 'verify settings'}`), settings: b.settings ?? {} }];
  },
  check: (b, ctx) => void ctx.ref(ctx.at('resource'), b.resource, ['postgres']),
  undo: (step) => (step.kind === 'infra' ? `Restore the previous settings of ${step.resource}` : undefined),
  describe: retryDetail,
});
