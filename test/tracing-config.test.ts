// How OpenTelemetry's variables turn traces on (contract/tracing.ts), and what a span may carry out of the worker.
import { describe, expect, it } from 'vitest';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { scrubbedSpan, tracesEndpoint } from '../contract/tracing';
import { UserError } from '../contract/errors';

describe('tracesEndpoint', () => {
  it('is off without an endpoint, and with OTEL_SDK_DISABLED', () => {
    expect(tracesEndpoint({})).toBeUndefined();
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' })).toBeUndefined();
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'TRUE' })).toBeUndefined();
  });

  it('appends /v1/traces to the base endpoint and takes the traces endpoint as it is, which wins', () => {
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' })).toBe('http://c:4318/v1/traces');
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'https://c/otlp/' })).toBe('https://c/otlp/v1/traces');
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:4318/custom' })).toBe('http://t:4318/custom');
    expect(tracesEndpoint({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:4318/v1/traces', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' })).toBe('http://t:4318/v1/traces');
  });

  it('refuses what is not an http(s) URL, and another protocol than http/json, in one sentence without the URL\'s credentials', () => {
    const refusal = (env: NodeJS.ProcessEnv) => {
      try {
        tracesEndpoint(env);
      } catch (err) {
        return err;
      }
      return undefined;
    };
    for (const env of [
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' },
      { OTEL_EXPORTER_OTLP_ENDPOINT: '127.0.0.1:4318' },
      { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'grpc://user:hunter2@c:4317' },
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf' },
    ]) {
      const err = refusal(env);
      expect(err, JSON.stringify(env)).toBeInstanceOf(UserError);
      const message = (err as UserError).message;
      expect(message).toMatch(/^[^\n]+\.$/);
      expect(message).not.toContain('hunter2');
    }
  });
});

describe('scrubbedSpan', () => {
  it('keeps ids, types and numbers, drops payloads (memo, results, objects), and names the migration', () => {
    const context = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 1 };
    const span = {
      name: 'RunWorkflow:migration',
      spanContext: () => context,
      attributes: { workflowId: 'migration-x', historyLength: 30, memo: { gate: { approvers: ['bob'] } }, lastResult: 'a result', searchAttributes: { PlanName: ['x'] }, unsafe: { isReplaying: false }, tags: ['a', 'b'] },
      events: [],
      links: [],
    } as unknown as ReadableSpan;
    const scrubbed = scrubbedSpan(span);
    expect(scrubbed.attributes).toEqual({ workflowId: 'migration-x', historyLength: 30, tags: ['a', 'b'], 'tiershift.migration': 'migration-x' });
    expect(scrubbed.spanContext()).toBe(context);
    expect(scrubbed.name).toBe('RunWorkflow:migration');
  });
});
