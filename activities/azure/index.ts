// The Azure provider's operations on PostgreSQL Flexible Server, Front Door, Blob Storage and Container Apps,
// through the official SDKs: a table by kind of resource. `createAzureProvider` takes the credential and
// transport, so tests run the same code against a fake ARM.
import { ApplicationFailure } from '@temporalio/activity';
import type { BackupStep } from '../../plan/types';
import { backupPrefix } from '../backup-key';
import type { ProviderOperations, StepInput, StepOutcome } from '../types';
import { backupContainer, checkContainer, observeBlobSync, syncBlobs, undoBlobSync } from './blob';
import { azureContext, Journal, resourceOf, type AzureContext, type AzureProviderOptions } from './common';
import { checkApp, observeApp, reactivateStableRevision, retireStableRevision, undoApp, updateApp } from './container-apps';
import { describeWeights, front, readWeights, weightPreconditions } from './front-door';
import type { AzureApp, AzureBlob, AzurePostgres, AzureTraffic } from './provider';
import { applyResource, observeResource, resourceDrift, undoResource } from './resource';
import { cutoverLogical, measureLogical, observeLogical, reverseLogical, syncLogical, undoLogical } from './logical';
import { removeLeftScratch, proveRestore } from './restore';
import { dumpToDestination, refuseDumpWithoutConnection } from './dump';
import { resolveKeyVaultSecret } from './secrets';
import { backupName, backupServer, checkServer, observeInfra, observeReplica, prepareInfra, promoteReplica, settingsDrift, switchBack, syncReplica, undoInfra, undoReplica } from './postgres';
import { analyseTraffic, observeTraffic, shiftTraffic, trafficDrift, undoTraffic } from './traffic';

export type { AzureProviderOptions } from './common';

/** Front Door routes to the stable origin today; revisions of a Container App are checked by the app. */
async function checkTraffic(az: AzureContext, resource: AzureTraffic): Promise<StepOutcome> {
  if (resource.containerApp) return { summary: `${resource.name}: revisions of ${resource.containerApp} (checked by the app)`, figures: {} };
  const f = front(az, resource);
  const w = await readWeights(f);
  const wrong = await weightPreconditions(f);
  if (wrong) throw ApplicationFailure.nonRetryable(`${resource.name}: ${wrong}.`, 'NonRetryable');
  if (!w.stable.enabled) throw ApplicationFailure.nonRetryable(`${resource.name}: the stable origin ${resource.stable} is disabled in Front Door; enable it before migrating`, 'NonRetryable');
  return { summary: `${resource.name} healthy: Front Door ${resource.profile}/${resource.originGroup} routes ${describeWeights(resource, w)}`, figures: { [`${resource.name}.stableWeight`]: w.stable.weight } };
}

/** Whether a data step's target is filled by logical replication rather than created as a read replica. */
const logical = ({ step, resources }: StepInput) => step.kind === 'data' && (resources[step.to] as AzurePostgres | undefined)?.replication === 'logical';

/** One journal per activity attempt, shared by the resources of a multi-resource step. */
const journals = new WeakMap<object, Journal>();
const journalOf = (input: object): Journal => {
  let journal = journals.get(input);
  if (!journal) journals.set(input, (journal = new Journal()));
  return journal;
};

/**
 * An on-demand server backup: a rollback keeps it; Azure deletes it when the server's backup retention
 * period ends. Proven by a point-in-time restore where the plan asks for proof and the database has a
 * connection to compare through.
 */
async function backupPostgres(az: AzureContext, input: StepInput<BackupStep>, resource: AzurePostgres): Promise<StepOutcome> {
  const journal = journalOf(input);
  refuseDumpWithoutConnection(input, resource);
  const b = await backupServer(az, input, resource, journal);
  const proof = input.step.verifyRestore && resource.connection ? await proveRestore(az, resource, b.name, journal) : undefined;
  const dump = input.step.destination ? await dumpToDestination(az, input, resource) : undefined;
  const unproven =
    input.step.verifyRestore && !resource.connection
      ? `; its restore is not proven: give ${resource.name} a connection (a Key Vault reference to its connection string) for the proof`
      : '';
  return {
    summary: b.line + (proof?.line ?? unproven) + (dump?.line ?? ''),
    figures: { ...b.figures, ...proof?.figures, ...dump?.figures },
    undo: { kept: [b.kept, ...(dump ? [dump.kept] : [])] },
  };
}

/** A container copied under the step's destination. */
async function backupBlobs(az: AzureContext, input: StepInput<BackupStep>, resource: AzureBlob): Promise<StepOutcome> {
  const { step } = input;
  const name = resource.name;
  const destination = resourceOf(input.resources, step.destination, 'blob', `destination of backup step ${step.id}`);
  const prefix = `${backupPrefix(input)}${resource.container}/`;
  const { progress: c, url } = await backupContainer(az, resource, destination, prefix, journalOf(input));
  return {
    summary: `Copied ${c.copied} blobs of ${name} (${c.bytes} bytes) to ${url}, ${c.skipped} already there`,
    figures: { [`${name}.blobsCopied`]: c.copied, [`${name}.blobsSkipped`]: c.skipped, [`${name}.bytesCopied`]: c.bytes },
    undo: { kept: [url] },
  };
}

export function createAzureProvider(options: AzureProviderOptions = {}): ProviderOperations {
  const az = azureContext(options);
  return {
    secrets: { keyVault: (ref, what) => resolveKeyVaultSecret(az, ref, what) },
    postgres: {
      check: (r: AzurePostgres) => checkServer(az, r),
      backup: (input, r: AzurePostgres) => backupPostgres(az, input, r),
      undoBackup: (input, r: AzurePostgres) => removeLeftScratch(az, r, backupName(input as StepInput<BackupStep>, r.name)),
      prepare: (input) => prepareInfra(az, input),
      observePrepare: (input) => observeInfra(az, input),
      undoPrepare: (input) => undoInfra(az, input),
      settingsDrift: (r: AzurePostgres, expected) => settingsDrift(az, r, expected),
      // A data step fills its target as a read replica, or (replication: logical) an existing server by logical replication.
      sync: (input) => (logical(input) ? syncLogical(az, input) : syncReplica(az, input)),
      observeSync: (input) => (logical(input) ? observeLogical(az, input) : observeReplica(az, input)),
      undoSync: (input) => (logical(input) ? undoLogical(az, input) : undoReplica(az, input)),
      // A switchover is reversed by another: the switch-back recovery past a point of no return. A
      // standalone promotion is final (the plan refuses a point of no return with it).
      cutover: (input, from: AzurePostgres, to: AzurePostgres) => (to.replication === 'logical' ? cutoverLogical(az, input, from, to) : promoteReplica(az, input, from, to)),
      switchBack: (_input, from: AzurePostgres, to: AzurePostgres) => switchBack(az, from, to),
      // A server filled by logical replication (the plan allows a reverse sync only there: provider.ts recoveryProblem).
      reverseSync: reverseLogical(az),
      measureWrites: async (from: AzurePostgres, to: AzurePostgres) => (to.replication === 'logical' ? measureLogical(az, from, to) : undefined),
    },
    blob: {
      check: (r: AzureBlob) => checkContainer(az, r),
      backup: (input, r: AzureBlob) => backupBlobs(az, input, r),
      sync: (input) => syncBlobs(az, input),
      observeSync: (input) => observeBlobSync(az, input),
      undoSync: (input) => undoBlobSync(az, input),
    },
    traffic: {
      check: (r: AzureTraffic) => checkTraffic(az, r),
      shift: (input) => shiftTraffic(az, input),
      observe: (input) => observeTraffic(az, input),
      analyse: (input) => analyseTraffic(az, input),
      // Azure Monitor's platform metrics have a one-minute grain.
      judgeEveryMs: 60_000,
      undo: (input) => undoTraffic(az, input),
      drift: (r: AzureTraffic, percent) => trafficDrift(az, r, percent),
      // Blue-green on Container Apps: finalize retires the blue revision; Front Door keeps the demoted origin as failover.
      finalize: async (_input, r: AzureTraffic) => (r.containerApp ? retireStableRevision(az, r) : { summary: `${r.name}: ${r.stable} stays as Front Door's failover at a lower priority`, figures: {} }),
      undoFinalize: async (input, r: AzureTraffic) => (r.containerApp ? reactivateStableRevision(az, input, r) : { summary: `nothing to undo for ${r.name}`, figures: {} }),
    },
    app: {
      check: (r: AzureApp) => checkApp(az, r),
      update: (input) => updateApp(az, input),
      observe: (input) => observeApp(az, input),
      undo: (input) => undoApp(az, input),
    },
    arm: {
      observe: (input) => observeResource(az, input),
      apply: (input) => applyResource(az, input),
      undo: (input) => undoResource(az, input),
      drift: (expect) => resourceDrift(az, expect),
    },
  };
}
