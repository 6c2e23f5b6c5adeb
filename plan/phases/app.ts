// `app`: the new version deployed beside the old one (a Container App revision, the sandbox's green app)
// and waited on until healthy.
import { z } from 'zod';
import { phaseKind, resourceName, retryDetail, stepCommon } from './kit';

const body = z.strictObject({
  ...stepCommon,
  resource: resourceName,
  version: z.string().min(1).max(100),
  /** The database resource the new version uses. */
  database: resourceName.optional(),
  image: z.string().min(1).optional(),
  cpu: z.number().positive().max(16).optional(),
  memory: z.string().regex(/^\d+(\.\d+)?Gi$/, { error: 'expected a memory size such as 2Gi' }).optional(),
  minReplicas: z.int().min(0).max(1000).optional(),
  maxReplicas: z.int().min(1).max(1000).optional(),
});

export const app = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve(b, ctx) {
    const { id: _id, title: _t, retry: _r, timeouts: _to, ...spec } = b;
    return [{ ...ctx.base(), ...spec, kind: 'app', title: ctx.title(`Deploy ${b.resource} ${b.version}${b.database ? ` on ${b.database}` : ''} and wait until healthy`) }];
  },
  check(b, ctx) {
    ctx.ref(ctx.at('resource'), b.resource, ['app']);
    if (b.database) ctx.ref(ctx.at('database'), b.database, ['postgres']);
    if (b.minReplicas !== undefined && b.maxReplicas !== undefined && b.minReplicas > b.maxReplicas) {
      ctx.problem(ctx.at('maxReplicas'), `expected at least minReplicas (${b.minReplicas}), got ${b.maxReplicas}`);
    }
  },
  undo: (step) => (step.kind === 'app' ? `Stop ${step.resource} ${step.version} and keep the previous version serving` : undefined),
  describe: retryDetail,
});
