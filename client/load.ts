// The load generator moved to contract/load.ts, so the verify step's activity (below client/) can use it too.
export * from '../contract/load';
