// Reads a plan file: YAML -> schema -> cross-checks -> the ResolvedPlan the workflow runs. Every problem
// is reported as one sentence naming the file, the path inside it, the line, what was expected and
// what was found: `demo.yaml: phases[3].traffic.steps[1].weight (line 41): expected ..., got 120.`
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isNode, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { recoveryPhrase } from './rollback';
import { planSchema, PHASE_KINDS, type PhaseBody, type PhaseKind, type PlanFile } from './schema';
import type { GateStep, ResolvedPlan, Resource, RetryPolicy, Step, StepTimeouts, TrafficAnalysis } from './types';
import { holdsSecret } from '../contract/redact';

export const DEFAULT_RETRY: RetryPolicy = { maximumAttempts: 3, initialInterval: '2s', backoffCoefficient: 2, maximumInterval: '1m' };
export const DEFAULT_TIMEOUTS: StepTimeouts = { startToClose: '2h', heartbeat: '1m' };
export const DEFAULT_ANALYSIS: TrafficAnalysis = { maxErrorRate: 0.01, minRequests: 0 };

type PathPart = string | number;

export interface PlanIssue {
  path: PathPart[];
  line?: number;
  /** "expected ..., got ..." without the location. */
  problem: string;
  /** The whole sentence, location included. */
  message: string;
}

export class PlanError extends Error {
  constructor(
    readonly source: string,
    readonly issues: PlanIssue[],
  ) {
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''}; \`tiershift plan FILE\` lists them all)` : '';
    super(issues[0]!.message.replace(/\.$/, `${more}.`));
    this.name = 'PlanError';
  }
}

export function loadPlan(file: string): ResolvedPlan {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
    throw new PlanError(file, [{ path: [], problem: why, message: `cannot read plan ${file}: ${why}; pass the path of a plan YAML file such as plans/demo.yaml.` }]);
  }
  const relative = path.relative(process.cwd(), path.resolve(file));
  return parsePlan(text, relative && !relative.startsWith('..') ? relative : path.resolve(file));
}

export function parsePlan(text: string, source: string): ResolvedPlan {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const issue = (at: PathPart[], problem: string, offset?: number): PlanIssue => {
    const line = offset !== undefined ? lineCounter.linePos(offset).line : lineOf(doc, lineCounter, at);
    const where = `${at.length ? `: ${formatPath(at)}` : ''}${line ? ` (line ${line})` : ''}`;
    return { path: at, line, problem, message: `${source}${where}: ${problem}.` };
  };

  if (doc.errors.length) {
    const e = doc.errors[0]!;
    throw new PlanError(source, [issue([], `is not valid YAML: ${e.message.split('\n')[0]!.replace(/\.$/, '')}`, e.pos[0])]);
  }
  const data: unknown = doc.toJS();
  const issues: PlanIssue[] = findCredentials(data).map((at) =>
    issue(at, 'expected a secret reference ({ env: NAME } or { keyVault: { vault, secret } }), got what looks like a credential; plans never hold secrets'),
  );
  const parsed = planSchema.safeParse(data);
  if (!parsed.success) {
    const seen: PathPart[][] = [];
    for (const zi of parsed.error.issues) {
      const at = issuePath(zi);
      // A phase with a misspelt key also has "no phase kind": one sentence about the spelling is enough.
      if (seen.some((p) => at.length < p.length && at.every((part, i) => part === p[i]))) continue;
      seen.push(at);
      issues.push(issue(at, explain(zi, valueAt(data, at))));
    }
  } else {
    for (const [at, problem] of crossCheck(parsed.data)) issues.push(issue(at, problem));
  }
  if (issues.length) throw new PlanError(source, issues);
  return resolve(parsed.data!, source, data);
}

// ---- resolution ------------------------------------------------------------------------------------

function resolve(file: PlanFile, source: string, raw: unknown): ResolvedPlan {
  const retry: RetryPolicy = { ...DEFAULT_RETRY, ...file.defaults?.retry };
  const timeouts: StepTimeouts = { ...DEFAULT_TIMEOUTS, ...file.defaults?.timeouts };
  const resources = Object.fromEntries(
    Object.entries(file.resources).map(([name, r]) => [name, { name, ...r, ...(r.kind === 'traffic' && r.provider === 'local' && !r.backend ? { backend: 'app' } : {}) } as Resource]),
  );
  const steps: Step[] = [];
  file.phases.forEach((phase, phaseIndex) => {
    const kind = Object.keys(phase)[0] as PhaseKind;
    const body = phase[kind]!;
    const base = (suffix = '') => ({
      id: body.id ? `${body.id}${suffix}` : `${phaseIndex}-${kind}${suffix}`,
      phaseIndex,
      retry: { ...retry, ...body.retry },
      timeouts: { ...timeouts, ...body.timeouts },
    });
    const title = (generated: string) => body.title ?? generated;
    switch (kind) {
      case 'check': {
        const b = body as PhaseBody<'check'>;
        steps.push({ ...base(), kind, title: title(`Check ${list(b.resources)} healthy`), resources: b.resources });
        break;
      }
      case 'backup': {
        const b = body as PhaseBody<'backup'>;
        const to = b.destination ? ` to ${b.destination}` : '';
        steps.push({ ...base(), kind, title: title(`Back up ${list(b.resources)}${to} and prove it restores`), resources: b.resources, destination: b.destination, verifyRestore: b.verifyRestore ?? true });
        break;
      }
      case 'gate': {
        const b = body as PhaseBody<'gate'>;
        steps.push(gateStep({ ...base(), title: title(`Approval gate "${b.name}"`) }, b.name, b, file.approvers));
        break;
      }
      case 'infra': {
        const b = body as PhaseBody<'infra'>;
        const changes = [b.tier, b.sku, b.storageGb && `${b.storageGb} GB storage`, b.highAvailability !== undefined && `HA ${b.highAvailability ? 'on' : 'off'}`, ...Object.entries(b.settings ?? {}).map(([k, v]) => `${k}=${v}`)].filter(Boolean);
        const { id: _id, title: _t, retry: _r, timeouts: _to, ...spec } = b;
        steps.push({ ...base(), ...spec, kind, title: title(`Prepare ${b.resource}: ${changes.join(', ') || 'verify settings'}`), settings: b.settings ?? {} });
        break;
      }
      case 'app': {
        const b = body as PhaseBody<'app'>;
        const { id: _id, title: _t, retry: _r, timeouts: _to, ...spec } = b;
        steps.push({ ...base(), ...spec, kind, title: title(`Deploy ${b.resource} ${b.version}${b.database ? ` on ${b.database}` : ''} and wait until healthy`) });
        break;
      }
      case 'data': {
        const b = body as PhaseBody<'data'>;
        steps.push({ ...base(), kind, title: title(`Sync ${b.from} to ${b.to} and verify`), from: b.from, to: b.to, verify: b.verify ?? true });
        break;
      }
      case 'traffic': {
        const b = body as PhaseBody<'traffic'>;
        const front = resources[b.resource] as Extract<Resource, { kind: 'traffic' }>;
        for (const s of b.steps) {
          steps.push({
            ...base(`-${s.weight}`),
            kind,
            title: title(`Shift ${s.weight}% of ${b.resource} to ${front.canary}, bake ${s.bake}`),
            resource: b.resource,
            weight: s.weight,
            bake: s.bake,
            analysis: { ...DEFAULT_ANALYSIS, ...b.analysis, ...s.analysis },
          });
        }
        break;
      }
      case 'finalize': {
        const b = body as PhaseBody<'finalize'>;
        const syncedFrom: Record<string, string> = {};
        for (const s of steps) if (s.kind === 'data' && b.resources.includes(s.to)) syncedFrom[s.to] = s.from;
        const step = { ...base(), kind, title: title(`Finalize ${list(b.resources)}`), resources: b.resources, syncedFrom } as const;
        const ponr = b.pointOfNoReturn;
        if (!ponr) {
          steps.push(step);
          break;
        }
        const gate = ponr.gate ?? 'point-of-no-return';
        const recovery = ponr.recovery ?? 'reverse-sync';
        steps.push(
          {
            ...gateStep({ ...base('-gate'), title: `Point of no return: approve crossing into ${step.id}` }, gate, {
              ...ponr,
              instructions: `${ponr.instructions ? `${ponr.instructions.trim()} ` : ''}Past this gate, rolling back means ${recoveryPhrase(recovery, syncedFrom)}, and needs \`tiershift rollback --confirm\`.`,
            }, file.approvers),
            pointOfNoReturn: step.id,
          },
          { ...step, pointOfNoReturn: { gate, recovery } },
        );
        break;
      }
    }
  });
  return { apiVersion: 'tiershift/v1', name: file.name, description: file.description, hash: planHash(raw), source, resources, steps };
}

const list = (names: string[]) => names.join(', ');

function gateStep(base: Omit<GateStep, 'kind' | 'gate' | 'approvers' | 'requiredApprovals' | 'fourEyes' | 'onTimeout'>, name: string, b: PhaseBody<'gate'> | Omit<PhaseBody<'gate'>, 'name'>, planApprovers: string[] | undefined): GateStep {
  return {
    ...base,
    kind: 'gate',
    gate: name,
    instructions: b.instructions,
    approvers: b.approvers ?? planApprovers ?? [],
    requiredApprovals: b.requiredApprovals ?? 1,
    fourEyes: b.fourEyes ?? false,
    timeout: b.timeout,
    onTimeout: b.onTimeout ?? 'rollback',
    notify: b.notify,
  };
}

/** sha256 of the plan's content with keys sorted, so comments and key order do not change it. */
export function planHash(data: unknown): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])])) : v;
  return createHash('sha256').update(JSON.stringify(canonical(data))).digest('hex');
}

// ---- checks that span the plan -------------------------------------------------------------------

function crossCheck(file: PlanFile): [PathPart[], string][] {
  const problems: [PathPart[], string][] = [];
  const kinds = (names: readonly string[]) => names.join(' or ');
  const ref = (at: PathPart[], value: string, allowed: readonly Resource['kind'][]) => {
    const r = file.resources[value];
    const defined = Object.entries(file.resources).filter(([, res]) => allowed.includes(res.kind)).map(([n]) => n);
    const choices = defined.length ? ` (${defined.join(', ')})` : '; define one under resources';
    if (!r) problems.push([at, `expected the name of a ${kinds(allowed)} resource defined under resources${choices}, got "${value}"`]);
    else if (!allowed.includes(r.kind)) problems.push([at, `expected a ${kinds(allowed)} resource${choices}, got "${value}", a ${r.kind} resource`]);
    return r;
  };

  for (const [name, r] of Object.entries(file.resources)) {
    const need = (field: string, why: string) => {
      if ((r as Record<string, unknown>)[field] === undefined) problems.push([['resources', name, field], `expected ${field} (${why}), got nothing`]);
    };
    if (r.provider === 'azure') {
      need('subscription', 'the Azure subscription id');
      need('resourceGroup', 'the Azure resource group');
      if (r.kind === 'postgres') need('server', 'the Flexible Server name');
      if (r.kind === 'traffic' && !r.containerApp) (need('profile', 'the Front Door profile'), need('originGroup', 'the origin group'));
      if (r.kind === 'app') need('containerApp', 'the Container App name');
    } else {
      if (r.kind === 'postgres' && !r.connection) need('cluster', 'the sandbox cluster: source or target');
      if (r.kind === 'blob' && !['primary', 'secondary'].includes(r.account)) {
        problems.push([['resources', name, 'account'], `expected the sandbox account primary or secondary, got "${r.account}"`]);
      }
    }
    if (r.kind === 'traffic' && r.stable === r.canary) problems.push([['resources', name, 'canary'], `expected an origin other than the stable one, got "${r.canary}" for both`]);
  }

  const gates = new Map<string, PathPart[]>();
  const ids = new Map<string, number>();
  let finalizeAt = -1;
  let ponrAt = -1;
  const syncedInto = new Map<string, string>();
  const checkGate = (name: string, b: Omit<PhaseBody<'gate'>, 'name'>, at: (...rest: PathPart[]) => PathPart[], where: PathPart[], nameKey = 'name') => {
    if (gates.has(name)) problems.push([at(nameKey), `expected a gate name used once, got "${name}" again (first at ${formatPath(gates.get(name)!)})`]);
    gates.set(name, where);
    const approvers = b.approvers ?? file.approvers;
    if (approvers?.length && (b.requiredApprovals ?? 1) > new Set(approvers).size) {
      problems.push([at('requiredApprovals'), `expected at most ${new Set(approvers).size} (the number of approvers), got ${b.requiredApprovals}`]);
    }
    if (b.onTimeout && !b.timeout) problems.push([at('onTimeout'), 'expected a timeout for onTimeout to act on, got none']);
    if (b.notify?.escalateAfter && !b.notify.escalateTo) problems.push([at('notify', 'escalateTo'), 'expected the people to escalate to, got none']);
    if (b.notify?.escalateTo && !b.notify.escalateAfter) problems.push([at('notify', 'escalateAfter'), 'expected how long to wait before escalating, got none']);
  };
  file.phases.forEach((phase, i) => {
    const kind = Object.keys(phase)[0] as PhaseKind;
    const at = (...rest: PathPart[]): PathPart[] => ['phases', i, kind, ...rest];
    const body = phase[kind]!;
    if (body.id) {
      if (ids.has(body.id)) problems.push([at('id'), `expected a step id used once, got "${body.id}" again (first at phases[${ids.get(body.id)}])`]);
      ids.set(body.id, i);
    }
    if (finalizeAt >= 0 && !['finalize', 'check', 'gate'].includes(kind)) {
      problems.push([['phases', i], `expected only finalize, check and gate phases after the finalize at phases[${finalizeAt}], got ${kind}`]);
    }
    switch (kind) {
      case 'check':
        (body as PhaseBody<'check'>).resources.forEach((n, j) => ref(at('resources', j), n, ['postgres', 'blob', 'traffic', 'app']));
        break;
      case 'finalize': {
        const b = body as PhaseBody<'finalize'>;
        b.resources.forEach((n, j) => ref(at('resources', j), n, ['postgres', 'blob', 'traffic', 'app']));
        if (finalizeAt < 0) finalizeAt = i;
        if (b.pointOfNoReturn) {
          if (ponrAt >= 0) problems.push([at('pointOfNoReturn'), `expected one point of no return per plan, got a second (the first is at phases[${ponrAt}])`]);
          ponrAt = i;
          checkGate(b.pointOfNoReturn.gate ?? 'point-of-no-return', b.pointOfNoReturn, (...rest) => at('pointOfNoReturn', ...rest), at('pointOfNoReturn'), 'gate');
          // The reverse sync needs a database this plan replicated into, on a provider that can replicate back.
          const synced = b.resources.filter((n) => file.resources[n]?.kind === 'postgres' && syncedInto.has(n));
          if (!synced.length) {
            problems.push([at('pointOfNoReturn'), `expected the finalize to cut over a postgres resource that a data phase syncs into (the reverse sync replicates it back), got ${b.resources.join(', ')}`]);
          }
          for (const n of synced) {
            for (const r of [n, syncedInto.get(n)!]) {
              if (file.resources[r]?.provider === 'azure') {
                problems.push([at('pointOfNoReturn', 'recovery'), `expected local postgres resources for reverse-sync, got "${r}", an azure resource; the Azure provider cannot reverse-sync a promoted replica yet, so leave pointOfNoReturn out of Azure plans`]);
              }
            }
          }
        }
        break;
      }
      case 'backup': {
        const b = body as PhaseBody<'backup'>;
        b.resources.forEach((n, j) => ref(at('resources', j), n, ['postgres', 'blob']));
        if (b.destination) ref(at('destination'), b.destination, ['blob']);
        break;
      }
      case 'gate': {
        const b = body as PhaseBody<'gate'>;
        checkGate(b.name, b, at, ['phases', i]);
        if (ponrAt >= 0 && b.timeout && b.onTimeout !== 'abort') {
          problems.push([at('onTimeout'), `expected onTimeout: abort for a gate after the point of no return at phases[${ponrAt}] (a rollback there syncs data back and needs an operator's --confirm), got ${b.onTimeout ?? 'rollback (the default)'}`]);
        }
        break;
      }
      case 'infra':
        ref(at('resource'), (body as PhaseBody<'infra'>).resource, ['postgres']);
        break;
      case 'app': {
        const b = body as PhaseBody<'app'>;
        ref(at('resource'), b.resource, ['app']);
        if (b.database) ref(at('database'), b.database, ['postgres']);
        if (b.minReplicas !== undefined && b.maxReplicas !== undefined && b.minReplicas > b.maxReplicas) {
          problems.push([at('maxReplicas'), `expected at least minReplicas (${b.minReplicas}), got ${b.maxReplicas}`]);
        }
        break;
      }
      case 'data': {
        const b = body as PhaseBody<'data'>;
        syncedInto.set(b.to, b.from);
        const from = ref(at('from'), b.from, ['postgres', 'blob']);
        const to = ref(at('to'), b.to, ['postgres', 'blob']);
        if (b.from === b.to) problems.push([at('to'), `expected a resource other than the source, got "${b.to}" for both`]);
        else if (from && to && from.kind !== to.kind) problems.push([at('to'), `expected a ${from.kind} resource like ${b.from}, got "${b.to}", a ${to.kind} resource`]);
        break;
      }
      case 'traffic': {
        const b = body as PhaseBody<'traffic'>;
        ref(at('resource'), b.resource, ['traffic']);
        b.steps.forEach((s, j) => {
          const prev = b.steps[j - 1];
          if (prev && s.weight <= prev.weight) problems.push([at('steps', j, 'weight'), `expected a weight above the previous step's ${prev.weight}, got ${s.weight}`]);
        });
        break;
      }
    }
  });
  return problems;
}

const CREDENTIAL = [
  /password\s*[=:]/i,
  /AccountKey=/i,
  /SharedAccessSignature=/i,
  /[?&]sig=/i,
  /:\/\/[^/\s:@]+:[^/\s@]+@/,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
  // A URL with a token in its path or a secret in its query (a chat webhook): what redaction would hide.
  { test: (value: string) => /:\/\//.test(value) && holdsSecret(value) },
];

/** Paths of strings that look like a connection string with a secret, a SAS or a key. */
function findCredentials(value: unknown, at: PathPart[] = []): PathPart[][] {
  if (typeof value === 'string') return CREDENTIAL.some((re) => re.test(value)) ? [at] : [];
  if (Array.isArray(value)) return value.flatMap((v, i) => findCredentials(v, [...at, i]));
  if (value && typeof value === 'object') return Object.entries(value).flatMap(([k, v]) => findCredentials(v, [...at, k]));
  return [];
}

// ---- turning schema issues into sentences ----------------------------------------------------------

function issuePath(issue: z.core.$ZodIssue): PathPart[] {
  const at = issue.path.filter((p): p is PathPart => typeof p !== 'symbol');
  return issue.code === 'unrecognized_keys' ? [...at, issue.keys[0]!] : at;
}

function explain(issue: z.core.$ZodIssue, value: unknown): string {
  const got = `got ${show(value)}`;
  switch (issue.code) {
    case 'invalid_type':
      return value === undefined ? `expected ${article(issue.expected)}, got nothing` : `expected ${article(issue.expected)}, ${got}`;
    case 'invalid_value':
      return `expected ${issue.values.length === 1 ? JSON.stringify(issue.values[0]) : `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`}, ${got}`;
    case 'unrecognized_keys': {
      const parent = issue.path.at(-2) === 'phases' ? ` (a phase is one of ${PHASE_KINDS.join(', ')})` : '';
      return `expected no key "${issue.keys[0]}" here${parent}; check its spelling`;
    }
    case 'too_small':
      return issue.origin === 'array'
        ? `expected at least ${issue.minimum} item${Number(issue.minimum) === 1 ? '' : 's'}, got ${Array.isArray(value) ? value.length : 0}`
        : issue.origin === 'string'
          ? `expected a non-empty text, ${got}`
          : `expected ${issue.inclusive ? 'at least' : 'more than'} ${issue.minimum}, ${got}`;
    case 'too_big':
      return issue.origin === 'array' || issue.origin === 'string'
        ? `expected at most ${issue.maximum} ${issue.origin === 'array' ? 'items' : 'characters'}, got ${Array.isArray(value) || typeof value === 'string' ? value.length : show(value)}`
        : `expected ${issue.inclusive ? 'at most' : 'less than'} ${issue.maximum}, ${got}`;
    case 'invalid_union': {
      const kind = value && typeof value === 'object' && 'kind' in value;
      if ((issue as { note?: string }).note === 'No matching discriminator' || (kind && issue.path.at(-2) === 'resources')) {
        return `expected kind postgres, blob, traffic or app, got ${show(issue.path.at(-1) === 'kind' ? value : (value as { kind?: unknown })?.kind)}`;
      }
      return `expected { env: NAME } or { keyVault: { vault, secret } }, ${got}`;
    }
    case 'invalid_format':
    case 'custom':
      return issue.message.startsWith('expected') ? `${issue.message}, ${got}` : `${issue.message}, ${got}`;
    default:
      return `${issue.message}, ${got}`;
  }
}

const article = (type: string) => (type === 'array' ? 'a list' : type === 'object' ? 'a mapping' : /^[aeiou]/.test(type) ? `an ${type}` : `a ${type}`);

function show(value: unknown): string {
  if (value === undefined || value === null) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

function valueAt(data: unknown, at: PathPart[]): unknown {
  let cur = data;
  for (const part of at) cur = cur && typeof cur === 'object' ? (cur as Record<PathPart, unknown>)[part] : undefined;
  return cur;
}

export function formatPath(at: PathPart[]): string {
  return at.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** The line of the deepest node along the path that exists in the document. */
function lineOf(doc: ReturnType<typeof parseDocument>, counter: LineCounter, at: PathPart[]): number | undefined {
  for (let n = at.length; n >= 0; n -= 1) {
    const node = n === 0 ? doc.contents : doc.getIn(at.slice(0, n), true);
    if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
  }
  return undefined;
}

