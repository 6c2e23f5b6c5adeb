// The Azure provider: every operation of the capability interface on PostgreSQL Flexible Server, Front
// Door, Blob Storage and Container Apps, through the official SDKs. `createAzureProvider` takes the
// credential and transport, so tests run the same code against a fake ARM.
import { ApplicationFailure } from '@temporalio/activity';
import type { BackupStep, FinalizeStep, Resource } from '../../plan/types';
import type { Figures } from '../../contract/status';
import type { DriftInput, MigrationProvider, StepInput, StepOutcome, UndoInput } from '../types';
import { backupContainer, checkContainer, syncBlobs, undoBlobSync } from './blob';
import { azureContext, Journal, resourceOf, type AzureContext, type AzureProviderOptions } from './common';
import { checkApp, undoApp, updateApp } from './container-apps';
import { describeWeights, front, readWeights } from './front-door';
import { backupServer, checkServer, prepareInfra, promoteReplica, settingsDrift, syncReplica, undoInfra, undoReplica } from './postgres';
import { analyseTraffic, shiftTraffic, trafficDrift, undoTraffic } from './traffic';

export type { AzureProviderOptions } from './common';

async function checkHealth(az: AzureContext, resource: Resource): Promise<StepOutcome> {
  switch (resource.kind) {
    case 'postgres':
      return checkServer(az, resource);
    case 'blob':
      return checkContainer(az, resource);
    case 'app':
      return checkApp(az, resource);
    case 'traffic': {
      if (resource.containerApp) return { summary: `${resource.name}: revisions of ${resource.containerApp} (checked by the app)`, figures: {} };
      const w = await readWeights(front(az, resource));
      if (!w.stable.enabled) throw ApplicationFailure.nonRetryable(`${resource.name}: the stable origin ${resource.stable} is disabled in Front Door; enable it before migrating`, 'NonRetryable');
      return { summary: `${resource.name} healthy: Front Door ${resource.profile}/${resource.originGroup} routes ${describeWeights(resource, w)}`, figures: { [`${resource.name}.stableWeight`]: w.stable.weight } };
    }
  }
}

/** On-demand server backups and container copies; backups are never deleted by a rollback. */
async function backupDatabase(az: AzureContext, input: StepInput<BackupStep>): Promise<StepOutcome> {
  const { step } = input;
  const journal = new Journal();
  const figures: Figures = {};
  const lines: string[] = [];
  const kept: string[] = [];
  for (const name of step.resources) {
    const resource = input.resources[name];
    if (resource?.kind === 'postgres' && resource.provider === 'azure') {
      const b = await backupServer(az, input, resource, journal);
      Object.assign(figures, b.figures);
      lines.push(b.line);
      kept.push(b.kept);
    } else if (resource?.kind === 'blob' && resource.provider === 'azure') {
      const destination = resourceOf(input.resources, step.destination, 'blob', `destination of backup step ${step.id}`);
      const prefix = `${input.migrationId}/${step.id}/${resource.container}/`;
      const { progress: c, url } = await backupContainer(az, resource, destination, prefix, journal);
      Object.assign(figures, { [`${name}.blobsCopied`]: c.copied, [`${name}.blobsSkipped`]: c.skipped, [`${name}.bytesCopied`]: c.bytes });
      lines.push(`Copied ${c.copied} blobs of ${name} (${c.bytes} bytes) to ${url}, ${c.skipped} already there`);
      kept.push(url);
    } else {
      throw ApplicationFailure.nonRetryable(`backup step ${step.id} names ${name}, which is not an Azure postgres or blob resource of the plan; fix its resources`, 'NonRetryable');
    }
  }
  return { summary: lines.join('; '), figures, undo: { kept } };
}

async function finalizeMigration(az: AzureContext, input: StepInput<FinalizeStep>): Promise<StepOutcome> {
  const outcomes: StepOutcome[] = [];
  for (const name of input.step.resources) {
    const to = input.resources[name];
    const from = input.step.syncedFrom[name] ? input.resources[input.step.syncedFrom[name]!] : undefined;
    if (to?.kind === 'postgres' && to.provider === 'azure' && from?.kind === 'postgres') outcomes.push(await promoteReplica(az, input, to));
    else outcomes.push({ summary: `${name}: nothing to cut over`, figures: {} });
  }
  return { summary: outcomes.map((o) => o.summary).join('; '), figures: Object.assign({}, ...outcomes.map((o) => o.figures)) };
}

async function undoStep(az: AzureContext, input: UndoInput): Promise<StepOutcome> {
  const { step } = input;
  switch (step.kind) {
    case 'backup': {
      const kept = (input.undo as { kept?: string[] } | undefined)?.kept ?? [];
      return { summary: `Kept backup ${kept.length ? kept.join(', ') : `of step ${step.id}`} (backups are never deleted)`, figures: {} };
    }
    case 'infra':
      return undoInfra(az, input);
    case 'app':
      return undoApp(az, input);
    case 'data':
      return input.resources[step.to]?.kind === 'postgres' ? undoReplica(az, input) : undoBlobSync(az, input);
    case 'traffic':
      return undoTraffic(az, input);
    case 'check':
    case 'gate':
    case 'finalize':
      // A promoted replica cannot become a replica again; the earlier steps' undos (traffic first) are the rollback.
      return { summary: `nothing to undo for ${step.id}`, figures: {} };
  }
}

async function checkDrift(az: AzureContext, { resources, expect }: DriftInput): Promise<string[]> {
  const found: string[] = [];
  for (const [name, percent] of Object.entries(expect.weights ?? {})) {
    const resource = resources[name];
    if (resource?.kind !== 'traffic') continue;
    const drift = await trafficDrift(az, resource, percent);
    if (drift) found.push(drift);
  }
  for (const [name, settings] of Object.entries(expect.settings ?? {})) {
    const resource = resources[name];
    if (resource?.kind === 'postgres') found.push(...(await settingsDrift(az, resource, settings)));
  }
  return found;
}

export function createAzureProvider(options: AzureProviderOptions = {}): MigrationProvider {
  const az = azureContext(options);
  return {
    checkDrift: (input) => checkDrift(az, input),
    checkHealth: (_input, resource) => checkHealth(az, resource),
    backupDatabase: (input) => backupDatabase(az, input),
    prepareInfra: (input) => prepareInfra(az, input),
    updateApp: (input) => updateApp(az, input),
    syncData: (input) => (input.resources[input.step.to]?.kind === 'postgres' ? syncReplica(az, input) : syncBlobs(az, input)),
    shiftTraffic: (input) => shiftTraffic(az, input),
    analyseTraffic: (input) => analyseTraffic(az, input),
    finalizeMigration: (input) => finalizeMigration(az, input),
    undoStep: (input) => undoStep(az, input),
  };
}

/** The provider the worker registers: DefaultAzureCredential and the SDKs' own transport. */
export const azureProvider: MigrationProvider = createAzureProvider();
