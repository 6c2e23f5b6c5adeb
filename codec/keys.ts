// Where the history encryption keys come from. Encryption is opt-in: with no key configured anywhere,
// payloads stay as they were, so setups that predate the codec keep working unchanged.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { UserError } from '../contract/errors';
import { sandboxHome } from '../contract/home';

/** Configuration mistakes are the user's to fix, like a bad plan: exit code 2 (client/errors.ts EXIT.invalid). */
const INVALID = 2;
const KEY_BYTES = 32;
const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

export interface CodecKeys {
  /** The id new payloads are encrypted with; older ids stay so that older history still decrypts. */
  current: string;
  keys: ReadonlyMap<string, Buffer>;
  /** Where they came from, for error messages that say what to edit. */
  source: string;
}

/** The on-disk shape: `{"keys": {"<id>": "<base64 of 32 bytes>"}, "current": "<id>"}`. */
export interface KeyFile {
  keys: Record<string, string>;
  current: string;
}

export const defaultKeyFile = (home?: string): string => path.join(sandboxHome(home), 'codec-keys.json');

/** TIERSHIFT_CODEC_KEYS, else the sandbox home's file. */
export function keyFilePath(env: NodeJS.ProcessEnv = process.env, home?: string): string {
  return env.TIERSHIFT_CODEC_KEYS ? path.resolve(env.TIERSHIFT_CODEC_KEYS) : defaultKeyFile(home);
}

function decodeKey(id: string, value: unknown, where: string): Buffer {
  if (!ID_PATTERN.test(id)) throw new UserError(`codec key id "${id}" in ${where} may only use letters, digits, ".", "_" and "-" (at most 64).`, INVALID);
  const key = typeof value === 'string' && /^[A-Za-z0-9+/]+={0,2}$/.test(value.trim()) ? Buffer.from(value.trim(), 'base64') : undefined;
  if (key?.length !== KEY_BYTES) throw new UserError(`codec key "${id}" in ${where} must be ${KEY_BYTES} bytes in base64 (run \`tiershift codec keygen\` to make one).`, INVALID);
  return key;
}

export function readKeyFile(file: string): KeyFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'it does not exist' : err instanceof SyntaxError ? 'it is not valid JSON' : 'it cannot be read';
    throw new UserError(`cannot use the codec key file ${file} because ${reason}; create one with \`tiershift codec keygen\`.`, INVALID);
  }
  const shape = parsed as Partial<KeyFile> | null;
  if (!shape || typeof shape !== 'object' || !shape.keys || typeof shape.keys !== 'object' || typeof shape.current !== 'string') {
    throw new UserError(`the codec key file ${file} must look like {"keys": {"<id>": "<base64 key>"}, "current": "<id>"}.`, INVALID);
  }
  return { keys: shape.keys, current: shape.current };
}

/**
 * The configured keys, or undefined when encryption is off. The key file (TIERSHIFT_CODEC_KEYS, or
 * codec-keys.json in the sandbox home) holds every id ever used; TIERSHIFT_CODEC_KEY with
 * TIERSHIFT_CODEC_KEY_ID adds one more (for a worker that gets its secret from the environment) and
 * becomes the current key.
 */
export function loadCodecKeys(env: NodeJS.ProcessEnv = process.env, home?: string): CodecKeys | undefined {
  const keys = new Map<string, Buffer>();
  const sources: string[] = [];
  let current: string | undefined;
  const file = keyFilePath(env, home);
  // An explicitly named file must exist; the default one is simply absent when encryption is off.
  if (env.TIERSHIFT_CODEC_KEYS || existsSync(file)) {
    const contents = readKeyFile(file);
    for (const [id, value] of Object.entries(contents.keys)) keys.set(id, decodeKey(id, value, file));
    if (!keys.has(contents.current)) throw new UserError(`the codec key file ${file} names "${contents.current}" as current, but has no key with that id.`, INVALID);
    current = contents.current;
    sources.push(file);
  }
  const envKey = env.TIERSHIFT_CODEC_KEY;
  const envId = env.TIERSHIFT_CODEC_KEY_ID;
  if (envKey || envId) {
    if (!envKey || !envId) throw new UserError('TIERSHIFT_CODEC_KEY and TIERSHIFT_CODEC_KEY_ID go together; set both (or neither).', INVALID);
    const key = decodeKey(envId, envKey, 'TIERSHIFT_CODEC_KEY');
    const known = keys.get(envId);
    if (known && !known.equals(key)) throw new UserError(`TIERSHIFT_CODEC_KEY differs from the key ${file} has under the same id "${envId}"; give the new key a new id.`, INVALID);
    keys.set(envId, key);
    current = envId;
    sources.push('TIERSHIFT_CODEC_KEY');
  }
  return current ? { current, keys, source: sources.join(' and ') } : undefined;
}

export const newKeyId = (): string => `k${new Date().toISOString().slice(0, 10).replace(/-/g, '')}-${randomBytes(3).toString('hex')}`;

/**
 * Writes a new key as the current one: a new file, or (with `rotate`) added to an existing file whose
 * older keys stay so that history encrypted with them still decrypts.
 */
export function generateKey(file: string, opts: { rotate?: boolean; id?: string } = {}): { id: string; rotated: boolean; ids: string[] } {
  const id = opts.id ?? newKeyId();
  if (!ID_PATTERN.test(id)) throw new UserError(`a codec key id may only use letters, digits, ".", "_" and "-" (at most 64); got "${id}".`, INVALID);
  const exists = existsSync(file);
  if (exists && !opts.rotate) throw new UserError(`${file} already has codec keys; add --rotate to add a new current key (the old ones stay for older history).`, INVALID);
  const contents: KeyFile = exists ? readKeyFile(file) : { keys: {}, current: id };
  if (id in contents.keys) throw new UserError(`${file} already has a codec key with id "${id}"; choose another id.`, INVALID);
  contents.keys[id] = randomBytes(KEY_BYTES).toString('base64');
  contents.current = id;
  mkdirSync(path.dirname(file), { recursive: true });
  // Written aside and renamed, so a worker reading the file never sees half of it; readable by the owner only.
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(contents, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return { id, rotated: exists, ids: Object.keys(contents.keys) };
}
