// Everything an activity hands back becomes text somewhere: its result is history, status and the report;
// its error is history, the worker's log line ("Activity failed") and status.errors. Both pass through
// contract/redact.ts here, on the way out of every activity, so no provider can forget it.
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { redactDeep, redactError } from '../contract/redact';

export const redactionInterceptor: ActivityInterceptorsFactory = () => ({
  inbound: {
    async execute(input, next) {
      try {
        return redactDeep(await next(input));
      } catch (err) {
        throw redactError(err);
      }
    },
  },
});
