// The local provider's operations: every one on the sandbox's real components (PostgreSQL, Azurite, HAProxy,
// the sample app). A table by kind of resource; activities/index.ts does the looping and routing.
import { ApplicationFailure } from '@temporalio/activity';
import { restartPostgres } from '../../sandbox';
import type { ProviderOperations } from '../types';
import { observeApp, undoApp, updateApp } from './app';
import { backupBlobs, backupDatabase } from './backup';
import { observeBlobSync, syncBlobs, undoBlobSync } from './blob-sync';
import { checkHealth } from './health';
import { observeInfra, prepareInfra, settingsDrift, undoInfra, type RestartCluster } from './infra';
import { cutoverPostgres, observePgSync, syncPostgres, undoPgSync } from './pg-sync';
import { finishReverseSync, measureWrites, startReverseSync } from './reverse-sync';
import type { LocalApp, LocalBlob, LocalPostgres, LocalTraffic } from './provider';
import { postgresConnection, sandboxState } from './sandbox';
import { analyseTraffic, observeTraffic, shiftTraffic, trafficDrift, undoTraffic } from './traffic';

const restartCluster: RestartCluster = async (resource) => {
  const cluster = (resource as LocalPostgres).cluster;
  if (!cluster) {
    throw ApplicationFailure.nonRetryable(`${resource.name} needs a restart for its new settings but is not a sandbox cluster; restart it yourself and resume`, 'NonRetryable');
  }
  await restartPostgres(sandboxState(), cluster);
};

/** The sandbox's front door (HAProxy), for verify steps. */
function sandboxFront(): string {
  const front = sandboxState().haproxy;
  if (!front) throw ApplicationFailure.nonRetryable('the sandbox has no HAProxy front; run `tiershift sandbox up`', 'NonRetryable');
  return front.frontendUrl;
}

/** One of the sandbox app's two instances, for verify steps. */
function sandboxApp(color: 'blue' | 'green'): string {
  const app = sandboxState().apps[color];
  if (!app) throw ApplicationFailure.nonRetryable(`the sandbox's ${color} app is not running; deploy it first (an app step) or run \`tiershift sandbox up\``, 'NonRetryable');
  return `http://127.0.0.1:${app.port}`;
}

export const localProvider: ProviderOperations = {
  postgres: {
    check: (r) => checkHealth(r),
    connection: (r) => postgresConnection(r as LocalPostgres),
    backup: backupDatabase,
    prepare: prepareInfra(restartCluster),
    observePrepare: observeInfra,
    undoPrepare: undoInfra(restartCluster),
    settingsDrift,
    sync: syncPostgres,
    observeSync: observePgSync,
    undoSync: undoPgSync,
    cutover: cutoverPostgres,
    reverseSync: { start: startReverseSync, finish: finishReverseSync },
    measureWrites: (from, to) => measureWrites(from as LocalPostgres, to as LocalPostgres),
  },
  blob: {
    check: (r: LocalBlob) => checkHealth(r),
    backup: backupBlobs,
    sync: (input) => syncBlobs(input),
    observeSync: observeBlobSync,
    undoSync: undoBlobSync,
  },
  traffic: {
    check: (r) => checkHealth(r),
    address: async () => sandboxFront(),
    shift: shiftTraffic,
    observe: observeTraffic,
    analyse: analyseTraffic,
    undo: undoTraffic,
    drift: (r: LocalTraffic, percent) => trafficDrift({ [r.name]: r }, r.name, percent),
  },
  app: {
    check: (r) => checkHealth(r),
    address: async (r) => sandboxApp((r as LocalApp).color),
    update: updateApp,
    observe: observeApp,
    undo: undoApp,
  },
};
