// The order rollback undoes a migration in, shared by the workflow and `tiershift plan`: traffic back to
// the stable origin first (users stop seeing the change at once), then everything else in reverse.
// Pure and deterministic (the phase kinds are zod and words), so the workflow may import it.
import { PHASES } from './phases';
import type { AppStep, FinalizeStep, Step } from './types';

export interface RollbackAction {
  stepId: string;
  action: string;
  /** A recovery in two parts around the traffic undo: `start` before it, `finish` after. */
  part?: 'start' | 'finish';
}

export interface RollbackOptions {
  /**
   * Recover the writes the target took at the write point (an app step with `targetWrites`). Off only for
   * histories recorded before the write point existed, so they replay with the commands they had.
   */
  targetWrites?: boolean;
}

export function rollbackOrder(steps: readonly Step[], { targetWrites = true }: RollbackOptions = {}): RollbackAction[] {
  const actions: RollbackAction[] = [];
  // Once the target took writes the source lacks (past the point of no return, or from the write point
  // on: the new version on a replicated target), the source must receive them before users go back to
  // it, and once more after the new version stopped, when nothing writes to the target any more.
  // A switch back is one action, before traffic returns: until it, the source is a read-only replica,
  // and the stable side's writes would fail there.
  const switchBack = steps.find((s): s is FinalizeStep => s.kind === 'finalize' && s.pointOfNoReturn?.recovery === 'switch-back');
  if (switchBack) actions.push({ stepId: switchBack.id, action: switchBackAction(switchBack) });
  const recovering = switchBack ? undefined : recoveryPoint(steps, targetWrites);
  if (recovering) actions.push({ stepId: recovering.step.id, part: 'start', action: recovering.start });
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
  if (recovering) {
    // After the new version has stopped: then nothing writes to the target any more.
    let lastApp = -1;
    undos.forEach((a, i) => {
      if (steps.find((s) => s.id === a.stepId)?.kind === 'app') lastApp = i;
    });
    undos.splice(lastApp + 1, 0, { stepId: recovering.step.id, part: 'finish', action: recovering.finish });
  }
  return [...actions, ...undos];
}

/** Each kind's own undo wording (plan/phases/); traffic's is placed first, once per front, above. */
function undoAction(step: Step): string | undefined {
  return step.kind === 'traffic' ? undefined : PHASES[step.kind].undo?.(step);
}

/** The switch back's runbook line: the original primary takes the writer role again. */
export function switchBackAction(step: FinalizeStep): string {
  const pairs = Object.entries(step.syncedFrom).map(([to, from]) => `${to} -> ${from}`).join(', ');
  return `Switch back ${pairs}: a planned switchover makes the source the primary again once it has replayed every write the target took; the writer endpoint follows it`;
}

/**
 * The step whose recovery a rollback runs in two parts: a crossed point of no return (the reverse sync
 * replicates everything back), else the write point (what only the target has is copied back; rows both
 * sides changed keep the source's version and are counted as at risk). One recovery, never both.
 */
export function recoveryPoint(steps: readonly Step[], targetWrites = true): { step: Step; start: string; finish: string } | undefined {
  const crossed = steps.find((s): s is FinalizeStep => s.kind === 'finalize' && s.pointOfNoReturn?.recovery === 'reverse-sync');
  if (crossed) {
    const pairs = Object.entries(crossed.syncedFrom).map(([to, from]) => `${to} -> ${from}`).join(', ');
    return {
      step: crossed,
      start: `Start the reverse sync ${pairs}: copy back what only the target has, then replicate its new writes (logical replication)`,
      finish: `Finish the reverse sync ${pairs}: pause the target's writes until the source has them all, move the source's sequences past the target's, stop replicating`,
    };
  }
  const app = targetWrites ? steps.find((s): s is AppStep => s.kind === 'app' && s.targetWrites?.recovery !== undefined) : undefined;
  if (!app) return undefined;
  const { database: to, source: from } = app.targetWrites!;
  return {
    step: app,
    start: `Recover the writes ${to} took: stop replicating ${from} -> ${to}, copy to ${from} every row only ${to} has (rows both changed keep ${from}'s version and are counted as at risk)`,
    finish: `Once ${app.resource} ${app.version} is stopped, copy to ${from} the rows ${to} took since, and move ${from}'s sequences past the ids it copied`,
  };
}
