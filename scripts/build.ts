// `npm run build` (and so `npm run setup`): compiles the shipped code into dist/ and bundles the workflow code
// ahead of time, so `tiershift` answers without transpiling TypeScript and `tiershift worker` polls without
// bundling. bin/tiershift.mjs runs dist/ only while no source is newer than the moment this build started.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';
import { PROJECT_ROOT } from '../contract/home';
import { ENCRYPTED_FAILURE_CONVERTER_PATH } from '../codec';
import { PREBUILT_BUNDLES, workflowBundleOptions } from '../worker/bundle';

const DIST = path.join(PROJECT_ROOT, 'dist');
const log = (line: string) => console.error(`build: ${line}`);

// Taken before anything is read: a source saved while the build runs is newer than the stamp, so dist/ counts as stale.
const startedAt = Date.now();
rmSync(DIST, { recursive: true, force: true });

log('compiling with tsc -p tsconfig.build.json');
const tsc = createRequire(path.join(PROJECT_ROOT, 'package.json')).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(PROJECT_ROOT, 'tsconfig.build.json')], { cwd: PROJECT_ROOT, stdio: 'inherit' });

// Files the compiled code reaches by path beside itself, which tsc does not copy.
for (const file of [path.relative(PROJECT_ROOT, ENCRYPTED_FAILURE_CONVERTER_PATH), 'plan/tiershift-plan.schema.json']) {
  mkdirSync(path.dirname(path.join(DIST, file)), { recursive: true });
  copyFileSync(path.join(PROJECT_ROOT, file), path.join(DIST, file));
}

const quiet = { trace: () => undefined, debug: () => undefined, info: () => undefined, log: () => undefined, warn: log, error: log };
for (const [name, failureConverterPath] of [
  [PREBUILT_BUNDLES.plain, undefined],
  [PREBUILT_BUNDLES.encrypted, ENCRYPTED_FAILURE_CONVERTER_PATH],
] as const) {
  log(`bundling the workflow code into dist/${name}`);
  const bundle = await bundleWorkflowCode(workflowBundleOptions(quiet, failureConverterPath));
  writeFileSync(path.join(DIST, name), bundle.code);
}

writeFileSync(path.join(DIST, 'build-stamp.json'), `${JSON.stringify({ startedAt })}\n`);
log(`done in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
