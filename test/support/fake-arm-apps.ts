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
