// Certificates made for the sandbox's Temporal cluster, with the openssl CLI: a CA of its own, the
// certificate the frontend presents to clients, and one for tiershift's clients and workers; the frontend
// requires a client certificate from that CA (mutual TLS), as a production cluster's does. The services'
// own links (history, matching, and the internal frontend the server's worker service calls without a
// token) use a second CA whose only certificate the server holds: tiershift's client certificate opens
// the public frontend, where the JWT authorizer sits, and nothing behind it. Nothing outside the sandbox
// home trusts either CA.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { UserError } from '../contract/errors';
import type { SandboxTls } from '../contract/home';
import { findBinary } from './binaries';
import { run } from './process';

/** The name in the server certificate that clients check (it also holds 127.0.0.1). */
export const SERVER_NAME = 'localhost';
const DAYS = '825';

async function openssl(args: string[], dir: string): Promise<void> {
  const result = await run(findBinary('openssl'), args, { cwd: dir, timeoutMs: 30_000 });
  if (result.code !== 0) {
    throw new UserError(`openssl could not make the sandbox's Temporal certificates (${result.output.trim().split('\n').pop()?.slice(0, 200)}); install openssl (\`apt-get install openssl\`) and run \`tiershift sandbox up\` again.`);
  }
}

/** Makes one key and certificate signed by the CA `ca` (ca.pem by default), with `ext` as its X.509v3 extensions. */
async function issue(dir: string, name: string, subject: string, ext: string, ca = 'ca'): Promise<void> {
  writeFileSync(path.join(dir, `${name}.ext`), ext);
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', DAYS, '-extfile', `${name}.ext`], dir);
  for (const scratch of [`${name}.csr`, `${name}.ext`]) rmSync(path.join(dir, scratch), { force: true });
}

export interface ClusterCertificates extends SandboxTls {
  serverCert: string;
  serverKey: string;
  /** The services' own links: their CA and the one certificate it signed (server and client at once). */
  internodeCaFile: string;
  internodeCert: string;
  internodeKey: string;
}

async function makeCa(dir: string, name: string, subject: string): Promise<void> {
  await openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', DAYS, '-subj', subject,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
}

/** The CA, server and client certificates in `dir`, made once (an existing set is kept: clients already hold it). */
export async function ensureCertificates(dir: string): Promise<ClusterCertificates> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const files: ClusterCertificates = {
    caFile: path.join(dir, 'ca.pem'),
    certFile: path.join(dir, 'client.pem'),
    keyFile: path.join(dir, 'client.key'),
    serverName: SERVER_NAME,
    serverCert: path.join(dir, 'server.pem'),
    serverKey: path.join(dir, 'server.key'),
    internodeCaFile: path.join(dir, 'internode-ca.pem'),
    internodeCert: path.join(dir, 'internode.pem'),
    internodeKey: path.join(dir, 'internode.key'),
  };
  const made = (...names: string[]) => names.every((f) => existsSync(f));
  const serverExt = `subjectAltName=DNS:${SERVER_NAME},IP:127.0.0.1\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n`;
  if (!made(files.caFile, files.certFile, files.keyFile, files.serverCert, files.serverKey)) {
    await makeCa(dir, 'ca', '/CN=tiershift sandbox Temporal CA');
    await issue(dir, 'server', `/CN=${SERVER_NAME}`, serverExt);
    await issue(dir, 'client', '/CN=tiershift sandbox client', 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  }
  // Made on their own: a home from before the internal frontend keeps the certificates its clients hold.
  if (!made(files.internodeCaFile, files.internodeCert, files.internodeKey)) {
    await makeCa(dir, 'internode-ca', '/CN=tiershift sandbox Temporal internode CA');
    // The services present this one both as servers and, to each other, as clients.
    await issue(dir, 'internode', `/CN=${SERVER_NAME}`, serverExt, 'internode-ca');
  }
  return files;
}

/**
 * The server's `global.tls`: mutual TLS on the frontend with the sandbox CA, and between the services
 * (the internal frontend included) with the internode CA. With an internal frontend configured, the
 * server's worker service reaches it with the internode client settings (publicClient.forceTLSConfig's
 * default), so no `systemWorker` section is needed.
 */
export function serverTlsConfig(certs: ClusterCertificates): Record<string, unknown> {
  const frontend = { certFile: certs.serverCert, keyFile: certs.serverKey, requireClientAuth: true, clientCaFiles: [certs.caFile] };
  const internode = { certFile: certs.internodeCert, keyFile: certs.internodeKey, requireClientAuth: true, clientCaFiles: [certs.internodeCaFile] };
  return {
    internode: { server: internode, client: { serverName: SERVER_NAME, rootCaFiles: [certs.internodeCaFile] } },
    frontend: { server: frontend, client: { serverName: SERVER_NAME, rootCaFiles: [certs.caFile] } },
  };
}
