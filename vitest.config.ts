import { defineConfig } from 'vitest/config';

// Two tiers. `unit`: the files that need no sandbox (workflow logic and replay on the time-skipping
// server, plans, the Azure provider against the fake ARM, heartbeats, the compose file). `integration`:
// every other file, on one real sandbox that its global setup boots only when such a file is selected; a
// new file lands there unless listed here. (azure-blob copies through the sandbox's Azurite: integration.)
// `npm run test:unit` runs the first tier alone, `npm test` both.
const UNIT = [
  'test/engine.test.ts',
  'test/replay.test.ts',
  'test/plan.test.ts',
  'test/heartbeat.test.ts',
  'test/azure-plans.test.ts',
  'test/azure-postgres.test.ts',
  'test/azure-traffic.test.ts',
  'test/azure-clouds.test.ts',
  'test/azure-resource.test.ts',
  'test/resource-workflow.test.ts',
  'test/docker-compose.test.ts',
  'test/handlers.test.ts',
  'test/provider-contract.test.ts',
  'test/ssh-identity.test.ts',
  'test/decisions.test.ts',
  'test/progress.test.ts',
  'test/machine-load.test.ts',
  'test/node-runtime.test.ts',
  'test/cli-startup.test.ts',
  'test/connection-profiles.test.ts',
  'test/tracing-config.test.ts',
];

// The Azure SDKs need Node 22+. `npm test` (bin/supported-node.mjs) picks the Node that setup installed where
// the machine's is older; `npx vitest` would run on the machine's own, so it stops here saying what to run.
if (Number(process.versions.node.split('.')[0]) < 22) {
  throw new Error(`tiershift's tests need Node.js 22 or newer and vitest is running on ${process.version}: run them with \`npm test\` or \`npm run vitest -- run test/<file>.test.ts\` (both use the Node \`npm run setup\` installed).`);
}

export default defineConfig({
  test: {
    // A 2-core machine, and integration files share one sandbox: files run one after another.
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 240_000,
    reporters: ['default', './test/summary-reporter.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: UNIT,
          // Two processes for all unit files, each running its share one file at a time: the SDK is imported
          // and the workflow bundled once per process, not once per file (that was most of the tier's time),
          // and a file waiting on a timer or a subprocess leaves the CPU to the other. Each file has its own
          // time-skipping server and home, so none depends on another; but a unit file must leave no state
          // behind (environment variables, module singletons) that the next one in its process could trip on.
          isolate: false,
          fileParallelism: true,
          maxWorkers: 2,
          // A fresh, empty home per file, so a unit test can never reach a developer's sandbox or keys.
          globalSetup: ['test/global-setup-unit.ts'],
          setupFiles: ['test/setup-unit.ts'],
        },
      },
      {
        extends: true,
        test: {
          // Each file in a process of its own.
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: UNIT,
          globalSetup: ['test/global-setup.ts'],
          setupFiles: ['test/setup-env.ts'],
        },
      },
    ],
  },
});
