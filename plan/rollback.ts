// The order rollback undoes a migration in, shared by the workflow and `tiershift plan`: traffic back to
// the stable origin first (users stop seeing the change at once), then everything else in reverse.
// Pure and deterministic, so the workflow may import it.
import type { Step } from './types';

export interface RollbackAction {
  stepId: string;
  action: string;
}

export function rollbackOrder(steps: readonly Step[]): RollbackAction[] {
  const actions: RollbackAction[] = [];
  // One action per traffic front: the earliest shift holds the weights from before the migration.
  const fronts = new Set<string>();
  for (const step of steps) {
    if (step.kind !== 'traffic' || fronts.has(step.resource)) continue;
    fronts.add(step.resource);
    actions.push({ stepId: step.id, action: `Send 100% of ${step.resource} back to the stable origin` });
  }
  for (const step of [...steps].reverse()) {
    const action = undoAction(step);
    if (action) actions.push({ stepId: step.id, action });
  }
  return actions;
}

function undoAction(step: Step): string | undefined {
  switch (step.kind) {
    case 'backup':
      return `Keep the backup of ${step.resources.join(', ')} (never deleted)`;
    case 'infra':
      return `Restore the previous settings of ${step.resource}`;
    case 'app':
      return `Stop ${step.resource} ${step.version} and keep the previous version serving`;
    case 'data':
      return `Stop syncing ${step.from} to ${step.to} and remove what the sync created; ${step.from} stays untouched`;
    case 'traffic':
    case 'check':
    case 'gate':
    case 'finalize':
      return undefined;
  }
}
