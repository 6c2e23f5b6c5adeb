// Reads a plan file: YAML -> schema -> cross-checks -> the ResolvedPlan the workflow runs. Every problem
// is reported as one sentence naming the file, the path inside it, the line, what was expected and
// what was found: `demo.yaml: phases[3].traffic.steps[1].weight (line 41): expected ..., got 120.`
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isNode, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { PROVIDERS } from '../activities/registry';
import { planDigest } from '../contract/digest';
import { DEFAULT_PORTS, readState, sandboxHome } from '../contract/home';
import { allowedPrincipals, allowedSignersProblems } from '../identity/ssh';
import type { IdentityPolicy } from '../contract/identity';
import { holdsSecret } from '../contract/redact';
import { PHASE_KINDS, PHASES, type PhaseKindName } from './phases';
import { DEFAULT_RETRY, DEFAULT_TIMEOUTS, type BodyCommon, type CheckContext, type GateRules } from './phases/kit';
import type { PathPart, ProviderPlan } from './provider';
import { isProviderStepKind, planSchemaFor, RESOURCE_KINDS, secretRefPhrase, type PlanFile } from './schema';
import type { Recovery, ResolvedPlan, Resource, ResourceKind, RetryPolicy, Step, StepTimeouts } from './types';
import { queueConflicts, stepTaskQueue } from './queues';

export { DEFAULT_ANALYSIS, DEFAULT_RETRY, DEFAULT_TIMEOUTS } from './phases/kit';

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

export function loadPlan(file: string, providers: readonly ProviderPlan[] = PROVIDERS): ResolvedPlan {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (err as Error).message;
    throw new PlanError(file, [{ path: [], problem: why, message: `cannot read plan ${file}: ${why}; pass the path of a plan YAML file such as plans/demo.yaml.` }]);
  }
  const relative = path.relative(process.cwd(), path.resolve(file));
  return parsePlan(text, relative && !relative.startsWith('..') ? relative : path.resolve(file), providers);
}

export function parsePlan(text: string, source: string, providers: readonly ProviderPlan[] = PROVIDERS): ResolvedPlan {
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
  const raw: unknown = doc.toJS();
  const issues: PlanIssue[] = findCredentials(raw).map((at) =>
    issue(at, `expected a secret reference (${secretRefPhrase(providers)}), got what looks like a credential; plans never hold secrets`),
  );
  const { data, problems: legacy, flat } = nestProviderFields(raw, providers);
  for (const [at, problem] of legacy) issues.push(issue(at, problem));
  // A problem inside a resource written the old, flat way is shown where that file has the field.
  const where = (at: PathPart[]): PathPart[] => {
    if (at[0] === 'phases' && typeof at[1] === 'number') {
      const old = flat.get(`phases[${at[1]}]`);
      return old && at[3] === old.provider && at[4] !== undefined ? [...at.slice(0, 3), ...at.slice(4)] : at;
    }
    const old = at[0] === 'resources' && typeof at[1] === 'string' ? flat.get(at[1]) : undefined;
    if (!old || at[2] !== old.provider) return at;
    const field = at[3] === undefined ? 'provider' : (Object.entries(old.renamed).find(([, to]) => to === at[3])?.[0] ?? at[3]);
    return ['resources', at[1]!, field, ...at.slice(4)];
  };
  const parsed = legacy.length ? undefined : planSchemaFor(providers).safeParse(data);
  if (parsed && !parsed.success) {
    const seen: PathPart[][] = [];
    for (const zi of parsed.error.issues) {
      const inPlan = issuePath(zi);
      const at = where(inPlan);
      // A phase with a misspelt key also has "no phase kind": one sentence about the spelling is enough.
      if (seen.some((p) => at.length < p.length && at.every((part, i) => part === p[i]))) continue;
      seen.push(at);
      issues.push(issue(at, explain(zi, valueAt(data, inPlan), providers, data)));
    }
  } else if (parsed?.success) {
    const file = parsed.data as unknown as PlanFile;
    const resources = resolveResources(file, providers);
    const files = planFiles(source);
    for (const [at, problem] of crossCheck(file, resources, providers, files)) issues.push(issue(where(at), problem));
    const identity = identityPolicy(file, source);
    if ('problem' in identity) issues.push(issue(identity.at, identity.problem));
    else if (!issues.length) {
      const plan = resolve(file, resources, providers, source, identity.policy, files);
      for (const [index, problem] of queueConflicts(plan.steps, resources)) issues.push(issue(where(['phases', index]), problem));
      if (!issues.length) return plan;
    }
  }
  throw new PlanError(source, issues);
}

/**
 * Plans written before providers nested their fields say `provider: azure` beside `server: …`; they keep
 * loading: the fields the named provider declares move under its name (renamed where it renamed them).
 */
function nestProviderFields(
  raw: unknown,
  providers: readonly ProviderPlan[],
): { data: unknown; problems: [PathPart[], string][]; flat: Map<string, { provider: string; renamed: Record<string, string> }> } {
  const problems: [PathPart[], string][] = [];
  const flat = new Map<string, { provider: string; renamed: Record<string, string> }>();
  const resources = (raw as { resources?: unknown } | null)?.resources;
  if (!resources || typeof resources !== 'object' || Array.isArray(resources)) return { data: raw, problems, flat };
  const nested: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(resources)) {
    const r = value as Record<string, unknown> | null;
    if (!r || typeof r !== 'object' || Array.isArray(r) || r.provider === undefined || !RESOURCE_KINDS.includes(r.kind as ResourceKind)) {
      nested[name] = value;
      continue;
    }
    const provider = providers.find((p) => p.name === r.provider);
    const kind = r.kind as ResourceKind;
    const fields = provider?.resources[kind];
    if (!provider || !fields) {
      const drivers = providers.filter((p) => p.resources[kind]).map((p) => p.name);
      problems.push([['resources', name, 'provider'], `expected one of ${drivers.join(', ')}, got ${JSON.stringify(r.provider)}`]);
      continue;
    }
    const renamed = provider.renamed?.[kind] ?? {};
    const own = new Set(Object.keys(fields.shape));
    const block: Record<string, unknown> = {};
    const rest: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(r)) {
      if (key === 'provider') continue;
      const to = renamed[key] ?? key;
      if (own.has(to)) block[to] = v;
      else rest[key] = v;
    }
    nested[name] = { ...rest, [provider.name]: block };
    flat.set(name, { provider: provider.name, renamed });
  }
  // The same for the provider's own fields on infra and app steps (`tier:` beside `resource: db`).
  const phases = (raw as { phases?: unknown }).phases;
  const upgraded = !Array.isArray(phases)
    ? phases
    : phases.map((phase: unknown, i) => {
        const [kind, body] = phase && typeof phase === 'object' && !Array.isArray(phase) && Object.keys(phase).length === 1 ? Object.entries(phase)[0]! : [];
        if (!kind || !isProviderStepKind(kind) || !body || typeof body !== 'object') return phase;
        const providerName = flat.get((body as { resource?: string }).resource ?? '')?.provider;
        const own = providers.find((p) => p.name === providerName)?.steps?.[kind];
        if (!providerName || !own) return phase;
        const moved = Object.keys(body).filter((k) => k in own.shape);
        if (!moved.length) return phase;
        const rest = Object.fromEntries(Object.entries(body).filter(([k]) => !moved.includes(k)));
        flat.set(`phases[${i}]`, { provider: providerName, renamed: {} });
        return { [kind]: { ...rest, [providerName]: Object.fromEntries(moved.map((k) => [k, (body as Record<string, unknown>)[k]])) } };
      });
  return { data: { ...(raw as object), resources: nested, phases: upgraded }, problems, flat };
}

/** Each resource with its provider's fields beside its own, as operations read it. */
function resolveResources(file: PlanFile, providers: readonly ProviderPlan[]): Record<string, Resource> {
  return Object.fromEntries(
    Object.entries(file.resources).map(([name, r]) => {
      const provider = providers.find((p) => r[p.name] !== undefined)!;
      const { [provider.name]: block, ...core } = r;
      return [name, { name, ...core, provider: provider.name, ...(block as object) } as Resource];
    }),
  );
}

// ---- resolution ------------------------------------------------------------------------------------

/**
 * Files a plan names (a sql step's statements), relative to the plan, read once when it loads: their text
 * becomes part of the resolved plan and its hash, so what runs is what was reviewed.
 */
function planFiles(source: string): (file: string) => { text: string } | { error: string } {
  const cache = new Map<string, { text: string } | { error: string }>();
  return (file) => {
    const full = path.resolve(path.dirname(source), file);
    let found = cache.get(full);
    if (!found) {
      try {
        found = { text: readFileSync(full, 'utf8') };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        found = { error: `${full} cannot be read (${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : code})` };
      }
      cache.set(full, found);
    }
    return found;
  };
}
type PlanFiles = ReturnType<typeof planFiles>;

/**
 * The plan's identity policy, with an allowed-signers file read (relative to the plan) into it: the
 * workflow verifies against what was reviewed and started, not against a file that may change later.
 */
function identityPolicy(file: PlanFile, source: string): { policy: IdentityPolicy } | { at: PathPart[]; problem: string } {
  const id = file.identity;
  if (id === 'unverified') return { policy: { mode: 'unverified' } };
  if ('oidc' in id) {
    // The sandbox's provider moves with its port: the running sandbox's, else where it would start.
    const issuer = id.oidc.issuer === 'sandbox' ? (readState(sandboxHome())?.idp?.issuer ?? `http://127.0.0.1:${DEFAULT_PORTS.idp}`) : id.oidc.issuer.replace(/\/$/, '');
    return { policy: { mode: 'oidc', issuer, audience: id.oidc.audience ?? 'tiershift', groupsClaim: id.oidc.groupsClaim ?? 'groups' } };
  }
  const at: PathPart[] = ['identity', 'ssh', 'allowedSigners'];
  const file_ = path.resolve(path.dirname(source), id.ssh.allowedSigners);
  let text: string;
  try {
    text = readFileSync(file_, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { at, problem: `expected an allowed-signers file (principal, key type and public key per line, as \`ssh-keygen -Y verify\` reads), but ${file_} cannot be read (${code === 'ENOENT' ? 'no such file' : code})` };
  }
  const broken = allowedSignersProblems(text);
  if (broken.length) return { at, problem: `expected an allowed-signers file ssh-keygen can read, but ${file_} has ${broken.slice(0, 3).join('; ')}` };
  // Everyone the plan names must be able to sign: a name the file lacks could never decide.
  const principals = new Set(allowedPrincipals(text));
  // Gates, and the gate a point of no return brings, with their escalation lists.
  const rulesOf = (body: unknown): GateRules[] => [body as GateRules, (body as { pointOfNoReturn?: GateRules } | undefined)?.pointOfNoReturn ?? {}];
  const gateApprovers = file.phases.flatMap((p) => Object.values(p).flatMap((body) => rulesOf(body).flatMap((r) => [...(r?.approvers ?? []), ...(r?.notify?.escalateTo ?? [])])));
  const named = [...new Set([...(file.approvers ?? []), ...(file.operators ?? []), ...gateApprovers])];
  const groups = named.filter((p) => p.startsWith('group:'));
  if (groups.length) return { at: ['identity'], problem: `expected approvers and operators named by principal with SSH signers, got ${groups[0]} (groups come from an identity provider)` };
  const unknown = named.filter((p) => !principals.has(p));
  if (unknown.length) return { at, problem: `expected every approver and operator among its principals (${[...principals].join(', ')}), but ${file_} does not list ${unknown.join(', ')}` };
  return { policy: { mode: 'ssh', allowedSigners: text } };
}

function resolve(file: PlanFile, resources: Record<string, Resource>, providers: readonly ProviderPlan[], source: string, identity: IdentityPolicy, files: PlanFiles): ResolvedPlan {
  const retry = { ...DEFAULT_RETRY, ...file.defaults?.retry } as RetryPolicy;
  const timeouts = { ...DEFAULT_TIMEOUTS, ...file.defaults?.timeouts } as StepTimeouts;
  const steps: Step[] = [];
  file.phases.forEach((phase, phaseIndex) => {
    const kind = Object.keys(phase)[0] as PhaseKindName;
    const { body, provider, fields } = providerBlock(kind, phase[kind]!, providers);
    const resolved = PHASES[kind].resolve(body, {
        phaseIndex,
        base: (suffix = '') => ({
          id: body.id ? `${body.id}${suffix}` : `${phaseIndex}-${kind}${suffix}`,
          phaseIndex,
          retry: { ...retry, ...body.retry },
          timeouts: { ...timeouts, ...body.timeouts },
        }),
        title: (generated) => body.title ?? generated,
        resources,
        steps,
        approvers: file.approvers,
        providerWords: provider && isProviderStepKind(kind) ? (provider.describeStep?.(kind, fields) ?? []) : [],
        readText: (name) => {
          const read = files(name);
          // crossCheck refused the plan if it could not be read.
          return 'text' in read ? read.text : '';
        },
        armProvider: armProviderOf(resources, providers),
        provesRestore: (name) => {
          const proves = providers.find((p) => p.name === resources[name]?.provider)?.provesRestore ?? false;
          return typeof proves === 'function' ? proves(resources[name]!) : proves;
        },
        recovers: (name, recovery) => providers.find((p) => p.name === name)?.recovery?.includes(recovery as Recovery) ?? false,
        recoveryProblem: (name, recovery) => recoveryProblem(resources, providers, name, recovery),
    });
    const undoCaveat = provider && kind === 'infra' ? provider.describeUndo?.('infra', fields) : undefined;
    // The provider's own fields sit beside the step's, as its operations read them.
    steps.push(
      ...resolved
        .map((s) => (provider ? { ...s, ...fields, ...(undoCaveat ? { undoCaveat } : {}) } : s))
        // Only where a resource pins one: every other plan (and its hash) stays as it was.
        .map((s) => {
          const taskQueue = stepTaskQueue(s, resources);
          return taskQueue ? { ...s, taskQueue } : s;
        }),
    );
  });
  // Resume and rollback are for the plan's operators: by default, everyone who may pass one of its gates.
  const operators = file.operators ?? [...new Set(steps.flatMap((s) => (s.kind === 'gate' ? s.approvers : [])))];
  const plan: Omit<ResolvedPlan, 'hash'> = { apiVersion: 'tiershift/v1', name: file.name, description: file.description, source, identity, operators, resources, steps };
  return { ...plan, hash: planDigest(plan) };
}

/** A step body without the provider's block, and that block. */
function providerBlock(kind: PhaseKindName, body: Record<string, unknown>, providers: readonly ProviderPlan[]): { body: BodyCommon; provider?: ProviderPlan; fields: Record<string, unknown> } {
  const provider = isProviderStepKind(kind) ? providers.find((p) => p.steps?.[kind] && body[p.name] !== undefined) : undefined;
  if (!provider) return { body, fields: {} };
  const { [provider.name]: fields, ...rest } = body;
  return { body: rest, provider, fields: fields as Record<string, unknown> };
}

/** Why a database cannot take a recovery its provider offers (the provider's recoveryProblem), or undefined. */
function recoveryProblem(resources: Record<string, Resource>, providers: readonly ProviderPlan[], name: string, recovery: string): string | undefined {
  const r = resources[name];
  return r ? providers.find((p) => p.name === r.provider)?.recoveryProblem?.(r, recovery as Recovery) : undefined;
}

/** The provider of the plan's resources that drives any resource by its ARM id (a resource step's). */
function armProviderOf(resources: Record<string, Resource>, providers: readonly ProviderPlan[]): string | undefined {
  const used = new Set(Object.values(resources).map((r) => r.provider));
  return providers.find((p) => p.armResources && used.has(p.name))?.name;
}

// ---- checks that span the plan -------------------------------------------------------------------

function crossCheck(file: PlanFile, resources: Record<string, Resource>, providers: readonly ProviderPlan[], files: PlanFiles): [PathPart[], string][] {
  const problems: [PathPart[], string][] = [];
  const problem = (at: PathPart[], text: string) => void problems.push([at, text]);

  for (const [name, r] of Object.entries(resources)) {
    const provider = providers.find((p) => p.name === r.provider)!;
    for (const [at, text] of provider.check?.(r) ?? []) problem(['resources', name, provider.name, ...at], text);
    if (r.kind === 'traffic' && r.stable === r.canary) problem(['resources', name, 'canary'], `expected an origin other than the stable one, got "${r.canary}" for both`);
  }

  const gates = new Map<string, PathPart[]>();
  const ids = new Map<string, number>();
  const seen: CheckContext['seen'] = { finalizeAt: -1, pointOfNoReturnAt: -1, syncedInto: new Map(), lastWeight: new Map(), cutOver: new Set() };
  file.phases.forEach((phase, index) => {
    const kind = Object.keys(phase)[0] as PhaseKindName;
    const body = phase[kind]!;
    const at = (...rest: PathPart[]): PathPart[] => ['phases', index, kind, ...rest];
    if (body.id) {
      if (ids.has(body.id)) problem(at('id'), `expected a step id used once, got "${body.id}" again (first at phases[${ids.get(body.id)}])`);
      ids.set(body.id, index);
    }
    if (seen.finalizeAt >= 0 && !PHASES[kind].allowedAfterFinalize) {
      const allowed = PHASE_KINDS.filter((k) => PHASES[k].allowedAfterFinalize);
      problem(['phases', index], `expected only ${allowed.join(', ').replace(/, ([^,]*)$/, ' and $1')} phases after the finalize at phases[${seen.finalizeAt}], got ${kind}`);
    }
    if (isProviderStepKind(kind)) {
      const owner = resources[(body as { resource?: string }).resource ?? '']?.provider;
      for (const p of providers) {
        if (body[p.name] !== undefined && owner !== undefined && owner !== p.name) {
          problem(at(p.name), `expected the fields of ${owner}, the provider of ${(body as { resource: string }).resource}, got ${p.name} fields`);
        }
      }
    }
    PHASES[kind].check?.(body, {
      index,
      at,
      problem,
      resources,
      approvers: file.approvers,
      seen,
      armProvider: armProviderOf(resources, providers),
      recovers: (name, recovery) => providers.find((p) => p.name === name)?.recovery?.includes(recovery as Recovery) ?? false,
      recoveryProblem: (name, recovery) => recoveryProblem(resources, providers, name, recovery),
      runs: (name, stepKind) => providers.find((p) => p.name === name)?.runs?.includes(stepKind) ?? false,
      readText(fileAt, name) {
        const read = files(name);
        if ('text' in read) return read.text;
        problem(fileAt, `expected a file beside the plan, but ${read.error}`);
        return undefined;
      },
      ref(refAt, value, allowed) {
        const r = resources[value];
        const defined = Object.values(resources).filter((res) => allowed.includes(res.kind)).map((res) => res.name);
        const choices = defined.length ? ` (${defined.join(', ')})` : '; define one under resources';
        const kinds = allowed.join(' or ');
        if (!r) problem(refAt, `expected the name of a ${kinds} resource defined under resources${choices}, got "${value}"`);
        else if (!allowed.includes(r.kind)) problem(refAt, `expected a ${kinds} resource${choices}, got "${value}", a ${r.kind} resource`);
        return r;
      },
      checkGate(name, rules, gateAt, nameKey = 'name') {
        if (gates.has(name)) problem(gateAt(nameKey), `expected a gate name used once, got "${name}" again (first at ${formatPath(gates.get(name)!)})`);
        gates.set(name, nameKey === 'name' ? ['phases', index] : gateAt());
        const approvers = rules.approvers ?? file.approvers;
        if (approvers?.length && (rules.requiredApprovals ?? 1) > new Set(approvers).size) {
          problem(gateAt('requiredApprovals'), `expected at most ${new Set(approvers).size} (the number of approvers), got ${rules.requiredApprovals}`);
        }
        if (rules.onTimeout && !rules.timeout) problem(gateAt('onTimeout'), 'expected a timeout for onTimeout to act on, got none');
        if (rules.notify?.escalateAfter && !rules.notify.escalateTo) problem(gateAt('notify', 'escalateTo'), 'expected the people to escalate to, got none');
        if (rules.notify?.escalateTo && !rules.notify.escalateAfter) problem(gateAt('notify', 'escalateAfter'), 'expected how long to wait before escalating, got none');
      },
    });
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

/**
 * A field another provider applies, on a resource (or its step) whose provider does not: which provider
 * that is and which one drives the resource, so the refusal says why rather than "check its spelling".
 */
function foreignField(issue: z.core.$ZodIssue & { code: 'unrecognized_keys' }, providers: readonly ProviderPlan[], data: unknown): string | undefined {
  const key = issue.keys[0]!;
  const path = issue.path;
  const plan = data as { resources?: Record<string, Record<string, unknown>>; phases?: Record<string, { resource?: string }>[] };
  let name: string | undefined;
  if (path[0] === 'resources' && typeof path[1] === 'string' && path.length <= 3) name = path[1];
  else if (path[0] === 'phases' && typeof path[1] === 'number' && typeof path[2] === 'string' && path.length === 3) name = plan.phases?.[path[1]]?.[path[2]]?.resource;
  const resource = name ? plan.resources?.[name] : undefined;
  const own = resource && providers.find((p) => resource[p.name] !== undefined);
  if (!name || !own) return undefined;
  const declares = (p: ProviderPlan) => [...Object.values(p.resources), ...Object.values(p.steps ?? {})].some((f) => f && key in f.shape);
  if (declares(own)) return undefined;
  const others = providers.filter((p) => p !== own && declares(p)).map((p) => p.name);
  if (!others.length) return undefined;
  return `expected no key "${key}" here: ${name} is a ${own.name} resource, and the ${own.name} provider does not apply ${key} (${others.join(' and ')} ${others.length > 1 ? 'do' : 'does'}); remove it, or make ${name} ${others.length > 1 ? 'a resource of one of those' : `an ${others[0]} resource`}`;
}

function explain(issue: z.core.$ZodIssue, value: unknown, providers: readonly ProviderPlan[], data?: unknown): string {
  const got = `got ${show(value)}`;
  switch (issue.code) {
    case 'invalid_type':
      // A field's own words ("expected the Azure subscription id, got nothing") beat the type's.
      if (issue.message.startsWith('expected')) return issue.message;
      return value === undefined ? `expected ${article(issue.expected)}, got nothing` : `expected ${article(issue.expected)}, ${got}`;
    case 'invalid_value':
      if (issue.message.startsWith('expected')) return `${issue.message}, ${got}`;
      return `expected ${issue.values.length === 1 ? JSON.stringify(issue.values[0]) : `one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`}, ${got}`;
    case 'unrecognized_keys': {
      const foreign = foreignField(issue, providers, data);
      if (foreign) return foreign;
      const parent =
        issue.path.at(-2) === 'phases'
          ? ` (a phase is one of ${PHASE_KINDS.join(', ')})`
          : issue.path.at(-2) === 'resources'
            ? ` (a resource nests its provider's fields under one of ${providers.map((p) => p.name).join(', ')})`
            : '';
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
      if (issue.path.length === 1 && issue.path[0] === 'identity') return `${issue.message}, ${got}`;
      const kind = value && typeof value === 'object' && 'kind' in value;
      if ((issue as { note?: string }).note === 'No matching discriminator' || (kind && issue.path.at(-2) === 'resources')) {
        return `expected kind ${RESOURCE_KINDS.join(', ').replace(/, ([^,]*)$/, ' or $1')}, got ${show(issue.path.at(-1) === 'kind' ? value : (value as { kind?: unknown })?.kind)}`;
      }
      const refKind = value && typeof value === 'object' && !Array.isArray(value) ? Object.keys(value)[0] : undefined;
      if (refKind && Object.keys(value as object).length === 1 && refKind !== 'env' && !providers.some((p) => p.secrets?.[refKind])) {
        return `expected a secret reference a registered provider resolves (${secretRefPhrase(providers)}), got a "${refKind}" reference, which none of ${providers.map((p) => p.name).join(', ')} resolves`;
      }
      return `expected ${secretRefPhrase(providers)}, ${got}`;
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

