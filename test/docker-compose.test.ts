// docker-compose.yml cannot run here (no Docker engine), so this keeps it honest statically: pinned
// images, the sandbox's service names and ports, and the same settings and HAProxy configuration.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { PROJECT_ROOT } from '../contract/home';
import { STORAGE_ACCOUNTS } from '../sandbox/azurite';
import { haproxyConfig } from '../sandbox/haproxy';
import { CLUSTERS, COMMON_SETTINGS } from '../sandbox/postgres';
import { DEFAULT_PORTS, type SandboxPorts } from '../contract/home';
import { devServerSearchAttributeArgs } from '../contract/search-attributes';

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[] | string;
  environment?: Record<string, string>;
  ports?: string[];
  profiles?: string[];
}

const read = (file: string) => readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, ComposeService> };
const services = compose.services;

/** Which sandbox ports each compose service publishes on the host, in order. */
const PUBLISHED: Record<string, (keyof SandboxPorts)[]> = {
  temporal: ['temporal', 'temporalUi'],
  azurite: ['azurite'],
  'postgres-source': ['pgSource'],
  'postgres-target': ['pgTarget'],
  haproxy: ['haproxy', 'haproxyStats', 'haproxyRuntime'],
  'app-blue': ['appBlue'],
  'app-green': ['appGreen'],
  worker: [],
};

/** "127.0.0.1:8080:80" -> { host: '127.0.0.1', published: 8080 } */
function published(mapping: string): { host?: string; published: number } {
  const parts = mapping.split(':');
  return parts.length === 3 ? { host: parts[0], published: Number(parts[1]) } : { published: Number(parts[0]) };
}

const asList = (command: ComposeService['command']): string[] => (Array.isArray(command) ? command.map(String) : (command ?? '').split(/\s+/).filter(Boolean));

describe('docker-compose.yml', () => {
  it('pins every image to a version tag', () => {
    const images = [
      ...Object.values(services).map((s) => s.image),
      ...read('docker/Dockerfile').split('\n').filter((l) => /^FROM\s/i.test(l)).map((l) => l.split(/\s+/)[1]),
    ];
    for (const image of images) {
      expect(image, 'every service names an image').toBeDefined();
      const tag = /^[^@]+:([^:/@]+)$/.exec(image!)?.[1];
      expect(tag, `${image} has a tag`).toBeDefined();
      expect(tag, `${image} is pinned`).not.toBe('latest');
      expect(tag, `${image} names a version`).toMatch(/^v?\d+\.\d+/);
    }
  });

  it('runs the worker and the app on a Node that package.json\'s engines allow', () => {
    const from = read('docker/Dockerfile').split('\n').find((l) => /^FROM\s+node:/i.test(l))!.split(/\s+/)[1]!;
    const minimum = /^>=(\d+)$/.exec(JSON.parse(read('package.json')).engines.node)?.[1];
    expect(minimum, 'engines.node is ">=N"').toBeDefined();
    expect(Number(/^node:(\d+)\./.exec(from)?.[1]), from).toBeGreaterThanOrEqual(Number(minimum));
  });

  it('has the sandbox services, under the names `tiershift sandbox status` uses', () => {
    expect(Object.keys(services).sort()).toEqual(Object.keys(PUBLISHED).sort());
    expect(services['app-green']?.profiles).toEqual(['green']);
  });

  it('publishes the default sandbox ports, on 127.0.0.1 only', () => {
    for (const [name, ports] of Object.entries(PUBLISHED)) {
      const mappings = (services[name]?.ports ?? []).map(published);
      expect(mappings.map((m) => m.published), name).toEqual(ports.map((p) => DEFAULT_PORTS[p]));
      for (const m of mappings) expect(m.host, name).toBe('127.0.0.1');
    }
  });

  it('starts Temporal with the migration search attributes', () => {
    const command = asList(services.temporal?.command);
    expect(command.slice(0, 2)).toEqual(['server', 'start-dev']);
    expect(command.filter((_, i) => command[i - 1] === '--search-attribute' || command[i] === '--search-attribute')).toEqual(devServerSearchAttributeArgs());
  });

  it('configures the PostgreSQL tiers like the sandbox', () => {
    for (const [name, cluster] of Object.entries(CLUSTERS)) {
      const command = asList(services[`postgres-${name}`]?.command);
      const settings = Object.fromEntries(command.filter((_, i) => command[i - 1] === '-c').map((kv) => kv.split('=') as [string, string]));
      const expected = Object.fromEntries(Object.entries({ ...COMMON_SETTINGS, ...cluster.settings }).map(([k, v]) => [k, String(v)]));
      expect(settings, name).toEqual(expected);
      expect(services[`postgres-${name}`]?.environment?.POSTGRES_DB).toBe('shop');
    }
  });

  it('defines the same Azurite accounts as the sandbox, with the keys docker/state.json uses', () => {
    const env = services.azurite?.environment?.AZURITE_ACCOUNTS ?? '';
    const accounts = env.split(';').map((a) => a.split(':'));
    expect(accounts.map(([name]) => name)).toEqual(STORAGE_ACCOUNTS.map((a) => a.name));
    const state = JSON.parse(read('docker/state.json')) as { azurite: { accounts: { name: string; key: string }[] } };
    expect(state.azurite.accounts.map((a) => [a.name, a.key])).toEqual(accounts);
  });

  it('gives HAProxy the sandbox configuration, with container addresses', () => {
    const expected = haproxyConfig({
      bind: '0.0.0.0',
      frontendPort: DEFAULT_PORTS.haproxy,
      statsPort: DEFAULT_PORTS.haproxyStats,
      runtimePort: DEFAULT_PORTS.haproxyRuntime,
      blue: `app-blue:${DEFAULT_PORTS.appBlue}`,
      green: `app-green:${DEFAULT_PORTS.appGreen}`,
      nameserver: '127.0.0.11:53',
    });
    expect(read('docker/haproxy.cfg'), 'regenerate docker/haproxy.cfg from haproxyConfig() with these options').toBe(expected);
  });
});
