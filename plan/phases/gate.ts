// `gate`: the migration waits for people to approve (or reject) before it goes on.
import { z } from 'zod';
import { gateName, gateRules, gateStep, phaseKind, stepCommon, type BodyCommon, type GateRules } from './kit';

type Body = BodyCommon & GateRules & { name: string };

export const gate = phaseKind<Body>({
  schema: (parts) => z.strictObject({ ...stepCommon, name: gateName, ...gateRules(parts) }),
  resolve: (b, ctx) => [gateStep({ ...ctx.base(), title: ctx.title(`Approval gate "${b.name}"`) }, b.name, b, ctx.approvers)],
  check(b, ctx) {
    ctx.checkGate(b.name, b, ctx.at);
    const ponr = ctx.seen.pointOfNoReturnAt;
    if (ponr >= 0 && b.timeout && b.onTimeout !== 'abort') {
      ctx.problem(
        ctx.at('onTimeout'),
        `expected onTimeout: abort for a gate after the point of no return at phases[${ponr}] (a rollback there syncs data back and needs an operator's --confirm), got ${b.onTimeout ?? 'rollback (the default)'}`,
      );
    }
  },
  // Decisions change nothing: no undo, and no retries to show.
  describe: () => '',
  allowedAfterFinalize: true,
});
