// The local provider: every operation on the sandbox's real components (PostgreSQL, Azurite, HAProxy).
import { ApplicationFailure } from '@temporalio/activity';
import type { FinalizeStep, PostgresResource, Resource } from '../../plan/types';
import { restartPostgres } from '../../sandbox';
import type { DriftInput, MigrationProvider, StepInput, StepOutcome, UndoInput } from '../types';
import { undoApp, updateApp } from './app';
import { backupDatabase, undoBackup } from './backup';
import { syncBlobs, undoBlobSync } from './blob-sync';
import { checkHealth } from './health';
import { prepareInfra, settingsDrift, undoInfra, type RestartCluster } from './infra';
import { cutoverPostgres, syncPostgres, undoPgSync } from './pg-sync';
import { finishReverseSync, startReverseSync } from './reverse-sync';
import { sandboxState } from './sandbox';
import { analyseTraffic, shiftTraffic, trafficDrift, undoTraffic } from './traffic';

const restartCluster: RestartCluster = async (resource) => {
  if (!resource.cluster) {
    throw ApplicationFailure.nonRetryable(`${resource.name} needs a restart for its new settings but is not a sandbox cluster; restart it yourself and resume`, 'NonRetryable');
  }
  await restartPostgres(sandboxState(), resource.cluster);
};

const kindOf = (input: StepInput, name: string): Resource['kind'] | undefined => input.resources[name]?.kind;

/** Finalize: a database that an earlier data step replicated into takes over (cutover); others need nothing. */
async function finalizeMigration(input: StepInput<FinalizeStep>): Promise<StepOutcome> {
  const outcomes: StepOutcome[] = [];
  for (const name of input.step.resources) {
    const to = input.resources[name];
    const fromName = input.step.syncedFrom[name];
    const from = fromName ? input.resources[fromName] : undefined;
    if (to?.kind === 'postgres' && from?.kind === 'postgres') outcomes.push(await cutoverPostgres(input, from as PostgresResource, to));
    else outcomes.push({ summary: `${name}: nothing to cut over`, figures: {} });
  }
  return { summary: outcomes.map((o) => o.summary).join('; '), figures: Object.assign({}, ...outcomes.map((o) => o.figures)) };
}

/** Past the point of no return: every database the cutover made primary hands its writes back to its source. */
async function reverseSync(input: UndoInput, step: FinalizeStep, part: 'start' | 'finish'): Promise<StepOutcome> {
  const outcomes: StepOutcome[] = [];
  for (const [name, fromName] of Object.entries(step.syncedFrom)) {
    const to = input.resources[name];
    const from = input.resources[fromName];
    if (to?.kind !== 'postgres' || from?.kind !== 'postgres') continue;
    outcomes.push(await (part === 'start' ? startReverseSync : finishReverseSync)(input, from, to));
  }
  return { summary: outcomes.map((o) => o.summary).join('; ') || 'no database to sync back', figures: Object.assign({}, ...outcomes.map((o) => o.figures)) };
}

async function undoStep(input: UndoInput): Promise<StepOutcome> {
  const { step } = input;
  switch (step.kind) {
    case 'backup':
      return undoBackup(input);
    case 'infra':
      return undoInfra(restartCluster)(input);
    case 'app':
      return undoApp(input);
    case 'data':
      return kindOf(input, step.to) === 'postgres' ? undoPgSync(input) : undoBlobSync(input);
    case 'traffic':
      return undoTraffic(input);
    case 'finalize':
      if (step.pointOfNoReturn && input.part) return reverseSync(input, step, input.part);
      // Without a point of no return, a finalized cutover is undone by the earlier steps' undos.
      return { summary: `nothing to undo for ${step.id}`, figures: {} };
    case 'check':
    case 'gate':
      // Reads and decisions change nothing.
      return { summary: `nothing to undo for ${step.id}`, figures: {} };
  }
}

async function checkDrift({ resources, expect }: DriftInput): Promise<string[]> {
  const found: string[] = [];
  for (const [name, percent] of Object.entries(expect.weights ?? {})) {
    const drift = await trafficDrift(resources, name, percent);
    if (drift) found.push(drift);
  }
  for (const [name, settings] of Object.entries(expect.settings ?? {})) {
    const resource = resources[name];
    if (resource?.kind === 'postgres') found.push(...(await settingsDrift(resource, settings)));
  }
  return found;
}

export const localProvider: MigrationProvider = {
  checkDrift,
  checkHealth,
  backupDatabase,
  prepareInfra: prepareInfra(restartCluster),
  updateApp,
  syncData: (input) => (kindOf(input, input.step.to) === 'postgres' ? syncPostgres(input) : syncBlobs(input)),
  shiftTraffic,
  analyseTraffic,
  finalizeMigration,
  undoStep,
};
