// An in-process Azure Resource Manager for the SDKs' own transport (an HttpClient): it serves the ARM
// paths and api-versions the management SDKs call, runs changes as long-running operations with ARM's
// protocol (202 + Azure-AsyncOperation and Location, InProgress polls, then Succeeded or Failed, the
// result at the resource or Location URL), validates like Azure where tiershift relies on it, and
// injects faults (429 with Retry-After, 5xx, 409). Every request is recorded for assertions.
import { createHttpHeaders, type HttpClient, type PipelineRequest, type PipelineResponse } from '@azure/core-rest-pipeline';
import type { TokenCredential } from '@azure/identity';

export const ARM = 'https://management.azure.com';
/** The api-version each SDK pins; a request with another one is refused as ARM would. */
export const API_VERSIONS: Record<string, string> = {
  'microsoft.dbforpostgresql': '2025-08-01',
  'microsoft.cdn': '2024-02-01',
  'microsoft.app': '2025-07-01',
};

export interface RecordedRequest {
  method: string;
  path: string;
  apiVersion: string | null;
  body?: any;
}

interface Operation {
  id: string;
  polls: number;
  status: 'InProgress' | 'Succeeded' | 'Failed';
  complete: () => any;
  error?: { code: string; message: string };
  result?: any;
  namespace: string;
}

interface Fault {
  method?: string;
  path: RegExp;
  status: number;
  headers?: Record<string, string>;
  body?: any;
  times: number;
}

type Json = Record<string, any>;

/**
 * Behaviour kept in test/support/fake-arm-*.ts (Azure Monitor, Front Door propagation, Container Apps
 * secrets): `handle` answers a request before the fake ARM does, or returns undefined to pass it on
 * (it may change stored resources first); `rewrite` turns what was sent into what the fake applies.
 */
export interface FakeExtension {
  handle?(req: { method: string; url: URL; path: string; body: any }, reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse, error: (s: number, c: string, m: string, h?: Record<string, string>) => PipelineResponse): PipelineResponse | undefined;
  rewrite?(method: string, path: string, body: any): any;
  /** Takes a request that is not for ARM (a storage account's data plane) before the fake reads its body. */
  forward?(request: PipelineRequest): Promise<PipelineResponse> | undefined;
}

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
function merge(target: Json, patch: Json): Json {
  const out: Json = { ...target };
  for (const [k, v] of Object.entries(patch)) out[k] = isObject(v) && isObject(out[k]) ? merge(out[k], v) : v;
  return out;
}
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v));

export const fakeCredential: TokenCredential = { getToken: async () => ({ token: 'fake-arm-token', expiresOnTimestamp: Date.now() + 3_600_000 }) };

export class FakeArm implements HttpClient {
  readonly requests: RecordedRequest[] = [];
  /** Resources by lowercased ARM id. */
  readonly resources = new Map<string, Json>();
  readonly operations = new Map<string, Operation>();
  private faults: Fault[] = [];
  /** Polls of the operation status URL before an operation finishes. */
  pollsToComplete = 2;
  /** Set to make the next operation that starts end as Failed with this error. */
  failNextOperation?: { code: string; message: string };
  private nextOp = 1;
  readonly extensions: FakeExtension[] = [];

  put(id: string, resource: Json): void {
    this.resources.set(id.toLowerCase(), { id, name: id.split('/').pop(), ...clone(resource) });
  }
  get(id: string): Json | undefined {
    return this.resources.get(id.toLowerCase());
  }
  fault(f: Omit<Fault, 'times'> & { times?: number }): void {
    this.faults.push({ times: 1, ...f });
  }
  /** Requests that changed something (not GETs), as "METHOD path". */
  writes(): string[] {
    return this.requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path}`);
  }

  async sendRequest(request: PipelineRequest): Promise<PipelineResponse> {
    for (const x of this.extensions) {
      const forwarded = x.forward?.(request);
      if (forwarded) return forwarded;
    }
    const url = new URL(request.url);
    const path = decodeURIComponent(url.pathname);
    const apiVersion = url.searchParams.get('api-version');
    const sent = typeof request.body === 'string' && request.body ? JSON.parse(request.body) : undefined;
    this.requests.push({ method: request.method, path, apiVersion, body: sent });
    const body = this.extensions.reduce((b, x) => (x.rewrite ? x.rewrite(request.method, path, b === undefined ? b : clone(b)) : b), sent);
    const reply = (status: number, json?: unknown, headers: Record<string, string> = {}): PipelineResponse => ({
      request,
      status,
      headers: createHttpHeaders({ 'content-type': 'application/json', 'x-ms-request-id': `fake-${this.requests.length}`, ...headers }),
      bodyAsText: json === undefined ? '' : JSON.stringify(json),
    });
    const error = (status: number, code: string, message: string, headers?: Record<string, string>) => reply(status, { error: { code, message } }, headers);

    if (/\.vault\.(azure\.net|usgovcloudapi\.net|azure\.cn)$/.test(url.hostname)) return this.keyVault(request, url, reply, error);

    const fault = this.faults.find((f) => f.times > 0 && f.path.test(path) && (!f.method || f.method === request.method));
    if (fault) {
      fault.times -= 1;
      return reply(fault.status, fault.body ?? { error: { code: `Fault${fault.status}`, message: `injected ${fault.status}` } }, fault.headers);
    }
    for (const x of this.extensions) {
      const answered = x.handle?.({ method: request.method, url, path, body }, reply, error);
      if (answered) return answered;
    }

    const ns = /\/providers\/([^/]+)\//i.exec(path)?.[1]?.toLowerCase() ?? '';
    const expected = API_VERSIONS[ns];
    if (!expected) return error(404, 'NoRegisteredProviderFound', `no fake for ${path}`);
    if (apiVersion !== expected) return error(400, 'InvalidApiVersionParameter', `The api-version '${apiVersion}' is invalid for ${ns}; the fake serves ${expected}.`);

    // Operation status and result URLs.
    const opMatch = /\/(azureAsyncOperation|operationResults)\/([^/]+)$/i.exec(path);
    if (opMatch && request.method === 'GET') return this.pollOperation(opMatch[1]!, opMatch[2]!, reply, error);

    const id = path.replace(/\/$/, '');
    const lower = id.toLowerCase();
    if (request.method === 'GET') {
      const found = this.resources.get(lower);
      return found ? reply(200, found) : error(404, 'ResourceNotFound', `The Resource '${id.split('/providers/')[1]}' under resource group was not found.`);
    }
    if (ns === 'microsoft.dbforpostgresql') return this.postgres(request.method, id, body, reply, error);
    if (ns === 'microsoft.cdn') return this.cdn(request.method, id, body, reply, error);
    return this.app(request.method, id, body, reply, error);
  }

  /** Key Vault secrets by `vault/name`: the data plane of `{ keyVault: { vault, secret } }` references. */
  readonly vaultSecrets = new Map<string, string>();

  /**
   * Key Vault's data plane as the SDK meets it: a first request without a token gets the bearer challenge
   * (401 with WWW-Authenticate naming the vault's resource), the retry with the token gets the secret.
   * Secret names follow Key Vault's rule (1-127 letters, digits and dashes).
   */
  private keyVault(
    request: PipelineRequest,
    url: URL,
    reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse,
    error: (s: number, c: string, m: string, h?: Record<string, string>) => PipelineResponse,
  ): PipelineResponse {
    if (request.headers.get('authorization') !== 'Bearer fake-arm-token') {
      return error(401, 'Unauthorized', 'AKV10000: Request is missing a Bearer or PoP token.', {
        'www-authenticate': `Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://${url.hostname.split('.').slice(1).join('.')}"`,
      });
    }
    const vault = url.hostname.split('.')[0]!;
    const m = /^\/secrets\/([^/]+)\/?([^/]*)$/.exec(url.pathname);
    if (request.method !== 'GET' || !m) return error(405, 'BadParameter', `the fake vault serves GET /secrets/{name} only, got ${request.method} ${url.pathname}`);
    if (!/^[0-9a-zA-Z-]{1,127}$/.test(m[1]!)) return error(400, 'BadParameter', `The secret name '${m[1]}' is invalid.`);
    const value = this.vaultSecrets.get(`${vault}/${m[1]}`);
    if (value === undefined) return error(404, 'SecretNotFound', `A secret with (name/id) ${m[1]} was not found in this key vault.`);
    return reply(200, { value, id: `https://${url.hostname}/secrets/${m[1]}/0123456789abcdef`, attributes: { enabled: true } });
  }

  private startOperation(namespace: string, complete: () => any, reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse, status = 202): PipelineResponse {
    const id = `op-${this.nextOp++}`;
    const op: Operation = { id, polls: 0, status: 'InProgress', complete, namespace };
    if (this.failNextOperation) (op.error = this.failNextOperation), (this.failNextOperation = undefined);
    this.operations.set(id, op);
    const base = `${ARM}/subscriptions/${SUB}/providers/${namespace}/locations/westeurope`;
    const v = `api-version=${API_VERSIONS[namespace.toLowerCase()]}`;
    return reply(status, undefined, {
      'azure-asyncoperation': `${base}/azureAsyncOperation/${id}?${v}`,
      location: `${base}/operationResults/${id}?${v}`,
    });
  }

  private pollOperation(kind: string, id: string, reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse, error: (s: number, c: string, m: string) => PipelineResponse): PipelineResponse {
    const op = this.operations.get(id);
    if (!op) return error(404, 'OperationNotFound', `operation ${id} not found`);
    if (kind.toLowerCase() === 'azureasyncoperation') {
      if (op.status === 'InProgress' && ++op.polls >= this.pollsToComplete) {
        if (op.error) op.status = 'Failed';
        else (op.result = op.complete()), (op.status = 'Succeeded');
      }
      return reply(200, { id, name: id, status: op.status, ...(op.error && op.status === 'Failed' ? { error: op.error } : {}) });
    }
    if (op.status === 'InProgress') return reply(202, undefined, {});
    return op.result === undefined ? reply(204) : reply(200, op.result);
  }

  // --- PostgreSQL Flexible Server ---------------------------------------------------------------

  private postgres(method: string, id: string, body: Json | undefined, reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse, error: (s: number, c: string, m: string) => PipelineResponse): PipelineResponse {
    const ns = 'Microsoft.DBforPostgreSQL';
    const serverId = /^(.*\/flexibleServers\/[^/]+)/i.exec(id)![1]!;
    const server = this.get(serverId);
    const busy = () => error(409, 'ServerBusy', `Server '${serverId.split('/').pop()}' is busy with another operation. Please try your operation later.`);

    if (/\/configurations\/[^/]+$/i.test(id) && method === 'PUT') {
      const config = this.get(id);
      if (!server || !config) return error(404, 'ResourceNotFound', 'The requested resource was not found.');
      if (server.properties.state !== 'Ready') return busy();
      if (!/^\d+$/.test(String(body?.properties?.value)) && config.properties.dataType === 'Integer') {
        return error(400, 'InvalidParameterValue', `Invalid value given for parameter ${config.name}. Specify a valid parameter value.`);
      }
      return this.startOperation(ns, () => {
        const updated = merge(this.get(id)!, { properties: { value: String(body!.properties.value), source: 'user-override' } });
        this.resources.set(id.toLowerCase(), updated);
        return updated;
      }, reply);
    }
    if (/\/backups\/[^/]+$/i.test(id) && method === 'PUT') {
      if (!server) return error(404, 'ResourceNotFound', 'The requested resource was not found.');
      if (server.properties.state !== 'Ready') return busy();
      return this.startOperation(ns, () => {
        this.put(id, { type: 'Microsoft.DBforPostgreSQL/flexibleServers/backups', properties: { backupType: 'Customer', completedTime: new Date().toISOString(), source: 'Automatic' } });
        return this.get(id);
      }, reply);
    }
    if (/\/restart$/i.test(id) && method === 'POST') {
      if (!server) return error(404, 'ResourceNotFound', 'The requested resource was not found.');
      if (server.properties.state !== 'Ready') return busy();
      server.properties.state = 'Restarting';
      return this.startOperation(ns, () => {
        server.properties.state = 'Ready';
        return undefined;
      }, reply);
    }
    if (id === serverId && method === 'PATCH') {
      if (!server) return error(404, 'ResourceNotFound', 'The requested resource was not found.');
      if (server.properties.state !== 'Ready') return busy();
      const wantGb = body?.properties?.storage?.storageSizeGB;
      if (wantGb !== undefined && wantGb < server.properties.storage.storageSizeGB) {
        return error(400, 'InvalidStorageSizeForUpdate', 'Decreasing the storage size is not supported.');
      }
      if (body?.sku?.name !== undefined && !/^Standard_[A-Za-z0-9_]+$/.test(body.sku.name)) {
        return error(400, 'InvalidSkuName', `The SKU '${body.sku.name}' is invalid for tier '${body.sku.tier}'.`);
      }
      const tier = body?.sku?.tier ?? server.sku.tier;
      if (body?.properties?.highAvailability?.mode === 'ZoneRedundant' && tier === 'Burstable') {
        return error(400, 'HANotSupportedForBurstableSkus', 'High availability is not supported for Burstable tier.');
      }
      server.properties.state = 'Updating';
      return this.startOperation(ns, () => {
        const { replica, ...rest } = body?.properties ?? {};
        let next = merge(this.get(serverId)!, { ...(body?.sku ? { sku: body.sku } : {}), properties: { ...rest, state: 'Ready' } });
        if (rest.highAvailability) next.properties.highAvailability.state = rest.highAvailability.mode === 'Disabled' ? 'NotEnabled' : 'Healthy';
        if (replica?.promoteMode) next = merge(next, { properties: { replicationRole: 'Primary', replica: { role: 'Primary', replicationState: undefined }, sourceServerResourceId: undefined } });
        this.resources.set(serverId.toLowerCase(), next);
        return next;
      }, reply);
    }
    if (id === serverId && method === 'PUT') {
      if (server) return error(409, 'ServerAlreadyExists', 'A server with this name already exists.');
      const sourceId: string | undefined = body?.properties?.sourceServerResourceId;
      const source = sourceId ? this.get(sourceId) : undefined;
      if (body?.properties?.createMode !== 'Replica' || !source) return error(400, 'InvalidParameterValue', 'The fake creates read replicas only, of an existing source.');
      this.put(serverId, {
        location: body.location,
        type: 'Microsoft.DBforPostgreSQL/flexibleServers',
        sku: source.sku,
        properties: { ...clone(source.properties), state: 'Provisioning', replicationRole: 'AsyncReplica', sourceServerResourceId: sourceId, replica: { role: 'AsyncReplica', replicationState: 'Provisioning' } },
      });
      return this.startOperation(ns, () => {
        const s = this.get(serverId)!;
        s.properties.state = 'Ready';
        s.properties.replica.replicationState = 'Active';
        return s;
      }, reply, 201);
    }
    if (id === serverId && method === 'DELETE') {
      if (!server) return reply(204);
      return this.startOperation(ns, () => {
        this.resources.delete(serverId.toLowerCase());
        return undefined;
      }, reply);
    }
    return error(405, 'MethodNotAllowed', `${method} ${id} is not served by the fake`);
  }

  // --- Front Door ---------------------------------------------------------------------------------

  private cdn(method: string, id: string, body: Json | undefined, reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse, error: (s: number, c: string, m: string) => PipelineResponse): PipelineResponse {
    const origin = this.get(id);
    if (!/\/origins\/[^/]+$/i.test(id) || method !== 'PATCH') return error(405, 'MethodNotAllowed', `${method} ${id} is not served by the fake`);
    if (!origin) return error(404, 'NotFound', 'The requested origin was not found.');
    const weight = body?.properties?.weight;
    if (weight !== undefined && (weight < 1 || weight > 1000)) return error(400, 'BadRequest', 'Weight must be between 1 and 1000.');
    if (origin.properties.provisioningState === 'Updating') return error(409, 'Conflict', 'Another operation is in progress on this origin.');
    origin.properties.provisioningState = 'Updating';
    return this.startOperation('Microsoft.Cdn', () => {
      const next = merge(this.get(id)!, { properties: { ...body!.properties, provisioningState: 'Succeeded' } });
      this.resources.set(id.toLowerCase(), next);
      return next;
    }, reply);
  }

  // --- Container Apps -----------------------------------------------------------------------------

  private app(method: string, id: string, body: Json | undefined, reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse, error: (s: number, c: string, m: string) => PipelineResponse): PipelineResponse {
    const deactivate = /^(.*\/containerApps\/[^/]+)\/revisions\/([^/]+)\/deactivate$/i.exec(id);
    if (deactivate && method === 'POST') {
      const rev = this.get(`${deactivate[1]}/revisions/${deactivate[2]}`);
      if (!rev) return error(404, 'ContainerAppRevisionNotFound', 'Revision not found.');
      rev.properties.active = false;
      rev.properties.runningState = 'Stopped';
      return reply(200);
    }
    const current = this.get(id);
    if (!/\/containerApps\/[^/]+$/i.test(id) || method !== 'PATCH') return error(405, 'MethodNotAllowed', `${method} ${id} is not served by the fake`);
    if (!current) return error(404, 'ContainerAppNotFound', 'The Container App was not found.');
    const traffic: Json[] | undefined = body?.properties?.configuration?.ingress?.traffic;
    if (traffic && traffic.reduce((n, t) => n + (t.weight ?? 0), 0) !== 100) return error(400, 'ContainerAppInvalidTrafficWeight', 'The sum of traffic weights must be 100.');
    for (const t of traffic ?? []) {
      const known = t.latestRevision || this.get(`${id}/revisions/${t.revisionName}`) || `${id.split('/').pop()}--${body?.properties?.template?.revisionSuffix}` === t.revisionName;
      if (!known) return error(400, 'ContainerAppRevisionNotFound', `Revision '${t.revisionName}' not found.`);
    }
    current.properties.provisioningState = 'InProgress';
    return this.startOperation('Microsoft.App', () => {
      const app = this.get(id)!;
      const next = merge(app, { properties: { ...body!.properties, provisioningState: 'Succeeded' } });
      const suffix = body?.properties?.template?.revisionSuffix;
      if (body?.properties?.template && suffix) {
        const name = `${app.name}--${suffix}`;
        this.put(`${id}/revisions/${name}`, {
          type: 'Microsoft.App/containerApps/revisions',
          properties: { active: true, replicas: next.properties.template.scale?.minReplicas ?? 1, healthState: 'Healthy', provisioningState: 'Provisioned', runningState: 'Running', fqdn: `${name}.fake.azurecontainerapps.io`, template: next.properties.template },
        });
        next.properties.latestRevisionName = name;
        next.properties.latestReadyRevisionName = name;
      }
      for (const r of this.resources.values()) {
        if (r.id.toLowerCase().startsWith(`${id.toLowerCase()}/revisions/`)) {
          r.properties.trafficWeight = (next.properties.configuration.ingress.traffic as Json[]).filter((t) => t.revisionName === r.name).reduce((n, t) => n + (t.weight ?? 0), 0);
        }
      }
      this.resources.set(id.toLowerCase(), next);
      return next;
    }, reply);
  }
}

// --- resources as ARM returns them ------------------------------------------------------------------

export const SUB = '00000000-0000-4000-8000-000000000001';
export const RG = 'rg-compliance-westeurope';
export const pgId = (server: string, rg = RG) => `/subscriptions/${SUB}/resourceGroups/${rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/${server}`;
export const afdId = (profile: string, group: string, origin?: string) =>
  `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Cdn/profiles/${profile}/originGroups/${group}${origin ? `/origins/${origin}` : ''}`;
export const appId = (app: string) => `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.App/containerApps/${app}`;

export function seedServer(arm: FakeArm, server: string, opts: { tier?: string; sku?: string; storageGb?: number; settings?: Record<string, { value: string; dynamic: boolean }> } = {}): void {
  arm.put(pgId(server), {
    type: 'Microsoft.DBforPostgreSQL/flexibleServers',
    location: 'westeurope',
    sku: { name: opts.sku ?? 'Standard_B2s', tier: opts.tier ?? 'Burstable' },
    properties: {
      state: 'Ready',
      version: '16',
      minorVersion: '16.4',
      fullyQualifiedDomainName: `${server}.postgres.database.azure.com`,
      storage: { storageSizeGB: opts.storageGb ?? 128, autoGrow: 'Disabled' },
      backup: { backupRetentionDays: 7, geoRedundantBackup: 'Disabled' },
      highAvailability: { mode: 'Disabled', state: 'NotEnabled' },
      replicationRole: 'Primary',
      replica: { role: 'Primary', capacity: 5 },
    },
  });
  const settings = opts.settings ?? { max_connections: { value: '50', dynamic: false }, work_mem: { value: '4096', dynamic: true }, 'pgbouncer.enabled': { value: 'false', dynamic: true } };
  for (const [name, s] of Object.entries(settings)) {
    arm.put(`${pgId(server)}/configurations/${name}`, {
      type: 'Microsoft.DBforPostgreSQL/flexibleServers/configurations',
      properties: { value: s.value, defaultValue: s.value, dataType: /^\d+$/.test(s.value) ? 'Integer' : 'Boolean', isDynamicConfig: s.dynamic, isReadOnly: false, source: 'system-default' },
    });
  }
}

export function seedFrontDoor(arm: FakeArm, profile: string, group: string, origins: Record<string, { weight: number; enabled: boolean }>, endpoint?: { name: string; hostName: string }): void {
  arm.put(afdId(profile, group), { type: 'Microsoft.Cdn/profiles/originGroups', properties: { healthProbeSettings: { probePath: '/health', probeProtocol: 'Https', probeRequestType: 'GET', probeIntervalInSeconds: 30 }, provisioningState: 'Succeeded' } });
  for (const [name, o] of Object.entries(origins)) {
    arm.put(afdId(profile, group, name), {
      type: 'Microsoft.Cdn/profiles/originGroups/origins',
      properties: { hostName: `${name}.azure-api.net`, priority: 1, weight: o.weight, enabledState: o.enabled ? 'Enabled' : 'Disabled', provisioningState: 'Succeeded', deploymentStatus: 'Succeeded' },
    });
  }
  if (endpoint) {
    arm.put(`/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Cdn/profiles/${profile}/afdEndpoints/${endpoint.name}`, {
      type: 'Microsoft.Cdn/profiles/afdEndpoints',
      location: 'Global',
      properties: { hostName: endpoint.hostName, enabledState: 'Enabled', provisioningState: 'Succeeded' },
    });
  }
}

export function seedContainerApp(arm: FakeArm, app: string, revision = `${app}--v1`): void {
  const template = { containers: [{ name: 'api', image: 'acr.azurecr.io/compliance-api:v1', resources: { cpu: 0.5, memory: '1Gi' } }], scale: { minReplicas: 1, maxReplicas: 3 } };
  arm.put(appId(app), {
    type: 'Microsoft.App/containerApps',
    location: 'westeurope',
    properties: {
      provisioningState: 'Succeeded',
      runningStatus: 'Running',
      latestRevisionName: revision,
      latestReadyRevisionName: revision,
      configuration: { activeRevisionsMode: 'Single', ingress: { external: true, targetPort: 8080, fqdn: `${app}.fake.azurecontainerapps.io`, traffic: [{ latestRevision: true, weight: 100 }] } },
      template,
    },
  });
  arm.put(`${appId(app)}/revisions/${revision}`, {
    type: 'Microsoft.App/containerApps/revisions',
    properties: { active: true, replicas: 1, trafficWeight: 100, healthState: 'Healthy', provisioningState: 'Provisioned', runningState: 'Running', fqdn: `${revision}.fake.azurecontainerapps.io`, template },
  });
}
