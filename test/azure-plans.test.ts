// The shipped Azure plans: each validates, has a sandbox twin that validates, and names what the Azure
// provider will find (the canary revision is the one the app step creates).
import { readdirSync } from 'node:fs';
import type { AzureResource } from '../activities/azure/provider';
import { describe, expect, it } from 'vitest';
import { revisionSuffix } from '../activities/azure/container-apps';
import { loadPlan } from '../plan/load';

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
