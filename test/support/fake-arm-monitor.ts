// Azure Monitor's metrics data plane as @azure/monitor-query-metrics calls it: POST
// https://<region>.metrics.monitor.azure.com/subscriptions/<sub>/metrics:getBatch?api-version=2024-02-01
// with the metric names, namespace, time span, interval, aggregation and $filter in the query and
// { resourceids } in the body. The answer has the shape of the API's own example
// (MetricResultsResponse): one item per resource, one metric per name, one time series per combination
// of the dimensions the filter splits by ("Origin eq '*'"), one data point per interval.
import { createHttpHeaders, type PipelineRequest, type PipelineResponse } from '@azure/core-rest-pipeline';
import type { FakeArm, FakeExtension } from './fake-arm';

export interface MetricRow {
  /** Dimension values of this series, e.g. { Origin: 'northeurope-origin', HttpStatusGroup: '5XX' }. */
  dimensions: Record<string, string>;
  /** The value over the whole window: spread over its minutes for Total, repeated for Average. */
  value: number;
}

const UNITS: Record<string, string> = { OriginRequestCount: 'Count', OriginHealthPercentage: 'Percent', OriginLatency: 'MilliSeconds', Requests: 'Count', ResponseTime: 'MilliSeconds' };
/** The metrics each namespace has (those tiershift reads), by lowercased namespace. */
const METRICS: Record<string, string[]> = {
  'microsoft.cdn/profiles': ['OriginRequestCount', 'OriginHealthPercentage', 'OriginLatency'],
  'microsoft.app/containerapps': ['Requests', 'ResponseTime'],
};

export class FakeMonitor implements FakeExtension {
  /** Rows by lowercased resource id, then metric name. */
  private readonly rows = new Map<string, Map<string, MetricRow[]>>();
  /** The metric queries received, for assertions. */
  readonly queries: { host: string; metric: string; namespace: string; filter?: string; aggregation?: string; start: string; end: string; resources: string[] }[] = [];

  /** Metrics to answer as missing (a region or resource without them). */
  readonly unsupported = new Set<string>();

  constructor(arm: FakeArm) {
    arm.extensions.push(this);
  }

  set(resourceId: string, metric: string, rows: MetricRow[]): void {
    const byMetric = this.rows.get(resourceId.toLowerCase()) ?? new Map<string, MetricRow[]>();
    byMetric.set(metric, rows);
    this.rows.set(resourceId.toLowerCase(), byMetric);
  }

  /** Taken before the fake ARM records anything: the metrics API is not Resource Manager, and its requests are kept in `queries`. */
  forward(request: PipelineRequest): Promise<PipelineResponse> | undefined {
    const url = new URL(request.url);
    if (!/\.metrics\.monitor\.azure\.(com|us|cn)$/.test(url.hostname)) return undefined;
    const reply = (status: number, json: unknown): PipelineResponse => ({
      request,
      status,
      headers: createHttpHeaders({ 'content-type': 'application/json', 'x-ms-request-id': 'fake-monitor' }),
      bodyAsText: JSON.stringify(json),
    });
    const error = (status: number, code: string, message: string) => reply(status, { error: { code, message } });
    const req = { method: request.method, url, path: decodeURIComponent(url.pathname), body: typeof request.body === 'string' && request.body ? JSON.parse(request.body) : undefined };
    return Promise.resolve(this.answer(req, reply, error));
  }

  private answer(req: { method: string; url: URL; path: string; body: any }, reply: (s: number, j: unknown) => PipelineResponse, error: (s: number, c: string, m: string) => PipelineResponse): PipelineResponse {
    const q = req.url.searchParams;
    if (req.method !== 'POST' || !/^\/subscriptions\/[^/]+\/metrics:getBatch$/.test(req.path)) return error(404, 'NotFound', `the fake metrics API serves POST /subscriptions/{id}/metrics:getBatch, got ${req.method} ${req.path}`);
    if (q.get('api-version') !== '2024-02-01') return error(400, 'InvalidApiVersion', `api-version ${q.get('api-version')} is not served`);
    const namespace = q.get('metricnamespace') ?? '';
    if (!METRICS[namespace.toLowerCase()]) return error(400, 'BadRequest', `Metric namespace ${namespace} is not served by the fake`);
    const start = q.get('starttime');
    const end = q.get('endtime');
    if (!start || !end || !(Date.parse(start) < Date.parse(end))) return error(400, 'BadRequest', 'starttime and endtime are required, starttime before endtime');
    const ids: string[] = req.body?.resourceids ?? [];
    if (!ids.length || ids.length > 50) return error(400, 'BadRequest', 'resourceids must name 1 to 50 resources');
    const names = (q.get('metricnames') ?? '').split(',').filter(Boolean);
    // As Azure answers a metric the resource type does not have (or a test says this one lacks).
    const unknown = names.find((n) => !METRICS[namespace.toLowerCase()]!.includes(n) || this.unsupported.has(n));
    if (unknown) return error(400, 'BadRequest', `Failed to find metric configuration for provider: ${namespace.split('/')[0]}, resource Type: ${namespace.split('/')[1]}, metric: ${unknown}, Valid metrics: ${METRICS[namespace.toLowerCase()]!.join(',')}`);
    const filter = q.get('filter') ?? undefined;
    const aggregation = (q.get('aggregation') ?? 'Average').split(',')[0]!.toLowerCase();
    const interval = q.get('interval') ?? 'PT1M';
    for (const metric of names) this.queries.push({ host: req.url.hostname, metric, namespace, filter, aggregation, start, end, resources: ids });

    // "A eq '*' and B eq 'x'": split by A, keep only B = x.
    const clauses = [...(filter ?? '').matchAll(/(\w+)\s+eq\s+'([^']*)'/g)].map((m) => ({ dim: m[1]!, value: m[2]! }));
    const splitBy = clauses.filter((c) => c.value === '*').map((c) => c.dim);
    const minutes = Math.max(1, Math.ceil((Date.parse(end) - Date.parse(start)) / 60_000));
    const stamps = Array.from({ length: minutes }, (_, i) => new Date(Date.parse(start) + i * 60_000).toISOString());
    const dimensionOf = (row: MetricRow, dim: string) => Object.entries(row.dimensions).find(([k]) => k.toLowerCase() === dim.toLowerCase())?.[1];

    const values = ids.map((id) => ({
      starttime: start,
      endtime: end,
      interval,
      namespace,
      resourceregion: req.url.hostname.split('.')[0],
      resourceid: id,
      value: names.map((metric) => {
        const rows = (this.rows.get(id.toLowerCase())?.get(metric) ?? []).filter((r) => clauses.every((c) => c.value === '*' || dimensionOf(r, c.dim)?.toLowerCase() === c.value.toLowerCase()));
        const groups = new Map<string, MetricRow[]>();
        for (const r of rows) {
          const key = JSON.stringify(splitBy.map((d) => dimensionOf(r, d) ?? ''));
          groups.set(key, [...(groups.get(key) ?? []), r]);
        }
        const total = aggregation === 'total' || aggregation === 'count';
        return {
          id: `${id}/providers/Microsoft.Insights/metrics/${metric}`,
          type: 'Microsoft.Insights/metrics',
          name: { value: metric, localizedValue: metric.replace(/([a-z])([A-Z])/g, '$1 $2') },
          displayDescription: `${metric} (fake)`,
          errorCode: 'Success',
          unit: UNITS[metric] ?? 'Count',
          timeseries: [...groups.entries()].map(([key, group]) => ({
            // Azure answers dimension names in lower case.
            metadatavalues: (JSON.parse(key) as string[]).map((value, i) => ({ name: { value: splitBy[i]!.toLowerCase(), localizedValue: splitBy[i]!.toLowerCase() }, value })),
            data: stamps.map((timeStamp, i) => {
              const sum = group.reduce((n, r) => n + r.value, 0);
              // Whole counts per minute that add up to the window's value.
              const v = total ? Math.floor((sum * (i + 1)) / minutes) - Math.floor((sum * i) / minutes) : sum / group.length;
              return { timeStamp, [aggregation === 'count' ? 'count' : aggregation]: v };
            }),
          })),
        };
      }),
    }));
    return reply(200, { values });
  }
}
