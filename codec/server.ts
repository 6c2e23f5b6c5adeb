// The codec endpoint (Temporal's codec server protocol) the Temporal UI and CLI call to show encrypted
// history decoded: POST .../decode and .../encode with `{"payloads": [...]}` in protobuf JSON (base64
// bytes). Only the last path segment picks the operation, so `/{namespace}/decode` and `/decode` with
// an X-Namespace header both work, as the protocol asks.
//
// Decoding hands out plaintext, so every codec request must prove it knows the viewer token: either
// `Authorization: Bearer <token>` (the Temporal CLI's --codec-auth, scripts), or the cookie that
// GET /login?token=<token> sets in a browser, which the UI sends when "include cross-origin
// credentials" is on (the sandbox UI has no login of its own to pass a token from).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Payload } from '@temporalio/common';
import { UserError } from '../contract/errors';
import { AesGcmCodec } from './aes-gcm';
import type { CodecKeys } from './keys';

const COOKIE = 'tiershift-codec';
const MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface CodecServerOptions {
  keys: CodecKeys;
  /** The viewer token requests must carry; see the header comment. */
  token: string;
  host?: string;
  port?: number;
  /** Browser origins allowed to call (the Temporal UI's, e.g. http://127.0.0.1:8233). */
  origins: string[];
  /** Namespaces served; others are refused so one endpoint does not decode what it was not meant to. */
  namespaces?: string[];
}

export interface CodecServer {
  url: string;
  close(): Promise<void>;
}

export const newViewerToken = (): string => randomBytes(24).toString('base64url');

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

const fromJson = (p: JsonPayload): Payload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
  data: Buffer.from(p.data ?? '', 'base64'),
});

const toJson = (p: Payload): JsonPayload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? []).toString('base64')])),
  data: Buffer.from(p.data ?? []).toString('base64'),
});

/** Compared as hashes: equal lengths for timingSafeEqual, and no timing hint about the token. */
const sameToken = (given: string, token: string): boolean =>
  timingSafeEqual(createHash('sha256').update(given).digest(), createHash('sha256').update(token).digest());

function presentedToken(req: IncomingMessage): string | undefined {
  const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1]?.trim();
  if (bearer) return bearer;
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === COOKIE) return decodeURIComponent(value.join('='));
  }
  return undefined;
}

async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function startCodecServer(opts: CodecServerOptions): Promise<CodecServer> {
  const codec = new AesGcmCodec(opts.keys);
  const origins = new Set(opts.origins.map((o) => o.replace(/\/+$/, '')));

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const origin = req.headers.origin;
    // Credentials are allowed cross-origin only for a named origin, never `*`: the UI's origin, nobody else's.
    if (origin && origins.has(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Access-Control-Allow-Credentials', 'true');
      res.setHeader('Vary', 'Origin');
    }
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'Content-Type': 'application/json' }).end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://codec');
    const segments = url.pathname.split('/').filter(Boolean);
    const operation = segments.at(-1);

    if (req.method === 'OPTIONS') {
      if (!origin || !origins.has(origin)) return send(403, { error: `origin ${origin ?? '(none)'} may not call this codec endpoint.` });
      res.writeHead(204, {
        'Access-Control-Allow-Methods': 'POST, OPTIONS',
        'Access-Control-Allow-Headers': 'Content-Type, X-Namespace, Authorization',
        'Access-Control-Max-Age': '600',
      });
      return void res.end();
    }
    if (req.method === 'GET' && url.pathname === '/health') return send(200, { ok: true });
    if (req.method === 'GET' && url.pathname === '/login') {
      const given = url.searchParams.get('token') ?? '';
      if (!given || !sameToken(given, opts.token)) return send(403, { error: 'that is not the viewer token of this codec endpoint.' });
      // SameSite=Strict still reaches the UI's requests: ports do not make another site, only another origin.
      res.setHeader('Set-Cookie', `${COOKIE}=${encodeURIComponent(given)}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${12 * 3600}`);
      res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
      return void res.end('This browser may now decode tiershift history for 12 hours. In the Temporal UI, turn on "Include cross-origin credentials" in the codec server settings.\n');
    }
    if (req.method !== 'POST' || (operation !== 'decode' && operation !== 'encode')) {
      return send(404, { error: 'this codec endpoint answers POST .../decode and POST .../encode.' });
    }

    const token = presentedToken(req);
    if (!token) return send(401, { error: 'this codec endpoint needs the viewer token: send "Authorization: Bearer <token>" or open /login?token=<token> in the browser first.' });
    if (!sameToken(token, opts.token)) return send(403, { error: 'that is not the viewer token of this codec endpoint.' });

    const namespace = (segments.length > 1 ? segments.at(-2) : undefined) ?? (req.headers['x-namespace'] as string | undefined);
    if (opts.namespaces && namespace && !opts.namespaces.includes(namespace)) {
      return send(403, { error: `this codec endpoint serves namespace ${opts.namespaces.join(', ')}, not ${namespace}.` });
    }

    const body = await readBody(req);
    if (body === undefined) return send(413, { error: `the request is larger than ${MAX_BODY_BYTES / 1024 / 1024} MiB.` });
    let payloads: Payload[];
    try {
      const parsed = JSON.parse(body) as { payloads?: JsonPayload[] };
      if (!Array.isArray(parsed.payloads)) throw new Error('no payloads');
      payloads = parsed.payloads.map(fromJson);
    } catch {
      return send(400, { error: 'the body must be JSON like {"payloads": [{"metadata": {...}, "data": "<base64>"}]}.' });
    }
    try {
      const out = operation === 'decode' ? await codec.decode(payloads) : await codec.encode(payloads);
      return send(200, { payloads: out.map(toJson) });
    } catch (err) {
      return send(422, { error: err instanceof Error ? err.message : String(err) });
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }));
    });
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new UserError(`port ${opts.port} on ${host} is taken; pass another --port.`, 5) : err),
    );
    server.listen(opts.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
