// The compiled tiershift in dist/ (built by `npm run build`, which `npm run setup` runs): whether it may be run,
// and how. Plain JavaScript with only node: built-ins, like supported-node.mjs, because it decides whether tsx
// is needed at all.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import module from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DIST = path.join(ROOT, 'dist');
/** Written last by the build: `{ "startedAt": <ms> }`, the time the build began reading the sources. */
export const BUILD_STAMP = path.join(DIST, 'build-stamp.json');

/** What dist/ is compiled from (tsconfig.build.json's include), and the files that change what it compiles to. */
export const SOURCE_DIRS = ['contract', 'workflows', 'activities', 'worker', 'client', 'plan', 'codec', 'identity', 'sandbox'];
const SOURCE_FILES = ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json'];

/** The newest modification time (ms) of `dir` and everything under it: its directories too, so a file added, removed or renamed counts. */
function newestUnder(dir) {
  let newest = statSync(dir).mtimeMs;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestUnder(full) : statSync(full).mtimeMs);
  }
  return newest;
}

/**
 * Whether dist/ was built from the sources as they are now. Modification times rather than a hash of the
 * sources: stat()ing the ~150 files and folders takes a few milliseconds where reading and hashing them would
 * cost more on every command, and an edit, a `git checkout` or a pull all give what they touch a new mtime.
 * Any source newer than the moment the build started means dist/ may be behind: the CLI then runs the
 * TypeScript through tsx, so a developer editing sources never runs stale code.
 */
export function distIsCurrent(root = ROOT) {
  let startedAt;
  try {
    startedAt = JSON.parse(readFileSync(path.join(root, 'dist', 'build-stamp.json'), 'utf8')).startedAt;
  } catch {
    return false;
  }
  if (typeof startedAt !== 'number') return false;
  try {
    for (const dir of SOURCE_DIRS) if (newestUnder(path.join(root, dir)) > startedAt) return false;
    for (const file of SOURCE_FILES) if (statSync(path.join(root, file), { throwIfNoEntry: false })?.mtimeMs > startedAt) return false;
  } catch {
    return false;
  }
  return true;
}

/**
 * The sources import each other without extensions (`'../contract/home'`, `'../sandbox'`) and reach into
 * CommonJS packages' folders (`'@temporalio/common/lib/internal-non-workflow'`), as TypeScript's bundler
 * resolution and tsx allow and Node's ESM loader does not. Rather than rewrite every import, dist/ is run with
 * this resolve hook: an import from dist/ that Node cannot find is tried as `<name>.js`, then `<name>/index.js`.
 * A relative one is tried that way first, since in dist/ it is always one of those. The hook runs in the same
 * thread (module.registerHooks), so it costs no loader worker.
 */
export function registerDistResolution() {
  const distUrl = pathToFileURL(DIST + path.sep).href;
  const NOT_FOUND = new Set(['ERR_MODULE_NOT_FOUND', 'ERR_UNSUPPORTED_DIR_IMPORT', 'ERR_PACKAGE_PATH_NOT_EXPORTED']);
  const attempt = (candidates, context, nextResolve) => {
    let first;
    for (const candidate of candidates) {
      try {
        return nextResolve(candidate, context);
      } catch (err) {
        if (!NOT_FOUND.has(err?.code)) throw err;
        first ??= err;
      }
    }
    throw first;
  };
  module.registerHooks({
    resolve(specifier, context, nextResolve) {
      if (!context.parentURL?.startsWith(distUrl) || specifier.startsWith('node:') || /\.([cm]?js|json)$/.test(specifier)) return nextResolve(specifier, context);
      const relative = specifier.startsWith('./') || specifier.startsWith('../');
      const guesses = [`${specifier}.js`, `${specifier}/index.js`];
      return attempt(relative ? [...guesses, specifier] : [specifier, ...guesses], context, nextResolve);
    },
  });
}

/** Whether this Node can run dist/: module.registerHooks arrived in Node 22.15 and 23.5. */
export const canRunDist = typeof module.registerHooks === 'function';
