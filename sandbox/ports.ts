// Port selection: defaults when free, any free port otherwise, explicit ports or a clear error.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { TransientError, UserError } from '../contract/errors';
import { DEFAULT_PORTS, type SandboxPorts } from '../contract/home';

export const HOST = '127.0.0.1';

/** A port the kernel says is free on 127.0.0.1 right now. */
export function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen({ host: HOST, port: 0, exclusive: true }, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port assigned'))));
    });
  });
}

/** The range the kernel picks from for port 0 binds and outgoing connections (Linux default below). */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low && high) return [low, high];
  } catch {
    // Not Linux: assume the IANA range most other systems use.
  }
  return [49152, 65535];
}

/**
 * A free port the kernel will not hand out by itself: below its ephemeral range. A port from
 * findFreePort() is only free until someone binds port 0, and the Temporal dev server binds several
 * at start-up, before its UI port: it could take the port we had just chosen for that UI.
 */
export async function findStablePort(): Promise<number> {
  const min = 20_000;
  const max = Math.min(ephemeralRange()[0], 32_768) - 1;
  for (let attempt = 0; max > min && attempt < 100; attempt++) {
    const port = min + Math.floor(Math.random() * (max - min + 1));
    if (await isPortFree(port)) return port;
  }
  return findFreePort();
}

/** Whether we could bind 127.0.0.1:port (a listener on 0.0.0.0 makes it taken too). */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.on('error', () => resolve(false));
    server.listen({ host: HOST, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export function checkPortNumbers(explicit: Partial<SandboxPorts>): void {
  for (const [name, port] of Object.entries(explicit)) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new UserError(`port ${String(port)} for ${name} is not a valid TCP port; use a number from 1 to 65535.`);
    }
  }
}

/**
 * Hands out each service's port just before the service starts, so a port is checked as close as
 * possible to its use; ports it picks itself are outside the kernel's ephemeral range (findStablePort).
 */
export class PortPlanner {
  private readonly claimed = new Set<number>();

  constructor(
    private readonly opts: {
      explicit: Partial<SandboxPorts>;
      /** Ports of the previous `up` on this home: kept when still free, so URLs stay stable. */
      previous?: SandboxPorts;
      /** Ignore the defaults: tests run next to a sandbox that may hold them. */
      freePorts: boolean;
    },
  ) {
    checkPortNumbers(opts.explicit);
  }

  /** The explicitly configured port, if any. */
  explicit(name: keyof SandboxPorts): number | undefined {
    return this.opts.explicit[name];
  }

  /** Marks a port as used by a service that keeps running, so no other service is given it. */
  reserve(port: number): void {
    this.claimed.add(port);
  }

  async claim(name: keyof SandboxPorts): Promise<number> {
    const explicit = this.opts.explicit[name];
    if (explicit !== undefined) {
      if (this.claimed.has(explicit) || !(await isPortFree(explicit))) {
        throw new TransientError(`port ${explicit} for ${name} is already in use on ${HOST}; stop what listens there or choose another port.`);
      }
      return this.take(explicit);
    }
    // A previous port of 0 was never chosen (that `up` stopped before reaching the service).
    const preferred = this.opts.previous?.[name] || (this.opts.freePorts ? undefined : DEFAULT_PORTS[name]);
    if (preferred !== undefined && !this.claimed.has(preferred) && (await isPortFree(preferred))) return this.take(preferred);
    for (;;) {
      const port = await findStablePort();
      if (!this.claimed.has(port)) return this.take(port);
    }
  }

  private take(port: number): number {
    this.claimed.add(port);
    return port;
  }
}
