// OpenTelemetry traces, from the Temporal SDK's interceptors (@temporalio/interceptors-opentelemetry): the
// CLI's start and decisions, the workflow's run and the activities it schedules, in one trace per migration.
// Configured only by OpenTelemetry's standard variables, so any collector (Jaeger, Tempo, an OTel Collector)
// takes them as it takes any other service's. With neither endpoint variable set nothing is loaded, no
// provider is registered and no interceptor runs outside the workflow sandbox.
//
// This module imports no OpenTelemetry code itself: the CLI imports it to flush at exit, and a command that
// traces nothing must not pay for loading the SDK.
import type { Tracer } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { UserError } from './errors';
import { redact, redactUrl } from './redact';

export interface Tracing {
  tracer: Tracer;
  /** Batches and exports the spans: the worker hands it the workflow's spans too (makeWorkflowExporter). */
  processor: SpanProcessor;
  resource: Resource;
  /** Where the spans go, credentials removed: for a log line. */
  endpoint: string;
}

/**
 * The OTLP/HTTP URL spans are sent to, per the OpenTelemetry specification: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
 * as it is, else OTEL_EXPORTER_OTLP_ENDPOINT with /v1/traces appended; undefined (tracing off) when neither is
 * set or OTEL_SDK_DISABLED is true.
 */
export function tracesEndpoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return undefined;
  const specific = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const [name, value] = specific ? ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', specific] : base ? ['OTEL_EXPORTER_OTLP_ENDPOINT', base] : [];
  if (!name || !value) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new UserError(`${name} must be an http(s) URL of an OTLP collector, such as http://127.0.0.1:4318, got "${redactUrl(value)}"; fix it or unset it to turn tracing off.`, 2);
  }
  // Only OTLP/HTTP with JSON is shipped: a collector set up for another protocol would refuse every export silently.
  const protocol = (env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? env.OTEL_EXPORTER_OTLP_PROTOCOL)?.trim();
  if (protocol && protocol !== 'http/json') {
    throw new UserError(`tiershift exports traces as OTLP over HTTP with JSON only, but OTEL_EXPORTER_OTLP_PROTOCOL asks for "${protocol}"; set it to http/json or unset it (collectors take both on port 4318).`, 2);
  }
  if (specific) return url.toString();
  return `${url.toString().replace(/\/$/, '')}/v1/traces`;
}

/** Keys of the workflow's info (the SDK copies all of it onto its spans) that carry payloads: the memo, results, failures. */
const PAYLOAD_KEYS = new Set(['memo', 'lastResult', 'lastFailure', 'searchAttributes', 'typedSearchAttributes', 'headers']);
const primitive = (v: unknown) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';

/**
 * What a span may carry out of the worker: attributes that are text, numbers or flags (the types and ids the
 * interceptors record, tiershift's migration and step) and nothing decoded from a payload. The workflow's spans
 * come with the whole WorkflowInfo merged in by the SDK's sink, memo included; those are dropped here.
 */
export function scrubbedSpan(span: ReadableSpan): ReadableSpan {
  const attributes = Object.fromEntries(
    Object.entries(span.attributes).filter(([key, value]) => !PAYLOAD_KEYS.has(key) && (primitive(value) || (Array.isArray(value) && value.every(primitive)))),
  );
  // The workflow id is the migration's id: named so for whoever searches traces by migration.
  const migration = attributes.temporalWorkflowId ?? attributes.workflowId;
  if (typeof migration === 'string' && attributes['tiershift.migration'] === undefined) attributes['tiershift.migration'] = migration;
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => span.spanContext(),
    ...(span.parentSpanId ? { parentSpanId: span.parentSpanId } : {}),
    startTime: span.startTime,
    endTime: span.endTime,
    status: span.status,
    attributes,
    links: span.links,
    events: span.events,
    duration: span.duration,
    ended: span.ended,
    resource: span.resource,
    instrumentationLibrary: span.instrumentationLibrary,
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  };
}

/** The message of what OpenTelemetry's error handler logs (a JSON of the error, or text), redacted. */
function exportFailure(logged: unknown): string {
  let message = String(logged);
  try {
    const parsed = JSON.parse(message) as { message?: unknown };
    if (typeof parsed.message === 'string') message = parsed.message;
  } catch {
    /* plain text */
  }
  return redact(message).replace(/\s+/g, ' ').slice(0, 200);
}

let started: { tracing: Tracing; shutdown: () => Promise<void> } | undefined;

/**
 * Starts exporting spans when the variables ask for it (see tracesEndpoint) and registers the global tracer
 * provider, W3C propagator and async context the interceptors rely on; undefined when tracing is off. Export
 * is batched and asynchronous: an unreachable collector loses spans, never delays or fails a migration.
 * `onExportError` hears of failed exports (at most once a minute), for the worker's log.
 */
export async function startTracing(defaultService: string, opts: { env?: NodeJS.ProcessEnv; version?: string; onExportError?: (message: string) => void } = {}): Promise<Tracing | undefined> {
  const env = opts.env ?? process.env;
  const url = tracesEndpoint(env);
  if (!url) return undefined;
  if (started) return started.tracing;
  const [api, { AsyncLocalStorageContextManager }, { OTLPTraceExporter }, resources, base] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/context-async-hooks'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace-base'),
  ]);
  // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the env detector) override the default name.
  const resource = resources.Resource.default()
    .merge(new resources.Resource({ 'service.name': defaultService, ...(opts.version ? { 'service.version': opts.version } : {}) }))
    .merge(resources.envDetectorSync.detect());
  // Headers (OTEL_EXPORTER_OTLP_HEADERS: a collector's token) and the timeout are read from the variables by the exporter itself.
  const exporter = new OTLPTraceExporter({ url });
  const batch = new base.BatchSpanProcessor(exporter);
  const endpoint = redactUrl(url);
  let lastReported = 0;
  // Failed exports reach OpenTelemetry's global error handler, by default a logger that prints nothing.
  api.diag.setLogger(
    {
      error: (message: unknown) => {
        if (!opts.onExportError || Date.now() - lastReported < 60_000) return;
        lastReported = Date.now();
        opts.onExportError(`traces could not be sent to ${endpoint} (${exportFailure(message)}); spans are dropped until it answers, migrations are not affected`);
      },
      warn: () => undefined,
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    },
    { logLevel: api.DiagLogLevel.ERROR, suppressOverrideMessage: true },
  );
  const processor: SpanProcessor = {
    onStart: (span, context) => batch.onStart(span, context),
    onEnd: (span) => batch.onEnd(scrubbedSpan(span)),
    forceFlush: () => batch.forceFlush(),
    shutdown: () => batch.shutdown(),
  };
  const provider = new base.BasicTracerProvider({ resource, spanProcessors: [processor] });
  provider.register({ contextManager: new AsyncLocalStorageContextManager().enable() });
  const tracing: Tracing = { tracer: provider.getTracer('tiershift'), processor, resource, endpoint };
  started = {
    tracing,
    shutdown: async () => {
      await provider.shutdown();
      api.trace.disable();
      api.context.disable();
      api.propagation.disable();
    },
  };
  return tracing;
}

/**
 * Sends the spans still batched and stops tracing: at the worker's shutdown and the CLI's exit. Bounded, so a
 * collector that does not answer holds an exit for `withinMs` at most (the spans are then lost).
 */
export async function stopTracing(withinMs = 3_000): Promise<void> {
  const current = started;
  started = undefined;
  if (!current) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([current.shutdown().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, withinMs).unref()))]);
  clearTimeout(timer);
}
