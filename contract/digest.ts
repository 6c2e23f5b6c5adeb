// Digests the workflow and the CLI must compute alike: the plan's hash, the evidence's digest, a
// decision's nonce. @noble/hashes is plain deterministic JS, so the workflow bundle computes them too,
// and never has to take the client's word for a plan's hash.
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils.js';

/** JSON with object keys sorted at every level: the same value always gives the same text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sorted(value));
}

function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (value && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    // undefined fields are dropped, as JSON.stringify (and Temporal's payloads) drop them.
    return Object.fromEntries(Object.keys(object).filter((k) => object[k] !== undefined).sort().map((k) => [k, sorted(object[k])]));
  }
  return value;
}

export function sha256Hex(text: string): string {
  return bytesToHex(sha256(utf8ToBytes(text)));
}

/** base64url without padding, as a JWT's `nonce` carries it. */
export function sha256Base64url(text: string): string {
  const bytes = sha256(utf8ToBytes(text));
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The plan's identity: sha256 of the canonical form of the resolved plan, without its own hash and the
 * path it was read from. The CLI shows it; the workflow recomputes it from the plan it runs.
 */
export function planDigest(plan: object): string {
  const { hash: _hash, source: _source, ...content } = plan as Record<string, unknown>;
  return sha256Hex(canonicalJson(content));
}

/** The digest of the evidence a decision was made on (every figure measured so far, by step). */
export function evidenceDigest(evidence: unknown): string {
  return sha256Hex(canonicalJson(evidence ?? {}));
}
