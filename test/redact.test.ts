// Redaction (issue 13, scenario 6) and the bench's exit paths (scenario 12), without the sandbox's
// Temporal: the pure redaction function with properties over generated secrets, the plan's credential
// scan, the webhook activity's error for a malformed URL, and the bench teardown on every way out.
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import fc from 'fast-check';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { notifyGate } from '../activities/notify';
import { redact } from '../contract/redact';
import { PROJECT_ROOT } from '../contract/home';
import { parsePlan } from '../plan/load';

const SLACK_TOKEN = 'q8Yv3LmZp2RtK9sW4dN6bH1c';
const SLACK_HOOK = `https://hooks.slack.com/services/T0AB12CD3/B0XY98ZW7/${SLACK_TOKEN}`;

describe('redact', () => {
  it('drops a URL query string and userinfo, masks token path segments and connection-string secrets', () => {
    expect(redact('Dumped db to http://127.0.0.1:10000/devstoreaccount1/backups/m-1/0-backup/db.dump?sv=2022-11-02&ss=b&sig=AbC%2Bd3f: 1.0 MiB')).toBe(
      'Dumped db to http://127.0.0.1:10000/devstoreaccount1/backups/m-1/0-backup/db.dump: 1.0 MiB',
    );
    expect(redact(`posting to ${SLACK_HOOK} failed`)).toBe('posting to https://hooks.slack.com/services/T0AB12CD3/B0XY98ZW7/*** failed');
    expect(redact('postgres://app:Sup3rSecret@db.example.com:5432/shop')).toBe('postgres://db.example.com:5432/shop');
    expect(redact('BlobEndpoint=http://127.0.0.1:1/acct;SharedAccessSignature=sv=2022&sig=xyz')).toBe('BlobEndpoint=http://127.0.0.1:1/acct;SharedAccessSignature=***');
    expect(redact('DefaultEndpointsProtocol=https;AccountName=a;AccountKey=Zm9vYmFy==;EndpointSuffix=core.windows.net')).toContain('AccountKey=***;');
    // Names tiershift makes stay readable.
    const plain = 'sourceDb: 12 tables copied to http://127.0.0.1:10001/devstoreaccount1/assets-dr-0a1b2c3d/migration-local-small-to-medium/2-data';
    expect(redact(plain)).toBe(plain);
  });

  it('masks a JWT (a Temporal API key, an access or ID token) and a bearer credential wherever they appear', () => {
    const part = fc.stringMatching(/^[A-Za-z0-9_-]{8,60}$/);
    fc.assert(
      fc.property(part, part, part, (a, b, c) => {
        const jwt = `eyJ${a}.eyJ${b}.${c}`;
        for (const text of [`token ${jwt} refused`, `Authorization: Bearer ${jwt}`, `{"apiKey":"${jwt}"}`, `at http://h/x?k=1 with ${jwt}.`]) {
          expect(redact(text)).not.toContain(`eyJ${a}.eyJ${b}`);
          expect(redact(text)).not.toContain(`eyJ${b}.${c}`);
        }
        expect(redact(`Authorization: Bearer ${a}${c}`)).toBe('Authorization: Bearer ***');
      }),
    );
    // Names that merely look alike stay.
    expect(redact('eyJ is how a JSON object starts in base64')).toBe('eyJ is how a JSON object starts in base64');
  });

  it('never lets a generated SAS signature, password or path token through', () => {
    const secret = fc.stringMatching(/^[A-Za-z0-9]{12,40}$/).filter((s) => /[A-Z]/.test(s) && /[a-z]/.test(s) && /[0-9]/.test(s) && s.length >= 20);
    fc.assert(
      fc.property(secret, fc.constantFrom('sas', 'password', 'path', 'conn'), (s, where) => {
        const text = {
          sas: `to https://acct.blob.core.windows.net/c/b.dump?sv=2022-11-02&sp=rw&sig=${encodeURIComponent(s)} done`,
          password: `postgres://u:${s}@h:5432/db refused`,
          path: `webhook https://hooks.example.com/services/T1/B2/${s}: 404`,
          conn: `BlobEndpoint=https://a.blob.core.windows.net;SharedAccessSignature=sv=2022&sig=${s}`,
        }[where];
        expect(redact(text)).not.toContain(s);
      }),
    );
  });

  it('the plan refuses a webhook URL with a token in its path', () => {
    const plan = `
apiVersion: tiershift/v1
identity: unverified
name: hook-token
resources:
  db: { kind: postgres, provider: local, cluster: source }
phases:
  - check: { resources: [db] }
  - gate: { name: go, notify: { webhook: "${SLACK_HOOK}" } }
`;
    expect(() => parsePlan(plan, 'hook.yaml')).toThrow(/looks like a credential/);
    // A webhook without a token is an ordinary URL.
    expect(() => parsePlan(plan.replace(SLACK_HOOK, 'https://chat.example.com/hooks/tiershift'), 'hook.yaml')).not.toThrow();
  });

  it('a malformed webhook URL from an environment variable is named by its variable, never printed', async () => {
    process.env.TIERSHIFT_TEST_HOOK = `https://hooks.example.test:99999/services/T0AB12CD3/B0XY98ZW7/${SLACK_TOKEN}`;
    const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
    const failure = await env.run(notifyGate, { migrationId: 'm', gate: 'go', webhook: { env: 'TIERSHIFT_TEST_HOOK' }, payload: {} }).catch((err: Error) => err);
    expect(failure).toBeInstanceOf(Error);
    const text = `${(failure as Error).message}\n${(failure as Error).stack}`;
    expect(text).not.toContain(SLACK_TOKEN);
    expect(text).not.toContain('hooks.example.test');
    expect((failure as Error).message).toMatch(/environment variable TIERSHIFT_TEST_HOOK is not a valid http\(s\) URL/);
  });
});

describe('the bench tears its sandbox down on every exit', () => {
  /** A process that registers the bench's exit handling with a teardown that leaves a file, then leaves as told. */
  function runExiting(how: 'throw' | 'reject' | 'error-event' | 'SIGINT' | 'SIGTERM'): Promise<{ code: number | null; tornDown: boolean }> {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-exit-test-'));
    const marker = path.join(dir, 'torn-down');
    const script = path.join(dir, 'script.ts');
    writeFileSync(
      script,
      `import { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';
import { teardownOnExit } from ${JSON.stringify(path.join(PROJECT_ROOT, 'bench', 'exit.ts'))};
teardownOnExit(async () => { await new Promise((r) => setTimeout(r, 50)); writeFileSync(${JSON.stringify(marker)}, 'yes'); }, () => undefined);
const how = process.argv[2];
process.stdout.write('ready\\n');
setInterval(() => undefined, 1000);
if (how === 'throw') setTimeout(() => { throw new Error('boom'); }, 10);
if (how === 'reject') setTimeout(() => void Promise.reject(new Error('boom')), 10);
if (how === 'error-event') setTimeout(() => new EventEmitter().emit('error', new Error('Connection terminated unexpectedly')), 10);
`,
    );
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script, how], { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.stdout.once('data', () => {
        if (how === 'SIGINT' || how === 'SIGTERM') child.kill(how);
      });
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        const tornDown = existsSync(marker) && readFileSync(marker, 'utf8') === 'yes';
        rmSync(dir, { recursive: true, force: true });
        resolve({ code, tornDown });
      });
    });
  }

  for (const how of ['throw', 'reject', 'error-event', 'SIGINT', 'SIGTERM'] as const) {
    it(`on ${how}`, async () => {
      const { code, tornDown } = await runExiting(how);
      expect(tornDown).toBe(true);
      expect(code).not.toBe(0);
    });
  }
});
