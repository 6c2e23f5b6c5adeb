// The activities the worker registers. Each finds the provider of the resources a step acts on and calls
// that provider's operation for the resource's kind. What is the same for every provider happens here,
// once: looping over a step's resources, routing undo and finalize, fanning out drift checks, merging
// outcomes. A provider's index.ts is only a table of operations (activities/types.ts).
import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import { durationMs } from '../contract/duration';
import { ProgressMeter } from '../contract/progress';
import type { BackupStep, CheckStep, FinalizeStep, PostgresResource, Resource, ResourceKind } from '../plan/types';
import { withAttempt } from './attempt';
import { keepAlive } from './heartbeat';
import { notifyGate } from './notify';
import { resolveSecret, useSecretResolvers } from './secrets';
import type {
  AnalysisInput,
  AnalysisOutcome,
  AppOperations,
  BakeInput,
  BlobOperations,
  DriftInput,
  Json,
  ArmResourceOperations,
  PostgresOperations,
  ProviderOperations,
  ResourceInput,
  StepInput,
  StepOutcome,
  TrafficOperations,
  UndoInput,
  WritesMeasure,
} from './types';
import type { AppStep, DataStep, InfraStep, ResourceStep, RunStep, SqlStep, TrafficStep, VerifyStep } from '../plan/types';
import { runStepCommand, undoStepCommand } from './command';
import { executeSql } from './sql';
import { verifyService, type VerifyOutcome } from './verify';

/** How often a bake judges its canary (over the plan's `analysis.interval`, its sliding window): a breach is acted on within this. */
export const JUDGE_EVERY_MS = 1_000;

/** The operations of every provider this worker has, by provider name (see activities/registry.ts). */
export type Providers = Record<string, ProviderOperations>;

interface OperationsOf {
  postgres: PostgresOperations;
  blob: BlobOperations;
  traffic: TrafficOperations;
  app: AppOperations;
}

export function createActivities(providers: Providers) {
  // A secret reference is resolved by the provider that declares its kind, whatever resource holds it.
  useSecretResolvers(Object.assign({}, ...Object.values(providers).map((p) => p.secrets ?? {})));

  /** The operations for a resource's kind, from the resource's provider; a clear failure when this worker lacks them. */
  function operations<K extends ResourceKind>(resource: Resource | undefined, kind: K): OperationsOf[K] {
    if (!resource) throw ApplicationFailure.nonRetryable('the step names a resource the plan does not define', 'NonRetryable');
    const provider = providers[resource.provider];
    if (!provider) {
      throw ApplicationFailure.nonRetryable(
        `resource ${resource.name} uses provider "${resource.provider}", which this worker does not have; run a worker with that provider`,
        'NonRetryable',
      );
    }
    const ops = resource.kind === kind ? (provider[kind] as OperationsOf[K] | undefined) : undefined;
    if (!ops) {
      throw ApplicationFailure.nonRetryable(`resource ${resource.name} is a ${resource.kind} resource of provider "${resource.provider}", which cannot act as a ${kind} resource here; fix the plan`, 'NonRetryable');
    }
    return ops;
  }
  const named = (input: StepInput, name: string): Resource | undefined => input.resources[name];

  /**
   * Where a sql step's statements run: a connection from the database's provider, else the connection
   * string the resource references (any provider's database can be given one).
   */
  function sqlConnection(input: StepInput, name: string): Promise<string> {
    const resource = named(input, name);
    const connect = operations(resource, 'postgres').connection;
    if (connect) return connect(resource as PostgresResource);
    const ref = (resource as PostgresResource).connection;
    if (ref) return resolveSecret(ref, `database ${name}`);
    throw ApplicationFailure.nonRetryable(`provider "${resource!.provider}" of ${name} cannot connect a sql step; give ${name} a connection reference`, 'NonRetryable');
  }

  /** The operations on any resource by ARM id, of the provider the resource step names. */
  function arm(provider: string): ArmResourceOperations {
    const ops = providers[provider]?.arm;
    if (!ops) throw ApplicationFailure.nonRetryable(`a resource step needs provider "${provider}" with ARM resources, which this worker does not have; run a worker with that provider`, 'NonRetryable');
    return ops;
  }

  /** A check or a backup: one call per resource, outcomes merged in the plan's order. */
  async function eachResource(input: StepInput<CheckStep | BackupStep>, act: (resource: Resource) => Promise<StepOutcome>): Promise<StepOutcome> {
    const outcomes: [string, StepOutcome][] = [];
    for (const name of input.step.resources) {
      const resource = named(input, name);
      if (!resource) throw ApplicationFailure.nonRetryable(`step ${input.step.id} names ${name}, which the plan does not define; fix its resources`, 'NonRetryable');
      outcomes.push([name, await act(resource)]);
    }
    return merge(outcomes);
  }

  return keepingAlive({
    checkHealth: (input: StepInput<CheckStep>) =>
      eachResource(input, (r) => {
        switch (r.kind) {
          case 'postgres':
            return operations(r, 'postgres').check(r);
          case 'blob':
            return operations(r, 'blob').check(r);
          case 'traffic':
            return operations(r, 'traffic').check(r);
          case 'app':
            return operations(r, 'app').check(r);
        }
      }),

    backupDatabase: (input: StepInput<BackupStep>) =>
      eachResource(input, (r) => {
        if (r.kind === 'postgres') return operations(r, 'postgres').backup(input, r);
        if (r.kind === 'blob') return operations(r, 'blob').backup(input, r);
        throw ApplicationFailure.nonRetryable(`backup step ${input.step.id} names ${r.name}, a ${r.kind} resource; back up postgres or blob resources`, 'NonRetryable');
      }),

    prepareInfra: (input: StepInput<InfraStep>) => operations(named(input, input.step.resource), 'postgres').prepare(input),

    /** A resource step: properties of any resource set, or a resource created, by its ARM id. */
    changeResource: (input: ResourceInput) => arm(input.step.provider).apply(input),

    updateApp: (input: StepInput<AppStep>) => operations(named(input, input.step.resource), 'app').update(input),

    /** A data sync is run by its target's provider. */
    syncData: (input: StepInput<DataStep>) => {
      const to = named(input, input.step.to);
      return to?.kind === 'blob' ? operations(to, 'blob').sync(input) : operations(to, 'postgres').sync(input);
    },

    runSql: (input: StepInput<SqlStep>) => executeSql(input, input.step.executions, 'do', (name) => sqlConnection(input, name)),

    runCommand: (input: StepInput<RunStep>) => runStepCommand(input),

    /** Smoke checks and a load test; a breach is a verdict (pass: false) the workflow rolls back on. */
    async verifyService(input: StepInput<VerifyStep>): Promise<VerifyOutcome> {
      const resource = input.step.resource ? named(input, input.step.resource) : undefined;
      let base: string | undefined;
      if (resource?.kind === 'traffic' || resource?.kind === 'app') {
        const ops = resource.kind === 'traffic' ? operations(resource, 'traffic') : operations(resource, 'app');
        if (!ops.address) throw ApplicationFailure.nonRetryable(`provider "${resource.provider}" does not know the address of ${resource.name}; give the checks absolute URLs`, 'NonRetryable');
        base = await (ops.address as (r: Resource) => Promise<string>)(resource);
      }
      return verifyService(input, base);
    },

    shiftTraffic: (input: StepInput<TrafficStep>) => operations(named(input, input.step.resource), 'traffic').shift(input),

    analyseTraffic: (input: AnalysisInput) => operations(named(input, input.step.resource), 'traffic').analyse(input),

    /**
     * A bake, judged as it goes: every JUDGE_EVERY_MS, the provider's analysis of the bake so far and of
     * the sliding window of the last `analysis.interval`, until the bake ends. It returns at the first
     * breach, so a failing canary is rolled back within seconds whatever the bake's length. A retried
     * attempt resumes from its heartbeat (the window's readings) and bakes until the same end, which the
     * workflow fixed. The last judgement's summary is in the heartbeat, which status and watch show.
     */
    async bakeTraffic(input: BakeInput): Promise<AnalysisOutcome> {
      const traffic = operations(named(input, input.step.resource), 'traffic');
      const context = Context.current();
      const a = input.step.analysis;
      const windowMs = Math.max(1_000, durationMs(a.interval ?? '10s'));
      const everyMs = traffic.judgeEveryMs ?? Math.min(windowMs, JUDGE_EVERY_MS);
      const resumed = context.info.heartbeatDetails as { until?: number; readings?: { at: number; counters: Json }[]; judged?: number } | undefined;
      // The end is fixed by the first attempt and kept in the heartbeat: a retried attempt bakes until the same moment.
      const until = typeof resumed?.until === 'number' ? resumed.until : Date.now() + durationMs(input.step.bake);
      const extendUntil = until + (a.inconclusive === 'extend' ? durationMs(a.extendUpTo ?? input.step.bake) : 0);
      // Counters read at each judgement within the window: the oldest is where the window starts.
      let readings = Array.isArray(resumed?.readings) ? resumed.readings : [];
      let judged = resumed?.judged ?? 0;
      const started = Date.now();
      const meter = new ProgressMeter('baking', 'seconds', Math.max(0, Math.round((until - started) / 1000)));
      let last = 'first judgement pending';
      const beat = () =>
        heartbeat({ phase: 'baking', until, judged, readings, last, progress: { ...meter.read(Math.round((Date.now() - started) / 1000)), phase: `baking (last judgement: ${last})` } });
      beat();
      for (;;) {
        const end = Date.now() < until ? until : extendUntil;
        const judgeAt = Math.min(Date.now() + everyMs, end);
        if (judgeAt > Date.now()) await context.sleep(judgeAt - Date.now());
        const verdict = await traffic.analyse({ ...input, window: readings[0]?.counters });
        const at = Date.now();
        judged += 1;
        if (verdict.counters !== undefined) readings = [...readings.filter((r) => r.at > at - windowMs), { at, counters: verdict.counters }];
        last = verdict.summary;
        beat();
        const breached = !verdict.pass && !verdict.inconclusive;
        // The bake goes on while its time lasts, and past it only while a quiet canary may wait for requests.
        if (breached || at >= extendUntil || (at >= until && !verdict.inconclusive)) return { ...verdict, figures: { ...verdict.figures, [`${input.step.resource}.judgements`]: judged } };
      }
    },

    /** Finalize: a database an earlier data step replicated into takes over (cutover); others need nothing. */
    async finalizeMigration(input: StepInput<FinalizeStep>): Promise<StepOutcome> {
      const outcomes: [string, StepOutcome][] = [];
      if (input.step.resources.some((n) => input.step.syncedFrom[n] && named(input, n)?.kind === 'postgres')) await requireStableIdle(input);
      for (const name of input.step.resources) {
        const to = named(input, name);
        const from = input.step.syncedFrom[name] ? named(input, input.step.syncedFrom[name]!) : undefined;
        const retire = to?.kind === 'traffic' ? operations(to, 'traffic').finalize : undefined;
        outcomes.push([
          name,
          to?.kind === 'postgres' && from?.kind === 'postgres'
            ? await operations(to, 'postgres').cutover(input, from, to)
            : to?.kind === 'traffic' && retire
              ? await retire(input, to)
              : { summary: `${name}: nothing to cut over`, figures: {} },
        ]);
      }
      return merge(outcomes);
    },

    /**
     * Read-only: what a mutating step's resources look like before its first attempt. The workflow keeps
     * the answer in its history and hands it to the step's undo, so a retry after a lost result (which
     * sees the step's own change) can never pass that change off as the state to restore. Null for
     * steps whose undo needs nothing from before.
     */
    async observeStep(input: StepInput): Promise<Json> {
      const { step } = input;
      switch (step.kind) {
        case 'infra':
          return operations(named(input, step.resource), 'postgres').observePrepare(input as StepInput<InfraStep>);
        case 'app':
          return operations(named(input, step.resource), 'app').observe(input as StepInput<AppStep>);
        case 'data': {
          const to = named(input, step.to);
          const data = input as StepInput<DataStep>;
          return to?.kind === 'blob' ? operations(to, 'blob').observeSync(data) : operations(to, 'postgres').observeSync(data);
        }
        case 'traffic':
          return operations(named(input, step.resource), 'traffic').observe(input as StepInput<TrafficStep>);
        case 'resource':
          return arm(step.provider).observe(input as StepInput<ResourceStep>);
        default:
          return null;
      }
    },

    async undoStep(input: UndoInput): Promise<StepOutcome> {
      const { step } = input;
      switch (step.kind) {
        case 'backup': {
          // Backups are kept; what a provider's restore proof left behind (a scratch server) is removed.
          const removed: string[] = [];
          for (const name of step.resources) {
            const r = named(input, name);
            const undoBackup = r?.kind === 'postgres' ? providers[r.provider]?.postgres?.undoBackup : undefined;
            const phrase = undoBackup ? await undoBackup(input, r as PostgresResource) : undefined;
            if (phrase) removed.push(phrase);
          }
          const kept = keptBackups(input);
          return removed.length ? { ...kept, summary: `${kept.summary}; ${removed.join('; ')}` } : kept;
        }
        case 'infra':
          return operations(named(input, step.resource), 'postgres').undoPrepare(input);
        case 'app':
          // The write point's recovery, in two parts around the traffic undo; the app's own undo has no part.
          if (input.part && step.targetWrites?.recovery) return reverseSync(input, { [step.targetWrites.database]: step.targetWrites.source }, input.part);
          return operations(named(input, step.resource), 'app').undo(input);
        case 'data': {
          const to = named(input, step.to);
          return to?.kind === 'blob' ? operations(to, 'blob').undoSync(input) : operations(to, 'postgres').undoSync(input);
        }
        case 'traffic':
          return operations(named(input, step.resource), 'traffic').undo(input);
        case 'resource':
          return arm(step.provider).undo(input);
        case 'finalize':
          if (step.pointOfNoReturn?.recovery === 'switch-back') return switchBack(input, step.syncedFrom);
          if (step.pointOfNoReturn && input.part) return reverseSync(input, step.syncedFrom, input.part);
          // Without a point of no return, a finalized cutover is undone by the earlier steps' undos (traffic
          // first); what the finalize retired on a traffic front (a blue revision) comes back here.
          return undoRetired(input);
        case 'sql':
          if (step.undo?.length) return executeSql(input as StepInput<SqlStep>, step.undo, 'undo', (name) => sqlConnection(input, name));
          return { summary: `nothing to undo for ${step.id}`, figures: {} };
        case 'run':
          if (step.undo) return undoStepCommand(input as StepInput<RunStep>);
          return { summary: `nothing to undo for ${step.id}`, figures: {} };
        case 'check':
        case 'gate':
        case 'verify':
          // Reads and decisions change nothing.
          return { summary: `nothing to undo for ${step.id}`, figures: {} };
      }
    },

    /** Asks the provider of each resource the expectation names; one phrase per difference. */
    async checkDrift({ resources, expect }: DriftInput): Promise<string[]> {
      const found: string[] = [];
      for (const [name, percent] of Object.entries(expect.weights ?? {})) {
        const resource = resources[name];
        if (resource?.kind !== 'traffic') continue;
        const drift = await operations(resource, 'traffic').drift(resource, percent);
        if (drift) found.push(drift);
      }
      for (const [name, settings] of Object.entries(expect.settings ?? {})) {
        const resource = resources[name];
        if (resource?.kind === 'postgres') found.push(...(await operations(resource, 'postgres').settingsDrift(resource, settings)));
      }
      for (const [provider, expected] of Object.entries(expect.arm ?? {})) found.push(...(await arm(provider).drift(expected)));
      return found;
    },

    /** What a rollback now would have to recover at the write point; reads only. */
    async measureTargetWrites(input: StepInput<AppStep>): Promise<WritesMeasure> {
      const writes = input.step.targetWrites;
      const to = writes ? named(input, writes.database) : undefined;
      const from = writes ? named(input, writes.source) : undefined;
      if (to?.kind !== 'postgres' || from?.kind !== 'postgres') return { targetOnly: 0, differing: 0, measured: false };
      const measure = operations(to, 'postgres').measureWrites;
      // Undefined where this pair cannot be measured (an Azure read replica: no connection to count through).
      const counted = measure ? await measure(from, to) : undefined;
      return counted ? { ...counted, measured: true } : { targetOnly: 0, differing: 0, measured: false };
    },

    notifyGate,
  });

  /**
   * The cutover ends replication: whoever the stable side still serves would write to a source nobody reads
   * any more. Every traffic front the plan shifts must send all of its users to the canary first.
   */
  async function requireStableIdle(input: StepInput<FinalizeStep>): Promise<void> {
    // Each front's provider says how far its canary's share is from 100%.
    for (const name of input.step.fronts ?? []) {
      const resource = named(input, name);
      if (resource?.kind !== 'traffic') continue;
      const drift = await operations(resource, 'traffic').drift(resource, 100);
      if (drift) {
        throw ApplicationFailure.nonRetryable(
          `the cutover needs ${resource.stable} on ${resource.name} to serve 0% of the traffic, but ${drift}; send every user to ${resource.canary} (or roll back), then resume`,
          'NonRetryable',
        );
      }
    }
  }

  /** Brings back what finalize retired on each traffic front whose provider retires something. */
  async function undoRetired(input: UndoInput): Promise<StepOutcome> {
    const outcomes: [string, StepOutcome][] = [];
    for (const name of (input.step as FinalizeStep).resources) {
      const r = named(input, name);
      const undo = r?.kind === 'traffic' ? operations(r, 'traffic').undoFinalize : undefined;
      if (r?.kind === 'traffic' && undo) outcomes.push([name, await undo(input, r)]);
    }
    return outcomes.length ? merge(outcomes) : { summary: `nothing to undo for ${input.step.id}`, figures: {} };
  }

  /** Past the point of no return on a switchover: every source becomes the primary again (and what the finalize retired on a front comes back). */
  async function switchBack(input: UndoInput, syncedFrom: Record<string, string>): Promise<StepOutcome> {
    const outcomes: [string, StepOutcome][] = [];
    for (const [name, fromName] of Object.entries(syncedFrom)) {
      const to = named(input, name);
      const from = named(input, fromName);
      if (to?.kind !== 'postgres' || from?.kind !== 'postgres') continue;
      const back = operations(to, 'postgres').switchBack;
      if (!back) throw ApplicationFailure.nonRetryable(`provider "${to.provider}" of ${name} cannot switch back to ${fromName}; recover ${fromName} from the backup by hand`, 'NonRetryable');
      outcomes.push([name, await back(input, from as PostgresResource, to)]);
    }
    // The blue revision the finalize retired serves again once traffic returns to it, right after this.
    if ((input.step as FinalizeStep).resources.some((n) => named(input, n)?.kind === 'traffic')) outcomes.push(['fronts', await undoRetired(input)]);
    return outcomes.length ? merge(outcomes) : { summary: 'no database to switch back', figures: {} };
  }

  /** Past the point of no return: every database the cutover made primary hands its writes back to its source. */
  async function reverseSync(input: UndoInput, syncedFrom: Record<string, string>, part: 'start' | 'finish'): Promise<StepOutcome> {
    const outcomes: [string, StepOutcome][] = [];
    for (const [name, fromName] of Object.entries(syncedFrom)) {
      const to = named(input, name);
      const from = named(input, fromName);
      if (to?.kind !== 'postgres' || from?.kind !== 'postgres') continue;
      const recovery = operations(to, 'postgres').reverseSync;
      if (!recovery) {
        throw ApplicationFailure.nonRetryable(`provider "${to.provider}" of ${name} cannot sync back to ${fromName}; recover ${fromName} from the backup by hand`, 'NonRetryable');
      }
      outcomes.push([name, await recovery[part](input, from as PostgresResource, to)]);
    }
    return outcomes.length ? merge(outcomes) : { summary: 'no database to sync back', figures: {} };
  }
}

/**
 * Backups outlive a rollback: they are what an operator restores from when the rollback is not enough.
 * A rollback does not delete them; their own store may (Azure deletes an on-demand backup when the
 * server's backup retention period ends), which the backup step's summary says.
 */
function keptBackups({ step, undo }: UndoInput): StepOutcome {
  const kept = undoRecords(undo).flatMap((u) => (u as { kept?: string[] } | null)?.kept ?? []);
  return { summary: `Kept backup ${kept.length ? kept.join(', ') : `of step ${step.id}`} (a rollback does not delete backups)`, figures: {} };
}

/**
 * One outcome from several resources' outcomes. A single resource's undo record is kept as it is; several
 * are kept by resource name, so each provider later reads back exactly what it recorded.
 */
function merge(outcomes: [string, StepOutcome][]): StepOutcome {
  const undos = outcomes.filter(([, o]) => o.undo !== undefined);
  const merged: StepOutcome = {
    summary: outcomes.map(([, o]) => o.summary).join('; '),
    figures: Object.assign({}, ...outcomes.map(([, o]) => o.figures)),
  };
  const recoveries = outcomes.flatMap(([, o]) => (o.recovery ? [o.recovery] : []));
  if (recoveries.length) merged.recovery = { recovered: recoveries.reduce((n, r) => n + r.recovered, 0), atRisk: recoveries.reduce((n, r) => n + r.atRisk, 0) };
  if (undos.length === 1 && outcomes.length === 1) merged.undo = undos[0]![1].undo;
  else if (undos.length) merged.undo = { byResource: Object.fromEntries(undos.map(([name, o]) => [name, o.undo!])) };
  return merged;
}

/** The undo records of a step: one, or one per resource (see merge). */
function undoRecords(undo: Json | undefined): Json[] {
  if (undo && typeof undo === 'object' && !Array.isArray(undo) && 'byResource' in undo && undo.byResource && typeof undo.byResource === 'object') {
    return Object.values(undo.byResource as Record<string, Json>);
  }
  return undo === undefined ? [] : [undo];
}

/** Every activity heartbeats while it works, whatever its provider does between progress reports. */
function keepingAlive<T extends Record<string, (input: never) => Promise<unknown>>>(activities: T): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, fn]) => [name, async (input: never) => withAttempt(await keepAlive(() => fn(input)))]),
  ) as T;
}

export type Activities = ReturnType<typeof createActivities>;
