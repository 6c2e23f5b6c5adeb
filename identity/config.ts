// The CLI's own configuration directory, and the login file in it: per issuer, who signed in and the
// identity provider's session cookies, so later decisions get fresh tokens without a password again.
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UserError } from '../contract/errors';

/** TIERSHIFT_CONFIG_DIR, else $XDG_CONFIG_HOME/tiershift, else ~/.config/tiershift. */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TIERSHIFT_CONFIG_DIR) return path.resolve(env.TIERSHIFT_CONFIG_DIR);
  if (env.XDG_CONFIG_HOME) return path.resolve(env.XDG_CONFIG_HOME, 'tiershift');
  return path.join(os.homedir(), '.config', 'tiershift');
}

export const loginFile = (dir = configDir()): string => path.join(dir, 'login.json');

/** One cookie of the identity provider's session, as the jar keeps it. */
export interface StoredCookie {
  name: string;
  value: string;
  path: string;
  /** Epoch milliseconds; absent for a session cookie (kept until the provider's session ends). */
  expires?: number;
}

export interface StoredLogin {
  clientId: string;
  subject: string;
  name?: string;
  signedInAt: string;
  /** The provider's session cookies: absent after a browser sign-in, whose session the browser keeps. */
  cookies?: StoredCookie[];
}

export type LoginFile = Record<string, StoredLogin>;

export function readLogins(dir = configDir()): LoginFile {
  const file = loginFile(dir);
  if (!existsSync(file)) return {};
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as LoginFile) : {};
  } catch {
    throw new UserError(`${file} is not valid JSON; delete it and run \`tiershift login\` again.`);
  }
}

export function readLogin(issuer: string, dir = configDir()): StoredLogin | undefined {
  const logins = readLogins(dir);
  return Object.hasOwn(logins, issuer) ? logins[issuer] : undefined;
}

/** Saves (or, with `undefined`, forgets) the login for one issuer; the file is only ever readable by its owner. */
export function writeLogin(issuer: string, login: StoredLogin | undefined, dir = configDir()): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const logins = readLogins(dir);
  if (login) logins[issuer] = login;
  else delete logins[issuer];
  const file = loginFile(dir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(logins, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}
