// The local provider: every operation on the sandbox's real components (PostgreSQL, Azurite, HAProxy).
import { ApplicationFailure } from '@temporalio/activity';
import type { MigrationProvider } from '../types';
import { checkHealth } from './health';

const notYet = (operation: string) => async (): Promise<never> => {
  throw ApplicationFailure.nonRetryable(
    `the local provider cannot ${operation} yet; remove that phase from the plan or use a plan with check and gate phases`,
    'NonRetryable',
  );
};

export const localProvider: MigrationProvider = {
  checkHealth,
  backupDatabase: notYet('back up'),
  prepareInfra: notYet('prepare infrastructure'),
  updateApp: notYet('update the app'),
  syncData: notYet('sync data'),
  shiftTraffic: notYet('shift traffic'),
  analyseTraffic: notYet('analyse traffic'),
  finalizeMigration: notYet('finalize'),
  undoStep: async (input) => ({ summary: `nothing to undo for ${input.step.id}`, figures: {} }),
};
