// The canary's own numbers from Azure Monitor over the bake window, rather than what one worker's probe
// happens to reach: Front Door routes by priority, then latency band, then weight, from edges the
// worker is not near, so a probe may never meet the canary, and its errors name no origin. Front Door
// reports `OriginRequestCount` by origin and status group, `OriginHealthPercentage` (its own health
// probes, from every edge) and `OriginLatency` by origin; Container Apps reports `Requests` by
// revision and status category and `ResponseTime` by revision. No platform metric has a percentile,
// so the latency figure is the worst one-minute average over the window (the closest to a p95 the
// metrics allow).
import { MetricsClient, type Metric } from '@azure/monitor-query-metrics';
import { ApplicationFailure } from '@temporalio/activity';
import type { AzureContext } from './common';
import { azureCall } from './common';
import { metricsRegion } from './cloud';

export interface WindowMetrics {
  requests: number;
  /** 5xx answers. */
  errors: number;
  /** Highest one-minute average latency, when the metric had data. */
  latencyMs?: number;
  /** Lowest one-minute health-probe success percentage (Front Door), when the metric had data. */
  healthPercent?: number;
}

export interface Window {
  start: Date;
  end: Date;
}

function client(az: AzureContext, location: string | undefined): MetricsClient {
  return new MetricsClient(`https://${metricsRegion(location)}.${az.cloud.metricsSuffix}`, az.credential(), {
    audience: az.cloud.metricsAudience,
    ...(az.options.httpClient ? { httpClient: az.options.httpClient } : {}),
    ...(az.options.retryOptions ? { retryOptions: az.options.retryOptions } : {}),
  });
}

interface Series {
  /** Dimension values, by lowercased dimension name (Azure answers them lowercased or not). */
  dims: Record<string, string>;
  points: number[];
}

async function query(az: AzureContext, location: string | undefined, resourceId: string, namespace: string, metric: string, aggregation: 'Total' | 'Average', splitBy: string[], w: Window): Promise<Series[]> {
  const results = await azureCall(`reading ${metric} of ${resourceId.split('/').pop()} from Azure Monitor`, () =>
    client(az, location).queryResources([resourceId], [metric], namespace, {
      startTime: w.start,
      endTime: w.end,
      interval: 'PT1M',
      aggregation,
      filter: splitBy.map((d) => `${d} eq '*'`).join(' and '),
    }),
  );
  // One metric was asked for: its name comes back localized ("Origin Request Count"), so it is taken by position.
  const m: Metric | undefined = results[0]?.metrics[0];
  if (!m || (m.errorCode && m.errorCode !== 'Success')) return [];
  const key = aggregation === 'Total' ? 'total' : 'average';
  return (m.timeseries ?? []).map((t) => ({
    dims: Object.fromEntries((t.metadatavalues ?? []).map((v) => [String(v.name ?? '').toLowerCase(), v.value ?? ''])),
    points: (t.data ?? []).map((d) => d[key]).filter((v): v is number => typeof v === 'number'),
  }));
}

/**
 * A latency metric is a bonus: where Azure refuses it (a resource type or region without it answers
 * 400), the verdict goes on without latency rather than failing the canary for a missing metric.
 */
async function optional(series: Promise<Series[]>): Promise<Series[]> {
  try {
    return await series;
  } catch (err) {
    if (err instanceof ApplicationFailure && err.nonRetryable && /Azure refused the request/.test(err.message)) return [];
    throw err;
  }
}

const sum = (xs: number[]) => xs.reduce((n, x) => n + x, 0);
const max = (xs: number[]) => (xs.length ? Math.max(...xs) : undefined);
const min = (xs: number[]) => (xs.length ? Math.min(...xs) : undefined);

/**
 * Per origin of a Front Door profile. `origins` maps each role to the names Azure Monitor may use for
 * that origin (its resource name and its host name: the metrics' Origin dimension carries the host).
 */
export async function frontDoorWindow(az: AzureContext, profileId: string, origins: Record<string, string[]>, w: Window): Promise<Record<string, WindowMetrics>> {
  const ns = 'Microsoft.Cdn/profiles';
  const [requests, health, latency] = await Promise.all([
    query(az, 'global', profileId, ns, 'OriginRequestCount', 'Total', ['Origin', 'HttpStatusGroup'], w),
    query(az, 'global', profileId, ns, 'OriginHealthPercentage', 'Average', ['Origin'], w),
    optional(query(az, 'global', profileId, ns, 'OriginLatency', 'Average', ['Origin'], w)),
  ]);
  const out: Record<string, WindowMetrics> = {};
  for (const [role, names] of Object.entries(origins)) {
    const mine = (s: Series) => names.some((n) => n.toLowerCase() === (s.dims.origin ?? '').toLowerCase());
    const req = requests.filter(mine);
    out[role] = {
      requests: sum(req.map((s) => sum(s.points))),
      errors: sum(req.filter((s) => /^5/.test(s.dims.httpstatusgroup ?? '')).map((s) => sum(s.points))),
      healthPercent: min(health.filter(mine).flatMap((s) => s.points)),
      latencyMs: max(latency.filter(mine).flatMap((s) => s.points)),
    };
  }
  return out;
}

/** Per revision of a Container App. */
export async function revisionWindow(az: AzureContext, appId: string, location: string | undefined, revisions: Record<string, string>, w: Window): Promise<Record<string, WindowMetrics>> {
  const ns = 'Microsoft.App/containerApps';
  const [requests, latency] = await Promise.all([
    query(az, location, appId, ns, 'Requests', 'Total', ['revisionName', 'statusCodeCategory'], w),
    optional(query(az, location, appId, ns, 'ResponseTime', 'Average', ['revisionName'], w)),
  ]);
  const out: Record<string, WindowMetrics> = {};
  for (const [role, revision] of Object.entries(revisions)) {
    const mine = (s: Series) => (s.dims.revisionname ?? '').toLowerCase() === revision.toLowerCase();
    const req = requests.filter(mine);
    out[role] = {
      requests: sum(req.map((s) => sum(s.points))),
      errors: sum(req.filter((s) => /^5/.test(s.dims.statuscodecategory ?? '')).map((s) => sum(s.points))),
      latencyMs: max(latency.filter(mine).flatMap((s) => s.points)),
    };
  }
  return out;
}
