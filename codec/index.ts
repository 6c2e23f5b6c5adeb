// The one data converter every worker and client of tiershift uses: encrypted when a key is
// configured (codec/keys.ts), unchanged otherwise.
import type { DataConverter } from '@temporalio/common';
import { fileURLToPath } from 'node:url';
import { AesGcmCodec } from './aes-gcm';
import { loadCodecKeys, type CodecKeys } from './keys';

export { AesGcmCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA } from './aes-gcm';
export { generateKey, keyFilePath, loadCodecKeys, type CodecKeys } from './keys';

export const ENCRYPTED_FAILURE_CONVERTER_PATH = fileURLToPath(new URL('./failure-converter.cjs', import.meta.url));

/**
 * `keys` defaults to the configured ones; `null` means explicitly none (a test's client without the key).
 * With keys, error messages and stack traces are encoded as payloads too, so the codec encrypts them.
 */
export function tiershiftDataConverter(keys: CodecKeys | null | undefined = loadCodecKeys()): DataConverter {
  const codec = new AesGcmCodec(keys ?? undefined);
  return keys ? { payloadCodecs: [codec], failureConverterPath: ENCRYPTED_FAILURE_CONVERTER_PATH } : { payloadCodecs: [codec] };
}

/** Port of `tiershift codec serve` unless --port says otherwise: the one after the sandbox UI's 8233. */
export const DEFAULT_CODEC_PORT = 8235;

/**
 * The codec endpoint the sandbox's Temporal UI should call: TIERSHIFT_CODEC_ENDPOINT, else the default
 * `tiershift codec serve` address when encryption is on, else none (the UI then shows payloads as
 * they are, which without encryption is readable).
 */
export function uiCodecEndpoint(env: NodeJS.ProcessEnv = process.env, home?: string): string | undefined {
  if (env.TIERSHIFT_CODEC_ENDPOINT) return env.TIERSHIFT_CODEC_ENDPOINT.replace(/\/+$/, '');
  return loadCodecKeys(env, home) ? `http://127.0.0.1:${DEFAULT_CODEC_PORT}` : undefined;
}
