// Generic resources in the fake ARM, for the resource step (@azure/arm-resources' `*ById` operations): the
// resource types the seed runbooks change, each at the one api-version the plans name, served by id with
// GET, PATCH (merge), PUT (create or replace) and DELETE as ARM does: a change is a long-running operation
// (202 + Azure-AsyncOperation; a resource group's tags answer at once), and each type enforces Azure's own
// rules where a plan could break them (a Redis cache never moves to a lower tier, Key Vault's soft-delete
// retention is fixed at creation and purge protection cannot be turned off, one autoscale setting per
// target, a Cognitive Services deployment takes no PATCH). FakeArm calls `serveGeneric` for every request.
import type { PipelineResponse } from '@azure/core-rest-pipeline';
import type { FakeArm } from './fake-arm';

type Json = Record<string, any>;
type Reply = (status: number, json?: unknown, headers?: Record<string, string>) => PipelineResponse;
type Fail = (status: number, code: string, message: string) => PipelineResponse;

interface GenericType {
  apiVersion: string;
  /** No PATCH: only PUT of the whole resource (a Cognitive Services deployment at this api-version). */
  putOnly?: boolean;
  /** Created by a PUT of a resource that does not exist (otherwise the fake has only seeded ones). */
  creatable?: boolean;
  /** A synchronous change (200 with the resource), as a resource group's update is. */
  sync?: boolean;
  /** Azure's rules for going from `current` (undefined on a create) to `next`; the refusal as [code, message]. */
  rules?: (next: Json, current: Json | undefined, arm: FakeArm) => [string, string] | undefined;
}

const APP_SERVICE_SKUS: Record<string, string> = { B1: 'Basic', B2: 'Basic', B3: 'Basic', S1: 'Standard', S2: 'Standard', S3: 'Standard', P1V3: 'PremiumV3', P2V3: 'PremiumV3', P3V3: 'PremiumV3' };
const REDIS_FAMILY: Record<string, string> = { Basic: 'C', Standard: 'C', Premium: 'P' };
const REDIS_RANK: Record<string, number> = { Basic: 0, Standard: 1, Premium: 2 };
const APIM_MAX_UNITS: Record<string, number> = { Developer: 1, Basic: 2, Standard: 4, Premium: 12 };

/** The resource types served, by lowercased type (`namespace/type[/child]`); the key of a resource group is microsoft.resources/resourcegroups. */
export const GENERIC_TYPES: Record<string, GenericType> = {
  'microsoft.web/serverfarms': {
    apiVersion: '2024-04-01',
    rules(next) {
      const name = String(next.sku?.name ?? '').toUpperCase();
      if (!APP_SERVICE_SKUS[name]) return ['InvalidSku', `The pricing tier '${next.sku?.name}' is not allowed in this resource group.`];
      const workers = next.sku?.capacity ?? 1;
      const max = name.startsWith('B') ? 3 : name.startsWith('S') ? 10 : 30;
      if (workers < 1 || workers > max) return ['InvalidWorkerCount', `The number of workers ${workers} is outside 1..${max} for pricing tier ${next.sku.name}.`];
      next.sku.tier = APP_SERVICE_SKUS[name];
      return undefined;
    },
  },
  'microsoft.cache/redis': {
    apiVersion: '2024-11-01',
    creatable: true,
    rules(next, current) {
      if (!current && !next.location) return ['LocationRequired', 'The location property is required for this definition.'];
      const sku = next.properties?.sku ?? {};
      if (REDIS_FAMILY[sku.name] !== sku.family) return ['InvalidSkuFamily', `The ${sku.name} tier uses family ${REDIS_FAMILY[sku.name] ?? '?'}, not ${sku.family}.`];
      const was = current?.properties?.sku;
      if (was && REDIS_RANK[sku.name]! < REDIS_RANK[was.name]!) return ['CannotScaleDown', `A cache cannot be scaled from the ${was.name} tier to the lower ${sku.name} tier.`];
      if (was && was.capacity > 0 && sku.capacity === 0) return ['CannotScaleDown', 'A cache cannot be scaled down to the C0 size.'];
      return undefined;
    },
  },
  'microsoft.insights/autoscalesettings': {
    apiVersion: '2022-10-01',
    creatable: true,
    rules(next, current, arm) {
      const p = next.properties ?? {};
      if (!next.location) return ['LocationRequired', 'The location property is required for this definition.'];
      if (!Array.isArray(p.profiles) || p.profiles.length < 1 || p.profiles.length > 20) return ['InvalidRequestContent', 'An autoscale setting has 1 to 20 profiles.'];
      for (const profile of p.profiles) {
        const { minimum, maximum, default: count } = profile.capacity ?? {};
        if (!(Number(minimum) <= Number(count) && Number(count) <= Number(maximum))) return ['InvalidCapacity', `The capacity of profile '${profile.name}' must satisfy minimum <= default <= maximum.`];
      }
      const target = String(p.targetResourceUri ?? '').toLowerCase();
      if (!target || !arm.get(target)) return ['TargetResourceNotFound', `The target resource '${p.targetResourceUri}' was not found.`];
      const other = [...arm.resources.values()].find((r) => /\/autoscalesettings\//i.test(r.id) && r.id.toLowerCase() !== next.id.toLowerCase() && String(r.properties?.targetResourceUri).toLowerCase() === target);
      if (other && !current) return ['Conflict', `The target resource already has the autoscale setting '${other.name}'; a resource has at most one.`];
      return undefined;
    },
  },
  'microsoft.keyvault/vaults': {
    apiVersion: '2023-07-01',
    rules(next, current) {
      const p = next.properties ?? {};
      if (current && p.softDeleteRetentionInDays !== current.properties?.softDeleteRetentionInDays) return ['BadRequest', 'The soft-delete retention period of a vault is set when it is created and cannot be changed.'];
      if (current?.properties?.enablePurgeProtection === true && p.enablePurgeProtection !== true) return ['BadRequest', 'Purge protection cannot be disabled once it is enabled.'];
      return undefined;
    },
  },
  'microsoft.operationalinsights/workspaces': {
    apiVersion: '2023-09-01',
    rules(next) {
      const days = next.properties?.retentionInDays;
      if (days !== undefined && (days < 30 || days > 730)) return ['InvalidParameter', `Retention ${days} days is outside 30..730 for this pricing tier.`];
      return undefined;
    },
  },
  'microsoft.resources/resourcegroups': { apiVersion: '2024-03-01', sync: true },
  'microsoft.cognitiveservices/accounts/deployments': {
    apiVersion: '2024-10-01',
    putOnly: true,
    rules(next) {
      const capacity = next.sku?.capacity;
      if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1000) return ['InvalidCapacity', `The capacity ${capacity} (thousands of tokens per minute) is outside the quota 1..1000.`];
      return undefined;
    },
  },
  'microsoft.apimanagement/service': {
    apiVersion: '2024-05-01',
    rules(next) {
      const { name, capacity } = next.sku ?? {};
      if (!APIM_MAX_UNITS[name]) return ['InvalidSku', `'${name}' is not an API Management tier.`];
      if (capacity < 1 || capacity > APIM_MAX_UNITS[name]!) return ['InvalidCapacity', `The ${name} tier takes 1 to ${APIM_MAX_UNITS[name]} units, not ${capacity}.`];
      return undefined;
    },
  },
};

/** `microsoft.web/serverfarms` for a serverfarm's id, `microsoft.resources/resourcegroups` for a group's. */
export function typeOf(id: string): string | undefined {
  if (/^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+$/i.test(id)) return 'microsoft.resources/resourcegroups';
  const m = /\/providers\/([^/]+)\/(.+)$/i.exec(id);
  if (!m) return undefined;
  const parts = m[2]!.split('/');
  if (parts.length % 2) return undefined;
  return [m[1]!, ...parts.filter((_, i) => i % 2 === 0)].join('/').toLowerCase();
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
/** JSON merge patch (RFC 7386), as ARM applies a PATCH: null removes. */
function mergePatch(target: Json, patch: Json): Json {
  const out: Json = { ...target };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = isObject(v) && isObject(out[k]) ? mergePatch(out[k], v) : v;
  }
  return out;
}

/** The fake's answer to a request for a generic type, or undefined when the path is not one (FakeArm serves it). */
export function serveGeneric(arm: FakeArm, method: string, path: string, apiVersion: string | null, body: Json | undefined, reply: Reply, error: Fail): PipelineResponse | undefined {
  const id = path.replace(/\/$/, '');
  const op = /\/providers\/([^/]+)\/locations\/[^/]+\/(azureAsyncOperation|operationResults)\/([^/]+)$/i.exec(id);
  if (op) return Object.keys(GENERIC_TYPES).some((t) => t.startsWith(`${op[1]!.toLowerCase()}/`)) && method === 'GET' ? arm.pollOperation(op[2]!, op[3]!, reply, error) : undefined;
  const typeName = typeOf(id);
  const type = typeName ? GENERIC_TYPES[typeName] : undefined;
  if (!type) return undefined;
  if (apiVersion !== type.apiVersion) return error(400, 'InvalidApiVersionParameter', `The api-version '${apiVersion}' is invalid for ${typeName}; the fake serves ${type.apiVersion}.`);
  const current = arm.get(id);
  const name = id.split('/').pop();
  if (method === 'GET') return current ? reply(200, current) : error(404, 'ResourceNotFound', `The Resource '${typeName}/${name}' was not found.`);
  if (method === 'DELETE') {
    if (!current) return reply(204);
    return arm.startOperation(namespaceOf(id), () => void arm.resources.delete(id.toLowerCase()), reply, 202, undefined, type.apiVersion);
  }
  if (method === 'PATCH' && type.putOnly) return error(405, 'MethodNotAllowed', `The resource type '${typeName}' does not support PATCH at api-version ${type.apiVersion}; send a PUT of the whole resource.`);
  if (method !== 'PATCH' && method !== 'PUT') return error(405, 'MethodNotAllowed', `${method} ${id} is not served by the fake`);
  if (!current && (method === 'PATCH' || !type.creatable)) return error(404, 'ResourceNotFound', `The Resource '${typeName}/${name}' was not found.`);
  const base = current ?? { id, name, type: typeName };
  const next = method === 'PATCH' ? mergePatch(structuredClone(base), body ?? {}) : { ...structuredClone(body ?? {}), id: base.id, name: base.name, type: base.type };
  const refused = type.rules?.(next, current, arm);
  if (refused) return error(400, refused[0], refused[1]);
  const done = () => {
    next.properties = { ...next.properties, provisioningState: 'Succeeded' };
    arm.resources.set(id.toLowerCase(), next);
    return next;
  };
  if (type.sync) return reply(200, done());
  if (current) current.properties = { ...current.properties, provisioningState: 'Updating' };
  return arm.startOperation(namespaceOf(id), done, reply, current ? 202 : 201, () => current && (current.properties.provisioningState = 'Succeeded'), type.apiVersion);
}

const namespaceOf = (id: string) => /\/providers\/([^/]+)\//i.exec(id)?.[1] ?? 'Microsoft.Resources';

/** A resource as ARM returns it, at its id. */
export function seedGeneric(arm: FakeArm, id: string, resource: Json): void {
  arm.put(id, { type: typeOf(id), ...resource, properties: { provisioningState: 'Succeeded', ...resource.properties } });
}
