import { defineConfig } from 'vitest/config';

// Two tiers. `unit` needs no sandbox: workflow logic on the time-skipping server, plans, replay, the
// Azure provider against the fake ARM. `integration` runs on one real sandbox booted by its global setup
// (only when an integration file is selected). `npm run test:unit` runs the first alone, `npm test` both.
const UNIT = [
  'test/engine.test.ts',
  'test/replay.test.ts',
  'test/plan.test.ts',
  'test/heartbeat.test.ts',
  'test/azure-plans.test.ts',
  'test/azure-postgres.test.ts',
  'test/azure-traffic.test.ts',
  'test/docker-compose.test.ts',
];

export default defineConfig({
  test: {
    // Test files share one sandbox and a 2-core machine: run them one after another, each in its own process.
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
          // One process for all unit files, still one file at a time: the SDK is imported and the workflow
          // bundled once, not once per file (that was most of the tier's time). They share no state but that.
          isolate: false,
          // A fresh, empty home per file, so a unit test can never reach a developer's sandbox or keys.
          globalSetup: ['test/global-setup-unit.ts'],
          setupFiles: ['test/setup-unit.ts'],
        },
      },
      {
        extends: true,
        test: {
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
