// The local provider as a plan sees it: the sandbox's components by role (`local: { cluster: source }`),
// not by address, since the sandbox's state file knows every endpoint. Registered by one line in
// activities/registry.ts; its operations are loaded only by a worker.
import { z } from 'zod';
import type { AppResource, BlobResource, PostgresResource, TrafficResource } from '../../plan/types';
import type { ProviderDefinition } from '../types';

const fields = {
  postgres: z.strictObject({
    /** The sandbox cluster; a resource with a `connection` reaches any PostgreSQL instead. */
    cluster: z.enum(['source', 'target']).optional(),
  }),
  blob: z.strictObject({ account: z.enum(['primary', 'secondary'], { error: 'expected the sandbox account primary or secondary' }) }),
  traffic: z.strictObject({ backend: z.string().min(1).default('app') }),
  app: z.strictObject({
    /** Which of the sandbox app's two instances the app step starts. */
    color: z.enum(['blue', 'green']).default('green'),
  }),
};

export type LocalPostgres = PostgresResource & z.infer<typeof fields.postgres>;
export type LocalBlob = BlobResource & z.infer<typeof fields.blob>;
export type LocalTraffic = TrafficResource & z.infer<typeof fields.traffic>;
export type LocalApp = AppResource & z.infer<typeof fields.app>;

/** The resource a local operation receives, by kind: the plan loader checked these fields. */
export interface LocalResources {
  postgres: LocalPostgres;
  blob: LocalBlob;
  traffic: LocalTraffic;
  app: LocalApp;
}

export type LocalResource = LocalResources[keyof LocalResources];

export const local: ProviderDefinition = {
  name: 'local',
  title: 'the sandbox on this machine (`tiershift sandbox up`)',
  resources: fields,
  check(resource) {
    const r = resource as LocalPostgres;
    if (r.kind === 'postgres' && !r.connection && !r.cluster) return [[['cluster'], 'expected cluster (the sandbox cluster: source or target), got nothing']];
    return [];
  },
  recovery: ['reverse-sync'],
  renamed: { app: { containerApp: 'color' } },
  operations: async () => (await import('./index')).localProvider,
};
