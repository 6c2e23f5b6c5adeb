// The unit tier boots no sandbox. Its files get empty homes under one temporary directory, removed after
// the run even when a file failed to load (its own hooks never ran).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    unitHomes: string;
  }
}

export default function setup(project: TestProject): () => void {
  const homes = mkdtempSync(path.join(os.tmpdir(), 'tiershift-unit-'));
  project.provide('unitHomes', homes);
  return () => rmSync(homes, { recursive: true, force: true });
}
