// A test-only provider, written as a provider is meant to be: this folder plus one registry line (the
// tests list it beside PROVIDERS). Its "cloud" is an in-memory world, so a migration through it runs on
// the time-skipping server with no sandbox, and its state after a run or a rollback can be compared.
import { z } from 'zod';
import type { ProviderDefinition } from '../../../../activities/types';
import type { ResourcesOf } from '../../../../plan/provider';

const fields = {
  postgres: z.strictObject({ server: z.string().regex(/^[a-z][a-z0-9-]{2,30}$/, { error: 'expected a memory server name' }) }),
  blob: z.strictObject({ bucket: z.string().min(3) }),
  traffic: z.strictObject({ router: z.string().min(1) }),
  app: z.strictObject({ service: z.string().min(1) }),
};

type MemoryResources = ResourcesOf<typeof fields>;
export type MemoryPostgres = MemoryResources['postgres'];
export type MemoryBlob = MemoryResources['blob'];
export type MemoryTraffic = MemoryResources['traffic'];
export type MemoryApp = MemoryResources['app'];

export const memory: ProviderDefinition = {
  name: 'memory',
  title: 'an in-memory cloud for tests',
  resources: fields,
  secrets: { memoryVault: z.strictObject({ key: z.string().min(1) }) },
  recovery: ['reverse-sync'],
  operations: async () => (await import('./index')).memoryOperations,
};
