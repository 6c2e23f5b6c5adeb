// The memory provider's operations: each checks the world's state, then acts, and records what undo needs,
// like a real provider.
import type { ProviderOperations, StepOutcome } from '../../../../activities/types';
import type { MemoryApp, MemoryBlob, MemoryPostgres, MemoryTraffic } from './provider';

interface Server {
  settings: Record<string, string>;
  rows: number;
  replicaOf?: string;
  writable: boolean;
}

/** The whole in-memory cloud; tests seed it and read it back. */
export const world = {
  servers: new Map<string, Server>(),
  buckets: new Map<string, Set<string>>(),
  /** Router -> percent on the canary. */
  routers: new Map<string, number>(),
  /** Service -> the version the app step started. */
  services: new Map<string, string>(),
  backups: new Set<string>(),
  vault: new Map<string, string>(),
};

const server = (r: MemoryPostgres): Server => {
  const s = world.servers.get(r.server);
  if (!s) throw new Error(`memory server ${r.server} does not exist`);
  return s;
};
const done = (summary: string, undo?: StepOutcome['undo']): StepOutcome => ({ summary, figures: {}, ...(undo !== undefined ? { undo } : {}) });

export const memoryOperations: ProviderOperations = {
  secrets: {
    memoryVault: async (ref) => {
      const value = world.vault.get((ref as { key: string }).key);
      if (!value) throw new Error('no such memory secret');
      return value;
    },
  },
  postgres: {
    check: async (r: MemoryPostgres) => done(`${r.name}: ${server(r).rows} rows`),
    backup: async (input, r: MemoryPostgres) => {
      const key = `${input.migrationId}/${input.step.id}/${r.name}`;
      world.backups.add(key);
      return done(`backed up ${r.name}`, { kept: [key] });
    },
    observePrepare: async ({ step, resources }) => ({ settings: { ...server(resources[step.resource] as MemoryPostgres).settings } }),
    prepare: async ({ step, resources }) => {
      const s = server(resources[step.resource] as MemoryPostgres);
      const previous = Object.fromEntries(Object.keys(step.settings).map((k) => [k, s.settings[k] ?? 'default']));
      Object.assign(s.settings, Object.fromEntries(Object.entries(step.settings).map(([k, v]) => [k, String(v)])));
      return done(`settings applied`, { previous });
    },
    undoPrepare: async ({ step, resources, undo }) => {
      if (step.kind !== 'infra') throw new Error('not an infra step');
      const s = server(resources[step.resource] as MemoryPostgres);
      Object.assign(s.settings, (undo as { previous: Record<string, string> }).previous);
      return done('settings restored');
    },
    settingsDrift: async (r: MemoryPostgres, expected) =>
      Object.entries(expected)
        .filter(([k, v]) => server(r).settings[k] !== String(v))
        .map(([k, v]) => `${r.name}: ${k} expected ${v}, found ${server(r).settings[k]}`),
    observeSync: async ({ step, resources }) => ({ replicaOf: server(resources[step.to] as MemoryPostgres).replicaOf ?? null }),
    sync: async ({ step, resources }) => {
      const from = server(resources[step.from] as MemoryPostgres);
      const to = server(resources[step.to] as MemoryPostgres);
      to.replicaOf = (resources[step.from] as MemoryPostgres).server;
      to.rows = from.rows;
      return done(`replicating ${from.rows} rows`, { replicating: true });
    },
    undoSync: async ({ step, resources }) => {
      if (step.kind !== 'data') throw new Error('not a data step');
      delete server(resources[step.to] as MemoryPostgres).replicaOf;
      return done('replication removed');
    },
    cutover: async (_input, from: MemoryPostgres, to: MemoryPostgres) => {
      delete server(to).replicaOf;
      server(from).writable = false;
      return done(`${to.name} took over`);
    },
    reverseSync: {
      start: async (_input, from: MemoryPostgres, to: MemoryPostgres) => done(`syncing ${to.name} back to ${from.name}`),
      finish: async (_input, from: MemoryPostgres, to: MemoryPostgres) => {
        server(from).rows = server(to).rows;
        server(from).writable = true;
        return done(`${from.name} has every row again`);
      },
    },
  },
  blob: {
    check: async (r: MemoryBlob) => done(`${r.name}: ${world.buckets.get(r.bucket)?.size ?? 0} objects`),
    backup: async (_input, r: MemoryBlob) => done(`copied ${r.name}`, { kept: [r.bucket] }),
    observeSync: async ({ step, resources }) => ({ objects: [...(world.buckets.get((resources[step.to] as MemoryBlob).bucket) ?? [])] }),
    sync: async ({ step, resources }) => {
      const from = world.buckets.get((resources[step.from] as MemoryBlob).bucket) ?? new Set<string>();
      const to = world.buckets.get((resources[step.to] as MemoryBlob).bucket)!;
      const created = [...from].filter((k) => !to.has(k));
      created.forEach((k) => to.add(k));
      return done(`copied ${created.length}`, { created });
    },
    undoSync: async ({ step, resources, undo }) => {
      if (step.kind !== 'data') throw new Error('not a data step');
      const to = world.buckets.get((resources[step.to] as MemoryBlob).bucket)!;
      for (const k of (undo as { created: string[] }).created) to.delete(k);
      return done('created objects deleted');
    },
  },
  traffic: {
    check: async (r: MemoryTraffic) => done(`${r.name}: ${world.routers.get(r.router) ?? 0}% on ${r.canary}`),
    observe: async ({ step, resources }) => ({ percent: world.routers.get((resources[step.resource] as MemoryTraffic).router) ?? 0 }),
    shift: async ({ step, resources }) => {
      const r = resources[step.resource] as MemoryTraffic;
      world.routers.set(r.router, step.weight);
      return { ...done(`${step.weight}% on ${r.canary}`), baseline: {} };
    },
    analyse: async () => ({ ...done('canary healthy'), pass: true }),
    undo: async ({ step, resources }) => {
      if (step.kind !== 'traffic') throw new Error('not a traffic step');
      world.routers.set((resources[step.resource] as MemoryTraffic).router, 0);
      return done('all traffic on stable');
    },
    drift: async (r: MemoryTraffic, percent) => ((world.routers.get(r.router) ?? 0) === percent ? undefined : `${r.name}: expected ${percent}%`),
  },
  app: {
    check: async (r: MemoryApp) => done(`${r.name} runs ${world.services.get(r.service) ?? 'v1'}`),
    observe: async ({ step, resources }) => ({ version: world.services.get((resources[step.resource] as MemoryApp).service) ?? null }),
    update: async ({ step, resources }) => {
      world.services.set((resources[step.resource] as MemoryApp).service, step.version);
      return done(`${step.version} started`);
    },
    undo: async ({ step, resources }) => {
      if (step.kind !== 'app') throw new Error('not an app step');
      world.services.delete((resources[step.resource] as MemoryApp).service);
      return done('new version stopped');
    },
  },
};
