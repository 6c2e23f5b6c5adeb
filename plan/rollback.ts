// The order rollback undoes a migration in, shared by the workflow and `tiershift plan`: traffic back to
// the stable origin first (users stop seeing the change at once), then everything else in reverse.
// Pure and deterministic (the phase kinds are zod and words), so the workflow may import it.
import { PHASES } from './phases';
import type { FinalizeStep, Step } from './types';

export interface RollbackAction {
  stepId: string;
  action: string;
  /** A recovery in two parts around the traffic undo: `start` before it, `finish` after. */
  part?: 'start' | 'finish';
}

export function rollbackOrder(steps: readonly Step[]): RollbackAction[] {
  const actions: RollbackAction[] = [];
  // Past the point of no return the target holds writes the source lacks: the source must receive them
  // (and keep receiving them) before users go back to it, and only once nobody writes to the target
  // does the replication stop.
  const crossed = steps.find((s): s is FinalizeStep => s.kind === 'finalize' && s.pointOfNoReturn !== undefined);
  const pairs = crossed ? Object.entries(crossed.syncedFrom).map(([to, from]) => `${to} -> ${from}`).join(', ') : '';
  if (crossed) {
    actions.push({ stepId: crossed.id, part: 'start', action: `Start the reverse sync ${pairs}: copy back what only the target has, then replicate its new writes (logical replication)` });
  }
  // One action per traffic front: the earliest shift holds the weights from before the migration.
  const fronts = new Set<string>();
  for (const step of steps) {
    if (step.kind !== 'traffic' || fronts.has(step.resource)) continue;
    fronts.add(step.resource);
    actions.push({ stepId: step.id, action: PHASES.traffic.undo!(step)! });
  }
  const undos: RollbackAction[] = [];
  for (const step of [...steps].reverse()) {
    const action = undoAction(step);
    if (action) undos.push({ stepId: step.id, action });
  }
  if (crossed) {
    // After the new version has stopped: then nothing writes to the target any more.
    let lastApp = -1;
    undos.forEach((a, i) => {
      if (steps.find((s) => s.id === a.stepId)?.kind === 'app') lastApp = i;
    });
    undos.splice(lastApp + 1, 0, {
      stepId: crossed.id,
      part: 'finish',
      action: `Finish the reverse sync ${pairs}: pause the target's writes until the source has them all, move the source's sequences past the target's, stop replicating`,
    });
  }
  return [...actions, ...undos];
}

/** Each kind's own undo wording (plan/phases/); traffic's is placed first, once per front, above. */
function undoAction(step: Step): string | undefined {
  return step.kind === 'traffic' ? undefined : PHASES[step.kind].undo?.(step);
}
