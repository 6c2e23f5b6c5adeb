// Plans on the sandbox, as the end-to-end tests and the benchmarks write them: one place that knows how
// a plan names the sandbox's resources, so a change of the plan format touches this file, not every test.
// No vitest import: the benchmarks use it outside the test runner.
import { parsePlan } from '../../plan/load';
import type { ResolvedPlan } from '../../plan/types';

/** The sandbox's resources under the names the shipped plans use, as YAML flow mappings. */
export const SANDBOX_RESOURCES = {
  sourceDb: '{ kind: postgres, provider: local, cluster: source }',
  targetDb: '{ kind: postgres, provider: local, cluster: target }',
  assets: '{ kind: blob, provider: local, account: primary, container: assets }',
  shop: '{ kind: app, provider: local }',
  front: '{ kind: traffic, provider: local, stable: blue, canary: green }',
} as const;

/** Some of the sandbox's resources, in the order given. */
export function sandboxResources(...names: (keyof typeof SANDBOX_RESOURCES)[]): Record<string, string> {
  return Object.fromEntries(names.map((n) => [n, SANDBOX_RESOURCES[n]]));
}

/** A blob container of the sandbox's Azurite (`secondary` stands for the DR region). */
export const container = (account: 'primary' | 'secondary', name: string): string =>
  `{ kind: blob, provider: local, account: ${account}, container: ${name} }`;

/** The whole sandbox: both clusters, the assets container and its DR copy, a backups container, the shop and its front door. */
export function everySandboxResource(containers: { assetsDr: string; backups: string }): Record<string, string> {
  return {
    ...sandboxResources('sourceDb', 'targetDb', 'assets'),
    assetsDr: container('secondary', containers.assetsDr),
    backups: container('primary', containers.backups),
    ...sandboxResources('shop', 'front'),
  };
}

export interface SandboxPlanSpec {
  name: string;
  /** Top-level YAML between `name` and `resources` (defaults, approvers), as written in a plan file. */
  head?: string;
  /** Resource name -> YAML flow mapping (see SANDBOX_RESOURCES, sandboxResources, container). */
  resources: Record<string, string>;
  /** The `phases:` list items, as written in a plan file (each line indented by two). */
  phases: string;
}

export function sandboxPlanYaml({ name, head, resources, phases }: SandboxPlanSpec): string {
  const lines = Object.entries(resources).map(([n, r]) => `  ${n}: ${r}`);
  return `apiVersion: tiershift/v1
identity: unverified
name: ${name}
${head ? `${head.trim()}\n` : ''}resources:
${lines.join('\n')}
phases:
${phases.replace(/^\n+|\s+$/g, '')}
`;
}

/** The plan parsed and resolved as `tiershift start` would; `file` is the name its errors cite. */
export function sandboxPlan(spec: SandboxPlanSpec, file = `${spec.name}.yaml`): ResolvedPlan {
  return parsePlan(sandboxPlanYaml(spec), file);
}

/**
 * Sync, v2 on the target, a cutover gate and a 50/100 canary, then `rest` (the shape of plans/demo.yaml):
 * where the rollback tests of local-migration and local-writes start from. `lastBake`: how long the
 * canary holds at 100%.
 */
export function canaryPlan(name: string, { maxErrorRate, rest, lastBake = '4s' }: { maxErrorRate: number; rest: string; lastBake?: string }): ResolvedPlan {
  return sandboxPlan({
    name,
    resources: sandboxResources('sourceDb', 'targetDb', 'shop', 'front'),
    phases: `
  - data: { from: sourceDb, to: targetDb }
  - app: { resource: shop, version: v2, database: targetDb }
  - gate: { name: cutover }
  - traffic:
      resource: front
      analysis: { maxErrorRate: ${maxErrorRate}, minRequests: 3 }
      steps: [ { weight: 50, bake: 4s }, { weight: 100, bake: ${lastBake} } ]
${rest}`,
  });
}
