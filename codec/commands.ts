// `tiershift codec keygen` and `tiershift codec serve`, kept here so that client/cli.ts only declares them.
import { UserError } from '../contract/errors';
import { readState, sandboxHome } from '../contract/home';
import { DEFAULT_CODEC_PORT } from './index';
import { generateKey, keyFilePath, loadCodecKeys } from './keys';
import { newViewerToken, startCodecServer } from './server';

export function codecKeygen(opts: { file?: string; rotate?: boolean; id?: string }): { file: string; id: string; rotated: boolean; ids: string[]; text: string } {
  const file = opts.file ?? keyFilePath();
  const { id, rotated, ids } = generateKey(file, opts);
  const text = rotated
    ? `added codec key "${id}" to ${file} as the current key; ${ids.length - 1} older key(s) stay there to decrypt older history. Restart workers to encrypt with it.`
    : `wrote codec key "${id}" to ${file}; workers and clients started from now on encrypt history with it${file === keyFilePath() ? '' : ` once TIERSHIFT_CODEC_KEYS=${file}`}.`;
  return { file, id, rotated, ids, text };
}

export interface ServeOptions {
  port?: number;
  host?: string;
  origin?: string[];
  namespace: string;
  json?: boolean;
}

/** Runs until SIGINT/SIGTERM. */
export async function codecServe(opts: ServeOptions, log: (line: string) => void = console.log): Promise<void> {
  const keys = loadCodecKeys();
  if (!keys) throw new UserError(`no codec key is configured, so there is nothing to decode; create one with \`tiershift codec keygen\` (or set TIERSHIFT_CODEC_KEYS).`, 2);
  const port = opts.port ?? DEFAULT_CODEC_PORT;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UserError('--port takes a port number from 0 to 65535.', 2);
  // The sandbox UI is the usual viewer; the browser may reach it as 127.0.0.1 or as localhost.
  const uiUrl = readState(sandboxHome())?.temporal?.uiUrl;
  const origins = [...(opts.origin ?? []), ...(uiUrl ? [uiUrl, uiUrl.replace('//127.0.0.1:', '//localhost:')] : [])];
  const chosen = process.env.TIERSHIFT_CODEC_TOKEN;
  const token = chosen || newViewerToken();
  const server = await startCodecServer({ keys, token, port, host: opts.host, origins, namespaces: [opts.namespace] });
  if (opts.json) {
    log(JSON.stringify({ url: server.url, namespace: opts.namespace, currentKey: keys.current, keyIds: [...keys.keys.keys()], origins, ...(chosen ? {} : { token }) }));
  } else {
    log(`codec endpoint ${server.url} for namespace ${opts.namespace}, keys ${[...keys.keys.keys()].join(', ')} from ${keys.source}`);
    log(chosen ? 'viewer token: the one in TIERSHIFT_CODEC_TOKEN' : `viewer token: ${token} (set TIERSHIFT_CODEC_TOKEN to choose it)`);
    log(`browser: open ${server.url}/login?token=${chosen ? '<token>' : token}, then in the Temporal UI's codec server settings turn on "Include cross-origin credentials"`);
    log(`allowed UI origins: ${origins.join(', ') || 'none (pass --origin)'}`);
    log(`temporal CLI: temporal workflow show -w <id> --codec-endpoint ${server.url} --codec-auth "Bearer <token>"`);
    log('Ctrl-C stops it');
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
}
