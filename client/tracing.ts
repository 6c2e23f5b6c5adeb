// The CLI's half of the traces (contract/tracing.ts): `start` opens the migration's trace, and each decision
// (approve, reject, resume, rollback) its own, whose span is the parent of the workflow's handling of it.
import type { ClientOptions } from '@temporalio/client';
import { startTracing } from '../contract/tracing';

/** The client's interceptors when OpenTelemetry's variables ask for traces; nothing (and nothing loaded) otherwise. */
export async function tracingClientOptions(): Promise<Pick<ClientOptions, 'interceptors'>> {
  const tracing = await startTracing('tiershift');
  if (!tracing) return {};
  const { OpenTelemetryWorkflowClientInterceptor } = await import('@temporalio/interceptors-opentelemetry/lib/client');
  return { interceptors: { workflow: [new OpenTelemetryWorkflowClientInterceptor({ tracer: tracing.tracer })] } };
}
