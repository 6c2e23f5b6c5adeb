// Unit-tier files get no sandbox: TIERSHIFT_HOME points at an empty temporary home, so code that reads
// the home (codec keys, the sandbox's Temporal) finds nothing instead of a developer's real sandbox.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll } from 'vitest';

const home = mkdtempSync(path.join(os.tmpdir(), 'tiershift-unit-'));
process.env.TIERSHIFT_HOME = home;
afterAll(() => rmSync(home, { recursive: true, force: true }));
