// One redaction for every text tiershift produces (step summaries, figures, errors, logs, the report):
// a URL loses its userinfo and its query string (a SAS's `sv=…&sig=…`, an `?api_key=`), a path segment
// that looks like a token (a chat webhook's `/services/T…/B…/<token>`) is masked, and the secret parts of
// connection strings (AccountKey, SharedAccessSignature, password) are masked. Pure, without node:
// modules, so the workflow bundle may import it too.

const MASK = '***';

/** scheme://…, up to whitespace, a quote or bracket that closes the text around it, or a connection string's `;`. */
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`();]+/gi;

/** key=value secrets of connection strings and query strings outside a URL (e.g. a bare SAS). */
const SECRET_PAIRS = [
  /\b(SharedAccessSignature)=[^;\s"'`]*/gi,
  /\b(AccountKey|SharedAccessKey|password|pwd|sig|token|access_token|api[_-]?key|client_secret|secret)=[^;&\s"'`]*/gi,
];

/**
 * A path segment that is a credential rather than a name: long, and either mixing upper case, lower
 * case and digits, or a long run of letters and digits (hex keys). Names tiershift makes (plan and
 * migration ids, containers, `0-backup/sourceDb.dump`) are lower case with dashes and stay readable.
 */
export function tokenLike(segment: string): boolean {
  let s = segment;
  try {
    s = decodeURIComponent(segment);
  } catch {
    /* not percent-encoded: judge it as it is */
  }
  if (s.length >= 20 && /^[A-Za-z0-9_\-.~+=]+$/.test(s) && /[A-Z]/.test(s) && /[a-z]/.test(s) && /[0-9]/.test(s)) return true;
  return s.length >= 32 && /^[A-Za-z0-9_]+$/.test(s) && /[A-Za-z]/.test(s) && /[0-9]/.test(s);
}

/** A URL without userinfo, query and fragment, its token-like path segments masked; other text as it is. */
export function redactUrl(url: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)([^?#]*)/i.exec(url);
  if (!m) return url;
  const [, scheme, authority, path] = m as unknown as [string, string, string, string];
  const host = authority.slice(authority.lastIndexOf('@') + 1);
  const masked = path
    .split('/')
    .map((seg) => (tokenLike(seg) ? MASK : seg))
    .join('/');
  return `${scheme}${host}${masked}`;
}

/** True when a text holds something redact() would hide: how the plan loader recognises a credential in a URL. */
export function holdsSecret(text: string): boolean {
  return redact(text) !== text;
}

/**
 * A JWT anywhere in a text (an OAuth access or ID token, e.g. a Temporal API key): three base64url parts,
 * the first two JSON objects (`eyJ` is `{"`). An `Authorization: Bearer` value whatever its form.
 */
const JWT_IN_TEXT = /\beyJ[\w-]{4,}\.eyJ[\w-]{4,}\.[\w-]*/g;
const BEARER = /\b(Bearer)\s+[\w\-.~+/]+=*/gi;

export function redact(text: string): string {
  // Punctuation right after a URL belongs to the sentence ("… to <url>: 1.2 MiB"), not to the URL.
  let out = text.replace(URL_IN_TEXT, (match) => {
    const tail = /[.,:!?]+$/.exec(match)?.[0] ?? '';
    return redactUrl(match.slice(0, match.length - tail.length)) + tail;
  });
  for (const re of SECRET_PAIRS) out = out.replace(re, (_, key: string) => `${key}=${MASK}`);
  return out.replace(JWT_IN_TEXT, MASK).replace(BEARER, (_, key: string) => `${key} ${MASK}`);
}

/** Every string inside a JSON-like value redacted (activity results: summary, figures, undo records). */
export function redactDeep<T>(value: T): T {
  if (typeof value === 'string') return redact(value) as T;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v)) as T;
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v)])) as T;
  }
  return value;
}

/** An error's message and stack, and those of its causes, redacted in place; the same error is returned. */
export function redactError<E>(err: E): E {
  for (let cur: unknown = err, depth = 0; cur instanceof Error && depth < 10; cur = (cur as { cause?: unknown }).cause, depth++) {
    cur.message = redact(cur.message);
    if (cur.stack) cur.stack = redact(cur.stack);
  }
  return err;
}
