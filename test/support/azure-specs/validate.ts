// Request bodies checked against the Azure REST API specification of their api-version, as ARM's own
// request validation would: the fake ARM calls `validateAgainstSpec` for every write and answers 400 when
// it reports a problem, so a body the real service would refuse (a misspelt property, a read-only field, a
// value outside an enum) fails the test that sent it. Each `<Namespace>@<api-version>.json` beside this
// file is an excerpt of the spec (README.md says from where); a namespace with no file is not checked,
// so another provider's spec is added by dropping its file here.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

type Schema = {
  $ref?: string;
  type?: string;
  enum?: unknown[];
  properties?: Record<string, Schema>;
  required?: string[];
  allOf?: Schema[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  readOnly?: boolean;
  format?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
};
interface SpecFile {
  info: { version: string };
  'x-tiershift-namespace'?: string;
  paths?: Record<string, Record<string, { parameters: { in: string; required?: boolean; schema?: Schema }[] }>>;
  definitions: Record<string, Schema>;
}

const here = dirname(fileURLToPath(import.meta.url));
let loaded: { specs: Map<string, SpecFile>; common: Map<string, SpecFile> } | undefined;

function load() {
  if (loaded) return loaded;
  const specs = new Map<string, SpecFile>();
  const common = new Map<string, SpecFile>();
  for (const file of readdirSync(here).filter((f) => f.endsWith('.json'))) {
    const spec = JSON.parse(readFileSync(join(here, file), 'utf8')) as SpecFile;
    const ns = spec['x-tiershift-namespace'];
    if (ns) specs.set(`${ns.toLowerCase()}@${spec.info.version}`, spec);
    else common.set(file.replace(/\.json$/, ''), spec);
  }
  return (loaded = { specs, common });
}

/** Whether a spec for this namespace and api-version is stored (only those requests are validated). */
export function hasSpec(namespace: string, apiVersion: string): boolean {
  return load().specs.has(`${namespace.toLowerCase()}@${apiVersion}`);
}

/**
 * The problems ARM's validation would report for `body` sent as `method path` at `apiVersion`, one phrase
 * each; empty when it conforms, or when no spec for the namespace is stored.
 */
export function validateAgainstSpec(namespace: string, method: string, path: string, apiVersion: string, body: unknown): string[] {
  const { specs, common } = load();
  const spec = specs.get(`${namespace.toLowerCase()}@${apiVersion}`);
  if (!spec) return [];
  const operation = Object.entries(spec.paths ?? {})
    .filter(([template]) => new RegExp(`^${template.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}/?$`, 'i').test(path))
    .map(([, ops]) => ops[method.toLowerCase()])
    .find(Boolean);
  if (!operation) return [`${method} ${path} is not an operation of ${namespace} ${apiVersion} (or the stored excerpt lacks it)`];
  const param = operation.parameters.find((p) => p.in === 'body');
  if (body === undefined) return param?.required ? ['the request has no body, which the operation requires'] : [];
  if (!param?.schema) return ['the request has a body, which the operation does not take'];

  const problems: string[] = [];
  // A $ref is local (#/definitions/X), into a sibling file of the same api-version (./cdn.json#/definitions/X:
  // an excerpt holds the definitions of all the files its namespace's spec is split into), or into the common
  // types (…/common-types/resource-management/v6/types.json#/definitions/X).
  const resolve = (ref: string, from: SpecFile): { schema: Schema; file: SpecFile } | undefined => {
    const [file, pointer] = ref.split('#');
    const name = pointer?.replace(/^\/definitions\//, '') ?? '';
    const m = file ? /common-types\/resource-management\/(v\d+)\/types\.json$/.exec(file) : undefined;
    const target = !file || /^\.\/[^/]+\.json$/.test(file) ? from : m ? common.get(`common-types@${m[1]}`) : undefined;
    const schema = target?.definitions[name];
    return schema && target ? { schema, file: target } : undefined;
  };
  // allOf folded in: the properties and required fields of every base model.
  const flatten = (schema: Schema, file: SpecFile): { props: Record<string, { schema: Schema; file: SpecFile }>; required: string[]; additional?: boolean | Schema; type?: string } => {
    const props: Record<string, { schema: Schema; file: SpecFile }> = {};
    const required = [...(schema.required ?? [])];
    let additional = schema.additionalProperties;
    for (const base of schema.allOf ?? []) {
      const r = base.$ref ? resolve(base.$ref, file) : { schema: base, file };
      if (!r) continue;
      const f = flatten(r.schema, r.file);
      Object.assign(props, f.props);
      required.push(...f.required);
      additional ??= f.additional;
    }
    for (const [k, v] of Object.entries(schema.properties ?? {})) props[k] = { schema: v, file };
    return { props, required, additional, type: schema.type ?? (Object.keys(props).length ? 'object' : undefined) };
  };

  const walk = (value: unknown, schema: Schema, file: SpecFile, at: string): void => {
    if (schema.$ref) {
      const r = resolve(schema.$ref, file);
      if (!r) return void problems.push(`${at}: the stored spec excerpt has no definition ${schema.$ref}; add it from the spec`);
      // A property's own readOnly sits beside its $ref.
      if (schema.readOnly) return void problems.push(`${at} is read-only and must not be sent`);
      return walk(value, r.schema, r.file, at);
    }
    if (schema.readOnly) return void problems.push(`${at} is read-only and must not be sent`);
    const flat = flatten(schema, file);
    const type = flat.type;
    const actual = Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value;
    if (type === 'object') {
      if (actual !== 'object') return void problems.push(`${at} must be an object, got ${actual}`);
      const obj = value as Record<string, unknown>;
      for (const req of flat.required) if (obj[req] === undefined) problems.push(`${at}.${req} is required`);
      for (const [k, v] of Object.entries(obj)) {
        const p = flat.props[k];
        if (p) walk(v, p.schema, p.file, `${at}.${k}`);
        else if (typeof flat.additional === 'object') walk(v, flat.additional, file, `${at}.${k}`);
        // Stricter than ARM's "additionalProperties: false where stated": a property the model does not
        // name is what a misspelt field looks like, and the service ignores or refuses it.
        else if (flat.additional !== true) problems.push(`${at}.${k} is not a property of the model`);
      }
      return;
    }
    if (type === 'array') {
      if (actual !== 'array') return void problems.push(`${at} must be an array, got ${actual}`);
      const n = (value as unknown[]).length;
      if (schema.maxItems !== undefined && n > schema.maxItems) problems.push(`${at} must have at most ${schema.maxItems} items, got ${n}`);
      if (schema.minItems !== undefined && n < schema.minItems) problems.push(`${at} must have at least ${schema.minItems} items, got ${n}`);
      (value as unknown[]).forEach((v, i) => schema.items && walk(v, schema.items, file, `${at}[${i}]`));
      return;
    }
    if (type === 'string' && actual !== 'string') return void problems.push(`${at} must be a string, got ${actual}`);
    if (type === 'integer' && !Number.isInteger(value)) return void problems.push(`${at} must be an integer, got ${JSON.stringify(value)}`);
    if (type === 'number' && actual !== 'number') return void problems.push(`${at} must be a number, got ${actual}`);
    if (typeof value === 'number' && schema.minimum !== undefined && value < schema.minimum) problems.push(`${at} must be at least ${schema.minimum}, got ${value}`);
    if (typeof value === 'number' && schema.maximum !== undefined && value > schema.maximum) problems.push(`${at} must be at most ${schema.maximum}, got ${value}`);
    if (type === 'boolean' && actual !== 'boolean') return void problems.push(`${at} must be a boolean, got ${actual}`);
    if (schema.enum && !schema.enum.includes(value)) problems.push(`${at} must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(value)}`);
  };
  walk(body, param.schema, spec, 'body');
  return problems;
}
