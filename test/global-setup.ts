// One sandbox per test run, on free ports in a temporary home, torn down (purged) even when tests fail.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { sandboxDown, sandboxUp } from '../sandbox';

declare module 'vitest' {
  export interface ProvidedContext {
    sandboxHome: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const home = mkdtempSync(path.join(os.tmpdir(), 'tiershift-test-'));
  const teardown = () => sandboxDown({ home, purge: true });
  try {
    await sandboxUp({ home, freePorts: true, seedRows: 20_000, log: () => undefined });
  } catch (err) {
    await teardown();
    throw err;
  }
  project.provide('sandboxHome', home);
  return teardown;
}
