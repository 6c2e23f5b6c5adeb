// Where the workflow code comes from: bundled ahead of time by `npm run build` (scripts/build.ts) into dist/,
// beside the compiled worker, or else bundled when the worker starts, which takes seconds.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BundleOptions } from '@temporalio/worker';
import { PROJECT_ROOT } from '../contract/home';
import { ENCRYPTED_FAILURE_CONVERTER_PATH } from '../codec';

/** The sources, wherever this module runs from (dist/worker/ has no workflows/index.ts beside it). */
export const WORKFLOWS_PATH = path.join(PROJECT_ROOT, 'workflows', 'index.ts');

/**
 * What every workflow bundle is made of, the build's ahead of time (scripts/build.ts) and a worker's at start
 * alike: the workflows, and the interceptors every bundle carries (the OpenTelemetry ones, workflows/tracing.ts)
 * prebuilt or not, traced or not, so that replaying a history never depends on how the worker was started.
 */
export function workflowBundleOptions(logger: BundleOptions['logger'], failureConverterPath?: string): BundleOptions {
  return {
    workflowsPath: WORKFLOWS_PATH,
    workflowInterceptorModules: [path.join(PROJECT_ROOT, 'workflows', 'tracing.ts')],
    logger,
    ...(failureConverterPath ? { failureConverterPath } : {}),
  };
}

/** The bundles the build writes into dist/: one per failure converter the worker may run with. */
export const PREBUILT_BUNDLES = { plain: 'workflow-bundle.js', encrypted: 'workflow-bundle-encrypted.js' } as const;

/**
 * The bundle built ahead of time for this failure converter, when this module is the compiled one in dist/.
 * It is looked up beside the compiled code rather than in the project root, so the sources run through tsx
 * (tests, a developer's edited tree) never pick up a bundle of other sources: bin/tiershift.mjs runs dist/
 * only while no source is newer than its build, and the bundle is part of that same build.
 */
export function prebuiltBundle(failureConverterPath?: string): string | undefined {
  const name = !failureConverterPath
    ? PREBUILT_BUNDLES.plain
    : failureConverterPath === ENCRYPTED_FAILURE_CONVERTER_PATH
      ? PREBUILT_BUNDLES.encrypted
      : undefined;
  if (!name) return undefined;
  const file = fileURLToPath(new URL(`../${name}`, import.meta.url));
  return existsSync(file) && path.basename(path.dirname(file)) === 'dist' ? file : undefined;
}
