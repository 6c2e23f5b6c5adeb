// SSH-signed decisions against the real OpenSSH ssh-keygen and ssh-agent: keys made for the test in a
// temporary directory, signatures verified as the worker does and as an auditor would by hand.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../contract/digest';
import { UserError } from '../contract/errors';
import { SSH_NAMESPACE, statementText, type DecisionStatement } from '../contract/identity';
import { allowedPrincipals, allowedSignersProblems, defaultSigningKey, signStatement, verifySshSignature } from '../identity/ssh';

const statement: DecisionStatement = {
  v: 1,
  migration: 'shop-to-azure',
  run: '0199a1b2-run',
  action: 'approve',
  gate: 'cutover',
  planHash: 'a'.repeat(64),
  evidence: 'b'.repeat(64),
  note: 'replication lag under 1 s',
};
const text = statementText(statement);

let dir: string;
let alice: string;
let bob: string;
let locked: string;
/** The allowed signers of a plan that lists alice only. */
let allowed: string;
let agent: ChildProcess | undefined;

const keygen = (args: string[], input?: string) => execFileSync('ssh-keygen', args, { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
const newKey = (name: string, passphrase = '') => {
  const file = path.join(dir, name);
  keygen(['-q', '-t', 'ed25519', '-N', passphrase, '-C', name, '-f', file]);
  return file;
};
const publicKey = (file: string) => readFileSync(`${file}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
const fingerprint = (file: string) => keygen(['-lf', `${file}.pub`]).split(' ')[1]!;

// Tests of this file run in one process with other unit files: whatever they set in the environment is put back.
const savedEnv = { SSH_AUTH_SOCK: process.env.SSH_AUTH_SOCK, TIERSHIFT_SSH_KEY: process.env.TIERSHIFT_SSH_KEY, HOME: process.env.HOME };
afterEach(() => {
  for (const [name, value] of Object.entries(savedEnv)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'tiershift-ssh-test-'));
  alice = newKey('alice');
  bob = newKey('bob');
  // Its passphrase is the statement's first line: were ssh-keygen to read a passphrase from stdin, as it
  // does when it has no terminal, it would unlock the key with it and sign the rest of the statement.
  locked = newKey('locked', text.split('\n')[0]!);
  allowed = `# approvers of shop-to-azure\nalice@example.com ${publicKey(alice)}\n`;
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('signing and verifying a decision', () => {
  it('verifies a listed key, naming its principal and its fingerprint', async () => {
    delete process.env.SSH_AUTH_SOCK;
    const signature = await signStatement(text, { keyFile: alice });
    expect(signature).toMatch(/^-----BEGIN SSH SIGNATURE-----\n/);
    const result = await verifySshSignature(text, signature, allowed);
    expect(result).toEqual({
      ok: true,
      identity: { subject: 'alice@example.com', groups: [], method: 'ssh', fingerprint: fingerprint(alice), proofDigest: sha256Hex(signature) },
    });
  });

  it('refuses a key the allowed signers do not list, naming its fingerprint', async () => {
    delete process.env.SSH_AUTH_SOCK;
    const signature = await signStatement(text, { keyFile: bob });
    const result = await verifySshSignature(text, signature, allowed);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.refusal).toBe(
      `the decision is signed by key ${fingerprint(bob)}, which the plan's allowed signers do not list; sign with a listed key (or add yours to the plan)`,
    );
  });

  it('refuses a statement altered by one character', async () => {
    delete process.env.SSH_AUTH_SOCK;
    const signature = await signStatement(text, { keyFile: alice });
    const altered = text.replace('"gate":"cutover"', '"gate":"cutovex"');
    expect(altered).not.toBe(text);
    const result = await verifySshSignature(altered, signature, allowed);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.refusal).toMatch(/^the signature of alice@example.com does not match this decision .*; sign this decision again$/);
  });

  it('refuses a signature made by a listed key for another namespace', async () => {
    const gitSignature = keygen(['-Y', 'sign', '-n', 'git', '-f', alice], text);
    const result = await verifySshSignature(text, gitSignature, allowed);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.refusal).toMatch(new RegExp(`another purpose \\(not the ssh-keygen namespace ${SSH_NAMESPACE}\\)`));
  });

  it('refuses what is not an SSH signature', async () => {
    const result = await verifySshSignature(text, '-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n', allowed);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.refusal).toMatch(/^the decision's proof is not a valid SSH signature/);
  });

  it('refuses a key whose allowed-signers line limits it to other namespaces', async () => {
    delete process.env.SSH_AUTH_SOCK;
    const signature = await signStatement(text, { keyFile: alice });
    const result = await verifySshSignature(text, signature, `alice@example.com namespaces="git" ${publicKey(alice)}\n`);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.refusal).toMatch(/restrict the key of alice@example.com to other namespaces; add tiershift-decision/);
  });

  it('verifies with plain ssh-keygen too, as an auditor would', async () => {
    delete process.env.SSH_AUTH_SOCK;
    const signature = await signStatement(text, { keyFile: alice });
    const audit = path.join(dir, 'audit');
    mkdirSync(audit, { recursive: true });
    writeFileSync(path.join(audit, 'allowed_signers'), allowed);
    writeFileSync(path.join(audit, 'decision.sig'), signature);
    const out = keygen(['-Y', 'verify', '-f', path.join(audit, 'allowed_signers'), '-I', 'alice@example.com', '-n', SSH_NAMESPACE, '-s', path.join(audit, 'decision.sig')], text);
    expect(out).toContain(`Good "${SSH_NAMESPACE}" signature for alice@example.com with ED25519 key ${fingerprint(alice)}`);
  });
});

describe('signing through ssh-agent', () => {
  let socket: string;
  beforeAll(async () => {
    socket = path.join(dir, 'agent.sock');
    agent = spawn('ssh-agent', ['-D', '-a', socket], { stdio: 'ignore' });
    for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
    if (!existsSync(socket)) throw new Error(`ssh-agent did not open ${socket} within 5 s`);
  });
  afterAll(() => {
    if (agent?.pid) process.kill(agent.pid, 'SIGTERM');
  });

  it('signs with only the .pub at hand', async () => {
    execFileSync('ssh-add', ['-q', alice], { env: { ...process.env, SSH_AUTH_SOCK: socket }, stdio: 'ignore' });
    // The .pub alone in a folder of its own: ssh-keygen finds no private key beside it, only the agent can sign.
    const pubOnly = path.join(dir, 'pub-only');
    mkdirSync(pubOnly, { recursive: true });
    const pub = path.join(pubOnly, 'alice.pub');
    copyFileSync(`${alice}.pub`, pub);

    delete process.env.SSH_AUTH_SOCK;
    const withoutAgent = signStatement(text, { keyFile: pub });
    await expect(withoutAgent).rejects.toThrow(UserError);
    await expect(withoutAgent).rejects.toThrow(/ssh-agent does not hold the private key of .*alice\.pub; add it \(`ssh-add /);

    process.env.SSH_AUTH_SOCK = socket;
    const signature = await signStatement(text, { keyFile: pub });
    const result = await verifySshSignature(text, signature, allowed);
    expect(result.ok && result.identity.subject).toBe('alice@example.com');
  });

  it('signs with a passphrase-protected key once it is in the agent, as the refusal advises', async () => {
    // ssh-add reads the passphrase from an askpass program here, as it would from a person at a terminal.
    const askpass = path.join(dir, 'askpass.sh');
    writeFileSync(askpass, `#!/bin/sh\nprintf '%s\\n' '${text.split('\n')[0]}'\n`, { mode: 0o700 });
    execFileSync('ssh-add', ['-q', locked], { env: { ...process.env, SSH_AUTH_SOCK: socket, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: 'force' }, stdio: 'ignore' });
    process.env.SSH_AUTH_SOCK = socket;
    const signature = await signStatement(text, { keyFile: locked });
    const result = await verifySshSignature(text, signature, `ops@example.com ${publicKey(locked)}\n`);
    expect(result.ok && result.identity).toMatchObject({ subject: 'ops@example.com', fingerprint: fingerprint(locked) });
  });
});

describe('signing errors', () => {
  it('refuses a passphrase-protected key without the agent, never reading a passphrase from the statement', async () => {
    delete process.env.SSH_AUTH_SOCK;
    const signing = signStatement(text, { keyFile: locked });
    await expect(signing).rejects.toThrow(UserError);
    await expect(signing).rejects.toThrow(`The SSH key ${locked} is protected by a passphrase; add it to ssh-agent (\`ssh-add ${locked}\`) or sign with a key that has none.`);
  });

  it('says what to do when the key file is missing', async () => {
    const missing = path.join(dir, 'no-such-key');
    const signing = signStatement(text, { keyFile: missing });
    await expect(signing).rejects.toThrow(UserError);
    await expect(signing).rejects.toThrow(/^The SSH key .*no-such-key does not exist; point TIERSHIFT_SSH_KEY/);
  });
});

describe('allowed signers', () => {
  it('finds broken lines, each with its line number', () => {
    const key = publicKey(alice);
    const file = [
      '# approvers',
      `alice@example.com ${key}`,
      'bob@example.com ssh-ed25519',
      `carol@example.com ssh-ed25591 ${key.split(' ')[1]}`,
      `dave@example.com ssh-rsa ${key.split(' ')[1]}`,
      `"ops lead",erin@example.com ${key}`,
      '',
    ].join('\n');
    expect(allowedSignersProblems(file)).toEqual([
      'line 3: expected a principal, a key type and a key',
      'line 4: unknown key type ssh-ed25591',
      'line 5: the key is not a valid ssh-rsa key',
      'line 6: quote the whole list of principals, not part of it',
    ]);
  });

  it('accepts rotation, options and lists of principals, and refuses one key for two people or an empty file', () => {
    const [a, b] = [publicKey(alice), publicKey(bob)];
    const good = `alice@example.com ${a}\nalice@example.com ${b} new laptop\n"ops lead,oncall@example.com" namespaces="tiershift-decision,git" ${a}\n`;
    expect(allowedSignersProblems(good)).toEqual(['line 3: the key of line 1 again, for another principal (a key must name one person)']);
    expect(allowedSignersProblems(good.split('\n').slice(0, 2).join('\n'))).toEqual([]);
    expect(allowedPrincipals(good)).toEqual(['alice@example.com', 'ops lead', 'oncall@example.com']);
    expect(allowedSignersProblems('# nobody yet\n\n')).toEqual(['no signer is listed (expected lines of: principal key-type key)']);
  });

  it('verifies a principal from a comma-separated list and a line with options', async () => {
    delete process.env.SSH_AUTH_SOCK;
    const signature = await signStatement(text, { keyFile: bob });
    const result = await verifySshSignature(text, signature, `${allowed}bob@example.com,robert@example.com namespaces="${SSH_NAMESPACE}" ${publicKey(bob)}\n`);
    expect(result.ok && result.identity).toMatchObject({ subject: 'bob@example.com', fingerprint: fingerprint(bob) });
  });
});

describe('the default signing key', () => {
  it('is TIERSHIFT_SSH_KEY, else the first usual key in ~/.ssh', () => {
    const home = path.join(dir, 'home');
    mkdirSync(path.join(home, '.ssh'), { recursive: true });
    process.env.HOME = home;
    delete process.env.TIERSHIFT_SSH_KEY;
    expect(defaultSigningKey()).toBeUndefined();
    writeFileSync(path.join(home, '.ssh', 'id_rsa'), '');
    writeFileSync(path.join(home, '.ssh', 'id_ecdsa'), '');
    expect(defaultSigningKey()).toBe(path.join(home, '.ssh', 'id_ecdsa'));
    process.env.TIERSHIFT_SSH_KEY = alice;
    expect(defaultSigningKey()).toBe(alice);
  });
});
