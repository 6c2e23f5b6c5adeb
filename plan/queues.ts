// Which task queue runs a step's activities. A resource may pin its activities to a queue (`taskQueue:`
// on the resource, whatever its provider): a worker there reaches it (the sandbox's local processes, a
// region's private network) when the workflow's own workers may not. A step runs on the queue of the
// resources it touches; resources without one are taken to be reachable from anywhere.
import type { Resource, Step } from './types';

/** The resources a step reads or changes, by name. */
export function stepResources(step: Step): string[] {
  switch (step.kind) {
    case 'check':
      return step.resources;
    case 'backup':
      return [...step.resources, ...(step.destination ? [step.destination] : [])];
    case 'infra':
    case 'traffic':
      return [step.resource];
    case 'app':
      return [step.resource, ...(step.database ? [step.database] : []), ...(step.targetWrites ? [step.targetWrites.database, step.targetWrites.source] : [])];
    case 'data':
      return [step.from, step.to];
    case 'finalize':
      return [...step.resources, ...Object.values(step.syncedFrom), ...(step.fronts ?? [])];
    case 'sql':
      return [step.resource, ...(step.replicating ? [step.replicating.source, step.replicating.target] : [])];
    case 'verify':
      return step.resource ? [step.resource] : [];
    case 'gate':
    case 'run':
    case 'resource':
      return [];
  }
}

/** The distinct queues a step's resources pin, each with the resources that pin it. */
function pinned(step: Step, resources: Record<string, Resource>): Map<string, string[]> {
  const queues = new Map<string, string[]>();
  for (const name of new Set(stepResources(step))) {
    const queue = resources[name]?.taskQueue;
    if (queue) queues.set(queue, [...(queues.get(queue) ?? []), name]);
  }
  return queues;
}

/** The queue the step's activities run on; undefined for the workflow's own. */
export function stepTaskQueue(step: Step, resources: Record<string, Resource>): string | undefined {
  return [...pinned(step, resources).keys()][0];
}

/** Steps whose resources pin different queues: no one worker is known to reach them all. */
export function queueConflicts(steps: readonly Step[], resources: Record<string, Resource>): [number, string][] {
  const out: [number, string][] = [];
  for (const step of steps) {
    const queues = pinned(step, resources);
    if (queues.size < 2) continue;
    const which = [...queues].map(([q, names]) => `${names.join(', ')} on "${q}"`).join(' and ');
    out.push([step.phaseIndex, `expected the resources of ${step.id} on one task queue, got ${which}; give them the same taskQueue, or split the step`]);
  }
  return out;
}
