// The Azure cloud a worker talks to. Public Azure, Azure US Government and Azure China differ in every
// host name tiershift builds (ARM, Entra ID, Key Vault, Storage, Azure Monitor metrics), so none of
// them is written anywhere else: each comes from the cloud the worker is configured for, by
// TIERSHIFT_AZURE_CLOUD (the names `az cloud list` uses) or the provider's `cloud` option.
import { ApplicationFailure } from '@temporalio/activity';

export interface AzureCloud {
  /** As `az cloud list` names it. */
  name: 'AzureCloud' | 'AzureUSGovernment' | 'AzureChinaCloud';
  /** Azure Resource Manager. */
  resourceManager: string;
  /** Entra ID, where the credential gets its tokens. */
  authorityHost: string;
  /** A vault named v is https://v.<keyVaultSuffix>. */
  keyVaultSuffix: string;
  /** An account named a serves blobs at https://a.blob.<storageSuffix>. */
  storageSuffix: string;
  /** Azure Monitor's regional metrics endpoint is https://<region>.<metricsSuffix>. */
  metricsSuffix: string;
  /** The token audience of the metrics data plane. */
  metricsAudience: string;
}

// From the Azure documentation of each cloud's endpoints (`az cloud show -n <name>`, and the Azure
// Monitor metrics data plane's regional endpoints).
export const CLOUDS: Record<AzureCloud['name'], AzureCloud> = {
  AzureCloud: {
    name: 'AzureCloud',
    resourceManager: 'https://management.azure.com',
    authorityHost: 'https://login.microsoftonline.com',
    keyVaultSuffix: 'vault.azure.net',
    storageSuffix: 'core.windows.net',
    metricsSuffix: 'metrics.monitor.azure.com',
    metricsAudience: 'https://metrics.monitor.azure.com',
  },
  AzureUSGovernment: {
    name: 'AzureUSGovernment',
    resourceManager: 'https://management.usgovcloudapi.net',
    authorityHost: 'https://login.microsoftonline.us',
    keyVaultSuffix: 'vault.usgovcloudapi.net',
    storageSuffix: 'core.usgovcloudapi.net',
    metricsSuffix: 'metrics.monitor.azure.us',
    metricsAudience: 'https://metrics.monitor.azure.us',
  },
  AzureChinaCloud: {
    name: 'AzureChinaCloud',
    resourceManager: 'https://management.chinacloudapi.cn',
    authorityHost: 'https://login.chinacloudapi.cn',
    keyVaultSuffix: 'vault.azure.cn',
    storageSuffix: 'core.chinacloudapi.cn',
    metricsSuffix: 'metrics.monitor.azure.cn',
    metricsAudience: 'https://metrics.monitor.azure.cn',
  },
};

/** The cloud by name; unset is public Azure. A name the worker cannot know stops it with the list of valid ones. */
export function cloudNamed(name: string | undefined): AzureCloud {
  if (name === undefined || name === '') return CLOUDS.AzureCloud;
  const found = Object.values(CLOUDS).find((c) => c.name.toLowerCase() === name.trim().toLowerCase());
  if (!found) {
    throw ApplicationFailure.nonRetryable(`TIERSHIFT_AZURE_CLOUD is "${name}", which is not an Azure cloud; set it to one of ${Object.keys(CLOUDS).join(', ')} and restart the worker`, 'NonRetryable');
  }
  return found;
}

/** The region as Azure Monitor's endpoint names it: "West Europe" and "westeurope" are the same; Front Door's is "global". */
export const metricsRegion = (location: string | undefined) => (location ?? 'global').toLowerCase().replace(/\s+/g, '');
