// `finalize`: the target takes over for good. A database a data phase filled is cut over (writes paused,
// sequences moved past the source, replication ended). With a point of no return, crossing into it needs
// its own gate, and a rollback past it a confirmed recovery that brings the target's writes back.
import { z } from 'zod';
import type { FinalizeStep, Recovery } from '../types';
import { gateName, gateRules, gateStep, list, phaseKind, resourceName, retryDetail, stepCommon, type BodyCommon, type GateRules } from './kit';

type Body = BodyCommon & {
  resources: string[];
  pointOfNoReturn?: GateRules & { gate?: string; recovery?: Recovery };
};

const RECOVERIES = ['reverse-sync', 'switch-back'] as const satisfies readonly Recovery[];

/** What a rollback past the point of no return does, in words an approver reads before crossing it. */
export function recoveryPhrase(recovery: Recovery, syncedFrom: Record<string, string>): string {
  const pairs = Object.entries(syncedFrom).map(([to, from]) => `${to} -> ${from}`);
  switch (recovery) {
    case 'reverse-sync':
      return `a reverse sync (${pairs.join(', ') || 'target -> source'}): every row the target received is replicated back to the source before traffic returns`;
    case 'switch-back': {
      const back = Object.entries(syncedFrom).map(([to, from]) => `${from} primary again, ${to} its replica`);
      return `a switch back (${back.join('; ') || 'the source primary again'}): a second planned switchover, which waits until the source has replayed every write the target took, before traffic returns`;
    }
  }
}

/**
 * The recovery a plan gets when it names none: the reverse sync where every synced pair can take it (the
 * sandbox; Azure with replication: logical), else the switch back where they all can (an Azure read
 * replica, cut over by a switchover). `pairs` are [target, source] resource names.
 */
export function defaultRecovery(
  pairs: readonly [string, string][],
  ctx: { resources: Record<string, { provider: string }>; recovers(provider: string, recovery: string): boolean; recoveryProblem(resource: string, recovery: string): string | undefined },
): Recovery {
  const can = (r: Recovery) =>
    pairs.every(([to, from]) => [to, from].every((n) => !ctx.resources[n] || ctx.recovers(ctx.resources[n]!.provider, r)) && !ctx.recoveryProblem(to, r));
  if (can('reverse-sync')) return 'reverse-sync';
  if (can('switch-back')) return 'switch-back';
  // Neither: the one whose refusal names the fix (a provider with switchovers says what stops the switch back).
  const offers = (r: Recovery) => pairs.every(([to, from]) => [to, from].every((n) => !ctx.resources[n] || ctx.recovers(ctx.resources[n]!.provider, r)));
  return offers('switch-back') ? 'switch-back' : 'reverse-sync';
}

export const finalize = phaseKind<Body>({
  schema: (parts) =>
    z.strictObject({
      ...stepCommon,
      resources: z.array(resourceName).min(1),
      /** After this step the target has taken writes: crossing needs its own gate, and a rollback a confirmed recovery. */
      pointOfNoReturn: z
        .strictObject({
          /** The name of the gate that opens before the step (default point-of-no-return). */
          gate: gateName.optional(),
          /** reverse-sync (the sandbox's logical replication back) or switch-back (Azure: a second switchover); by default what the providers offer. */
          recovery: z.enum(RECOVERIES).optional(),
          ...gateRules(parts),
        })
        .optional(),
    }),
  resolve(b, ctx) {
    const syncedFrom: Record<string, string> = {};
    for (const s of ctx.steps) if (s.kind === 'data' && b.resources.includes(s.to)) syncedFrom[s.to] = s.from;
    const fronts = [...new Set(ctx.steps.flatMap((s) => (s.kind === 'traffic' ? [s.resource] : [])))];
    const step: FinalizeStep = { ...ctx.base(), kind: 'finalize', title: ctx.title(`Finalize ${list(b.resources)}`), resources: b.resources, syncedFrom, ...(fronts.length ? { fronts } : {}) };
    const ponr = b.pointOfNoReturn;
    if (!ponr) return [step];
    const gate = ponr.gate ?? 'point-of-no-return';
    const recovery = ponr.recovery ?? defaultRecovery(Object.entries(syncedFrom), ctx);
    const instructions = `${ponr.instructions ? `${ponr.instructions.trim()} ` : ''}Past this gate, rolling back means ${recoveryPhrase(recovery, syncedFrom)}, and needs \`tiershift rollback --confirm\`.`;
    return [
      { ...gateStep({ ...ctx.base('-gate'), title: `Point of no return: approve crossing into ${step.id}` }, gate, { ...ponr, instructions }, ctx.approvers), pointOfNoReturn: step.id },
      { ...step, pointOfNoReturn: { gate, recovery } },
    ];
  },
  check(b, ctx) {
    b.resources.forEach((n, j) => ctx.ref(ctx.at('resources', j), n, ['postgres', 'blob', 'traffic', 'app']));
    if (ctx.seen.finalizeAt < 0) ctx.seen.finalizeAt = ctx.index;
    const synced = b.resources.filter((n) => ctx.resources[n]?.kind === 'postgres' && ctx.seen.syncedInto.has(n));
    for (const n of synced) ctx.seen.cutOver.add(n);
    // The cutover ends replication: whoever still writes to the source after it writes into a database nobody
    // reads any more. Every front must send all of its users to the new version first.
    if (synced.length) {
      for (const [front, { weight, at }] of ctx.seen.lastWeight) {
        if (weight < 100) {
          ctx.problem(at, `expected the last traffic step of ${front} to reach 100 before the finalize at phases[${ctx.index}] cuts over ${list(synced)} (users left on the stable side would keep writing to the old database), got ${weight}`);
        }
      }
    }
    const ponr = b.pointOfNoReturn;
    if (!ponr) return;
    if (ctx.seen.pointOfNoReturnAt >= 0) {
      ctx.problem(ctx.at('pointOfNoReturn'), `expected one point of no return per plan, got a second (the first is at phases[${ctx.seen.pointOfNoReturnAt}])`);
    }
    ctx.seen.pointOfNoReturnAt = ctx.index;
    ctx.checkGate(ponr.gate ?? 'point-of-no-return', ponr, (...rest) => ctx.at('pointOfNoReturn', ...rest), 'gate');
    if (!synced.length) {
      ctx.problem(ctx.at('pointOfNoReturn'), `expected the finalize to cut over a postgres resource that a data phase syncs into (the recovery replicates it back), got ${list(b.resources)}`);
    }
    const recovery = ponr.recovery ?? defaultRecovery(synced.map((to) => [to, ctx.seen.syncedInto.get(to)!] as [string, string]), ctx);
    for (const n of synced) {
      const problem = ctx.recoveryProblem(n, recovery);
      if (problem) ctx.problem(ctx.at('pointOfNoReturn'), problem);
      for (const r of [n, ctx.seen.syncedInto.get(n)!]) {
        const provider = ctx.resources[r]?.provider;
        if (provider && !ctx.recovers(provider, recovery)) {
          const offers = RECOVERIES.filter((x) => ctx.recovers(provider, x));
          ctx.problem(
            ctx.at('pointOfNoReturn', 'recovery'),
            `expected resources whose provider can ${recovery}, got "${r}", ${/^[aeiou]/.test(provider) ? 'an' : 'a'} ${provider} resource; ` +
              (offers.length ? `provider ${provider} recovers by ${offers.join(' or ')}, so set recovery: ${offers[0]}` : `provider ${provider} cannot recover past a point of no return yet, so leave pointOfNoReturn out of this plan`),
          );
        }
      }
    }
  },
  allowedAfterFinalize: true,
  describe: retryDetail,
});
