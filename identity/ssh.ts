// SSH-signed decisions, for teams without an identity provider: the CLI signs a decision's statement
// with the user's key (or ssh-agent), the worker verifies it against the plan's allowed signers, and an
// auditor can check it again with plain `ssh-keygen -Y verify`. All signing and verifying is done by
// OpenSSH's ssh-keygen (git's SSH signing works the same way): no cryptography here, and no shell, so no
// statement, principal or path is ever interpreted by one.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sha256Hex } from '../contract/digest';
import { UserError, TransientError } from '../contract/errors';
import { SSH_NAMESPACE, type Verification } from '../contract/identity';

const SSH_KEYGEN = 'ssh-keygen';
const TIMEOUT_MS = 20_000;
/**
 * ssh-keygen asks for a key's passphrase through SSH_ASKPASS when forced to; without it, it would read
 * the passphrase from stdin, i.e. from the statement being signed. A program that cannot start makes a
 * passphrase-protected key fail at once with "incorrect passphrase", which we turn into "use ssh-agent".
 */
const NO_ASKPASS = '/nonexistent/tiershift-no-askpass';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs ssh-keygen with `args` (no shell), `input` on its stdin; rejects only if it cannot be started. */
function sshKeygen(args: string[], input: string, env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(SSH_KEYGEN, args, { stdio: ['pipe', 'pipe', 'pipe'], env, timeout: TIMEOUT_MS, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new UserError('ssh-keygen (OpenSSH) is not installed on this machine; install it (Debian: apt-get install openssh-client, or run scripts/setup.sh) and try again.')
          : err,
      );
    });
    child.on('close', (code, signal) => resolve({ code, stdout, stderr, timedOut: code === null && signal === 'SIGKILL' }));
    // ssh-keygen may exit before reading its input (a key it cannot load): the broken pipe is not the error.
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

/** The last non-empty line ssh-keygen wrote to stderr, to quote in a refusal. */
function lastLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.at(-1) ?? 'no reason given';
}

/**
 * Signs `text` (a decision's statementText) with the SSH key in `keyFile`, in the tiershift namespace,
 * and returns the armoured signature. A `.pub` keyFile signs through ssh-agent (SSH_AUTH_SOCK), as does a
 * private key the agent holds; a passphrase-protected key is never prompted for (see NO_ASKPASS).
 */
export async function signStatement(text: string, opts: { keyFile: string }): Promise<string> {
  const keyFile = opts.keyFile;
  if (!existsSync(keyFile)) {
    throw new UserError(`The SSH key ${keyFile} does not exist; point TIERSHIFT_SSH_KEY at your private key, or at its .pub with the key loaded in ssh-agent.`);
  }
  const env = { ...process.env, SSH_ASKPASS: NO_ASKPASS, SSH_ASKPASS_REQUIRE: 'force' };
  const run = await sshKeygen(['-Y', 'sign', '-n', SSH_NAMESPACE, '-f', keyFile], text, env);
  if (run.timedOut) {
    throw new UserError(`ssh-keygen did not sign with ${keyFile} within ${TIMEOUT_MS / 1000} s; if it is a security key, touch it when asked, otherwise check that ssh-agent (SSH_AUTH_SOCK) answers, and try again.`);
  }
  if (run.code === 0 && run.stdout.includes('-----BEGIN SSH SIGNATURE-----')) return run.stdout;
  const err = run.stderr;
  if (/incorrect passphrase/.test(err)) {
    throw new UserError(`The SSH key ${keyFile} is protected by a passphrase; add it to ssh-agent (\`ssh-add ${keyFile}\`) or sign with a key that has none.`);
  }
  if (/UNPROTECTED PRIVATE KEY FILE/.test(err)) {
    throw new UserError(`The SSH key ${keyFile} is readable by others, so ssh-keygen refuses it; restrict it (\`chmod 600 ${keyFile}\`) and try again.`);
  }
  if (/No private key found for public key/.test(err)) {
    throw new UserError(`ssh-agent does not hold the private key of ${keyFile}; add it (\`ssh-add ${keyFile.replace(/\.pub$/, '')}\`) and check that SSH_AUTH_SOCK points at that agent, or sign with the private key file.`);
  }
  if (/Couldn't load public key|invalid format|not a key|No private key found/i.test(err)) {
    throw new UserError(`${keyFile} is not an SSH key ssh-keygen can sign with (${lastLine(err)}); point it at your private key (e.g. ~/.ssh/id_ed25519) or its .pub with the key in ssh-agent.`);
  }
  throw new UserError(`ssh-keygen could not sign with ${keyFile} (${lastLine(err)}); check the key with \`ssh-keygen -y -f ${keyFile}\` and try again.`);
}

/** The key to sign with when none is given: TIERSHIFT_SSH_KEY, else the first usual key that exists (as ssh does). */
export function defaultSigningKey(): string | undefined {
  const configured = process.env.TIERSHIFT_SSH_KEY;
  if (configured) return configured;
  const dir = path.join(os.homedir(), '.ssh');
  return ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((name) => path.join(dir, name)).find((file) => existsSync(file));
}

/**
 * Public key types an allowed-signers line may name (sshkey.c's list, without DSA, which OpenSSH
 * disabled by default; certificate types are not used in allowed signers, a CA key is a plain one).
 */
const KEY_TYPES = new Set([
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
]);
const OPTION = /^(cert-authority|namespaces=|valid-after=|valid-before=)/i;

/** Splits a line at blanks outside double quotes, as ssh-keygen does (a principal may be quoted). */
function fields(line: string): string[] {
  return line.match(/(?:"[^"]*"|[^\s"])+/g) ?? [];
}

interface SignerLine {
  line: number;
  principals: string[];
  keyType?: string;
  key?: string;
  problem?: string;
}

/** An allowed-signers file, line by line: `principals [options] keytype base64key [comment]`. */
function parseAllowedSigners(text: string): SignerLine[] {
  const parsed: SignerLine[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (!trimmed || trimmed.startsWith('#')) return;
    const f = fields(trimmed);
    // Quotes enclose the whole field (`"ops lead,oncall@example.com"`), as ssh-keygen reads them.
    const field = (f[0] ?? '').replace(/^"([^"]*)"$/, '$1');
    const principals = field.split(',').map((p) => p.trim()).filter(Boolean);
    // Options come between the principals and the key type; ssh-keygen tells them apart by trying to read a key.
    const typeAt = f[1] !== undefined && !KEY_TYPES.has(f[1]) && OPTION.test(f[1]) ? 2 : 1;
    const [keyType, key] = [f[typeAt], f[typeAt + 1]];
    if (field.includes('"')) {
      parsed.push({ line, principals: [], problem: `line ${line}: quote the whole list of principals, not part of it` });
    } else if (principals.length === 0 || keyType === undefined || key === undefined) {
      parsed.push({ line, principals, problem: `line ${line}: expected a principal, a key type and a key` });
    } else if (!KEY_TYPES.has(keyType)) {
      parsed.push({ line, principals, problem: `line ${line}: unknown key type ${keyType.length > 40 ? `${keyType.slice(0, 40)}…` : keyType}` });
    } else if (embeddedKeyType(key) !== keyType) {
      parsed.push({ line, principals, problem: `line ${line}: the key is not a valid ${keyType} key` });
    } else {
      parsed.push({ line, principals, keyType, key });
    }
  });
  return parsed;
}

/** The type name an SSH public key blob starts with (a length-prefixed string), or undefined if it is not one. */
function embeddedKeyType(base64: string): string | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(base64)) return undefined;
  const blob = Buffer.from(base64, 'base64');
  if (blob.length < 4) return undefined;
  const length = blob.readUInt32BE(0);
  return length > 0 && length <= 64 && blob.length >= 4 + length ? blob.subarray(4, 4 + length).toString('latin1') : undefined;
}

/**
 * What is wrong with an allowed-signers file, one short phrase per problem with its line number (empty
 * when it is fine). The same principal with several keys is fine (a key being rotated); the same key for
 * different principals is not: ssh-keygen names only the first, so the others could never decide.
 */
export function allowedSignersProblems(text: string): string[] {
  const lines = parseAllowedSigners(text);
  if (lines.length === 0) return ['no signer is listed (expected lines of: principal key-type key)'];
  const problems: string[] = [];
  const firstLineOfKey = new Map<string, SignerLine>();
  for (const l of lines) {
    if (l.problem) {
      problems.push(l.problem);
      continue;
    }
    const first = firstLineOfKey.get(l.key!);
    if (!first) firstLineOfKey.set(l.key!, l);
    else if (first.principals.join(',') !== l.principals.join(',')) {
      problems.push(`line ${l.line}: the key of line ${first.line} again, for another principal (a key must name one person)`);
    }
  }
  return problems;
}

/** Every principal an allowed-signers file lists (a line may list several, comma-separated), once each. */
export function allowedPrincipals(text: string): string[] {
  return [...new Set(parseAllowedSigners(text).filter((l) => !l.problem).flatMap((l) => l.principals))];
}

/** The SHA256 fingerprint in ssh-keygen's `Good "ns" signature [for P] with ED25519 key SHA256:…`. */
function goodFingerprint(stdout: string): string | undefined {
  return /^Good ".*" signature .* key (SHA256:[A-Za-z0-9+/=]+)\s*$/m.exec(stdout)?.[1];
}

/**
 * Verifies an SSH signature of `text` against the plan's allowed signers, with ssh-keygen, as an auditor
 * would: who signed (find-principals), then that this principal's key signed exactly this text in the
 * tiershift namespace (verify). Returns who, or one sentence saying why not and what to do.
 */
export async function verifySshSignature(text: string, signature: string, allowedSigners: string): Promise<Verification> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tiershift-ssh-'));
  try {
    const allowed = path.join(dir, 'allowed_signers');
    const sig = path.join(dir, 'decision.sig');
    await writeFile(allowed, allowedSigners.endsWith('\n') ? allowedSigners : `${allowedSigners}\n`, { mode: 0o600 });
    await writeFile(sig, signature, { mode: 0o600 });

    const found = checked(await sshKeygen(['-Y', 'find-principals', '-s', sig, '-f', allowed], ''));
    const principal = found.code === 0 ? found.stdout.split('\n').map((l) => l.trim()).find(Boolean) : undefined;
    if (!principal) {
      if (/parse signature|sshsig|armor|invalid format/i.test(found.stderr)) return refuse(malformed);
      return refuse(await unlisted(text, sig));
    }

    const verified = checked(await sshKeygen(['-Y', 'verify', '-f', allowed, '-I', principal, '-n', SSH_NAMESPACE, '-s', sig], text));
    const fingerprint = goodFingerprint(verified.stdout);
    if (verified.code === 0 && fingerprint) {
      return { ok: true, identity: { subject: principal, groups: [], method: 'ssh', fingerprint, proofDigest: sha256Hex(signature) } };
    }
    const err = verified.stderr;
    if (/namespace does not match/.test(err)) return refuse(otherNamespace);
    if (/not permitted for use in signature namespace/.test(err)) {
      return refuse(`the plan's allowed signers restrict the key of ${principal} to other namespaces; add ${SSH_NAMESPACE} to its namespaces= option, or remove the option`);
    }
    if (/incorrect signature/.test(err)) {
      return refuse(`the signature of ${principal} does not match this decision (it was changed after signing, or the signature is another decision's); sign this decision again`);
    }
    if (/parse signature|sshsig|armor/i.test(err)) return refuse(malformed);
    return refuse(`ssh-keygen refused the signature of ${principal} (${lastLine(err)}); sign the decision again with a key the plan lists`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const malformed = 'the decision\'s proof is not a valid SSH signature (SSHSIG armour); sign the decision again with tiershift, which signs with ssh-keygen';
const otherNamespace = `the signature was made for another purpose (not the ssh-keygen namespace ${SSH_NAMESPACE}), so it cannot decide anything here; sign the decision with tiershift`;

function refuse(refusal: string): Verification {
  return { ok: false, refusal };
}

/** A timed-out ssh-keygen is the machine's state, not the signer's fault: retried (TransientError). */
function checked(run: Run): Run {
  if (run.timedOut) throw new TransientError(`ssh-keygen did not verify a signature within ${TIMEOUT_MS / 1000} s; check the machine's load, it is retried.`);
  return run;
}

/** Why a signature whose key no allowed signer lists is refused, naming the key's fingerprint when ssh-keygen can read it. */
async function unlisted(text: string, sig: string): Promise<string> {
  // check-novalidate checks the signature against its own embedded key, without any list: it yields the fingerprint.
  const run = checked(await sshKeygen(['-Y', 'check-novalidate', '-n', SSH_NAMESPACE, '-s', sig], text));
  const fingerprint = goodFingerprint(run.stdout);
  if (run.code === 0 && fingerprint) {
    return `the decision is signed by key ${fingerprint}, which the plan's allowed signers do not list; sign with a listed key (or add yours to the plan)`;
  }
  if (/namespace does not match/.test(run.stderr)) return otherNamespace;
  if (/parse signature|sshsig|armor/i.test(run.stderr)) return malformed;
  return 'the decision is signed by a key that the plan\'s allowed signers do not list, and the signature does not match this decision; sign this decision with a listed key';
}
