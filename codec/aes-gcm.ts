// AES-256-GCM payload codec: each payload (metadata and data) is serialised and sealed whole, so not
// even its original encoding is visible in history. The key id travels in clear beside it, which is
// what lets keys rotate: new payloads use the current key, old ones name the key they need.
import type { Payload, PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { UserError } from '../contract/errors';
import type { CodecKeys } from './keys';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const INVALID = 2;

// A CommonJS module whose exports Node's ESM loader cannot name: reached through its default export.
const ProtoPayload = proto.temporal.api.common.v1.Payload;

const text = (value: Uint8Array | null | undefined): string | undefined => (value ? Buffer.from(value).toString('utf8') : undefined);

export const isEncrypted = (payload: Payload): boolean => text(payload.metadata?.encoding) === ENCRYPTED_ENCODING;
export const keyIdOf = (payload: Payload): string | undefined => text(payload.metadata?.[KEY_ID_METADATA]);

/**
 * With keys, encrypts everything and decrypts what a configured key opened. Without keys it encodes
 * nothing, but still recognises encrypted payloads, so that a client or worker that lacks the key says
 * so in a sentence instead of the SDK's "unknown encoding".
 */
export class AesGcmCodec implements PayloadCodec {
  constructor(readonly keys?: CodecKeys) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const keys = this.keys;
    if (!keys) return payloads;
    const key = keys.keys.get(keys.current)!;
    return payloads.map((payload) => {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      // The id is authenticated too: a payload relabelled with another key id fails instead of decrypting oddly.
      cipher.setAAD(Buffer.from(keys.current));
      const plain = ProtoPayload.encode(payload).finish();
      const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: { encoding: Buffer.from(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: Buffer.from(keys.current) },
        data: sealed,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => (isEncrypted(payload) ? this.open(payload) : payload));
  }

  private open(payload: Payload): Payload {
    const id = keyIdOf(payload) ?? '(none)';
    const key = this.keys?.keys.get(id);
    if (!key) {
      throw new UserError(
        this.keys
          ? `this history is encrypted with codec key "${id}", which ${this.keys.source} does not have; add that key (rotation keeps old ids) to decrypt it.`
          : `this history is encrypted with codec key "${id}" and no codec key is configured here; set TIERSHIFT_CODEC_KEYS to the key file that has it.`,
        INVALID,
      );
    }
    const data = Buffer.from(payload.data ?? []);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(id));
      decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)), decipher.final()]);
      return ProtoPayload.decode(plain);
    } catch {
      throw new UserError(`a payload encrypted with codec key "${id}" does not decrypt with the key configured under that id; the key was changed or the payload damaged.`, INVALID);
    }
  }
}
