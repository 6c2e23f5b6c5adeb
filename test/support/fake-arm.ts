// An in-process Azure Resource Manager for the SDKs' own transport (an HttpClient): it serves the ARM
// paths and api-versions the management SDKs call, runs changes as long-running operations with ARM's
// protocol (202 + Azure-AsyncOperation and Location, InProgress polls, then Succeeded or Failed, the
// result at the resource or Location URL, Retry-After on the 202 and on polls, operations that take
// time and that end Succeeded, Failed or Canceled), validates every request body against the Azure REST
// API spec of its api-version (./azure-specs), enforces Azure's own rules where tiershift relies on them
// (see the PostgreSQL section), and injects faults (429 with Retry-After, 5xx, 409). Every request is
// recorded for assertions.
import { createHttpHeaders, type HttpClient, type PipelineRequest, type PipelineResponse } from '@azure/core-rest-pipeline';
import type { TokenCredential } from '@azure/identity';
import { validateAgainstSpec } from './azure-specs/validate';
import { serveGeneric } from './fake-arm-generic';
import { containerAppRefusal } from './fake-arm-apps';

export const ARM = 'https://management.azure.com';
/** The api-version each SDK pins; a request with another one is refused as ARM would. */
export const API_VERSIONS: Record<string, string> = {
  'microsoft.dbforpostgresql': '2025-08-01',
  'microsoft.cdn': '2024-02-01',
  'microsoft.app': '2026-07-01',
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
  status: 'InProgress' | 'Succeeded' | 'Failed' | 'Canceled';
  complete: () => any;
  /** Puts back what starting the operation changed (a server's state), when it ends Canceled or Failed. */
  abandon?: () => void;
  error?: { code: string; message: string };
  result?: any;
  namespace: string;
  startedAt: number;
  durationMs: number;
  cancel?: boolean;
  /** Work the operation waits for besides its polls and duration (a restore copying real rows). */
  until?: () => boolean;
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

/**
 * Whether a parameter takes `value`, by its `allowedValues` as Azure reports them: a range (`1-262143`)
 * for numbers, a comma-separated list (`replica,logical`, `on,off`) otherwise; no list, any value.
 */
function allowedValue(config: { dataType?: string; allowedValues?: string }, value: string): boolean {
  const allowed = config.allowedValues;
  if (!allowed) return true;
  const range = /^(-?\d+)-(\d+)$/.exec(allowed);
  if (range && (config.dataType === 'Integer' || config.dataType === 'Numeric')) return Number(value) >= Number(range[1]) && Number(value) <= Number(range[2]);
  return allowed.split(',').some((v) => v.trim().toLowerCase() === value.trim().toLowerCase());
}

/** Premium SSD sizes a Flexible Server accepts, in GiB (32 GiB to 32 TiB; the last is 32,767). */
const PREMIUM_SSD_GB = [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767];
const skuTier = (name: string) => (/^Standard_B/i.test(name) ? 'Burstable' : /^Standard_E/i.test(name) ? 'MemoryOptimized' : 'GeneralPurpose');
/** Parameters whose value on a read replica must be at least the primary's. */
const REPLICA_PARAMETERS = new Set(['max_connections', 'max_worker_processes', 'max_prepared_transactions', 'max_locks_per_transaction', 'max_wal_senders']);

export const fakeCredential: TokenCredential = { getToken: async () => ({ token: 'fake-arm-token', expiresOnTimestamp: Date.now() + 3_600_000 }) };

export class FakeArm implements HttpClient {
  readonly requests: RecordedRequest[] = [];
  /** Every request body the spec refused ("METHOD path: problems"); tests assert it stays empty. */
  readonly specViolations: string[] = [];
  /** Resources by lowercased ARM id. */
  readonly resources = new Map<string, Json>();
  readonly operations = new Map<string, Operation>();
  private faults: Fault[] = [];
  /** Polls of the operation status URL before an operation finishes. */
  pollsToComplete = 2;
  /** Set to make the next operation that starts end as Failed with this error. */
  failNextOperation?: { code: string; message: string };
  /** Set to make the next operation that starts end as Canceled (someone cancelled it in the portal): nothing changes. */
  cancelNextOperation = false;
  /** How long an operation runs at least (besides `pollsToComplete`), as Azure's take minutes. */
  operationMs = 0;
  /** Sent as Retry-After (seconds) on every 202 and every InProgress poll, as ARM does; clients must wait that long. */
  retryAfterSeconds?: number;
  /** How long a standby keeps ReplicatingData after the HA operation itself Succeeded, before it is Healthy. */
  haHealthyAfterMs = 0;
  /** When each server's standby turns Healthy (by lowercased server id). */
  private haHealthyAt = new Map<string, number>();
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
    // ARM validates the body as sent against the api-version's spec before the resource provider (here the
    // extensions too: a refused PATCH must not keep the secrets it carried, nor count as an origin change) sees it.
    const namespace = /\/providers\/([^/]+)\//i.exec(path)?.[1];
    if (request.method !== 'GET' && namespace && apiVersion) {
      const problems = validateAgainstSpec(namespace, request.method, path, apiVersion, sent);
      if (problems.length) {
        this.specViolations.push(`${request.method} ${path}: ${problems.join('; ')}`);
        return error(400, 'InvalidRequestContent', `The request content was invalid and could not be deserialized: ${problems.join('; ')}.`);
      }
    }
    const body = this.extensions.reduce((b, x) => (x.rewrite ? x.rewrite(request.method, path, b === undefined ? b : clone(b)) : b), sent);
    for (const x of this.extensions) {
      const answered = x.handle?.({ method: request.method, url, path, body }, reply, error);
      if (answered) return answered;
    }

    // App Service plans, Redis, autoscale settings and the other types a resource step changes by id.
    const generic = serveGeneric(this, request.method, path, apiVersion, body, reply, error);
    if (generic) return generic;

    const ns = namespace?.toLowerCase() ?? '';
    const expected = API_VERSIONS[ns];
    if (!expected) return error(404, 'NoRegisteredProviderFound', `no fake for ${path}`);
    if (apiVersion !== expected) return error(400, 'InvalidApiVersionParameter', `The api-version '${apiVersion}' is invalid for ${ns}; the fake serves ${expected}.`);

    // Operation status and result URLs.
    const opMatch = /\/(azureAsyncOperation|operationResults)\/([^/]+)$/i.exec(path);
    if (opMatch && request.method === 'GET') return this.pollOperation(opMatch[1]!, opMatch[2]!, reply, error);

    const id = path.replace(/\/$/, '');
    const lower = id.toLowerCase();
    if (request.method === 'GET') {
      if (ns === 'microsoft.dbforpostgresql') {
        const list = this.postgresList(id);
        if (list) return reply(200, list);
        this.settleHa(id);
      }
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

  private retryAfter(): Record<string, string> {
    return this.retryAfterSeconds !== undefined ? { 'retry-after': String(this.retryAfterSeconds) } : {};
  }

  startOperation(
    namespace: string,
    complete: () => any,
    reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse,
    status = 202,
    abandon?: () => void,
    apiVersion = API_VERSIONS[namespace.toLowerCase()],
    opts: { until?: () => boolean; durationMs?: number } = {},
  ): PipelineResponse {
    const id = `op-${this.nextOp++}`;
    const op: Operation = { id, polls: 0, status: 'InProgress', complete, abandon, namespace, startedAt: Date.now(), durationMs: opts.durationMs ?? this.operationMs, until: opts.until };
    if (this.failNextOperation) (op.error = this.failNextOperation), (this.failNextOperation = undefined);
    if (this.cancelNextOperation) (op.cancel = true), (this.cancelNextOperation = false);
    this.operations.set(id, op);
    const base = `${ARM}/subscriptions/${SUB}/providers/${namespace}/locations/westeurope`;
    const v = `api-version=${apiVersion}`;
    return reply(status, undefined, {
      'azure-asyncoperation': `${base}/azureAsyncOperation/${id}?${v}`,
      location: `${base}/operationResults/${id}?${v}`,
      ...this.retryAfter(),
    });
  }

  pollOperation(kind: string, id: string, reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse, error: (s: number, c: string, m: string) => PipelineResponse): PipelineResponse {
    const op = this.operations.get(id);
    if (!op) return error(404, 'OperationNotFound', `operation ${id} not found`);
    if (kind.toLowerCase() === 'azureasyncoperation') {
      if (op.status === 'InProgress' && ++op.polls >= this.pollsToComplete && Date.now() - op.startedAt >= op.durationMs && (op.until?.() ?? true)) {
        if (op.error) (op.status = 'Failed'), op.abandon?.();
        else if (op.cancel) (op.status = 'Canceled'), op.abandon?.();
        else (op.result = op.complete()), (op.status = 'Succeeded');
      }
      const body = { id, name: id, status: op.status, ...(op.error && op.status === 'Failed' ? { error: op.error } : {}) };
      return reply(200, body, op.status === 'InProgress' ? this.retryAfter() : {});
    }
    if (op.status === 'InProgress') return reply(202, undefined, this.retryAfter());
    return op.result === undefined ? reply(204) : reply(200, op.result);
  }

  // --- PostgreSQL Flexible Server ---------------------------------------------------------------
  // Azure's rules, as documented, that tiershift must check before it sends anything:
  // - a SKU belongs to one tier (Standard_B* Burstable, Standard_D* GeneralPurpose, Standard_E* MemoryOptimized);
  // - Premium SSD storage comes in discrete sizes and never shrinks;
  // - Burstable servers have no high availability and no read replicas;
  // - a replica's max_connections, max_worker_processes, max_prepared_transactions,
  //   max_locks_per_transaction and max_wal_senders are at least its primary's;
  // - a switchover (promoteMode Switchover) needs a virtual endpoint, whose writer follows the new primary.

  private replicasOf(serverId: string): Json[] {
    return [...this.resources.values()].filter(
      (r) => /\/flexibleServers\/[^/]+$/i.test(r.id) && (r.properties?.sourceServerResourceId ?? '').toLowerCase() === serverId.toLowerCase(),
    );
  }

  private virtualEndpointsOf(serverId: string): Json[] {
    const prefix = `${serverId.toLowerCase()}/virtualendpoints/`;
    return [...this.resources.entries()].filter(([k]) => k.startsWith(prefix) && !k.slice(prefix.length).includes('/')).map(([, v]) => v);
  }

  /** GET of a server's collections the provider lists: its replicas and its virtual endpoints. */
  private postgresList(id: string): Json | undefined {
    const m = /^(.*\/flexibleServers\/[^/]+)\/(replicas|virtualendpoints)$/i.exec(id);
    if (!m || !this.get(m[1]!)) return undefined;
    return { value: m[2]!.toLowerCase() === 'replicas' ? this.replicasOf(m[1]!) : this.virtualEndpointsOf(m[1]!) };
  }

  /** A standby that finished replicating its data is Healthy by now. */
  private settleHa(id: string): void {
    const at = this.haHealthyAt.get(id.toLowerCase());
    const ha = this.get(id)?.properties?.highAvailability;
    if (at !== undefined && ha?.state === 'ReplicatingData' && Date.now() >= at) {
      ha.state = 'Healthy';
      this.haHealthyAt.delete(id.toLowerCase());
    }
  }

  private postgres(method: string, id: string, body: Json | undefined, reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse, error: (s: number, c: string, m: string) => PipelineResponse): PipelineResponse {
    const ns = 'Microsoft.DBforPostgreSQL';
    const serverId = /^(.*\/flexibleServers\/[^/]+)/i.exec(id)![1]!;
    const server = this.get(serverId);
    const serverName = serverId.split('/').pop()!;
    const busy = () => error(409, 'ServerBusy', `Server '${serverName}' is busy with another operation. Please try your operation later.`);
    const notFound = () => error(404, 'ResourceNotFound', 'The requested resource was not found.');

    const configName = /\/configurations\/([^/]+)$/i.exec(id)?.[1];
    if (configName && method === 'PUT') {
      const config = this.get(id);
      if (!server || !config) return notFound();
      if (server.properties.state !== 'Ready') return busy();
      if (!/^\d+$/.test(String(body?.properties?.value)) && config.properties.dataType === 'Integer') {
        return error(400, 'InvalidParameterValue', `Invalid value given for parameter ${config.name}. Specify a valid parameter value.`);
      }
      if (!allowedValue(config.properties, String(body?.properties?.value))) {
        return error(400, 'InvalidParameterValue', `Invalid value given for parameter ${config.name}. Specify a valid parameter value (allowed: ${config.properties.allowedValues}).`);
      }
      if (REPLICA_PARAMETERS.has(configName.toLowerCase())) {
        const value = Number(body!.properties.value);
        const valueOn = (sid: string) => Number(this.get(`${sid}/configurations/${configName}`)?.properties.value ?? NaN);
        const primaryId: string | undefined = server.properties.sourceServerResourceId;
        if (primaryId && value < valueOn(primaryId)) {
          return error(400, 'InvalidParameterValue', `The value of ${configName} on a read replica must be greater than or equal to its value on the primary server (${valueOn(primaryId)}).`);
        }
        const lower = this.replicasOf(serverId).find((r) => value > valueOn(r.id));
        if (lower) return error(400, 'InvalidParameterValue', `The value of ${configName} on the primary server cannot exceed its value on read replica '${lower.name}' (${valueOn(lower.id)}); increase it on the replica first.`);
      }
      return this.startOperation(ns, () => {
        const current = this.get(id)!;
        // A static parameter's new value is stored at once but takes effect only at the next restart.
        const pending = current.properties.isDynamicConfig === false && String(body!.properties.value) !== current.properties.value;
        const updated = merge(current, { properties: { value: String(body!.properties.value), source: 'user-override', ...(pending ? { isConfigPendingRestart: true } : {}) } });
        this.resources.set(id.toLowerCase(), updated);
        return updated;
      }, reply);
    }
    if (/\/backups\/[^/]+$/i.test(id) && method === 'PUT') {
      if (!server) return notFound();
      if (server.properties.state !== 'Ready') return busy();
      return this.startOperation(ns, () => {
        // As the spec's example: an on-demand backup is kept for the server's backup retention period.
        this.put(id, { type: 'Microsoft.DBforPostgreSQL/flexibleServers/backups', properties: { backupType: 'Customer On-Demand', completedTime: new Date().toISOString(), source: 'Automatic' } });
        return this.get(id);
      }, reply);
    }
    if (/\/restart$/i.test(id) && method === 'POST') {
      if (!server) return notFound();
      if (server.properties.state !== 'Ready') return busy();
      server.properties.state = 'Restarting';
      return this.startOperation(ns, () => {
        server.properties.state = 'Ready';
        // What waited for the restart is in effect now.
        const prefix = `${serverId.toLowerCase()}/configurations/`;
        for (const [k, c] of this.resources) if (k.startsWith(prefix)) c.properties.isConfigPendingRestart = false;
        return undefined;
      }, reply, 202, () => (server.properties.state = 'Ready'));
    }
    const endpoint = /\/virtualendpoints\/([^/]+)$/i.exec(id)?.[1];
    if (endpoint && method === 'PUT') {
      if (!server) return notFound();
      if (server.properties.state !== 'Ready') return busy();
      const others = this.virtualEndpointsOf(serverId).filter((v) => v.name.toLowerCase() !== endpoint.toLowerCase());
      if (others.length) return error(400, 'VirtualEndpointAlreadyExists', `Server '${serverName}' already has the virtual endpoint '${others[0]!.name}'; a server has one pair of virtual endpoints.`);
      const members: string[] = body!.properties.members ?? [];
      const replicaNames = new Set(this.replicasOf(serverId).map((r) => r.name.toLowerCase()));
      const stranger = members.find((m) => !replicaNames.has(m.toLowerCase()));
      if (stranger) return error(400, 'InvalidVirtualEndpointMember', `Server '${stranger}' is not a read replica of '${serverName}'.`);
      return this.startOperation(ns, () => {
        this.put(id, {
          type: 'Microsoft.DBforPostgreSQL/flexibleServers/virtualEndpoints',
          properties: { endpointType: 'ReadWrite', members, virtualEndpoints: [`${endpoint}.writer.postgres.database.azure.com`, `${endpoint}.reader.postgres.database.azure.com`] },
        });
        return this.get(id);
      }, reply);
    }
    if (endpoint && method === 'DELETE') {
      if (!this.get(id)) return reply(204);
      return this.startOperation(ns, () => void this.resources.delete(id.toLowerCase()), reply);
    }
    if (id === serverId && method === 'PATCH') {
      if (!server) return notFound();
      if (server.properties.state !== 'Ready') return busy();
      const props = body?.properties ?? {};
      if (props.replica?.promoteMode) return this.promote(serverId, server, props.replica.promoteMode, reply, error);
      const wantGb = props.storage?.storageSizeGB;
      if (wantGb !== undefined && wantGb < server.properties.storage.storageSizeGB) {
        return error(400, 'InvalidStorageSizeForUpdate', 'Decreasing the storage size is not supported.');
      }
      if (wantGb !== undefined && (props.storage.type ?? server.properties.storage.type ?? 'Premium_LRS') === 'Premium_LRS' && !PREMIUM_SSD_GB.includes(wantGb)) {
        return error(400, 'InvalidStorageSize', `The storage size ${wantGb} GiB is not supported for Premium SSD; choose one of ${PREMIUM_SSD_GB.join(', ')} GiB.`);
      }
      if (body?.sku?.name !== undefined && !/^Standard_[A-Za-z0-9_]+$/.test(body.sku.name)) {
        return error(400, 'InvalidSkuName', `The SKU '${body.sku.name}' is invalid for tier '${body.sku.tier}'.`);
      }
      const sku = { ...server.sku, ...(body?.sku ?? {}) };
      if (body?.sku && skuTier(sku.name) !== sku.tier) {
        return error(400, 'InvalidSkuTierCombination', `The SKU '${sku.name}' does not belong to the '${sku.tier}' tier.`);
      }
      const ha = props.highAvailability;
      const haOn = ha?.mode !== undefined && ha.mode !== 'Disabled';
      if (haOn && sku.tier === 'Burstable') {
        return error(400, 'HANotSupportedForBurstableSkus', 'High availability is not supported for Burstable tier.');
      }
      if (ha?.mode === 'SameZone' && ha.standbyAvailabilityZone && ha.standbyAvailabilityZone !== server.properties.availabilityZone) {
        return error(400, 'InvalidStandbyAvailabilityZone', `With SameZone high availability the standby is in the primary's zone (${server.properties.availabilityZone}).`);
      }
      if (this.replicasOf(serverId).length && sku.tier === 'Burstable' && server.sku.tier !== 'Burstable') {
        return error(400, 'BurstableSkuNotSupportedForReplication', 'A server with read replicas cannot be scaled to the Burstable tier.');
      }
      const before = clone(server.properties);
      server.properties.state = 'Updating';
      if (ha?.mode) server.properties.highAvailability.state = haOn ? 'CreatingStandby' : 'RemovingStandby';
      return this.startOperation(ns, () => {
        const next = merge(this.get(serverId)!, { ...(body?.sku ? { sku: body.sku } : {}), properties: { ...props, state: 'Ready' } });
        if (ha?.mode) {
          const zone = server.properties.availabilityZone ?? '1';
          next.properties.highAvailability = {
            mode: ha.mode,
            standbyAvailabilityZone: !haOn ? '' : ha.mode === 'SameZone' ? zone : (ha.standbyAvailabilityZone ?? (zone === '2' ? '3' : '2')),
            // The standby still copies its data after the operation ends; only then is it Healthy.
            state: !haOn ? 'NotEnabled' : this.haHealthyAfterMs > 0 ? 'ReplicatingData' : 'Healthy',
          };
          if (haOn && this.haHealthyAfterMs > 0) this.haHealthyAt.set(serverId.toLowerCase(), Date.now() + this.haHealthyAfterMs);
        }
        this.resources.set(serverId.toLowerCase(), next);
        return next;
      }, reply, 202, () => (this.get(serverId)!.properties = before));
    }
    if (id === serverId && method === 'PUT') {
      if (server) return error(409, 'ServerAlreadyExists', `Specified server name '${serverName}' is already used. Please use a different name and try again.`);
      const sourceId: string | undefined = body?.properties?.sourceServerResourceId;
      const source = sourceId ? this.get(sourceId) : undefined;
      if (body?.properties?.createMode !== 'Replica' || !source) return error(400, 'InvalidParameterValue', 'The fake creates read replicas only, of an existing source.');
      if (source.sku.tier === 'Burstable') return error(400, 'BurstableSkuNotSupportedForReplica', 'Read replicas are not supported for servers in the Burstable tier.');
      this.put(serverId, {
        location: body.location,
        type: 'Microsoft.DBforPostgreSQL/flexibleServers',
        sku: source.sku,
        properties: {
          ...clone(source.properties),
          state: 'Provisioning',
          highAvailability: { mode: 'Disabled', state: 'NotEnabled', standbyAvailabilityZone: '' },
          replicationRole: 'AsyncReplica',
          sourceServerResourceId: sourceId,
          replica: { role: 'AsyncReplica', capacity: 0, replicationState: 'Provisioning' },
        },
      });
      // A replica starts with its source's server parameters.
      for (const [k, v] of [...this.resources.entries()]) {
        if (k.startsWith(`${sourceId!.toLowerCase()}/configurations/`)) this.put(`${serverId}/configurations/${v.name}`, clone(v));
      }
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

  /** Standalone: the replica leaves the replication set. Switchover: it and its primary swap roles, the writer endpoint follows. */
  private promote(replicaId: string, replica: Json, mode: string, reply: (s: number, j?: unknown, h?: Record<string, string>) => PipelineResponse, error: (s: number, c: string, m: string) => PipelineResponse): PipelineResponse {
    const primaryId: string | undefined = replica.properties.sourceServerResourceId;
    if (!primaryId) return error(400, 'ServerIsNotReplica', `Server '${replica.name}' is not a read replica.`);
    const endpoints = this.virtualEndpointsOf(primaryId);
    if (mode === 'Switchover' && !endpoints.length) {
      return error(400, 'VirtualEndpointNotFound', `Switchover requires a virtual endpoint on '${primaryId.split('/').pop()}'; create one first.`);
    }
    replica.properties.state = 'Updating';
    return this.startOperation('Microsoft.DBforPostgreSQL', () => {
      const r = this.get(replicaId)!;
      r.properties = { ...r.properties, state: 'Ready', replicationRole: 'Primary', replica: { role: 'Primary', capacity: 5 } };
      delete r.properties.sourceServerResourceId;
      if (mode === 'Switchover') {
        const p = this.get(primaryId)!;
        p.properties = { ...p.properties, replicationRole: 'AsyncReplica', sourceServerResourceId: replicaId, replica: { role: 'AsyncReplica', capacity: 0, replicationState: 'Active' } };
        for (const ve of endpoints) {
          this.resources.delete(ve.id.toLowerCase());
          this.put(`${replicaId}/virtualendpoints/${ve.name}`, { type: ve.type, properties: { ...ve.properties, members: [p.name] } });
        }
      }
      return r;
    }, reply, 202, () => (this.get(replicaId)!.properties.state = 'Ready'));
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
    // Secrets as stored (FakeContainerApps, when a test adds it, answers with their values first).
    const list = /^(.*\/containerApps\/[^/]+)\/listSecrets$/i.exec(id);
    if (list && method === 'POST') {
      const app = this.get(list[1]!);
      return app ? reply(200, { value: app.properties.configuration?.secrets ?? [] }) : error(404, 'ContainerAppNotFound', 'The Container App was not found.');
    }
    if (!/\/containerApps\/[^/]+$/i.test(id) || method !== 'PATCH') return error(405, 'MethodNotAllowed', `${method} ${id} is not served by the fake`);
    if (!current) return error(404, 'ContainerAppNotFound', 'The Container App was not found.');
    const traffic: Json[] | undefined = body?.properties?.configuration?.ingress?.traffic;
    if (traffic && traffic.reduce((n, t) => n + (t.weight ?? 0), 0) !== 100) return error(400, 'ContainerAppInvalidTrafficWeight', 'The sum of traffic weights must be 100.');
    for (const t of traffic ?? []) {
      const known = t.latestRevision || this.get(`${id}/revisions/${t.revisionName}`) || `${id.split('/').pop()}--${body?.properties?.template?.revisionSuffix}` === t.revisionName;
      if (!known) return error(400, 'ContainerAppRevisionNotFound', `Revision '${t.revisionName}' not found.`);
    }
    const refused = containerAppRefusal(current.name, body, current);
    if (refused) return error(400, refused[0], refused[1]);
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

/** A Flexible Server as ARM returns it (as the spec's ServersGet example), optionally a read replica of `replicaOf`. */
export function seedServer(
  arm: FakeArm,
  server: string,
  opts: {
    tier?: string;
    sku?: string;
    storageGb?: number;
    autoGrow?: 'Enabled' | 'Disabled';
    highAvailability?: 'SameZone' | 'ZoneRedundant';
    replicaOf?: string;
    settings?: Record<string, { value: string; dynamic: boolean; dataType?: string; allowedValues?: string }>;
  } = {},
): void {
  const zone = '1';
  arm.put(pgId(server), {
    type: 'Microsoft.DBforPostgreSQL/flexibleServers',
    location: 'westeurope',
    sku: { name: opts.sku ?? 'Standard_B2s', tier: opts.tier ?? 'Burstable' },
    properties: {
      state: 'Ready',
      version: '16',
      minorVersion: '16.4',
      fullyQualifiedDomainName: `${server}.postgres.database.azure.com`,
      availabilityZone: zone,
      storage: { storageSizeGB: opts.storageGb ?? 128, autoGrow: opts.autoGrow ?? 'Disabled', type: 'Premium_LRS', tier: 'P10' },
      backup: { backupRetentionDays: 7, geoRedundantBackup: 'Disabled' },
      highAvailability: opts.highAvailability
        ? { mode: opts.highAvailability, state: 'Healthy', standbyAvailabilityZone: opts.highAvailability === 'SameZone' ? zone : '2' }
        : { mode: 'Disabled', state: 'NotEnabled', standbyAvailabilityZone: '' },
      ...(opts.replicaOf
        ? { replicationRole: 'AsyncReplica', sourceServerResourceId: pgId(opts.replicaOf), replica: { role: 'AsyncReplica', capacity: 0, replicationState: 'Active' } }
        : { replicationRole: 'Primary', replica: { role: 'Primary', capacity: 5 } }),
    },
  });
  const settings = opts.settings ?? { max_connections: { value: '50', dynamic: false }, work_mem: { value: '4096', dynamic: true }, 'pgbouncer.enabled': { value: 'false', dynamic: true } };
  for (const [name, s] of Object.entries(settings)) {
    arm.put(`${pgId(server)}/configurations/${name}`, {
      type: 'Microsoft.DBforPostgreSQL/flexibleServers/configurations',
      properties: {
        value: s.value,
        defaultValue: s.value,
        dataType: s.dataType ?? (/^\d+$/.test(s.value) ? 'Integer' : 'Boolean'),
        ...(s.allowedValues ? { allowedValues: s.allowedValues } : {}),
        isDynamicConfig: s.dynamic,
        isReadOnly: false,
        isConfigPendingRestart: false,
        source: 'system-default',
      },
    });
  }
}

/** The parameters logical replication needs, as Azure reports them on a new Flexible Server (PostgreSQL 16): all static. */
export const LOGICAL_PARAMETERS = {
  wal_level: { value: 'replica', dynamic: false, dataType: 'Enumeration', allowedValues: 'replica,logical' },
  max_replication_slots: { value: '10', dynamic: false, dataType: 'Integer', allowedValues: '2-262143' },
  max_wal_senders: { value: '10', dynamic: false, dataType: 'Integer', allowedValues: '5-100' },
  max_connections: { value: '50', dynamic: false, dataType: 'Integer', allowedValues: '25-5000' },
};

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
  // As ARM returns it (the spec's ContainerApps_Get example): env, a probe and the read-only ephemeralStorage,
  // which an update sends back with the template (less what the SDK knows is read-only).
  const template = {
    containers: [
      {
        name: 'api',
        image: 'acr.azurecr.io/compliance-api:v1',
        env: [{ name: 'LOG_LEVEL', value: 'info' }],
        resources: { cpu: 0.5, memory: '1Gi', ephemeralStorage: '2Gi' },
        probes: [{ type: 'Liveness', httpGet: { path: '/health', port: 8080, httpHeaders: [{ name: 'Custom-Header', value: 'Awesome' }] }, initialDelaySeconds: 3, periodSeconds: 3 }],
      },
    ],
    scale: { minReplicas: 1, maxReplicas: 3 },
  };
  arm.put(appId(app), {
    type: 'Microsoft.App/containerApps',
    location: 'westeurope',
    // A system-assigned identity, which the app's Key Vault references read with.
    identity: { type: 'SystemAssigned', principalId: '7f0a5c1e-0000-4000-8000-00000000a11d', tenantId: '11111111-2222-3333-4444-555555555555' },
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
