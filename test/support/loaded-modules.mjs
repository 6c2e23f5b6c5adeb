// Preloaded into a CLI process by test/cli-startup.test.ts (`node --import`): records the URL of every module
// the process resolves, ESM and CommonJS alike, and writes them one a line to $TIERSHIFT_LOADED_MODULES on exit.
// A resolve hook sees what a module list taken at one moment could miss: whatever was imported and left.
import { writeFileSync } from 'node:fs';
import module from 'node:module';

const out = process.env.TIERSHIFT_LOADED_MODULES;
const seen = new Set();
module.registerHooks({
  resolve(specifier, context, nextResolve) {
    const resolved = nextResolve(specifier, context);
    seen.add(resolved.url);
    return resolved;
  },
});
if (out) process.on('exit', () => writeFileSync(out, [...seen].join('\n')));
