// Container Apps as Azure behaves where the fake ARM's merge would be kinder:
// - a GET returns secrets by name only; their values come from POST .../listSecrets;
// - a PATCH that leaves out configuration.secrets or configuration.registries drops them (what azd and
//   the Maven plugin had to work around by sending them back on every update);
// - a revision suffix must be lowercase letters, digits and single dashes, start with a letter, end with
//   a letter or digit, and `<app>--<suffix>` must fit in 54 characters;
// - POST .../revisions/<name>/activate brings a deactivated revision back.
import type { FakeArm, FakeExtension } from './fake-arm';

type Json = Record<string, any>;
const APP = /^(\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.App\/containerApps\/([^/]+))(\/.*)?$/i;

export interface AppSecret {
  name: string;
  value?: string;
  keyVaultUrl?: string;
  identity?: string;
}

export class FakeContainerApps implements FakeExtension {
  /** Secrets with their values, by lowercased app id: what Azure keeps and only listSecrets reveals. */
  private readonly secrets = new Map<string, AppSecret[]>();

  private pending?: { app: string; secrets: AppSecret[] };

  constructor(private readonly arm: FakeArm) {
    arm.extensions.push(this);
  }

  /** Gives an app secrets (stored without values in the resource, as a GET shows them) and registries. */
  seed(appId: string, secrets: AppSecret[], registries: Json[] = []): void {
    this.secrets.set(appId.toLowerCase(), secrets.map((s) => ({ ...s })));
    const app = this.arm.get(appId)!;
    app.properties.configuration.secrets = secrets.map(({ value: _, ...rest }) => rest);
    app.properties.configuration.registries = registries;
  }

  secretsOf(appId: string): AppSecret[] {
    return this.secrets.get(appId.toLowerCase()) ?? [];
  }

  rewrite(method: string, path: string, body: any): any {
    const m = APP.exec(path);
    if (method !== 'PATCH' || !m || m[3] || !body) return body;
    const configuration: Json = { ...(body.properties?.configuration ?? {}) };
    const sent: AppSecret[] | undefined = configuration.secrets;
    // What the PATCH leaves out is gone, as in Azure: an empty list replaces the stored one (once the PATCH is accepted).
    this.pending = { app: m[1]!.toLowerCase(), secrets: (sent ?? []).map((s) => ({ ...s })) };
    configuration.secrets = (sent ?? []).map(({ value: _, ...rest }) => rest);
    configuration.registries = configuration.registries ?? [];
    return { ...body, properties: { ...body.properties, configuration } };
  }

  handle(req: { method: string; path: string; body: any }, reply: (s: number, j?: unknown) => any, error: (s: number, c: string, m: string) => any) {
    const m = APP.exec(req.path);
    if (!m) return undefined;
    const appId = m[1]!;
    const rest = m[3] ?? '';
    if (req.method === 'POST' && /^\/listSecrets$/i.test(rest)) {
      if (!this.arm.get(appId)) return error(404, 'ContainerAppNotFound', 'The Container App was not found.');
      return reply(200, { value: this.secretsOf(appId) });
    }
    const activate = /^\/revisions\/([^/]+)\/activate$/i.exec(rest);
    if (req.method === 'POST' && activate) {
      const rev = this.arm.get(`${appId}/revisions/${activate[1]}`);
      if (!rev) return error(404, 'ContainerAppRevisionNotFound', 'Revision not found.');
      rev.properties.active = true;
      rev.properties.runningState = 'Running';
      return reply(200);
    }
    if (req.method === 'PATCH' && !rest) {
      const suffix: string | undefined = req.body?.properties?.template?.revisionSuffix;
      if (suffix !== undefined) {
        const name = `${m[2]}--${suffix}`;
        if (!/^[a-z]([a-z0-9-]*[a-z0-9])?$/.test(suffix) || suffix.includes('--') || name.length > 54) {
          return error(400, 'ContainerAppInvalidRevisionSuffix', `Invalid revision suffix '${suffix}': a lowercase letter, then lowercase letters, digits and single '-', ending with a letter or digit, and '${name}' must be at most 54 characters.`);
        }
      }
      const refs: string[] = (req.body?.properties?.configuration?.registries ?? []).map((r: Json) => r.passwordSecretRef).filter(Boolean);
      const known = new Set((req.body?.properties?.configuration?.secrets ?? []).map((s: AppSecret) => s.name));
      const missing = refs.find((r) => !known.has(r));
      if (missing) return error(400, 'ContainerAppSecretRefNotFound', `Secret '${missing}' referenced by a registry is not defined in the configuration.`);
      if (this.pending?.app === appId.toLowerCase()) this.secrets.set(this.pending.app, this.pending.secrets);
      this.pending = undefined;
    }
    return undefined;
  }
}

// Azure's rules for what an update of a Container App carries, checked on every PATCH the fake accepts
// (FakeArm.app calls this before it starts the operation):
// - revision labels: each at most once, a DNS label with no "--" (it becomes `<app>---<label>.<domain>`,
//   a host name of at most 63 characters per label);
// - scale: 0 <= minReplicas <= maxReplicas <= 1000 (Container Apps' limit per revision), maxReplicas >= 1,
//   each rule named (lowercase letters, digits, "-", ".") and of one kind; an HTTP rule's
//   concurrentRequests a whole number of at least 1;
// - secrets: a Key Vault reference needs an identity, and that identity must be one the app has
//   (`system` for its system-assigned identity, else a user-assigned identity's id);
// - every env `secretRef` of the app's containers must name a secret the app keeps after the update.
const LABEL = /^[a-z]([a-z0-9-]*[a-z0-9])?$/;
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export function containerAppRefusal(appName: string, body: Json | undefined, current: Json): [string, string] | undefined {
  const p = body?.properties ?? {};
  const traffic: Json[] = p.configuration?.ingress?.traffic ?? [];
  const labels = traffic.map((t) => t.label).filter((l): l is string => typeof l === 'string');
  for (const label of labels) {
    if (!LABEL.test(label) || label.includes('--') || appName.length + 3 + label.length > 63) {
      return ['ContainerAppInvalidLabel', `Invalid label '${label}': lowercase letters, digits and single '-', starting with a letter and ending with a letter or digit, and '${appName}---${label}' at most 63 characters.`];
    }
  }
  const twice = labels.find((l, i) => labels.indexOf(l) !== i);
  if (twice) return ['ContainerAppDuplicateLabel', `The label '${twice}' is assigned more than once; a label names one revision.`];

  const scale = { ...(current.properties?.template?.scale ?? {}), ...(p.template?.scale ?? {}) };
  const min = scale.minReplicas ?? 0;
  const max = scale.maxReplicas ?? 10;
  if (min < 0 || max < 1 || max > 1000) return ['ContainerAppInvalidScale', `minReplicas must be at least 0 and maxReplicas between 1 and 1000, got ${min} and ${max}.`];
  if (min > max) return ['ContainerAppInvalidScale', `minReplicas (${min}) must not be greater than maxReplicas (${max}).`];
  const ruleNames: string[] = [];
  for (const rule of (scale.rules ?? []) as Json[]) {
    if (!rule.name || !K8S_NAME.test(rule.name)) return ['ContainerAppInvalidScaleRule', `Invalid scale rule name '${rule.name}'.`];
    if (ruleNames.includes(rule.name)) return ['ContainerAppInvalidScaleRule', `The scale rule '${rule.name}' is defined more than once.`];
    ruleNames.push(rule.name);
    const kinds = ['azureQueue', 'custom', 'http', 'tcp'].filter((k) => rule[k]);
    if (kinds.length !== 1) return ['ContainerAppInvalidScaleRule', `The scale rule '${rule.name}' must have exactly one of azureQueue, custom, http or tcp.`];
    const concurrent = rule.http?.metadata?.concurrentRequests;
    if (rule.http && concurrent !== undefined && !(/^\d+$/.test(concurrent) && Number(concurrent) >= 1)) {
      return ['ContainerAppInvalidScaleRule', `The HTTP scale rule '${rule.name}' needs concurrentRequests of at least 1, got '${concurrent}'.`];
    }
  }

  const secrets: Json[] = p.configuration?.secrets ?? current.properties?.configuration?.secrets ?? [];
  const identity = current.identity ?? {};
  const userIds = Object.keys(identity.userAssignedIdentities ?? {}).map((k) => k.toLowerCase());
  for (const s of secrets) {
    if (!s.name || !K8S_NAME.test(s.name)) return ['ContainerAppInvalidSecretName', `Invalid secret name '${s.name}'.`];
    if (s.keyVaultUrl && !s.identity) return ['ContainerAppSecretInvalid', `The secret '${s.name}' references Key Vault but names no identity to read it with.`];
    if (s.identity) {
      const ok = String(s.identity).toLowerCase() === 'system' ? /SystemAssigned/i.test(identity.type ?? '') : userIds.includes(String(s.identity).toLowerCase());
      if (!ok) return ['ContainerAppSecretIdentityNotFound', `The identity '${s.identity}' of secret '${s.name}' is not assigned to the container app.`];
    }
  }
  const names = new Set(secrets.map((s) => s.name));
  const template = p.template ?? current.properties?.template ?? {};
  for (const c of [...(template.containers ?? []), ...(template.initContainers ?? [])] as Json[]) {
    for (const e of (c.env ?? []) as Json[]) {
      if (e.secretRef && !names.has(e.secretRef)) return ['ContainerAppSecretRefNotFound', `Secret '${e.secretRef}' referenced by environment variable '${e.name}' of container '${c.name}' is not defined in the configuration.`];
    }
  }
  return undefined;
}
