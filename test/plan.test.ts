// Plan files: every mistake an author can make ends in one sentence with the file, the path and the line.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadPlan, parsePlan, PlanError } from '../plan/load';
import { describePlan } from '../plan/describe';
import { rollbackOrder } from '../plan/rollback';
import { splitStatements } from '../plan/sql';
import { JSON_SCHEMA_FILE, planJsonSchema } from '../scripts/write-json-schema';

const HEAD = `apiVersion: tiershift/v1
name: shop-move
approvers: [alice, bob]
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target }
  assets: { kind: blob, provider: local, account: primary, container: assets }
  front: { kind: traffic, provider: local, stable: blue, canary: green }
  api: { kind: app, provider: local }
phases:
`;

/** HEAD with its identity, where no line number is asserted. */
const PROVEN = HEAD.replace('phases:\n', 'identity: unverified\nphases:\n');

/** [what is wrong, the phases (or a whole plan when it starts with apiVersion), path, line, the problem]. */
const BAD: [string, string, string, number | undefined, RegExp][] = [
  ['not YAML', 'apiVersion: tiershift/v1\nname: [unclosed\n', '', 3, /is not valid YAML/],
  ['a wrong apiVersion', HEAD.replace('tiershift/v1', 'tiershift/v2') + '  - check: { resources: [sourceDb] }\n', 'apiVersion', 1, /expected "tiershift\/v1", got "tiershift\/v2"/],
  ['a bad name', HEAD.replace('shop-move', 'Shop Move') + '  - check: { resources: [sourceDb] }\n', 'name', 2, /expected 3 to 50 lowercase letters.*got "Shop Move"/],
  ['no phases', HEAD + '  []\n', 'phases', 11, /expected at least 1 item, got 0/],
  ['a misspelt phase', '  - chek: { resources: [sourceDb] }\n', 'phases[0].chek', 11, /no key "chek" here \(a phase is one of check, backup/],
  ['two kinds in one phase', '  - check: { resources: [sourceDb] }\n    gate: { name: go }\n', 'phases[0]', 11, /expected exactly one of check, backup/],
  ['an unknown resource', '  - check: { resources: [nowhere] }\n', 'phases[0].check.resources[0]', 11, /expected the name of a postgres or blob or traffic or app resource defined under resources \(sourceDb, .*\), got "nowhere"/],
  ['a resource of the wrong kind', '  - infra: { resource: assets, settings: { max_connections: 100 } }\n', 'phases[0].infra.resource', 11, /expected a postgres resource \(sourceDb, targetDb\), got "assets", a blob resource/],
  ['an unknown key', '  - backup: { resources: [sourceDb], verifyRestor: true }\n', 'phases[0].backup.verifyRestor', 11, /expected no key "verifyRestor" here; check its spelling/],
  ['a bad duration', '  - gate: { name: go, timeout: 5 minutes }\n', 'phases[0].gate.timeout', 11, /expected a duration such as 30s, 10m, 1h30m or 2d, got "5 minutes"/],
  ['a weight above 100', '  - traffic: { resource: front, steps: [ { weight: 10, bake: 1m }, { weight: 120, bake: 1m } ] }\n', 'phases[0].traffic.steps[1].weight', 11, /expected at most 100, got 120/],
  ['weights that go down', '  - traffic: { resource: front, steps: [ { weight: 50, bake: 1m }, { weight: 20, bake: 1m } ] }\n', 'phases[0].traffic.steps[1].weight', 11, /expected a weight above the previous step's 50, got 20/],
  ['an analysis interval under a second', '  - traffic: { resource: front, analysis: { interval: 500ms }, steps: [ { weight: 50, bake: 1m } ] }\n', 'phases[0].traffic.analysis.interval', 11, /expected an interval of at least 1s, got 500ms/],
  ['extendUpTo without inconclusive: extend', '  - traffic: { resource: front, steps: [ { weight: 50, bake: 1m, analysis: { extendUpTo: 10m } } ] }\n', 'phases[0].traffic.steps[0].analysis.extendUpTo', 11, /extendUpTo applies only with inconclusive: extend; remove it or set inconclusive: extend/],
  ['a fractional weight', '  - traffic: { resource: front, steps: [ { weight: 12.5, bake: 1m } ] }\n', 'phases[0].traffic.steps[0].weight', 11, /expected an int, got 12.5/],
  ['a missing bake time', '  - traffic:\n      resource: front\n      steps:\n        - weight: 10\n', 'phases[0].traffic.steps[0].bake', 14, /expected a string, got nothing/],
  ['an error rate above 1', '  - traffic: { resource: front, analysis: { maxErrorRate: 5 }, steps: [ { weight: 10, bake: 1m } ] }\n', 'phases[0].traffic.analysis.maxErrorRate', 11, /expected at most 1, got 5/],
  ['a duplicate gate', '  - gate: { name: go }\n  - gate: { name: go }\n', 'phases[1].gate.name', 12, /expected a gate name used once, got "go" again \(first at phases\[0\]\)/],
  ['more approvals than approvers', '  - gate: { name: go, requiredApprovals: 3 }\n', 'phases[0].gate.requiredApprovals', 11, /expected at most 2 \(the number of approvers\), got 3/],
  ['onTimeout without timeout', '  - gate: { name: go, onTimeout: abort }\n', 'phases[0].gate.onTimeout', 11, /expected a timeout for onTimeout to act on, got none/],
  ['an unknown onTimeout', '  - gate: { name: go, timeout: 1h, onTimeout: retry }\n', 'phases[0].gate.onTimeout', 11, /expected one of "rollback", "abort", got "retry"/],
  ['a change after finalize', '  - finalize: { resources: [sourceDb] }\n  - infra: { resource: targetDb }\n', 'phases[1]', 12, /expected only check, gate, sql, run, verify, finalize and resource phases after the finalize at phases\[0\], got infra/],
  ['a point of no return with nothing to sync back', '  - finalize: { resources: [targetDb], pointOfNoReturn: {} }\n', 'phases[0].finalize.pointOfNoReturn', 11, /expected the finalize to cut over a postgres resource that a data phase syncs into/],
  ['a point of no return whose gate name is taken', '  - gate: { name: point-of-no-return }\n  - data: { from: sourceDb, to: targetDb }\n  - finalize: { resources: [targetDb], pointOfNoReturn: {} }\n', 'phases[2].finalize.pointOfNoReturn.gate', 13, /expected a gate name used once, got "point-of-no-return" again \(first at phases\[0\]\)/],
  ['a gate that would roll back past the point of no return', '  - data: { from: sourceDb, to: targetDb }\n  - finalize: { resources: [targetDb], pointOfNoReturn: {} }\n  - gate: { name: done, timeout: 1h }\n', 'phases[2].gate.onTimeout', 13, /expected onTimeout: abort for a gate after the point of no return at phases\[1\].*got rollback \(the default\)/],
  ['a point of no return on Azure', HEAD.replace('provider: local, cluster: target', 'provider: azure, subscription: s, resourceGroup: rg, server: pg2') + '  - data: { from: sourceDb, to: targetDb }\n  - finalize: { resources: [targetDb], pointOfNoReturn: { recovery: reverse-sync } }\n', 'phases[1].finalize.pointOfNoReturn', 12, /expected replication: logical on targetDb for a reverse sync \(a read replica has no logical replication to turn around\), got replica \(the default\); set replication: logical on targetDb/],
  ['a point of no return on Azure whose replica is promoted standalone', HEAD.replace('provider: local, cluster: source', 'provider: azure, subscription: s, resourceGroup: rg, server: pg1').replace('provider: local, cluster: target', 'provider: azure, subscription: s, resourceGroup: rg, server: pg2, promote: standalone') + '  - data: { from: sourceDb, to: targetDb }\n  - finalize: { resources: [targetDb], pointOfNoReturn: {} }\n', 'phases[1].finalize.pointOfNoReturn', 12, /expected promote: switchover on targetDb for a point of no return whose recovery is a switch back, got promote: standalone, which Azure can never reverse/],
  ['a writing v2 on a replicated target that cannot be recovered', HEAD.replace('provider: local, cluster: target', 'provider: azure, subscription: s, resourceGroup: rg, server: pg2') + '  - data: { from: sourceDb, to: targetDb }\n  - app: { resource: api, version: v2, database: targetDb }\n', 'phases[1].app.database', 12, /expected replication: logical on targetDb for a reverse sync \(a read replica has no logical replication to turn around\), got replica \(the default\); set replication: logical on targetDb to fill it by logical replication; or add acceptWriteLoss: true to this app phase/],
  ['acceptWriteLoss where nothing replicates', '  - app: { resource: api, version: v2, database: targetDb, acceptWriteLoss: true }\n', 'phases[0].app.acceptWriteLoss', 11, /expected acceptWriteLoss only on an app whose database an earlier data phase replicates into, got it on database targetDb/],
  ['a sync between kinds', '  - data: { from: sourceDb, to: assets }\n', 'phases[0].data.to', 11, /expected a postgres resource like sourceDb, got "assets", a blob resource/],
  ['a sync onto itself', '  - data: { from: sourceDb, to: sourceDb }\n', 'phases[0].data.to', 11, /expected a resource other than the source, got "sourceDb" for both/],
  ['a password in the plan', HEAD.replace('cluster: source }', 'cluster: source, database: "host=db password=hunter2" }') + '  - check: { resources: [sourceDb] }\n', 'resources.sourceDb.database', 5, /got what looks like a credential; plans never hold secrets/],
  ['a connection string with a key', HEAD.replace("container: assets }", 'container: assets, connection: "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc" }') + '  - check: { resources: [assets] }\n', 'resources.assets.connection', 7, /looks like a credential/],
  ['a malformed secret reference', HEAD.replace('cluster: source }', 'cluster: source, connection: { vault: x } }') + '  - check: { resources: [sourceDb] }\n', 'resources.sourceDb.connection', 5, /expected a secret reference a registered provider resolves \(\{ env: NAME \} or \{ keyVault: … \}\), got a "vault" reference/],
  ['an unknown resource kind', HEAD.replace('kind: app', 'kind: queue') + '  - check: { resources: [sourceDb] }\n', 'resources.api.kind', 9, /expected kind postgres, blob, traffic or app, got "queue"/],
  ['an azure database without a server', HEAD.replace('provider: local, cluster: target', 'provider: azure, subscription: s, resourceGroup: rg') + '  - check: { resources: [targetDb] }\n', 'resources.targetDb.server', 6, /expected the Flexible Server name, got nothing/],
  ['a local blob account that is not a sandbox role', HEAD.replace('account: primary', 'account: westeurope') + '  - check: { resources: [assets] }\n', 'resources.assets.account', 7, /expected the sandbox account primary or secondary, got "westeurope"/],
  ['the same origin twice', HEAD.replace('canary: green', 'canary: blue') + '  - check: { resources: [front] }\n', 'resources.front.canary', 8, /expected an origin other than the stable one, got "blue" for both/],
  ['a retry policy with zero attempts', '  - check: { resources: [sourceDb], retry: { maximumAttempts: 0 } }\n', 'phases[0].check.retry.maximumAttempts', 11, /expected at least 1, got 0/],
  // Providers: each resource nests its provider's fields (flat v1 plans keep loading, see above).
  ['a resource with no provider', HEAD.replace('sourceDb: { kind: postgres, provider: local, cluster: source }', 'sourceDb: { kind: postgres, database: shop }') + '  - check: { resources: [sourceDb] }\n', 'resources.sourceDb', 5, /expected the fields of exactly one provider that drives postgres resources \(local: \{ … \} or azure: \{ … \}\), got none/],
  ['a resource with two providers', HEAD.replace('sourceDb: { kind: postgres, provider: local, cluster: source }', 'sourceDb: { kind: postgres, local: { cluster: source }, azure: { subscription: s, resourceGroup: rg, server: pg-one } }') + '  - check: { resources: [sourceDb] }\n', 'resources.sourceDb.azure', 5, /expected the fields of exactly one provider .*got local and azure/],
  ['an unregistered provider', HEAD.replace('provider: local, cluster: source', 'provider: aws, cluster: source') + '  - check: { resources: [sourceDb] }\n', 'resources.sourceDb.provider', 5, /expected one of local, azure, got "aws"/],
  ['an unregistered provider block', HEAD.replace('sourceDb: { kind: postgres, provider: local, cluster: source }', 'sourceDb: { kind: postgres, aws: { instance: db1 } }') + '  - check: { resources: [sourceDb] }\n', 'resources.sourceDb.aws', 5, /expected no key "aws" here \(a resource nests its provider's fields under one of local, azure\)/],
  ['Azure step fields on a sandbox database', '  - infra: { resource: targetDb, azure: { tier: GeneralPurpose } }\n', 'phases[0].infra.azure', 11, /expected the fields of local, the provider of targetDb, got azure fields/],
  ['an Azure tier on a sandbox database, written flat', '  - infra: { resource: targetDb, tier: GeneralPurpose }\n', 'phases[0].infra.tier', 11, /expected no key "tier" here/],
  // What the sandbox would ignore is refused, saying which provider applies it.
  ...(
    [
      ['sku', 'Standard_D4ds_v4'],
      ['tier', 'GeneralPurpose'],
      ['storageGb', 64],
      ['highAvailability', 'ZoneRedundant'],
      ['backupRetentionDays', 14],
    ] as const
  ).flatMap(([field, value]): [string, string, string, number, RegExp][] => [
    [`${field} on a sandbox database's infra step`, `  - infra: { resource: targetDb, ${field}: ${value} }\n`, `phases[0].infra.${field}`, 11, new RegExp(`expected no key "${field}" here: targetDb is a local resource, and the local provider does not apply ${field} \\(azure does\\); remove it, or make targetDb an azure resource`)],
    [`${field} on a sandbox database`, HEAD.replace('cluster: target }', `cluster: target, ${field}: ${value} }`) + '  - check: { resources: [targetDb] }\n', `resources.targetDb.${field}`, 6, new RegExp(`expected no key "${field}" here: targetDb is a local resource, and the local provider does not apply ${field}`)],
  ]),
  ['weights that go down across traffic phases', '  - traffic: { resource: front, steps: [ { weight: 10, bake: 1m }, { weight: 50, bake: 1m } ] }\n  - gate: { name: go }\n  - traffic: { resource: front, steps: [ { weight: 20, bake: 1m }, { weight: 100, bake: 1m } ] }\n', 'phases[2].traffic.steps[0].weight', 13, /expected a weight of at least 50, which the traffic phase at phases\[0\] leaves on front, got 20; to send users back on purpose, add allowDecrease: true to this phase/],
  ['allowDecrease where nothing goes down', '  - traffic: { resource: front, allowDecrease: true, steps: [ { weight: 10, bake: 1m } ] }\n', 'phases[0].traffic.allowDecrease', 11, /expected allowDecrease only on a phase that starts below the weight an earlier traffic phase leaves on front; remove it/],
  ['an Azure server name Azure refuses', HEAD.replace('provider: local, cluster: target', 'provider: azure, subscription: s, resourceGroup: rg, server: PG_Target') + '  - check: { resources: [targetDb] }\n', 'resources.targetDb.server', 6, /expected a Flexible Server name: 3 to 63 lowercase letters, digits and dashes.*got "PG_Target"/],
  ['a database name that is not an identifier', HEAD.replace('cluster: source }', 'cluster: source, database: "shop?host=elsewhere" }') + '  - check: { resources: [sourceDb] }\n', 'resources.sourceDb.database', 5, /expected a database name: up to 63 letters, digits, _ and -.*got "shop\?host=elsewhere"/],
  ['replicas that go down', HEAD.replace('api: { kind: app, provider: local }', 'api: { kind: app, provider: azure, subscription: s, resourceGroup: rg, containerApp: ca-api }') + '  - app: { resource: api, version: v2, minReplicas: 3, maxReplicas: 2 }\n', 'phases[0].app.maxReplicas', 11, /expected at least minReplicas \(3\), got 2/],
  // Finalize ends replication: users left on the stable side would write into a database nobody reads any more.
  ['a cutover while the stable side still serves', '  - data: { from: sourceDb, to: targetDb }\n  - traffic: { resource: front, steps: [ { weight: 10, bake: 1m }, { weight: 50, bake: 1m } ] }\n  - finalize: { resources: [targetDb] }\n', 'phases[1].traffic.steps[1].weight', 12, /expected the last traffic step of front to reach 100 before the finalize at phases\[2\] cuts over targetDb .*got 50/],
  // Runbook steps that are not cloud calls (sql, run, verify): bad input is refused before anything runs.
  ['a run step given a shell string', '  - run: { command: "./warm-cache.sh --all && echo done" }\n', 'phases[0].run.command', 11, /expected the command as an argument list such as \[node, scripts\/warm-cache.mjs, --all\] \(a shell string is refused: nothing runs through a shell\)\.$/],
  ['a sql step on a blob container', '  - sql: { resource: assets, statements: ["select 1"] }\n', 'phases[0].sql.resource', 11, /expected a postgres resource \(sourceDb, targetDb\), got "assets", a blob resource/],
  ['a sql step on an Azure database', HEAD.replace('provider: local, cluster: target', 'provider: azure, subscription: s, resourceGroup: rg, server: pg2') + '  - sql: { resource: targetDb, statements: ["select 1"] }\n', 'phases[0].sql.resource', 11, /expected a postgres resource whose provider connects sql steps, or one with a connection reference, got "targetDb" on provider azure, which does not connect them itself; give targetDb a connection/],
  ['a sql step with statements and a file', '  - sql: { resource: sourceDb, statements: ["select 1"], file: x.sql }\n', 'phases[0].sql', 11, /expected statements or a file \(exactly one\), got both/],
  ['a sql file that is not there', '  - sql: { resource: sourceDb, file: missing.sql }\n', 'phases[0].sql.file', 11, /expected a file beside the plan, but .*missing.sql cannot be read \(no such file\)/],
  ['an unnamed concurrent index', '  - sql: { resource: sourceDb, statements: ["create index concurrently on orders (created_at)"] }\n', 'phases[0].sql.statements', 11, /expected a name for the index .* builds concurrently \(a resumed step finds it by name/],
  ['a dropped column mid-sync', '  - data: { from: sourceDb, to: targetDb }\n  - sql: { resource: sourceDb, statements: ["alter table orders drop column note"] }\n', 'phases[1].sql.statements', 12, /expected no schema change that breaks the replication of sourceDb to targetDb mid-sync, got "alter table orders drop column note", which drops a column of a replicated table; stop using it now and drop it in a sql step after the finalize/],
  ['a renamed column mid-sync', '  - data: { from: sourceDb, to: targetDb }\n  - sql: { resource: targetDb, statements: ["ALTER TABLE orders RENAME COLUMN note TO remark"] }\n', 'phases[1].sql.statements', 12, /which renames a column of a replicated table; add the new column, copy the values into it, and drop the old one/],
  ['a renamed table mid-sync', '  - data: { from: sourceDb, to: targetDb }\n  - sql: { resource: sourceDb, statements: ["alter table if exists orders rename to orders_old"] }\n', 'phases[1].sql.statements', 12, /which renames a replicated table; rename it in a sql step after the finalize that ends the sync/],
  ['a dropped table mid-sync', '  - data: { from: sourceDb, to: targetDb }\n  - sql: { resource: targetDb, statements: ["DROP TABLE payments"] }\n', 'phases[1].sql.statements', 12, /which drops a replicated table; drop it in a sql step after the finalize/],
  ['a column type change mid-sync', '  - data: { from: sourceDb, to: targetDb }\n  - sql: { resource: sourceDb, statements: ["alter table orders alter column total_cents type numeric"] }\n', 'phases[1].sql.statements', 12, /which changes the type of a column of a replicated table; add a column of the new type, backfill it/],
  ['a load test with no bound', '  - verify: { resource: front, load: { url: /api/orders/1, ratePerSecond: 50, p95Ms: 500 } }\n', 'phases[0].verify.load', 11, /expected a bound on the load test \(duration, maxRequests or both\), got neither; a load test without one would never stop/],
  ['a load test at a fraction of a request per second', '  - verify: { resource: front, load: { url: /, ratePerSecond: 0.5, duration: 10s } }\n', 'phases[0].verify.load.ratePerSecond', 11, /expected a whole number of requests per second, 1 to 1000/],
  ['a load test longer than an hour', '  - verify: { resource: front, load: { url: /, ratePerSecond: 5, duration: 2h } }\n', 'phases[0].verify.load.duration', 11, /expected a load test of at most 1h, got 2h/],
  ['a load test against another machine', '  - verify: { load: { url: "https://shop.example.com/", ratePerSecond: 5, duration: 10s } }\n', 'phases[0].verify.load.url', 11, /expected a path on the resource or a loopback URL .* for the load test, got "https:\/\/shop.example.com\/"/],
  ['a smoke check path without a resource', '  - verify: { checks: [ { url: /health } ] }\n', 'phases[0].verify.checks[0].url', 11, /expected an absolute URL \(or a resource the path is on\), got "\/health"/],
  ['a non-rerunnable step retried on every attempt', '  - run: { command: [./seed.sh], retry: { maximumAttempts: 3 } }\n', 'phases[0].run.retry.maximumAttempts', 11, /expected 1 attempt for a run step that is not rerunnable \(it runs at most once per migration, so a retry could never run it again\), got 3; add rerunnable: true/],
];

describe('plan validation', () => {
  it.each(BAD)('rejects %s with one sentence naming the path', (_what, body, path, line, problem) => {
    // The identity comes last, a top-level key after the phases, so the lines each case names stay put.
    const text = `${body.startsWith('apiVersion') ? body : HEAD + body}identity: unverified\n`;
    let error: unknown;
    try {
      parsePlan(text, 'plans/bad.yaml');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PlanError);
    const message = (error as PlanError).message;
    expect(message.startsWith(`plans/bad.yaml${path ? `: ${path}` : ''}${line ? ` (line ${line})` : ''}: `)).toBe(true);
    expect(message).toMatch(problem);
    // One sentence: a single line ending in a period, no stack.
    expect(message).toMatch(/^[^\n]+\.$/);
  });

  it('lists every problem, not only the first', () => {
    const text = PROVEN + '  - check: { resources: [nowhere] }\n  - gate: { name: go, timeout: soon }\n  - infra: { resource: assets }\n';
    try {
      parsePlan(text, 'x.yaml');
      throw new Error('the plan was accepted');
    } catch (err) {
      expect((err as PlanError).issues.map((i) => i.message.split(':')[1]!.trim().split(' ')[0])).toEqual(['phases[1].gate.timeout']);
    }
    const crossOnly = PROVEN + '  - check: { resources: [nowhere] }\n  - infra: { resource: assets }\n';
    const error = (() => {
      try {
        parsePlan(crossOnly, 'x.yaml');
      } catch (err) {
        return err as PlanError;
      }
    })();
    expect(error?.issues.map((i) => i.path.join('.'))).toEqual(['phases.0.check.resources.0', 'phases.1.infra.resource']);
    expect(error?.message).toMatch(/\(and 1 more problem; `tiershift plan FILE` lists them all\)\.$/);
  });

  it('names an unreadable file and what to pass instead', () => {
    expect(() => loadPlan('plans/none.yaml')).toThrow(/cannot read plan plans\/none.yaml: no such file; pass the path of a plan YAML file/);
  });
});

describe('providers in plans', () => {
  const nested = `apiVersion: tiershift/v1
identity: unverified
name: shop-move
resources:
  db: { kind: postgres, database: shop, azure: { subscription: s, resourceGroup: rg, server: pg-shop } }
  api: { kind: app, azure: { subscription: s, resourceGroup: rg, containerApp: ca-api } }
  sandboxDb: { kind: postgres, local: { cluster: target } }
  sandboxApp: { kind: app, local: {} }
phases:
  - infra: { resource: db, settings: { max_connections: 200 }, azure: { tier: GeneralPurpose, sku: Standard_D2ds_v4 } }
  - app: { resource: api, version: v2, azure: { image: registry/api:v2, cpu: 1, minReplicas: 2, maxReplicas: 4 } }
  - app: { resource: sandboxApp, version: v2, database: sandboxDb }
`;
  const flat = `apiVersion: tiershift/v1
identity: unverified
name: shop-move
resources:
  db: { kind: postgres, provider: azure, subscription: s, resourceGroup: rg, server: pg-shop, database: shop }
  api: { kind: app, provider: azure, subscription: s, resourceGroup: rg, containerApp: ca-api }
  sandboxDb: { kind: postgres, provider: local, cluster: target }
  sandboxApp: { kind: app, provider: local, containerApp: green }
phases:
  - infra: { resource: db, tier: GeneralPurpose, sku: Standard_D2ds_v4, settings: { max_connections: 200 } }
  - app: { resource: api, version: v2, image: registry/api:v2, cpu: 1, minReplicas: 2, maxReplicas: 4 }
  - app: { resource: sandboxApp, version: v2, database: sandboxDb }
`;

  it('reads the provider from the block a resource nests, and puts its fields beside the resource and step fields', () => {
    const plan = parsePlan(nested, 'nested.yaml');
    expect(plan.resources.db).toEqual({ name: 'db', kind: 'postgres', provider: 'azure', database: 'shop', subscription: 's', resourceGroup: 'rg', server: 'pg-shop' });
    expect(plan.resources.sandboxApp).toEqual({ name: 'sandboxApp', kind: 'app', provider: 'local', color: 'green' });
    expect(plan.steps[0]).toMatchObject({ kind: 'infra', title: 'Prepare db: GeneralPurpose, Standard_D2ds_v4, max_connections=200', tier: 'GeneralPurpose', sku: 'Standard_D2ds_v4' });
    expect(plan.steps[1]).toMatchObject({ kind: 'app', image: 'registry/api:v2', cpu: 1, minReplicas: 2, maxReplicas: 4 });
    expect(plan.steps[2]).not.toHaveProperty('azure');
  });

  it('keeps loading plans written flat beside provider:, into the same resources and steps', () => {
    const a = parsePlan(nested, 'nested.yaml');
    const b = parsePlan(flat, 'flat.yaml');
    expect(b.resources).toEqual(a.resources);
    expect(b.steps).toEqual(a.steps);
  });

  it('lets no provider field shadow what every resource of a kind has', async () => {
    const { PROVIDERS } = await import('../activities/registry');
    const core: Record<string, string[]> = { postgres: ['kind', 'database', 'connection'], blob: ['kind', 'container', 'connection'], traffic: ['kind', 'stable', 'canary'], app: ['kind'] };
    for (const p of PROVIDERS) {
      for (const [kind, fields] of Object.entries(p.resources)) {
        expect(Object.keys(fields!.shape).filter((f) => core[kind]!.includes(f) || f === 'name' || f === 'provider'), `${p.name} ${kind}`).toEqual([]);
      }
    }
  });
});

describe('plan resolution', () => {
  const plan = parsePlan(
    `${PROVEN}  - backup: { resources: [sourceDb] }
  - gate: { name: go, timeout: 2d, retry: { maximumAttempts: 9 } }
  - infra: { resource: targetDb, settings: { max_connections: 200 }, retry: { maximumAttempts: 5 }, timeouts: { startToClose: 1h } }
  - traffic: { resource: front, analysis: { maxErrorRate: 0.02 }, steps: [ { weight: 10, bake: 5m }, { weight: 100, bake: 10m, analysis: { minRequests: 50 } } ] }
  - finalize: { id: cutover, resources: [targetDb] }
`,
    'shop.yaml',
  );

  it('gives steps stable ids, titles, and defaults a step may override', () => {
    expect(plan.steps.map((s) => s.id)).toEqual(['0-backup', '1-gate', '2-infra', '3-traffic-10', '3-traffic-100', 'cutover']);
    expect(plan.steps[0]).toMatchObject({ title: 'Back up sourceDb and prove it restores', verifyRestore: true, retry: { maximumAttempts: 3, initialInterval: '2s' } });
    expect(plan.steps[1]).toMatchObject({ gate: 'go', approvers: ['alice', 'bob'], requiredApprovals: 1, fourEyes: false, onTimeout: 'rollback', timeout: '2d' });
    expect(plan.steps[2]).toMatchObject({ retry: { maximumAttempts: 5, backoffCoefficient: 2 }, timeouts: { startToClose: '1h', heartbeat: '1m' } });
    expect(plan.steps[3]).toMatchObject({ weight: 10, analysis: { maxErrorRate: 0.02, minRequests: 0 } });
    expect(plan.steps[4]).toMatchObject({ weight: 100, analysis: { maxErrorRate: 0.02, minRequests: 50 } });
    expect(plan.resources.front).toMatchObject({ name: 'front', backend: 'app' });
  });

  it('hashes the content, not its formatting', () => {
    const a = parsePlan(PROVEN + '  - check: { resources: [sourceDb] }\n', 'a.yaml');
    const b = parsePlan(`# a comment\n${PROVEN.replace('approvers: [alice, bob]\n', '')}  - check:\n      resources: [sourceDb]\napprovers: [alice, bob]\n`, 'b.yaml');
    const c = parsePlan(PROVEN + '  - check: { resources: [targetDb] }\n', 'c.yaml');
    expect(a.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(b.hash).toBe(a.hash);
    expect(c.hash).not.toBe(a.hash);
  });

  it('undoes traffic first, then the rest in reverse, and never deletes a backup', () => {
    expect(rollbackOrder(plan.steps)).toEqual([
      { stepId: '3-traffic-10', action: 'Send 100% of front back to the stable origin' },
      { stepId: '2-infra', action: 'Restore the previous settings of targetDb' },
      { stepId: '0-backup', action: 'Keep the backup of sourceDb (a rollback does not delete it)' },
    ]);
  });

  it('accepts the plans that ship with tiershift', () => {
    expect(loadPlan('plans/minimal.yaml').steps.map((s) => s.id)).toEqual(['0-check', '1-gate', '2-check']);
    // The dry run says who decides, and how they prove it.
    expect(describePlan(loadPlan('plans/minimal.yaml'))).toMatch(/\nDecisions: UNVERIFIED \(identity: unverified\): names as typed, for rehearsals only; operators \(resume, rollback\): anyone/);
    expect(describePlan(loadPlan('plans/demo.yaml'))).toMatch(/\nDecisions: proven with ID tokens from http:\/\/127\.0\.0\.1:\d+ \(audience tiershift\), checked by the worker; operators \(resume, rollback\): alice, bob/);
    const demo = loadPlan('plans/demo.yaml');
    expect(demo.steps.filter((s) => s.kind === 'gate').map((s) => s.kind === 'gate' && s.gate)).toEqual(['start', 'cutover', 'finalize', 'complete']);
  });

  it('puts a gate of its own before the point of no return, and recovers past it data first', () => {
    const ponr = parsePlan(
      PROVEN +
        '  - data: { from: sourceDb, to: targetDb }\n  - app: { resource: api, version: v2, database: targetDb }\n' +
        '  - traffic: { resource: front, steps: [ { weight: 100, bake: 1m } ] }\n' +
        '  - finalize: { resources: [targetDb], pointOfNoReturn: { approvers: [bob], instructions: Users are on v2. } }\n  - gate: { name: done }\n',
      'ponr.yaml',
    );
    expect(ponr.steps.map((s) => s.id)).toEqual(['0-data', '1-app', '2-traffic-100', '3-finalize-gate', '3-finalize', '4-gate']);
    expect(ponr.steps[3]).toMatchObject({ kind: 'gate', gate: 'point-of-no-return', approvers: ['bob'], pointOfNoReturn: '3-finalize' });
    expect(ponr.steps[3]!.kind === 'gate' && ponr.steps[3]!.instructions).toMatch(/^Users are on v2\. Past this gate, rolling back means a reverse sync \(targetDb -> sourceDb\)/);
    expect(ponr.steps[4]).toMatchObject({ kind: 'finalize', pointOfNoReturn: { gate: 'point-of-no-return', recovery: 'reverse-sync' } });
    // The source gets the target's writes before users return to it; replication stops once v2 is stopped.
    expect(rollbackOrder(ponr.steps).map((a) => `${a.stepId}${a.part ? `/${a.part}` : ''}`)).toEqual([
      '3-finalize/start',
      '2-traffic-100',
      '1-app',
      '3-finalize/finish',
      '0-data',
    ]);
  });

  it('on Azure, recovers past the point of no return by switching back, first, and says so in one dry-run line', () => {
    const onAzure = PROVEN.replace('provider: local, cluster: source', 'provider: azure, subscription: s, resourceGroup: rg, server: pg1').replace('provider: local, cluster: target', 'provider: azure, subscription: s, resourceGroup: rg, server: pg2');
    const plan = parsePlan(onAzure + '  - data: { from: sourceDb, to: targetDb }\n  - finalize: { resources: [targetDb], pointOfNoReturn: {} }\n', 'switch-back.yaml');
    expect(plan.steps.find((s) => s.kind === 'finalize')).toMatchObject({ pointOfNoReturn: { gate: 'point-of-no-return', recovery: 'switch-back' } });
    // The source is a read-only replica until the switch back: it comes before anything else.
    expect(rollbackOrder(plan.steps)).toEqual([
      { stepId: '1-finalize', action: expect.stringMatching(/^Switch back targetDb -> sourceDb: a planned switchover makes the source the primary again/) },
      { stepId: '0-data', action: expect.any(String) },
    ]);
    const dryRun = describePlan(plan);
    expect(dryRun).toMatch(/\nPoint of no return: 1-finalize, once gate "point-of-no-return" passes\. After it, rolling back means a switch back \(sourceDb primary again, targetDb its replica\): a second planned switchover[^\n]*--confirm`\.\n/);
    expect(dryRun).toMatch(/1\. 1-finalize: Switch back targetDb -> sourceDb.* \(only past the point of no return\)/);
    // Said explicitly, the same.
    expect(parsePlan(onAzure + '  - data: { from: sourceDb, to: targetDb }\n  - finalize: { resources: [targetDb], pointOfNoReturn: { recovery: switch-back } }\n', 'explicit.yaml').hash).toBe(plan.hash);
    // The sandbox has no switchover: switch-back there is refused, and its default stays the reverse sync.
    expect(() => parsePlan(PROVEN + '  - data: { from: sourceDb, to: targetDb }\n  - finalize: { resources: [targetDb], pointOfNoReturn: { recovery: switch-back } }\n', 'local.yaml')).toThrow(
      /provider local recovers by reverse-sync, so set recovery: reverse-sync/,
    );
  });

  it('knows the write point: v2 on a replicated target recovers its writes on a rollback, or says in the dry run that it loses them', () => {
    const phases = '  - data: { from: sourceDb, to: targetDb }\n  - app: { resource: api, version: v2, database: targetDb }\n  - traffic: { resource: front, steps: [ { weight: 100, bake: 1m } ] }\n';
    const local = parsePlan(PROVEN + phases, 'writes.yaml');
    expect(local.steps[1]).toMatchObject({ kind: 'app', targetWrites: { database: 'targetDb', source: 'sourceDb', recovery: 'reverse-sync' } });
    // The source gets what only the target has before users return to it, and once more after v2 stopped.
    expect(rollbackOrder(local.steps).map((a) => `${a.stepId}${a.part ? `/${a.part}` : ''}`)).toEqual(['1-app/start', '2-traffic-100', '1-app', '1-app/finish', '0-data']);
    expect(describePlan(local)).toMatch(/1-app .*write point: a rollback first copies back to sourceDb every row only targetDb has/s);
    expect(describePlan(local)).toMatch(/Write point: 1-app\. From when it starts, targetDb takes writes sourceDb lacks, so a rollback first does "Recover the writes targetDb took/);
    // v2 before the sync writes to a database nobody replicates into yet: no write point.
    expect(parsePlan(PROVEN + '  - app: { resource: api, version: v2, database: targetDb }\n  - data: { from: sourceDb, to: targetDb }\n', 'early.yaml').steps[0]).not.toHaveProperty('targetWrites');

    const azure = parsePlan(PROVEN.replace('provider: local, cluster: target', 'provider: azure, subscription: s, resourceGroup: rg, server: pg2') + phases.replace('database: targetDb }', 'database: targetDb, acceptWriteLoss: true }'), 'loss.yaml');
    expect(azure.steps[1]).toMatchObject({ targetWrites: { database: 'targetDb', source: 'sourceDb', acceptWriteLoss: true } });
    expect(azure.steps[1]).not.toHaveProperty('targetWrites.recovery');
    expect(rollbackOrder(azure.steps).some((a) => a.part)).toBe(false);
    expect(describePlan(azure)).toMatch(/write point: a rollback LOSES what targetDb takes \(acceptWriteLoss: true\)/);
  });

  it('says where each sql statement runs on a replicating pair, shows a command exactly, and bounds a load test', () => {
    const plan = parsePlan(
      PROVEN +
        `  - data: { from: sourceDb, to: targetDb }
  - sql:
      resource: sourceDb
      statements:
        - "create index concurrently idx_orders_created_at on orders (created_at); alter table orders add column note text"
        - "update orders set note = 'migrated' where id = 1"
      undo: { statements: ["alter table orders drop column note"] }
  - run: { command: [node, scripts/warm-cache.mjs, "--base url"], env: { TOKEN: { env: WARM_TOKEN } }, timeout: 2m, undo: { command: [node, scripts/cold.mjs] } }
  - verify: { resource: front, checks: [ { url: /health, body: ok, maxLatencyMs: 500 } ], load: { url: /, ratePerSecond: 20, duration: 30s, p95Ms: 500 } }
`,
      'steps.yaml',
    );
    const sql = plan.steps.find((s) => s.kind === 'sql')!;
    if (sql.kind !== 'sql') throw new Error('no sql step');
    // Schema changes on the target first, then everything on the source; the row change only on the source.
    expect(sql.executions.map((e) => [e.on, e.statement.split(' ').slice(0, 3).join(' '), e.transactional])).toEqual([
      ['targetDb', 'create index concurrently', false],
      ['targetDb', 'alter table orders', true],
      ['sourceDb', 'create index concurrently', false],
      ['sourceDb', 'alter table orders', true],
      ['sourceDb', 'update orders set', true],
    ]);
    expect(sql.executions[0]!.index).toBe('idx_orders_created_at');
    // Undone source first: the source stops sending the column before the target loses it.
    expect(sql.undo!.map((e) => e.on)).toEqual(['sourceDb', 'targetDb']);
    const run = plan.steps.find((s) => s.kind === 'run')!;
    expect(run.retry.maximumAttempts).toBe(1);
    const verify = plan.steps.find((s) => s.kind === 'verify')!;
    if (verify.kind !== 'verify') throw new Error('no verify step');
    expect(verify.load).toMatchObject({ duration: '30s', maxRequests: 600, p95Ms: 500, maxErrorRate: 0.01 });
    const dry = describePlan(plan);
    expect(dry).toContain('1. on targetDb (alone, outside a transaction; resumed: an invalid idx_orders_created_at is dropped and built again, a valid one kept): create index concurrently idx_orders_created_at on orders (created_at)');
    expect(dry).toContain('sourceDb replicates to targetDb: schema changes run on targetDb first, then everything on sourceDb');
    expect(dry).toContain('5. on sourceDb: update orders set note = \'migrated\' where id = 1');
    expect(dry).toContain('runs exactly: node scripts/warm-cache.mjs "--base url"; env TOKEN from {"env":"WARM_TOKEN"}; timeout 2m, success on exit 0, at most once per migration');
    expect(dry).toContain('load GET / at 20/s for 30s (at most 600 requests): p95 <= 500 ms, error rate <= 0.01');
    // Rollback: the run's undo command and the sql undo, in reverse.
    expect(rollbackOrder(plan.steps).map((a) => a.stepId)).toEqual(['2-run', '1-sql', '0-data']);
  });

  it('splits a sql script at its top-level semicolons only', () => {
    const script = `-- header; not a statement
create function f() returns int as $body$ select 1; $body$ language sql;
insert into t values ('a;b', E'c\\';d', 'it''s; fine');
/* a; comment */ select "a;b" from t;
-- trailing; comment only
`;
    expect(splitStatements(script)).toEqual([
      '-- header; not a statement\ncreate function f() returns int as $body$ select 1; $body$ language sql',
      "insert into t values ('a;b', E'c\\';d', 'it''s; fine')",
      '/* a; comment */ select "a;b" from t',
    ]);
  });

  it('lets weights go down across traffic phases only where the plan says so', () => {
    const plan = parsePlan(
      PROVEN + '  - traffic: { resource: front, steps: [ { weight: 50, bake: 1m } ] }\n  - traffic: { resource: front, allowDecrease: true, steps: [ { weight: 20, bake: 1m }, { weight: 100, bake: 1m } ] }\n',
      'back.yaml',
    );
    expect(plan.steps.map((s) => (s.kind === 'traffic' ? s.weight : undefined))).toEqual([50, 20, 100]);
    // The same weight again (a second bake after a gate) is no decrease.
    expect(() => parsePlan(PROVEN + '  - traffic: { resource: front, steps: [ { weight: 50, bake: 1m } ] }\n  - traffic: { resource: front, steps: [ { weight: 50, bake: 1h } ] }\n', 'same.yaml')).not.toThrow();
  });

  it('titles and dry-run lines say only what the steps do: no restore proof on Azure without a connection, storage that cannot shrink back', () => {
    const onAzure = PROVEN.replace('provider: local, cluster: source', 'provider: azure, subscription: s, resourceGroup: rg, server: pg1').replace('provider: local, cluster: target', 'provider: azure, subscription: s, resourceGroup: rg, server: pg2');
    const azure = parsePlan(onAzure + '  - backup: { resources: [sourceDb] }\n  - infra: { resource: targetDb, sku: Standard_D4ds_v5, storageGb: 64 }\n', 'azure.yaml');
    expect(azure.steps[0]!.title).toBe('Back up sourceDb (its restore is not verified)');
    // With a connection to compare through, Azure proves the restore on a scratch server.
    const connected = onAzure.replace('server: pg1', 'server: pg1, connection: { env: PG1_URL }');
    expect(connected).not.toBe(onAzure);
    expect(parsePlan(connected + '  - backup: { resources: [sourceDb] }\n', 'azure-proven.yaml').steps[0]!.title).toBe('Back up sourceDb and prove it restores');
    expect(azure.steps[1]!.title).toBe('Prepare targetDb: Standard_D4ds_v5, 64 GB storage');
    const dryRun = describePlan(azure);
    expect(dryRun).not.toMatch(/prove it restores/);
    expect(dryRun).toMatch(/\d\. 1-infra: Restore the previous settings of targetDb \(storage cannot shrink back: it stays at 64 GB if it grew\)/);
    // Without a storage size, everything the infra step changes goes back.
    expect(rollbackOrder(parsePlan(onAzure + '  - infra: { resource: targetDb, sku: Standard_D4ds_v5 }\n', 'sku.yaml').steps)).toEqual([{ stepId: '0-infra', action: 'Restore the previous settings of targetDb' }]);
    // The sandbox restores each dump into a scratch database: its title may say so, unless the plan turns that off.
    expect(parsePlan(PROVEN + '  - backup: { resources: [sourceDb] }\n', 'local.yaml').steps[0]!.title).toBe('Back up sourceDb and prove it restores');
    expect(parsePlan(PROVEN + '  - backup: { resources: [sourceDb], verifyRestore: false }\n', 'off.yaml').steps[0]!.title).toBe('Back up sourceDb (restore not verified: verifyRestore is off)');
  });

  it('publishes an up-to-date JSON Schema (run `npx tsx scripts/write-json-schema.ts` after changing plan/schema.ts)', () => {
    expect(readFileSync(JSON_SCHEMA_FILE, 'utf8')).toBe(planJsonSchema());
  });
});

describe('task queues per resource', () => {
  const plan = (targetQueue: string, extra = '') =>
    parsePlan(
      `apiVersion: tiershift/v1
identity: unverified
name: queues
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source }
  targetDb: { kind: postgres, provider: local, cluster: target, taskQueue: ${targetQueue} }
  assets: { kind: blob, provider: local, account: primary, container: assets${extra} }
phases:
  - check: { resources: [sourceDb] }
  - data: { from: sourceDb, to: targetDb }
  - backup: { resources: [sourceDb], destination: assets }
  - finalize: { resources: [targetDb] }
`,
      'queues.yaml',
    );

  it('runs every step touching a pinned resource on its queue, the others on the workflow\'s own, and the dry run says which', () => {
    const p = plan('near-db');
    expect(p.steps.map((s) => [s.id, s.taskQueue])).toEqual([
      ['0-check', undefined],
      ['1-data', 'near-db'],
      ['2-backup', undefined],
      ['3-finalize', 'near-db'],
    ]);
    const text = describePlan(p);
    expect(text).toMatch(/1-data\s+Sync sourceDb to targetDb .*\(runs on task queue near-db\)/);
    expect(text).toMatch(/3-finalize\s+.*\(runs on task queue near-db\)/);
    expect(text).not.toMatch(/0-check.*task queue/);
    expect(text).toMatch(/targetDb\s+postgres\s+local\s+\(task queue near-db\)/);
  });

  it('refuses a step whose resources pin two different queues, and a queue name Temporal would not take', () => {
    expect(() => plan('near-db', ', taskQueue: eu-west')).not.toThrow();
    const twoQueues = () =>
      parsePlan(
        `apiVersion: tiershift/v1
identity: unverified
name: queues
resources:
  sourceDb: { kind: postgres, provider: local, cluster: source, taskQueue: eu-west }
  targetDb: { kind: postgres, provider: local, cluster: target, taskQueue: near-db }
phases:
  - data: { from: sourceDb, to: targetDb }
`,
        'two.yaml',
      );
    expect(twoQueues).toThrow(PlanError);
    expect(twoQueues).toThrow(/phases\[0\].*expected the resources of 0-data on one task queue, got sourceDb on "eu-west" and targetDb on "near-db"; give them the same taskQueue, or split the step/);
    expect(() => plan('"near db"')).toThrow(/resources\.targetDb\.taskQueue.*expected a task queue name/);
  });
});
