// Chaos rehearsal: make every activity fail its first N attempts, so a team can prove on the sandbox
// that their plan survives flaky infrastructure before they trust it with production. Failing *after*
// the activity ran (the default) is the hard case: the side effect happened, the report of it was
// lost, and the retry must notice instead of doing it again.
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { UserError } from '../contract/errors';

export interface FaultInjection {
  /** Attempts of every activity that fail (1 = the first attempt of each fails, the second may pass). */
  attempts: number;
  /** Fail before the activity runs, or after it ran (its effect stays, its result is lost). */
  when: 'before' | 'after';
  /** Only these activity types (default: all). */
  activities?: string[];
}

/** `TIERSHIFT_FAULTS=2`, `TIERSHIFT_FAULTS=1:before`, `TIERSHIFT_FAULTS=2:after:syncData,undoStep`. */
export function faultsFromEnv(value = process.env.TIERSHIFT_FAULTS): FaultInjection | undefined {
  if (!value) return undefined;
  const match = /^(\d{1,2})(?::(before|after))?(?::([A-Za-z,]+))?$/.exec(value.trim());
  if (!match) throw new UserError(`TIERSHIFT_FAULTS takes N[:before|after][:activity,...], e.g. 2:after:syncData; got "${value}".`, 2);
  return { attempts: Number(match[1]), when: (match[2] as 'before' | 'after' | undefined) ?? 'after', activities: match[3]?.split(',') };
}

export function faultInterceptor(faults: FaultInjection): ActivityInterceptorsFactory {
  return (ctx: Context) => ({
    inbound: {
      async execute(input, next) {
        const { attempt, activityType } = ctx.info;
        const targeted = attempt <= faults.attempts && (!faults.activities || faults.activities.includes(activityType));
        const fail = () =>
          ApplicationFailure.retryable(`injected fault: attempt ${attempt} of ${activityType} fails (TIERSHIFT_FAULTS, ${faults.when} it ran)`, 'InjectedFault');
        if (targeted && faults.when === 'before') throw fail();
        const result = await next(input);
        if (targeted) throw fail();
        return result;
      },
    },
  });
}
