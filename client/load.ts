// The load generator lives in contract/load.ts, where tests, benchmarks and the CLI's demo all reach it.
export * from '../contract/load';
