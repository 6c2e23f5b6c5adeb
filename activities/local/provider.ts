// The local provider as a plan sees it: the sandbox's components by role (`local: { cluster: source }`),
// not by address, since the sandbox's state file knows every endpoint. Registered by one line in
// activities/registry.ts; its operations are loaded only by a worker.
import { z } from 'zod';
import type { ResourcesOf } from '../../plan/provider';
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

/** The resource a local operation receives, by kind: the plan loader checked these fields. */
export type LocalResources = ResourcesOf<typeof fields>;
export type LocalPostgres = LocalResources['postgres'];
export type LocalBlob = LocalResources['blob'];
export type LocalTraffic = LocalResources['traffic'];
export type LocalApp = LocalResources['app'];

export const local: ProviderDefinition = {
  name: 'local',
  title: 'the sandbox on this machine (`tiershift sandbox up`)',
  resources: fields,
  check(resource) {
    const r = resource as LocalPostgres;
    if (r.kind === 'postgres' && !r.connection && !r.cluster) return [[['cluster'], 'expected cluster (the sandbox cluster: source or target), got nothing']];
    return [];
  },
  runs: ['sql', 'verify'],
  recovery: ['reverse-sync'],
  // A backup restores its dump into a scratch database and compares it with the source (backup.ts).
  provesRestore: true,
  renamed: { app: { containerApp: 'color' } },
  operations: async () => (await import('./index')).localProvider,
};
