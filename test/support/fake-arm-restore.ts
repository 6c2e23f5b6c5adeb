// Point-in-time restores of Flexible Servers on the fake ARM, with real rows: a server the fake knows the
// data of maps to a database on a local PostgreSQL cluster, and a restore (`createMode:
// PointInTimeRestore`) copies that database (pg_dump | pg_restore) into a new one, which the restored
// server then maps to. Deleting a restored server drops its database. Both are long-running operations
// that take the time the copy takes (and at least `restoreMs`), with Retry-After as the fake sends it.
//
// Azure's rules checked: the name is free, the source exists, pointInTimeUTC is given, not in the future
// and within the source's backup retention period.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { withPgClient } from '../../contract/pg';
import { findBinary } from '../../sandbox/binaries';
import type { FakeArm, FakeExtension } from './fake-arm';

const HOST = /^([a-z0-9-]+)\.postgres\.database\.azure\.com$/i;

interface Data {
  /** Any connection URL to the cluster (its database part is replaced). */
  cluster: string;
  database: string;
  restored: boolean;
}

const onDatabase = (url: string, database: string) => {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
};

/** Runs pg_dump of `from` into pg_restore of `to`; rejects with the end of either's stderr. */
function copyDatabase(from: string, to: string): Promise<void> {
  const dump = spawn(findBinary('pg_dump'), ['--format=custom', `--dbname=${from}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const restore = spawn(findBinary('pg_restore'), ['--no-owner', '--no-privileges', '--exit-on-error', `--dbname=${to}`], { stdio: ['pipe', 'ignore', 'pipe'] });
  dump.stdout!.pipe(restore.stdin!);
  const exit = (child: ReturnType<typeof spawn>, tool: string) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-1000)));
    return new Promise<void>((resolve, reject) => child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${tool} exited ${code}: ${err.trim()}`)))));
  };
  return Promise.all([exit(dump, 'pg_dump'), exit(restore, 'pg_restore')]).then(() => undefined);
}

export class FakeRestores implements FakeExtension {
  /** Each server's data, by lowercased server name. */
  private readonly data = new Map<string, Data>();
  /** The shortest a restore takes. */
  restoreMs = 0;
  /** Runs on a restored copy before its restore ends (a backup that does not restore faithfully). */
  afterCopy?: (url: string) => Promise<void>;
  /** Restores started (PUTs accepted), by scratch server name. */
  readonly started: string[] = [];
  /** Restored servers still provisioning: Ready once their copy is done and `restoreMs` passed, polled or not. */
  private readonly provisioning = new Map<string, () => boolean>();

  /**
   * `restoreTo`: a connection URL to the cluster restored copies go to. Another cluster than the sources':
   * a copy's writes there would otherwise count as commits on the source since the point.
   */
  constructor(private readonly arm: FakeArm, private readonly restoreTo?: string) {
    arm.extensions.push(this);
  }

  /** Server `server`'s data is database `database` of the cluster `cluster` reaches. */
  attach(server: string, cluster: string, database: string): void {
    this.data.set(server.toLowerCase(), { cluster, database, restored: false });
  }

  /** The local databases restored servers map to now. */
  restoredDatabases(): string[] {
    return [...this.data.values()].filter((d) => d.restored).map((d) => d.database);
  }

  /** The provider's `routePostgres`: an Azure host name to the cluster and database its server maps to. */
  route = (connectionString: string): string => {
    const u = new URL(connectionString);
    const server = HOST.exec(u.hostname)?.[1]?.toLowerCase();
    const d = server ? this.data.get(server) : undefined;
    if (!d) return connectionString;
    const local = new URL(onDatabase(d.cluster, d.database));
    u.protocol = local.protocol;
    u.host = local.host;
    u.pathname = local.pathname;
    u.search = '';
    return u.toString();
  };

  handle: FakeExtension['handle'] = ({ method, path, body }, reply, error) => {
    const m = /^\/subscriptions\/[^/]+\/resourceGroups\/[^/]+\/providers\/Microsoft\.DBforPostgreSQL\/flexibleServers\/([^/]+)$/i.exec(path.replace(/\/$/, ''));
    if (!m) return undefined;
    const name = m[1]!;
    const settled = this.provisioning.get(name.toLowerCase());
    if (method === 'GET' && settled?.()) {
      // Azure's servers move on whether or not anyone polls the operation that created them.
      const s = this.arm.get(path);
      if (s?.properties.state === 'Provisioning') s.properties.state = 'Ready';
      this.provisioning.delete(name.toLowerCase());
    }
    if (method === 'PUT' && body?.properties?.createMode === 'PointInTimeRestore') return this.restore(path, name, body, reply, error);
    const d = this.data.get(name.toLowerCase());
    if (method === 'DELETE' && d?.restored && this.arm.get(path)) return this.remove(path, name, d, reply);
    return undefined;
  };

  private restore(id: string, name: string, body: any, reply: Parameters<NonNullable<FakeExtension['handle']>>[1], error: Parameters<NonNullable<FakeExtension['handle']>>[2]) {
    if (this.arm.get(id)) return error(409, 'ServerAlreadyExists', `Specified server name '${name}' is already used. Please use a different name and try again.`);
    const sourceId: string | undefined = body.properties.sourceServerResourceId;
    const source = sourceId ? this.arm.get(sourceId) : undefined;
    if (!source) return error(404, 'SourceServerNotFound', `The source server '${sourceId}' of the restore was not found.`);
    const at = Date.parse(body.properties.pointInTimeUTC ?? '');
    if (Number.isNaN(at)) return error(400, 'PointInTimeRestoreTimeMissing', 'A point-in-time restore needs pointInTimeUTC.');
    const now = Date.now();
    if (at > now) return error(400, 'InvalidPointInTimeUTC', `The restore point ${body.properties.pointInTimeUTC} is in the future.`);
    const days: number = source.properties.backup?.backupRetentionDays ?? 7;
    if (at < now - days * 86_400_000) return error(400, 'InvalidPointInTimeUTC', `The restore point ${body.properties.pointInTimeUTC} is older than the source's ${days}-day backup retention period.`);
    const from = this.data.get(String(sourceId!.split('/').pop()).toLowerCase());
    if (!from) return error(400, 'InternalServerError', `the fake has no data for ${sourceId}; attach it in the test`);

    this.started.push(name);
    this.arm.put(id, {
      type: 'Microsoft.DBforPostgreSQL/flexibleServers',
      location: body.location,
      tags: body.tags ?? {},
      sku: source.sku,
      properties: {
        ...JSON.parse(JSON.stringify(source.properties)),
        state: 'Provisioning',
        fullyQualifiedDomainName: `${name}.postgres.database.azure.com`,
        highAvailability: { mode: 'Disabled', state: 'NotEnabled', standbyAvailabilityZone: '' },
        replicationRole: 'Primary',
        replica: { role: 'Primary', capacity: 5 },
      },
    });
    const database = `restored_${createHash('sha256').update(name).digest('hex').slice(0, 12)}`;
    const into = this.restoreTo ?? from.cluster;
    const target = onDatabase(into, database);
    let settled = false;
    let failed: unknown;
    const copy = async () => {
      await withPgClient(onDatabase(into, 'postgres'), async (c) => {
        await c.query(`drop database if exists ${database} with (force)`);
        await c.query(`create database ${database} template template0`);
      });
      await copyDatabase(onDatabase(from.cluster, from.database), target);
      await this.afterCopy?.(target);
    };
    copy().then(
      () => (settled = true),
      (err: unknown) => ((failed = err), (settled = true)),
    );
    this.data.set(name.toLowerCase(), { cluster: into, database, restored: true });
    const startedAt = Date.now();
    this.provisioning.set(name.toLowerCase(), () => settled && !failed && Date.now() - startedAt >= this.restoreMs);
    return this.arm.startOperation(
      'Microsoft.DBforPostgreSQL',
      () => {
        const s = this.arm.get(id)!;
        // A copy that failed leaves a server Azure would report Disabled.
        s.properties.state = failed ? 'Disabled' : 'Ready';
        return s;
      },
      reply,
      201,
      undefined,
      undefined,
      { until: () => settled, durationMs: this.restoreMs },
    );
  }

  private remove(id: string, name: string, d: Data, reply: Parameters<NonNullable<FakeExtension['handle']>>[1]) {
    const server = this.arm.get(id)!;
    server.properties.state = 'Dropping';
    let dropped = false;
    void withPgClient(onDatabase(d.cluster, 'postgres'), (c) => c.query(`drop database if exists ${d.database} with (force)`)).then(() => (dropped = true));
    return this.arm.startOperation(
      'Microsoft.DBforPostgreSQL',
      () => {
        this.arm.resources.delete(id.toLowerCase());
        this.data.delete(name.toLowerCase());
        return undefined;
      },
      reply,
      202,
      undefined,
      undefined,
      { until: () => dropped },
    );
  }
}
