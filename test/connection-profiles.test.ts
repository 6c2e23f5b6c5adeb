// Connection profiles in the Temporal CLI's conventions: a temporal.toml profile chosen with --profile
// (or TEMPORAL_PROFILE), the TEMPORAL_* variables over it, tiershift's flags over both.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { connectionOptions } from '../contract/connection';
import { sandboxHome, writeState } from '../contract/home';
import { UserError } from '../contract/errors';
import { isOneSentence, tiershift } from './support/cli';

const dir = mkdtempSync(path.join(tmpdir(), 'tiershift-profiles-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cert = path.join(dir, 'client.pem');
const key = path.join(dir, 'client.key');
writeFileSync(cert, 'CERT FROM PROFILE');
writeFileSync(key, 'KEY FROM PROFILE');
const file = path.join(dir, 'temporal.toml');
writeFileSync(
  file,
  `
[profile.default]
address = "127.0.0.1:7999"

[profile.prod]
address = "prod.tmprl.example:7233"
namespace = "payments.acct1"

[profile.prod.tls]
client_cert_path = "${cert}"
client_key_path = "${key}"
server_name = "prod.tmprl.example"

[profile.cloud]
address = "eu-west-1.aws.api.temporal.io:7233"
namespace = "payments.acct1"
api_key = "not-a-real-key"
`,
);
/** Only the profile file: no TEMPORAL_* variable of the machine's own leaks in. */
const env = { TEMPORAL_CONFIG_FILE: file };

describe('connection profiles', () => {
  it('selects the address, namespace and mTLS of a profile from TEMPORAL_CONFIG_FILE', () => {
    const prod = connectionOptions({ profile: 'prod' }, env);
    expect(prod).toMatchObject({ address: 'prod.tmprl.example:7233', namespace: 'payments.acct1' });
    expect(prod.tls).toMatchObject({ serverNameOverride: 'prod.tmprl.example' });
    const pair = (prod.tls as { clientCertPair: { crt: Uint8Array; key: Uint8Array } }).clientCertPair;
    expect([Buffer.from(pair.crt).toString(), Buffer.from(pair.key).toString()]).toEqual(['CERT FROM PROFILE', 'KEY FROM PROFILE']);
  });

  it('uses TLS with an API key, and TEMPORAL_PROFILE picks the profile as for the Temporal CLI', () => {
    expect(connectionOptions({}, { ...env, TEMPORAL_PROFILE: 'cloud' })).toMatchObject({
      address: 'eu-west-1.aws.api.temporal.io:7233',
      namespace: 'payments.acct1',
      apiKey: 'not-a-real-key',
      tls: true,
    });
    // Without either, the file's default profile.
    expect(connectionOptions({}, env)).toMatchObject({ address: '127.0.0.1:7999', namespace: 'default', tls: undefined });
  });

  it('lets TEMPORAL_* variables override the profile, and flags override both', () => {
    expect(connectionOptions({ profile: 'prod' }, { ...env, TEMPORAL_NAMESPACE: 'from-env' })).toMatchObject({ address: 'prod.tmprl.example:7233', namespace: 'from-env' });
    const flagged = connectionOptions({ profile: 'prod', address: '127.0.0.1:7233', namespace: 'flag-ns', tlsCert: key, tlsKey: cert }, { ...env, TEMPORAL_NAMESPACE: 'from-env' });
    expect(flagged).toMatchObject({ address: '127.0.0.1:7233', namespace: 'flag-ns' });
    // The flags' pair replaces the profile's; the profile's server name stays.
    expect(flagged.tls).toMatchObject({ serverNameOverride: 'prod.tmprl.example' });
    expect(Buffer.from((flagged.tls as { clientCertPair: { crt: Uint8Array } }).clientCertPair.crt).toString()).toBe('KEY FROM PROFILE');
    expect(connectionOptions({ profile: 'cloud', apiKey: 'flag-key' }, env).apiKey).toBe('flag-key');
  });

  it('refuses a profile the file does not have in one sentence, also from the CLI', async () => {
    expect(() => connectionOptions({ profile: 'staging' }, env)).toThrow(UserError);
    expect(() => connectionOptions({ profile: 'staging' }, env)).toThrow(`no profile "staging" in ${file}; add a [profile.staging] table there, or pass another --profile.`);
    const broken = path.join(dir, 'broken.toml');
    writeFileSync(broken, '[profile.prod\naddress = 1');
    expect(() => connectionOptions({ profile: 'prod' }, { TEMPORAL_CONFIG_FILE: broken })).toThrow(/^cannot read the Temporal profile from .*broken\.toml \(.*\); fix the file or pass --address\.$/);
    const cli = await tiershift(['--profile', 'staging', 'list'], env);
    expect(cli.code).toBe(2);
    expect(isOneSentence(cli.stderr), cli.stderr).toBe(true);
    expect(cli.stderr).toContain('no profile "staging"');
  });
});

describe('tiershift worker --task-queue', () => {
  it('refuses a queue name Temporal would not take in one sentence, before connecting anywhere', async () => {
    const cli = await tiershift(['worker', '--task-queue', 'near db'], { ...env, TEMPORAL_ADDRESS: '127.0.0.1:1' });
    expect(cli.code).toBe(2);
    expect(isOneSentence(cli.stderr), cli.stderr).toBe(true);
    expect(cli.stderr).toContain('--task-queue takes up to 100 letters, digits, ., _ and -, starting with a letter or digit; got "near db".');
  });

  it("reaches a running sandbox before the default profile of the CLI's own config file, unless a profile is asked for", () => {
    // The CLI's default location, through XDG_CONFIG_HOME: a "default" profile that points at production.
    const config = mkdtempSync(path.join(tmpdir(), 'tiershift-xdg-'));
    mkdirSync(path.join(config, 'temporalio'));
    writeFileSync(path.join(config, 'temporalio', 'temporal.toml'), '[profile.default]\naddress = "prod.tmprl.example:7233"\nnamespace = "payments"\n\n[profile.prod]\naddress = "prod.tmprl.example:7233"\n');
    const xdg = { XDG_CONFIG_HOME: config };
    // No sandbox: the default profile applies, as for `temporal`.
    expect(connectionOptions({}, xdg)).toMatchObject({ address: 'prod.tmprl.example:7233', namespace: 'payments' });
    writeState({ home: sandboxHome(), startedAt: new Date().toISOString(), ports: {} as never, temporal: { pid: 1, address: '127.0.0.1:17233', uiUrl: 'http://127.0.0.1:18233', namespace: 'default', dbFile: 'x' } as never, postgres: {}, apps: {} });
    try {
      expect(connectionOptions({}, xdg)).toMatchObject({ address: '127.0.0.1:17233', namespace: 'default' });
      expect(connectionOptions({ profile: 'prod' }, xdg).address).toBe('prod.tmprl.example:7233');
      expect(connectionOptions({}, { ...xdg, TEMPORAL_PROFILE: 'default' }).address).toBe('prod.tmprl.example:7233');
    } finally {
      rmSync(path.join(sandboxHome(), 'state.json'));
      rmSync(config, { recursive: true, force: true });
    }
  });

  it("reaches the sandbox of the home the environment names, with that sandbox's client certificate", () => {
    // The bench's way: its own process runs in one sandbox's home and reaches a cluster in another.
    const other = mkdtempSync(path.join(tmpdir(), 'tiershift-other-home-'));
    const tls = { caFile: cert, certFile: cert, keyFile: key, serverName: 'temporal.sandbox' };
    writeState({ home: other, startedAt: new Date().toISOString(), ports: {} as never, temporal: { kind: 'cluster', pid: 1, log: 'x', address: '127.0.0.1:27233', namespace: 'default', tls }, postgres: {}, apps: {} });
    try {
      const resolved = connectionOptions({}, { TIERSHIFT_HOME: other });
      expect(resolved).toMatchObject({ address: '127.0.0.1:27233', namespace: 'default', tls: { serverNameOverride: 'temporal.sandbox' } });
      const pair = (resolved.tls as { clientCertPair: { crt: Uint8Array; key: Uint8Array } }).clientCertPair;
      expect(Buffer.from(pair.key).toString()).toBe('KEY FROM PROFILE');
      // Without it, the process's own home (a fresh, empty one in the unit tier): the local default.
      expect(connectionOptions({}, {})).toMatchObject({ address: '127.0.0.1:7233', tls: undefined });
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
