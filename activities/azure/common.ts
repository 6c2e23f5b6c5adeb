// What every Azure operation shares: credentials and transport (injectable, so tests drive the real SDKs
// through a fake ARM), the step journal carried in heartbeats, long-running operations that survive a
// worker crash, and the translation of Azure's errors into retryable or non-retryable failures.
import { isRestError, type HttpClient, type PipelinePolicy } from '@azure/core-rest-pipeline';
import { DefaultAzureCredential, type TokenCredential } from '@azure/identity';
import { ApplicationFailure, Context, heartbeat, sleep } from '@temporalio/activity';
import type { Resource } from '../../plan/types';
import type { AzureResources } from './provider';
import type { Json } from '../types';
import { cloudNamed, type AzureCloud } from './cloud';

export interface AzureProviderOptions {
  /** Defaults to DefaultAzureCredential: `az login`, a managed identity, workload identity or AZURE_* variables. */
  credential?: TokenCredential;
  /** The transport of every management-plane and Key Vault call; tests pass a fake ARM. */
  httpClient?: HttpClient;
  /** The SDK pipeline's own retries of throttling (429, honouring Retry-After), 5xx and network errors. */
  retryOptions?: { maxRetries?: number; retryDelayInMs?: number; maxRetryDelayInMs?: number };
  /** How often long-running operations and resource states are polled when Azure does not say (Retry-After). */
  pollIntervalMs?: number;
  /** Azure Resource Manager endpoint; defaults to the cloud's. */
  endpoint?: string;
  /** How long an HA change may take to reach a Healthy standby before the attempt fails and is retried (2 h). */
  haHealthyWithinMs?: number;
  /** The Azure cloud (public, US Government, China); defaults to TIERSHIFT_AZURE_CLOUD, else public Azure. */
  cloud?: AzureCloud['name'];
  /** How long a Container App revision may stay Degraded before its step fails (default 10 minutes). */
  degradedWaitMs?: number;
  /** Scheme of the traffic analysis' HTTP probe (https in Azure). */
  probeScheme?: 'https' | 'http';
  /**
   * Rewrites a database connection string before the worker dials it. Azure's DNS reaches a Flexible
   * Server by its host name; tests route those names to local PostgreSQL clusters.
   */
  routePostgres?: (connectionString: string) => string;
}

export interface AzureContext {
  options: AzureProviderOptions;
  credential(): TokenCredential;
  /** Options every ARM client of the SDKs takes. */
  clientOptions(): {
    httpClient?: HttpClient;
    retryOptions?: AzureProviderOptions['retryOptions'];
    endpoint: string;
    credentialScopes: string[];
    additionalPolicies: { policy: PipelinePolicy; position: 'perCall' }[];
  };
  pollIntervalMs: number;
  /** The wait Azure last asked for (Retry-After) before polling this operation status URL again. */
  retryAfterMs(operationUrl: string | undefined): number | undefined;
  /** The cloud's host names: nothing else in the provider spells one. */
  cloud: AzureCloud;
}

const urlKey = (url: string) => url.split('?')[0]!.toLowerCase();

/**
 * Records the Retry-After of every answer about a long-running operation (the 202 that starts it, each
 * poll of its status URL), keyed by that status URL, so runOperation waits as long as Azure asked.
 * (core-lro alone would poll once more at once after the SDK's first poll.)
 */
function retryAfterPolicy(waits: Map<string, number>): PipelinePolicy {
  return {
    name: 'tiershiftRetryAfter',
    async sendRequest(request, next) {
      const response = await next(request);
      const header = response.headers.get('retry-after');
      if (header !== undefined) {
        const seconds = Number(header);
        const ms = Number.isFinite(seconds) ? seconds * 1000 : Math.max(0, new Date(header).getTime() - Date.now());
        const status = response.headers.get('azure-asyncoperation') ?? response.headers.get('operation-location') ?? response.headers.get('location') ?? request.url;
        if (Number.isFinite(ms)) waits.set(urlKey(status), ms);
      }
      return response;
    },
  };
}

export function azureContext(options: AzureProviderOptions = {}): AzureContext {
  let credential = options.credential;
  const waits = new Map<string, number>();
  const policy = retryAfterPolicy(waits);
  const cloud = cloudNamed(options.cloud ?? process.env.TIERSHIFT_AZURE_CLOUD);
  const endpoint = options.endpoint ?? cloud.resourceManager;
  return {
    options,
    cloud,
    // Created on first use: a worker that never touches Azure must not need Azure credentials.
    credential: () => (credential ??= new DefaultAzureCredential({ authorityHost: cloud.authorityHost })),
    clientOptions: () => ({
      ...(options.httpClient ? { httpClient: options.httpClient } : {}),
      ...(options.retryOptions ? { retryOptions: options.retryOptions } : {}),
      // Tokens for the cloud's own Resource Manager: a public-cloud token means nothing in US Government.
      endpoint,
      credentialScopes: [`${endpoint.replace(/\/$/, '')}/.default`],
      additionalPolicies: [{ policy, position: 'perCall' as const }],
    }),
    pollIntervalMs: options.pollIntervalMs ?? 10_000,
    retryAfterMs: (url) => (url ? waits.get(urlKey(url)) : undefined),
  };
}

/** Subscription and resource group of an Azure resource, which the plan loader already required. */
export function armScope(resource: Resource): { subscription: string; resourceGroup: string } {
  const r = resource as { subscription?: string; resourceGroup?: string };
  if (resource.provider !== 'azure' || !r.subscription || !r.resourceGroup) {
    throw ApplicationFailure.nonRetryable(
      `${resource.name} is not an Azure resource with a subscription and resource group; give it an azure: block with subscription and resourceGroup in the plan`,
      'NonRetryable',
    );
  }
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(r.subscription)) {
    throw ApplicationFailure.nonRetryable(`${resource.name}: subscription "${r.subscription}" is not a subscription id (a GUID, see \`az account show --query id\`); fix the plan`, 'NonRetryable');
  }
  return { subscription: r.subscription, resourceGroup: r.resourceGroup };
}

export function resourceOf<K extends Resource['kind']>(
  resources: Record<string, Resource>,
  name: string | undefined,
  kind: K,
  role: string,
): AzureResources[K] {
  const resource = name === undefined ? undefined : resources[name];
  if (resource?.kind !== kind || resource.provider !== 'azure') {
    throw ApplicationFailure.nonRetryable(`the ${role} ${name ?? '(none)'} is not an Azure ${kind} resource of the plan; give it an azure: block in the plan`, 'NonRetryable');
  }
  return resource as AzureResources[K];
}

// ---------------------------------------------------------------------------------------------------
// The journal: what an activity has recorded and done so far, in its heartbeat details. A retried attempt
// (a crashed worker, a timeout) starts from it: recorded "before" values stay those from before the first
// attempt changed anything, finished operations are not sent again, and a pending long-running operation
// is resumed from its serialized poller rather than requested a second time.

export interface JournalState {
  azure: 1;
  /** What the step found before it changed anything (what compensation restores). */
  before?: Json;
  /** Operations that finished. */
  done: string[];
  /** The operation in flight and its poller, serialized by the SDK (`poller.toString()`). */
  pending?: { op: string; poller: string };
  /** Anything else the step wants a retry to know (e.g. what it created). */
  notes: Record<string, Json>;
}

/** The journal of each running attempt, so a progress heartbeat carries it along instead of replacing it. */
const journalOfAttempt = new WeakMap<object, Journal>();

/**
 * A progress heartbeat ("waiting for the replica", "copying x"): sent with the attempt's journal, never
 * instead of it, since Temporal hands a retry only the last heartbeat and the journal's before-state,
 * `created` flags and created-blob lists must survive it. (The worker's keepalive merges too.)
 */
export function progressHeartbeat(details: Record<string, Json>): void {
  const journal = journalOfAttempt.get(Context.current());
  heartbeat({ ...(journal ? (journal.state as unknown as Record<string, Json>) : {}), azure: 1, ...details } as Json);
}

export class Journal {
  readonly state: JournalState;
  readonly resumed: boolean;

  constructor() {
    journalOfAttempt.set(Context.current(), this);
    const details = Context.current().info.heartbeatDetails as Partial<JournalState> | undefined;
    this.resumed = details?.azure === 1 && Array.isArray(details.done);
    this.state = this.resumed
      ? { azure: 1, before: details!.before, done: [...details!.done!], pending: details!.pending, notes: { ...(details!.notes ?? {}) } }
      : { azure: 1, done: [], notes: {} };
  }

  save(): void {
    heartbeat(this.state as unknown as Json);
  }

  /** The value recorded before the first change; `read` runs only when no earlier attempt recorded it. */
  async before<T extends Json>(read: () => Promise<T>): Promise<T> {
    if (this.state.before === undefined) {
      this.state.before = await read();
      this.save();
    }
    return this.state.before as T;
  }

  isDone(op: string): boolean {
    return this.state.done.includes(op);
  }

  isPending(op: string): boolean {
    return this.state.pending?.op === op;
  }

  note(key: string, value: Json): void {
    this.state.notes[key] = value;
    this.save();
  }
}

/** The part of the SDKs' SimplePollerLike (core-lro) that tiershift drives. */
export interface ResumablePoller<T> {
  pollUntilDone(options?: { abortSignal?: AbortSignalLike }): Promise<T>;
  onProgress(callback: (state: { status: string }) => void): unknown;
  isDone(): boolean;
  poll(options?: { abortSignal?: AbortSignalLike }): Promise<void>;
  getResult(): T | undefined;
  getOperationState(): { status: string; config?: { operationLocation?: string } };
  toString(): string;
}
type AbortSignalLike = AbortSignal;

export interface LroOptions {
  resumeFrom?: string;
  updateIntervalInMs?: number;
}

/**
 * Runs one named long-running operation to its end, unless the journal says it finished already. The
 * poller is serialized into the heartbeat as soon as Azure accepted the request and after every poll, so
 * an attempt that dies mid-poll is resumed by the next one with `resumeFrom` (no second request).
 */
export async function runOperation<T>(
  az: AzureContext,
  journal: Journal,
  op: string,
  what: string,
  begin: (options: LroOptions) => Promise<ResumablePoller<T>>,
): Promise<{ result?: T; skipped: boolean; resumed: boolean }> {
  if (journal.isDone(op)) return { skipped: true, resumed: false };
  const resumeFrom = journal.isPending(op) ? journal.state.pending!.poller : undefined;
  const abortSignal = Context.current().cancellationSignal;
  // Polled here rather than by pollUntilDone: each wait is the Retry-After Azure gave with its last answer
  // about this operation (the 202, then each poll), else the provider's interval.
  const run = async (from: string | undefined) => {
    const poller = await azureCall(what, () => begin({ updateIntervalInMs: az.pollIntervalMs, ...(from ? { resumeFrom: from } : {}) }));
    const checkpoint = () => {
      journal.state.pending = { op, poller: poller.toString() };
      journal.save();
    };
    checkpoint();
    poller.onProgress(checkpoint);
    try {
      while (!poller.isDone()) {
        await sleep(az.retryAfterMs(poller.getOperationState().config?.operationLocation) ?? az.pollIntervalMs);
        await poller.poll({ abortSignal });
      }
      if (poller.getOperationState().status !== 'succeeded') await poller.pollUntilDone({ abortSignal });
      return poller.getResult() as T;
    } catch (err) {
      if (poller.getOperationState().status === 'canceled') {
        // Cancelled in Azure (the portal, `az ... operation cancel`): nothing changed, and resuming the
        // poller would only read "Canceled" again, so the next attempt must send the request afresh.
        journal.state.pending = undefined;
        journal.save();
        throw ApplicationFailure.nonRetryable(`${what}: the operation was canceled in Azure before it finished and nothing changed; resume to send it again`, 'AzureCanceled');
      }
      throw azureFailure(what, err);
    }
  };
  let result: T;
  try {
    result = await run(resumeFrom);
  } catch (err) {
    // A status URL Azure no longer knows (an old operation): start the operation afresh.
    if (resumeFrom && err instanceof ApplicationFailure && err.type === 'AzureNotFound') {
      journal.state.pending = undefined;
      journal.save();
      result = await run(undefined);
    } else throw err;
  }
  journal.state.pending = undefined;
  journal.state.done.push(op);
  journal.save();
  return { result, skipped: false, resumed: resumeFrom !== undefined };
}

/**
 * Polls `read` until `settled` says the resource is ready; `stuck` names a state that will not resolve by
 * waiting. With `withinMs`, a wait that lasts longer fails the attempt (retryable) with `tooLong`'s sentence.
 */
export async function waitFor<T>(
  az: AzureContext,
  what: string,
  read: () => Promise<T>,
  settled: (value: T) => boolean,
  stuck: (value: T) => string | undefined,
  progress: (value: T) => Json,
  bound?: { withinMs: number; tooLong: (value: T) => string },
): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await azureCall(what, read);
    if (settled(value)) return value;
    const reason = stuck(value);
    if (reason) throw ApplicationFailure.nonRetryable(reason, 'NonRetryable');
    if (bound && Date.now() - started >= bound.withinMs) throw ApplicationFailure.retryable(bound.tooLong(value), 'AzureTransient');
    progressHeartbeat({ waiting: what, ...(progress(value) as Record<string, Json>) });
    await sleep(az.pollIntervalMs);
  }
}

// ---------------------------------------------------------------------------------------------------
// Errors. The SDK pipeline has already retried throttling (429 after Retry-After), 5xx and network
// errors by the time one reaches us; what is still transient goes back to Temporal's retry policy, and
// what Azure refused as invalid fails the step at once with Azure's own message.

const TRANSIENT_CODES = /internal|timeout|timedout|busy|unavailable|throttl|toomany|conflict|inprogress|retry|transient/i;

/**
 * What a 409 means, by Azure's error code. ARM answers 409 both while another operation holds the
 * resource (waiting is the fix) and when the request can never succeed as sent (retrying only burns
 * attempts): the second kind fails for good with the fix in one phrase. A code not listed here is treated
 * as an operation in progress, bounded by the step's retry policy. Other Azure services' codes (Blob
 * Storage's, for instance) belong in this same table.
 */
export const CONFLICT_CODES: Record<string, { retry: true } | { retry: false; fix: string }> = {
  // PostgreSQL Flexible Server
  ServerBusy: { retry: true },
  ServerIsBusy: { retry: true },
  OperationInProgress: { retry: true },
  AnotherOperationInProgress: { retry: true },
  ConflictingServerOperation: { retry: true },
  ServerAlreadyExists: { retry: false, fix: 'server names are unique across Azure: name another server in the plan, or delete the existing one' },
  ServerNameAlreadyExists: { retry: false, fix: 'server names are unique across Azure: name another server in the plan, or delete the existing one' },
  VirtualEndpointAlreadyExists: { retry: false, fix: 'a server has one pair of virtual endpoints: name the existing one in the plan, or delete it' },
};

/** Whether a 409 with this code is worth retrying, and if not, what to do about it. */
export function classifyConflict(code: string | undefined): { retry: true } | { retry: false; fix: string } {
  return (code && CONFLICT_CODES[code]) || { retry: true };
}

export function azureFailure(what: string, err: unknown): Error {
  if (err instanceof ApplicationFailure) return err;
  if ((err as Error | undefined)?.name === 'AbortError') return err as Error;
  const e = err as { name?: string; message?: string; statusCode?: number; code?: string };
  const azureSays = (e.message ?? String(err)).replace(/\s+/g, ' ').trim().replace(/\.$/, '');
  if (e.name === 'CredentialUnavailableError' || e.name === 'AuthenticationRequiredError' || e.name === 'AggregateAuthenticationError') {
    return ApplicationFailure.nonRetryable(
      `${what}: no Azure credentials (${firstLine(azureSays)}); run \`az login\` or give the worker a managed identity or AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET, then resume`,
      'NonRetryable',
    );
  }
  if (isRestError(err) || typeof e.statusCode === 'number') {
    const status = e.statusCode;
    const code = e.code ? `${e.code}: ` : '';
    if (status === undefined || status === 408 || status === 429 || status >= 500) {
      return ApplicationFailure.retryable(`${what}: Azure answered ${status ?? 'nothing'} (${code}${azureSays}); retrying`, 'AzureTransient');
    }
    if (status === 409) {
      const conflict = classifyConflict(e.code);
      if (!conflict.retry) return ApplicationFailure.nonRetryable(`${what}: Azure refused it (${code}${azureSays}); ${conflict.fix}, then resume`, 'NonRetryable');
      // ARM answers 409 while another operation holds the resource: waiting is the fix.
      return ApplicationFailure.retryable(`${what}: Azure reports a conflicting operation in progress (${code}${azureSays}); retrying`, 'AzureConflict');
    }
    if (status === 404) {
      return ApplicationFailure.create({ message: `${what}: Azure cannot find it (${code}${azureSays}); check the plan's names, subscription and resource group`, type: 'AzureNotFound', nonRetryable: true });
    }
    if (status === 401 || status === 403) {
      return ApplicationFailure.nonRetryable(`${what}: Azure refused access (${code}${azureSays}); grant the worker's identity a role on the resource and resume`, 'NonRetryable');
    }
    return ApplicationFailure.nonRetryable(`${what}: Azure refused the request (${code}${azureSays}); fix the plan or the resource and resume`, 'NonRetryable');
  }
  // A long-running operation that Azure reported as Failed: core-lro's error carries Azure's code and message.
  if (e.code && typeof e.code === 'string') {
    return TRANSIENT_CODES.test(e.code)
      ? ApplicationFailure.retryable(`${what}: the Azure operation failed (${e.code}: ${azureSays}); retrying`, 'AzureTransient')
      : ApplicationFailure.nonRetryable(`${what}: the Azure operation failed (${e.code}: ${azureSays}); fix the plan or the resource and resume`, 'NonRetryable');
  }
  if (/long-running operation has failed|operation failed|Polling/i.test(azureSays)) {
    return ApplicationFailure.nonRetryable(`${what}: the Azure operation failed (${azureSays}); check the resource's activity log and resume`, 'NonRetryable');
  }
  return err instanceof Error ? err : new Error(`${what}: ${azureSays}`);
}

const firstLine = (text: string) => text.split(/(?<=\.)\s/)[0] ?? text;

/** Runs one SDK call, turning what Azure says into a failure Temporal knows how to treat. */
export async function azureCall<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw azureFailure(what, err);
  }
}

/** Null for "not found", so idempotent steps can ask whether something exists. */
export async function azureFind<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return undefined;
    throw azureFailure(what, err);
  }
}

/** Runs `fn` over `items`, at most `limit` at a time. */
export async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
