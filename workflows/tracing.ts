// The workflow's half of the traces (contract/tracing.ts): the Temporal SDK's OpenTelemetry interceptors, bundled
// into every workflow bundle (worker/bundle.ts) whether the worker exports traces or not, so the workflow code a
// history replays never depends on a worker's environment. They add a header to what the workflow schedules
// and make spans, which leave the sandbox through the `exporter` sink: the worker sends them on, or drops them
// when tracing is off.
//
// They issue no command, but they do wrap the workflow's promises in a few more awaits, which may reorder what
// two branches resolved by one activation do. So they run only in runs that recorded the patch below: a
// migration started before them replays exactly as it ran.
import * as wf from '@temporalio/workflow';
import { interceptors as openTelemetry } from '@temporalio/interceptors-opentelemetry/lib/workflow-interceptors';

export const TRACING = 'opentelemetry-interceptors';

export const interceptors = (): wf.WorkflowInterceptors => {
  const otel = openTelemetry();
  const inbound = otel.inbound?.[0];
  const outbound = otel.outbound?.[0];
  const internals = otel.internals?.[0];
  // Decided once per run, where the run starts (execute comes before any handler, query or update): a
  // replay without the marker keeps it off even after it catches up and runs on.
  let on = false;
  return {
    inbound: [
      {
        execute: (input, next) => {
          on = wf.patched(TRACING);
          return on && inbound?.execute ? inbound.execute(input, next) : next(input);
        },
        handleSignal: (input, next) => (on && inbound?.handleSignal ? inbound.handleSignal(input, next) : next(input)),
        handleUpdate: (input, next) => (on && inbound?.handleUpdate ? inbound.handleUpdate(input, next) : next(input)),
        validateUpdate: (input, next) => (on && inbound?.validateUpdate ? inbound.validateUpdate(input, next) : next(input)),
        handleQuery: (input, next) => (on && inbound?.handleQuery ? inbound.handleQuery(input, next) : next(input)),
      },
    ],
    outbound: [
      {
        scheduleActivity: (input, next) => (on && outbound?.scheduleActivity ? outbound.scheduleActivity(input, next) : next(input)),
        scheduleLocalActivity: (input, next) => (on && outbound?.scheduleLocalActivity ? outbound.scheduleLocalActivity(input, next) : next(input)),
        startChildWorkflowExecution: (input, next) => (on && outbound?.startChildWorkflowExecution ? outbound.startChildWorkflowExecution(input, next) : next(input)),
        continueAsNew: (input, next) => (on && outbound?.continueAsNew ? outbound.continueAsNew(input, next) : next(input)),
        signalWorkflow: (input, next) => (on && outbound?.signalWorkflow ? outbound.signalWorkflow(input, next) : next(input)),
        getLogAttributes: (input, next) => (on && outbound?.getLogAttributes ? outbound.getLogAttributes(input, next) : next(input)),
      },
    ],
    internals: internals ? [internals] : [],
  };
};
