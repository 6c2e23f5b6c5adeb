// `resource`: any other Azure resource, named by its ARM id, as one reversible step: the properties the
// plan sets (`sku.name: P3v3`, `properties.retentionInDays: 90`) are read before the change, sent as a
// PATCH (or a PUT where the resource type takes no PATCH), waited for and read back; undo puts the values
// read before it back. A resource that must be created (autoscale settings, alert rules) is created from
// `create:` and deleted by undo. Only a provider that drives resources by ARM id runs it (Azure).
import { z } from 'zod';
import type { JsonValue, ResourceStep } from '../types';
import { phaseKind, retryDetail, stepCommon } from './kit';

/** An ARM id: a resource group, or a resource (nested types included) inside one. */
export const ARM_ID = /^\/subscriptions\/[0-9a-fA-F-]{36}\/resourceGroups\/[-\w.()]{1,90}(\/providers\/[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+(\/[A-Za-z][A-Za-z0-9]*\/[^/\s]+)+)?$/;
/**
 * The top-level fields a generic ARM resource has (GenericResource in @azure/arm-resources): a path must
 * start with one, as anything else would be dropped from the request body without a word.
 */
export const SETTABLE = ['sku', 'properties', 'tags', 'kind', 'identity', 'plan'] as const;
const PROPERTY_PATH = new RegExp(`^(${SETTABLE.join('|')})(\\.[^.\\s]+)+$|^kind$`);

const body = z
  .strictObject({
    ...stepCommon,
    armId: z.string().regex(ARM_ID, {
      error: 'expected an ARM resource id such as /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Web/serverfarms/<name> (`az resource show ... --query id`)',
    }),
    apiVersion: z.string().regex(/^\d{4}-\d{2}-\d{2}(-preview)?$/, { error: 'expected an api-version of the resource type such as 2024-04-01' }),
    /** Properties to change, by path; their values before the step are what undo restores. */
    set: z.record(z.string(), z.json()).optional(),
    /** Or: the whole body of a resource the step creates (and undo deletes). */
    create: z.record(z.string(), z.json()).optional(),
    /** PATCH by default; PUT (the resource as read, with `set` applied) for resource types that take no PATCH. */
    method: z.enum(['PATCH', 'PUT']).optional(),
  })
  .superRefine((b, ctx) => {
    if ((b.set === undefined) === (b.create === undefined)) {
      ctx.addIssue({ code: 'custom', path: [], message: 'expected exactly one of set (properties to change) or create (a resource to create)' });
    }
    for (const path of Object.keys(b.set ?? {})) {
      if (!PROPERTY_PATH.test(path)) ctx.addIssue({ code: 'custom', path: ['set', path], message: `expected a property path under ${SETTABLE.join(', ')} such as sku.name or properties.retentionInDays, not "${path}"` });
    }
    for (const key of Object.keys(b.create ?? {})) {
      if (!['location', ...SETTABLE].includes(key)) ctx.addIssue({ code: 'custom', path: ['create', key], message: `expected only location, ${SETTABLE.join(', ')} in the body of a resource to create, not "${key}"` });
    }
    if (b.set && !Object.keys(b.set).length) ctx.addIssue({ code: 'custom', path: ['set'], message: 'expected at least one property to set' });
    if (b.create && b.method) ctx.addIssue({ code: 'custom', path: ['method'], message: 'expected no method with create (a create is a PUT)' });
    if (b.create && !/\/providers\//.test(b.armId)) ctx.addIssue({ code: 'custom', path: ['armId'], message: 'expected a resource inside a resource group to create, not the group itself' });
  });

/** `Microsoft.Web/serverfarms plan-teams-pilot`, or `resource group rg-x`: how a step names its resource. */
export function armName(armId: string): string {
  const m = /\/providers\/([^/]+)\/(.+)$/.exec(armId);
  if (!m) return `resource group ${armId.split('/').pop()}`;
  const parts = m[2]!.split('/');
  const types = parts.filter((_, i) => i % 2 === 0).join('/');
  const names = parts.filter((_, i) => i % 2 === 1).join('/');
  return `${m[1]}/${types} ${names}`;
}

/** A body's leaves as dotted paths (arrays are one value): what a created resource must still hold. */
export function bodyLeaves(body: Record<string, JsonValue>, prefix = ''): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(body)) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, bodyLeaves(v as Record<string, JsonValue>, path));
    else out[path] = v;
  }
  return out;
}

const shown = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
export const describeSet = (set: Record<string, unknown>) => Object.entries(set).map(([k, v]) => `${k}=${shown(v)}`).join(', ');

export const resource = phaseKind<z.infer<typeof body>>({
  schema: () => body,
  resolve(b, ctx) {
    const what = armName(b.armId);
    const step: ResourceStep = {
      ...ctx.base(),
      kind: 'resource',
      // The check below refused the plan when none of its providers drives ARM resources.
      provider: ctx.armProvider ?? '',
      armId: b.armId,
      apiVersion: b.apiVersion,
      title: ctx.title(b.set ? `Set ${describeSet(b.set)} on ${what}` : `Create ${what}`),
      ...(b.set ? { set: b.set, method: b.method ?? 'PATCH' } : { create: b.create! }),
    };
    return [step];
  },
  check(b, ctx) {
    if (!ctx.armProvider) {
      const kinds = [...new Set(Object.values(ctx.resources).map((r) => r.provider))].join(', ');
      ctx.problem(ctx.at(), `expected a plan with Azure resources (a resource step changes an Azure resource by its ARM id), got one whose resources are all ${kinds || 'undefined'}; leave this step out of the rehearsal, or say it is manual in a gate's instructions`);
    }
  },
  undo: (step) =>
    step.kind !== 'resource'
      ? undefined
      : step.create
        ? `Delete ${armName(step.armId)}, which the step created`
        : `Put ${Object.keys(step.set ?? {}).join(', ')} of ${armName(step.armId)} back to the values read before the step`,
  describe: (step) =>
    step.kind !== 'resource'
      ? retryDetail(step)
      : `${step.create ? 'PUT (create)' : `${step.method} ${describeSet(step.set ?? {})}`} at api-version ${step.apiVersion}, then read back; rollback: ${step.create ? 'DELETE it' : 'the values read before it'}; ${retryDetail(step)}`,
  // It changes nothing a database cutover depends on: seeds scale the rest after the database.
  allowedAfterFinalize: true,
});
