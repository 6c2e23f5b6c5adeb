// Unit-tier files get no sandbox: TIERSHIFT_HOME points at an empty home of their own, so code that reads
// the home (codec keys, the sandbox's Temporal) finds nothing instead of a developer's real sandbox.
import { mkdtempSync } from 'node:fs';
import path from 'node:path';
import { inject } from 'vitest';

process.env.TIERSHIFT_HOME = mkdtempSync(path.join(inject('unitHomes'), 'home-'));
