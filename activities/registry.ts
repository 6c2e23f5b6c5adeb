// Every provider tiershift has, one line each. The plan schema and loader compose what these declare, and a
// worker runs their operations; nothing else outside a provider's folder names a provider.
import { azure } from './azure/provider';
import { local } from './local/provider';
import type { ProviderDefinition, ProviderOperations } from './types';

export const PROVIDERS: readonly ProviderDefinition[] = [local, azure];

/** The operations of each provider, by name: what a worker's activities dispatch to. */
export async function loadProviders(definitions: readonly ProviderDefinition[] = PROVIDERS): Promise<Record<string, ProviderOperations>> {
  return Object.fromEntries(await Promise.all(definitions.map(async (p) => [p.name, await p.operations()] as const)));
}
