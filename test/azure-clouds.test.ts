// The cloud the worker is configured for decides every host the Azure provider talks to: Resource
// Manager, Key Vault, Storage and Azure Monitor, for public Azure, US Government and China. Seen at the
// SDKs' own transport (the fake ARM records each request's host).
import { afterEach, describe, expect, it } from 'vitest';
import type { AzureResource } from '../activities/azure/provider';
import { createAzureProvider } from '../activities/azure';
import { CLOUDS, cloudNamed } from '../activities/azure/cloud';
import type { CheckStep, TrafficStep } from '../plan/types';
import { FakeArm, fakeCredential, seedFrontDoor } from './support/fake-arm';
import { attempt, azureActivities, input, scope, step } from './support/fake-arm-env';
import { FakeFrontDoorEdges, setOriginGroup } from './support/fake-arm-frontdoor';
import { FakeMonitor } from './support/fake-arm-monitor';
import { FakeStorage } from './support/fake-arm-storage';

/** Records the host of every request that reaches the fake. */
function hostsOf(arm: FakeArm): string[] {
  const hosts: string[] = [];
  arm.extensions.unshift({
    forward: (request) => {
      hosts.push(new URL(request.url).hostname);
      return undefined;
    },
  });
  return hosts;
}

const front: AzureResource = { name: 'front', kind: 'traffic', profile: 'afd', originGroup: 'api-origins', stable: 'blue-origin', canary: 'green-origin', ...scope };
const blob: AzureResource = { name: 'files', kind: 'blob', account: 'tsgovfiles', container: 'files', ...scope };

const expected = {
  AzureCloud: { arm: 'management.azure.com', vault: 'kv-app.vault.azure.net', blob: 'tsgovfiles.blob.core.windows.net', metrics: 'global.metrics.monitor.azure.com' },
  AzureUSGovernment: { arm: 'management.usgovcloudapi.net', vault: 'kv-app.vault.usgovcloudapi.net', blob: 'tsgovfiles.blob.core.usgovcloudapi.net', metrics: 'global.metrics.monitor.azure.us' },
  AzureChinaCloud: { arm: 'management.chinacloudapi.cn', vault: 'kv-app.vault.azure.cn', blob: 'tsgovfiles.blob.core.chinacloudapi.cn', metrics: 'global.metrics.monitor.azure.cn' },
} as const;

afterEach(() => {
  delete process.env.TIERSHIFT_AZURE_CLOUD;
});

describe('Azure clouds from the worker configuration', () => {
  for (const cloud of Object.keys(expected) as (keyof typeof expected)[]) {
    it(`${cloud}: Resource Manager, Key Vault, Storage and Azure Monitor hosts`, async () => {
      // The worker's configuration: TIERSHIFT_AZURE_CLOUD, as a deployment sets it.
      process.env.TIERSHIFT_AZURE_CLOUD = cloud;
      const arm = new FakeArm();
      const hosts = hostsOf(arm);
      new FakeMonitor(arm);
      new FakeFrontDoorEdges(arm);
      const storage = new FakeStorage(arm);
      seedFrontDoor(arm, 'afd', 'api-origins', { 'blue-origin': { weight: 1000, enabled: true }, 'green-origin': { weight: 1, enabled: false } });
      setOriginGroup(arm, 'afd', 'api-origins');
      const activities = azureActivities(arm);

      const check = await attempt(activities.checkHealth, input(step<CheckStep>({ id: 'check', kind: 'check', resources: ['front'] }), { front }));
      expect(check.error).toBeUndefined();
      expect(new Set(hosts)).toEqual(new Set([expected[cloud].arm]));

      const t = step<TrafficStep>({ id: 't1', kind: 'traffic', resource: 'front', weight: 1, bake: '1s', analysis: { maxErrorRate: 0.01, minRequests: 0 } });
      await attempt(activities.analyseTraffic, { ...(input(t, { front }) as object), baseline: { at: new Date(Date.now() - 60_000).toISOString() } } as never);
      expect(hosts).toContain(expected[cloud].metrics);

      arm.vaultSecrets.set('kv-app/db-password', 'not-logged');
      const provider = createAzureProvider({ credential: fakeCredential, httpClient: arm, retryOptions: { maxRetries: 0 } });
      expect(await provider.secrets!.keyVault!({ vault: 'kv-app', secret: 'db-password' }, 'the test')).toBe('not-logged');
      expect(hosts).toContain(expected[cloud].vault);

      // Storage with the worker's identity: the account's host in this cloud (the fake refuses it, having no such account).
      const reach = await attempt(activities.checkHealth, input(step<CheckStep>({ id: 'c2', kind: 'check', resources: ['files'] }), { files: blob }));
      expect(reach.error).toBeDefined();
      expect(storage.otherHosts).toContain(expected[cloud].blob);
      // Nothing of another cloud.
      const others = Object.entries(expected).filter(([name]) => name !== cloud).flatMap(([, h]) => Object.values(h));
      expect(hosts.filter((h) => others.includes(h as never))).toEqual([]);
      expect(arm.specViolations).toEqual([]);
    });
  }

  it('refuses a cloud it does not know with the names it does', () => {
    expect(cloudNamed(undefined)).toBe(CLOUDS.AzureCloud);
    expect(cloudNamed('azureusgovernment').authorityHost).toBe('https://login.microsoftonline.us');
    expect(() => cloudNamed('AzureGermanCloud')).toThrow(
      'TIERSHIFT_AZURE_CLOUD is "AzureGermanCloud", which is not an Azure cloud; set it to one of AzureCloud, AzureUSGovernment, AzureChinaCloud and restart the worker',
    );
  });
});
