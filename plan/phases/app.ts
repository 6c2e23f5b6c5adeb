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
  // A provider nests how it runs the version (an image, CPU, replicas) under its name.
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
  },
  undo: (step) => (step.kind === 'app' ? `Stop ${step.resource} ${step.version} and keep the previous version serving` : undefined),
  describe: retryDetail,
});
