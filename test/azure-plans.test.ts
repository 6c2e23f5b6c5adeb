// The shipped Azure plans: each validates, has a sandbox twin that validates, and names what the Azure
// provider will find (the canary revision is the one the app step creates).
import { readdirSync } from 'node:fs';
import type { AzureResource } from '../activities/azure/provider';
import { describe, expect, it } from 'vitest';
import { revisionSuffix } from '../activities/azure/container-apps';
import { describePlan } from '../plan/describe';
import { loadPlan, parsePlan } from '../plan/load';

const azurePlans = readdirSync('plans').filter((f) => /^azure-.*\.yaml$/.test(f));

describe('shipped Azure plans', () => {
  it('are there for the seeds: small -> medium, medium -> large, pilot -> production, the scaling runbook', () => {
    expect(azurePlans.sort()).toEqual(['azure-medium-to-large.yaml', 'azure-pilot-to-production.yaml', 'azure-scaling-runbook.yaml', 'azure-small-to-medium.yaml']);
  });

  for (const file of azurePlans) {
    it(`${file} validates, uses only Azure resources, and its local twin validates on the sandbox provider`, () => {
      const plan = loadPlan(`plans/${file}`);
      expect(Object.values(plan.resources).every((r) => r.provider === 'azure')).toBe(true);
      const twin = loadPlan(`plans/${file.replace(/^azure-/, 'local-')}`);
      expect(Object.values(twin.resources).every((r) => r.provider === 'local')).toBe(true);
      // The twin rehearses the same kinds of phase, in the same order of first appearance.
      // Resource steps change Azure resources the sandbox does not have.
      const kinds = (steps: { kind: string }[]) => [...new Set(steps.map((s) => s.kind))].filter((k) => !['data', 'app', 'finalize', 'resource'].includes(k));
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

describe('the seed steps that are resource steps', () => {
  /** Step title -> its rollback action, as `tiershift plan` prints them. */
  const resourceSteps = (file: string) => {
    const plan = loadPlan(`plans/${file}`);
    const text = describePlan(plan);
    const order = text.slice(text.indexOf('Rollback order'));
    return plan.steps.flatMap((s) => {
      if (s.kind !== 'resource') return [];
      const undo = new RegExp(`\\n  \\d+\\. ${s.id}: (.*)\\n`).exec(order)?.[1];
      return [[s.title.split(':')[0], s.create ? 'create' : `${s.method} ${Object.keys(s.set!).join(' ')}`, undo]];
    });
  };

  it('seed 000: tags, the App Service plan, autoscale, OpenAI capacity and Log Analytics retention, each with its rollback', () => {
    expect(resourceSteps('azure-pilot-to-production.yaml')).toEqual([
      ['Step 1', 'PATCH tags.Environment tags.Phase', 'Put tags.Environment, tags.Phase of resource group rg-gov-pilot back to the values read before the step'],
      ['Step 2', 'PUT sku.name sku.tier sku.capacity', 'Put sku.name, sku.tier, sku.capacity of Microsoft.Web/serverfarms plan-teams-pilot back to the values read before the step'],
      ['Step 3', 'create', 'Delete Microsoft.Insights/autoscalesettings autoscale-teams-prod, which the step created'],
      ['Step 5', 'PUT sku.capacity', 'Put sku.capacity of Microsoft.CognitiveServices/accounts/deployments openai-teams-pilot/gpt-4 back to the values read before the step'],
      ['Step 7', 'PATCH properties.retentionInDays', 'Put properties.retentionInDays of Microsoft.OperationalInsights/workspaces law-teams-minutes back to the values read before the step'],
    ]);
  });

  it('seed 002: the Redis caches and API Management; seed 003: the scale ranges and Redis', () => {
    expect(resourceSteps('azure-small-to-medium.yaml').map((s) => s.slice(0, 2))).toEqual([
      ['Step 1.1', 'create'],
      ['Step 1.3', 'PATCH sku.name sku.capacity'],
    ]);
    expect(resourceSteps('azure-medium-to-large.yaml').map((s) => s.slice(0, 2))).toEqual([['Step 1.3', 'create']]);
    expect(resourceSteps('azure-scaling-runbook.yaml').map((s) => s.slice(0, 2))).toEqual([
      ['Section 2', 'PATCH properties.template.scale.minReplicas properties.template.scale.maxReplicas'],
      ['Section 2', 'PATCH properties.template.scale.minReplicas properties.template.scale.maxReplicas'],
      ['Section 4', 'PATCH properties.sku.name properties.sku.family properties.sku.capacity'],
    ]);
    // Every resource step of every seed plan has its rollback action.
    for (const file of azurePlans) for (const [, , undo] of resourceSteps(file)) expect(undo).toMatch(/^(Put .* back to the values read before the step|Delete .*, which the step created)$/);
  });
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
