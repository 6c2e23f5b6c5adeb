// The activities the worker registers: each dispatches a plan step to the provider of the resource it acts on.
import { ApplicationFailure } from '@temporalio/activity';
import type { Provider, Resource, Step } from '../plan/types';
import { localProvider } from './local';
import { keepAlive } from './heartbeat';
import { notifyGate } from './notify';
import type { AnalysisInput, DriftInput, MigrationProvider, StepInput, StepOutcome, UndoInput } from './types';

export type Providers = Partial<Record<Provider, MigrationProvider>>;

export function createActivities(providers: Providers = { local: localProvider }) {
  const providerOf = (resource: Resource | undefined): MigrationProvider => {
    if (!resource) throw ApplicationFailure.nonRetryable('the step names a resource the plan does not define', 'NonRetryable');
    const provider = providers[resource.provider];
    if (!provider) {
      throw ApplicationFailure.nonRetryable(
        `resource ${resource.name} uses provider "${resource.provider}", which this worker does not have; run a worker with that provider`,
        'NonRetryable',
      );
    }
    return provider;
  };
  /** The resource a step acts on decides its provider (a data sync is run by its target's provider). */
  const primaryResource = ({ step, resources }: StepInput): Resource | undefined => {
    const name = mainResourceName(step);
    return name === undefined ? undefined : resources[name];
  };

  return keepingAlive({
    async checkHealth(input: StepInput<Extract<Step, { kind: 'check' }>>): Promise<StepOutcome> {
      const outcomes: StepOutcome[] = [];
      for (const name of input.step.resources) {
        const resource = input.resources[name];
        outcomes.push(await providerOf(resource).checkHealth(input, resource!));
      }
      return {
        summary: outcomes.map((o) => o.summary).join('; '),
        figures: Object.assign({}, ...outcomes.map((o) => o.figures)),
      };
    },
    backupDatabase: (input: StepInput<Extract<Step, { kind: 'backup' }>>) => providerOf(primaryResource(input)).backupDatabase(input),
    prepareInfra: (input: StepInput<Extract<Step, { kind: 'infra' }>>) => providerOf(primaryResource(input)).prepareInfra(input),
    updateApp: (input: StepInput<Extract<Step, { kind: 'app' }>>) => providerOf(primaryResource(input)).updateApp(input),
    syncData: (input: StepInput<Extract<Step, { kind: 'data' }>>) => providerOf(primaryResource(input)).syncData(input),
    shiftTraffic: (input: StepInput<Extract<Step, { kind: 'traffic' }>>) => providerOf(primaryResource(input)).shiftTraffic(input),
    analyseTraffic: (input: AnalysisInput) => providerOf(primaryResource(input)).analyseTraffic(input),
    finalizeMigration: (input: StepInput<Extract<Step, { kind: 'finalize' }>>) =>
      providerOf(primaryResource(input)).finalizeMigration(input),
    undoStep: (input: UndoInput) => providerOf(primaryResource(input)).undoStep(input),
    /** Asks the provider of each expected resource; a provider without drift checks reports none. */
    async checkDrift(input: DriftInput): Promise<string[]> {
      const found: string[] = [];
      for (const [name, provider] of Object.entries(providers)) {
        const mine = ([k]: [string, unknown]) => input.resources[k]?.provider === name;
        const expect = {
          weights: Object.fromEntries(Object.entries(input.expect.weights ?? {}).filter(mine)),
          settings: Object.fromEntries(Object.entries(input.expect.settings ?? {}).filter(mine)),
        };
        if (provider?.checkDrift && Object.keys(expect.weights).length + Object.keys(expect.settings).length) {
          found.push(...(await provider.checkDrift({ ...input, expect })));
        }
      }
      return found;
    },
    notifyGate,
  });
}

/** Every activity heartbeats while it works, whatever its provider does between progress reports. */
function keepingAlive<T extends Record<string, (input: never) => Promise<unknown>>>(activities: T): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, fn]) => [name, (input: never) => keepAlive(() => fn(input))]),
  ) as T;
}

export type Activities = ReturnType<typeof createActivities>;

function mainResourceName(step: Step): string | undefined {
  switch (step.kind) {
    case 'check':
    case 'backup':
    case 'finalize':
      return step.resources[0];
    case 'infra':
    case 'app':
    case 'traffic':
      return step.resource;
    case 'data':
      return step.to;
    case 'gate':
      return undefined;
  }
}
