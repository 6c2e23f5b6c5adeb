// Worker Versioning for `tiershift worker --build-id`: the worker polls as one version of a Worker Deployment,
// and the operator moves migrations to a new build with `temporal worker deployment set-current-version`.
//
// Why AUTO_UPGRADE and not PINNED: a migration waits at a gate for days. A PINNED execution may only run on the
// build it started on, so every build would have to stay deployed until its last migration finished (a
// "rainbow" of old builds), and retiring build A would strand the migrations waiting on it. AUTO_UPGRADE moves
// each execution to the deployment's current version at its next workflow task (the approval), so A can be
// retired as soon as B is current; the price is that B must replay A's histories, which the workflow already
// guarantees with wf.patched and test/replay.test.ts (Temporal's docs pair AUTO_UPGRADE with patching for
// exactly this). Build ids also give what patching alone does not: the server records which build ran each
// task, and set-current-version is an instant, explicit cut-over (and rollback) for the whole fleet.
import type { WorkerDeploymentOptions } from '@temporalio/worker';
import { UserError } from '../contract/errors';

export const DEFAULT_DEPLOYMENT = 'tiershift';

/** Build ids and deployment names as Temporal accepts them (at most 255 bytes); '.' is kept out of deployment names, which the server's `name.buildId` form joins with it. */
const BUILD_ID = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,254}$/;
const DEPLOYMENT = /^[A-Za-z0-9][A-Za-z0-9_-]{0,254}$/;

export interface DeploymentFlags {
  /** `--build-id`, else TIERSHIFT_BUILD_ID: this worker's version; none runs it unversioned. */
  buildId?: string;
  /** `--deployment`, else TIERSHIFT_DEPLOYMENT, else `tiershift`. */
  deployment?: string;
}

/** The SDK's deployment options for these flags, or undefined (no versioning, as before) without a build id. */
export function deploymentOptions(flags: DeploymentFlags, env: NodeJS.ProcessEnv = process.env): WorkerDeploymentOptions | undefined {
  const buildId = flags.buildId ?? (env.TIERSHIFT_BUILD_ID || undefined);
  const deploymentName = flags.deployment ?? (env.TIERSHIFT_DEPLOYMENT || undefined);
  if (buildId === undefined) {
    if (deploymentName !== undefined) throw new UserError(`--deployment (or TIERSHIFT_DEPLOYMENT) needs --build-id (or TIERSHIFT_BUILD_ID) too: give this worker's build id, e.g. the release's version or commit.`, 2);
    return undefined;
  }
  if (!BUILD_ID.test(buildId)) throw new UserError(`--build-id takes up to 255 letters, digits, ., _, + and -, starting with a letter or digit; got "${buildId}".`, 2);
  const name = deploymentName ?? DEFAULT_DEPLOYMENT;
  if (!DEPLOYMENT.test(name)) throw new UserError(`--deployment takes up to 255 letters, digits, _ and - (no dots), starting with a letter or digit; got "${name}".`, 2);
  return { version: { deploymentName: name, buildId }, useWorkerVersioning: true, defaultVersioningBehavior: 'AUTO_UPGRADE' };
}
