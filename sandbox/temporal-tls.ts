// Certificates made for the sandbox's Temporal cluster, with the openssl CLI: a CA of its own, one
// certificate the four services present to clients and to each other, and one for tiershift's clients
// and workers. The frontend and the services' own links require a client certificate from that CA
// (mutual TLS), as a production cluster's do; nothing outside the sandbox home trusts this CA.
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

/** Makes one key and certificate signed by the CA, with `ext` as its X.509v3 extensions. */
async function issue(dir: string, name: string, subject: string, ext: string): Promise<void> {
  writeFileSync(path.join(dir, `${name}.ext`), ext);
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], dir);
  await openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', DAYS, '-extfile', `${name}.ext`], dir);
  for (const scratch of [`${name}.csr`, `${name}.ext`]) rmSync(path.join(dir, scratch), { force: true });
}

export interface ClusterCertificates extends SandboxTls {
  serverCert: string;
  serverKey: string;
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
  };
  if (Object.values(files).every((f) => f === SERVER_NAME || existsSync(f))) return files;
  await openssl(
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', DAYS, '-subj', '/CN=tiershift sandbox Temporal CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  // The services present this one both as servers and, to each other, as clients.
  await issue(dir, 'server', `/CN=${SERVER_NAME}`, `subjectAltName=DNS:${SERVER_NAME},IP:127.0.0.1\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n`);
  await issue(dir, 'client', '/CN=tiershift sandbox client', 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  return files;
}

/** The server's `global.tls`: mutual TLS on the frontend and between the services. */
export function serverTlsConfig(certs: ClusterCertificates): Record<string, unknown> {
  const server = { certFile: certs.serverCert, keyFile: certs.serverKey, requireClientAuth: true, clientCaFiles: [certs.caFile] };
  const client = { serverName: SERVER_NAME, rootCaFiles: [certs.caFile] };
  return {
    internode: { server, client },
    frontend: { server, client },
    // The worker service (archival, namespace deletion, schedules) calls the frontend as any client does.
    systemWorker: { certFile: certs.serverCert, keyFile: certs.serverKey, client },
  };
}
