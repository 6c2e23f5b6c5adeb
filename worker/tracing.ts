// The worker's half of the traces (contract/tracing.ts): a span for every activity it runs, child of the
// workflow's span that scheduled it, and the sink through which the workflow's own spans leave the sandbox.
import { trace } from '@opentelemetry/api';
import type { ActivityInterceptorsFactory, InjectedSinks } from '@temporalio/worker';
import { makeWorkflowExporter, OpenTelemetryActivityInboundInterceptor, OpenTelemetryActivityOutboundInterceptor } from '@temporalio/interceptors-opentelemetry/lib/worker';
import type { OpenTelemetryWorkflowExporter } from '@temporalio/interceptors-opentelemetry/lib/workflow/definitions';
import type { Tracing } from '../contract/tracing';

/** What a step's activity is given (workflows/migration.ts stepInput): only its names are read, never its resources. */
interface StepInput {
  migrationId?: unknown;
  step?: { id?: unknown; kind?: unknown };
}

/**
 * The SDK's activity span, named `RunActivity:<type>` with the workflow and activity ids, plus the migration and
 * the step it runs for. Outermost of the activity interceptors, so an error it records is already redacted.
 */
export function tracingInterceptor(tracing: Tracing): ActivityInterceptorsFactory {
  return (ctx) => {
    const inbound = new OpenTelemetryActivityInboundInterceptor(ctx, { tracer: tracing.tracer });
    return {
      inbound: {
        execute: (input, next) =>
          inbound.execute(input, (inner) => {
            const span = trace.getActiveSpan();
            const arg = inner.args[0] as StepInput | undefined;
            if (span && arg && typeof arg === 'object') {
              if (typeof arg.migrationId === 'string') span.setAttribute('tiershift.migration', arg.migrationId);
              if (typeof arg.step?.id === 'string') span.setAttribute('tiershift.step', arg.step.id);
              if (typeof arg.step?.kind === 'string') span.setAttribute('tiershift.step_kind', arg.step.kind);
            }
            return next(inner);
          }),
      },
      outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
    };
  };
}

/**
 * The `exporter` sink the workflow interceptors (workflows/tracing.ts) call with their spans: to the batch
 * exporter when tracing is on, nowhere when it is off. Registered on every worker either way, since every
 * bundle carries those interceptors and the SDK logs an error for each call to a sink it does not know; a replay
 * (`Worker.runReplayHistory`) passes them too, though it sends nothing.
 */
export function workflowSpanSinks(tracing?: Tracing): InjectedSinks<{ exporter: OpenTelemetryWorkflowExporter }> {
  if (tracing) return { exporter: makeWorkflowExporter(tracing.processor, tracing.resource) };
  return { exporter: { export: { fn: () => undefined } } };
}
