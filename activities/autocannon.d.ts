// The part of autocannon's API (v9, which ships no types) that activities/load-test.ts uses; see its README's "API".
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  interface Options {
    url: string;
    method?: 'GET' | 'POST';
    headers?: Record<string, string>;
    connections?: number;
    /** Seconds; ignored when `amount` is given. */
    duration?: number;
    /** Requests in all before the run ends. */
    amount?: number;
    /** Requests per second over all connections. */
    overallRate?: number;
    /** Per request, in seconds. */
    timeout?: number;
    /** Milliseconds between samples of its request counts (and checks of stop()). */
    sampleInt?: number;
  }

  interface Result {
    errors: number;
    timeouts: number;
    /** Seconds. */
    duration: number;
  }

  interface Instance extends EventEmitter {
    /** Ends the run at its next sample (within a second); the callback still gets the results so far. */
    stop(): void;
    on(event: 'tick', listener: (progress: { counter: number; bytes: number }) => void): this;
    on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTime: number) => void): this;
    on(event: 'reqError', listener: (error: Error) => void): this;
  }

  function autocannon(options: Options, callback: (err: Error | null, result: Result) => void): Instance;
  export default autocannon;
}
