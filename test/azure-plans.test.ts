// The shipped Azure plans: each validates, has a sandbox twin that validates, and names what the Azure
// provider will find (the canary revision is the one the app step creates).
import { readdirSync } from 'node:fs';
import type { AzureResource } from '../activities/azure/provider';
import { describe, expect, it } from 'vitest';
import { revisionSuffix } from '../activities/azure/container-apps';
import { loadPlan, parsePlan } from '../plan/load';

const azurePlans = readdirSync('plans').filter((f) => /^azure-.*\.yaml$/.test(f));

describe('shipped Azure plans', () => {
  it('are there for the seeds: small -> medium, medium -> large, pilot -> production', () => {
    expect(azurePlans.sort()).toEqual(['azure-medium-to-large.yaml', 'azure-pilot-to-production.yaml', 'azure-small-to-medium.yaml']);
  });

  for (const file of azurePlans) {
    it(`${file} validates, uses only Azure resources, and its local twin validates on the sandbox provider`, () => {
      const plan = loadPlan(`plans/${file}`);
      expect(Object.values(plan.resources).every((r) => r.provider === 'azure')).toBe(true);
      const twin = loadPlan(`plans/${file.replace(/^azure-/, 'local-')}`);
      expect(Object.values(twin.resources).every((r) => r.provider === 'local')).toBe(true);
      // The twin rehearses the same kinds of phase, in the same order of first appearance.
      const kinds = (steps: { kind: string }[]) => [...new Set(steps.map((s) => s.kind))].filter((k) => k !== 'data' && k !== 'app' && k !== 'finalize');
      expect(kinds(twin.steps)).toEqual(kinds(plan.steps));

      for (const step of plan.steps) {
        if (step.kind !== 'app') continue;
        const app = plan.resources[step.resource] as AzureResource;
        const revisions = (Object.values(plan.resources) as AzureResource[]).find((r) => r.kind === 'traffic' && r.containerApp);
        if (app.kind === 'app' && revisions?.kind === 'traffic') expect(revisions.canary).toBe(`${app.containerApp}--${revisionSuffix(step.version, app.containerApp)}`);
      }
    });
  }
});

describe("Azure's PostgreSQL rules when a plan loads", () => {
  const plan = (infra: string) => `apiVersion: tiershift/v1
name: rules
identity: unverified
resources:
  db: { kind: postgres, azure: { subscription: 00000000-0000-0000-0000-000000000000, resourceGroup: rg, server: pg-one } }
phases:
  - infra: { resource: db, settings: {}, azure: ${infra} }
`;
  const refusal = (infra: string) => {
    try {
      parsePlan(plan(infra), 'rules.yaml');
    } catch (err) {
      return (err as Error).message;
    }
    return undefined;
  };

  it('accepts a mode, a standby zone with ZoneRedundant, a Premium SSD size and a SKU of its tier', () => {
    expect(refusal('{ tier: GeneralPurpose, sku: Standard_D4ds_v5, storageGb: 512, highAvailability: ZoneRedundant, standbyZone: "2" }')).toBeUndefined();
    expect(refusal('{ tier: MemoryOptimized, sku: Standard_E4ds_v5, storageGb: 32767, highAvailability: SameZone }')).toBeUndefined();
    // true, as plans said before modes, is ZoneRedundant.
    expect(refusal('{ tier: GeneralPurpose, highAvailability: true, standbyZone: "3" }')).toBeUndefined();
  });

  it.each([
    ['a SKU of another tier', '{ tier: GeneralPurpose, sku: Standard_B2s }', /phases\[0\]\.infra\.azure\.sku \(line 7\): expected a GeneralPurpose SKU \(Standard_D…\), not a Burstable one, got "Standard_B2s"\.$/],
    ['a storage size Premium SSD does not offer', '{ storageGb: 300 }', /azure\.storageGb \(line 7\): expected a Premium SSD size in GiB \(32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767\), got 300\.$/],
    ['HA on Burstable', '{ sku: Standard_B2ms, highAvailability: SameZone }', /azure\.highAvailability \(line 7\): expected no high availability on the Burstable tier \(Azure has none there; choose GeneralPurpose or MemoryOptimized\), got "SameZone"\.$/],
    ['a standby zone with SameZone', '{ tier: GeneralPurpose, highAvailability: SameZone, standbyZone: "2" }', /azure\.standbyZone \(line 7\): expected standbyZone only with highAvailability: ZoneRedundant \(a SameZone standby is in the primary's zone; this step has SameZone\), got "2"\.$/],
    ['a mode Azure does not have', '{ tier: GeneralPurpose, highAvailability: CrossRegion }', /azure\.highAvailability/],
  ])('refuses %s in one sentence', (_what, infra, problem) => {
    expect(refusal(infra)).toMatch(problem);
  });
});
