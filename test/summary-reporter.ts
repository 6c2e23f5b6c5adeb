// Ends the run with what CI needs when little else of the output survives: every failure, named by
// file and full test name with the first line of its error, then the plain counts line, last.
import type { Reporter, SerializedError, TestModule, TestRunEndReason } from 'vitest/node';

/** Long first lines (a JSON dump in an assertion) are cut: the name and the start say enough. */
const MAX_LINE = 300;
const SLOWEST = 8;

function firstLine(errors: ReadonlyArray<{ message?: string; name?: string }> | undefined): string {
  const error = errors?.[0];
  const message = (error?.message ?? '').split('\n').find((l) => l.trim()) ?? '';
  // As a stack trace's first line reads: "TypeError: x is not a function" says more than the message alone.
  const kind = error?.name && error.name !== 'Error' ? error.name : '';
  const line = [kind, message].filter(Boolean).join(': ') || 'failed without an error message';
  return line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<SerializedError> = [], reason?: TestRunEndReason): void {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    const failures: string[] = [];
    for (const mod of modules) {
      const file = mod.relativeModuleId;
      for (const test of mod.children.allTests()) {
        const result = test.result();
        if (result.state === 'passed') counts.passed += 1;
        else if (result.state === 'failed') {
          counts.failed += 1;
          failures.push(`FAIL ${file} > ${test.fullName}: ${firstLine(result.errors)}`);
        } else counts.skipped += 1;
      }
      // Errors outside any test: a file that failed to load (it has no tests to count), or a beforeAll/
      // afterAll hook that failed (its tests show as skipped). Each counts as one failure, so the file
      // cannot pass silently.
      const errors = mod.errors();
      if (errors.length || (mod.state() === 'failed' && !mod.children.size)) {
        counts.failed += 1;
        failures.push(`FAIL ${file}: ${firstLine(errors)}`);
      }
      for (const suite of mod.children.allSuites()) {
        if (!suite.errors().length) continue;
        counts.failed += 1;
        failures.push(`FAIL ${file} > ${suite.fullName}: ${firstLine(suite.errors())}`);
      }
    }
    // Errors vitest caught outside every test (e.g. an unhandled rejection) fail the run too: name them.
    for (const error of unhandledErrors) {
      counts.failed += 1;
      failures.push(`FAIL unhandled error: ${firstLine([error])}`);
    }
    // A global setup that threw (the sandbox did not start) fails the run before any file is collected;
    // vitest prints its error only after the reporters, so say here that one is coming.
    if (reason === 'failed' && !failures.length) {
      counts.failed += 1;
      failures.push('FAIL the run failed outside every test (a global setup such as the sandbox\'s, or vitest itself): see the error vitest prints');
    }
    const summary = failures.length ? `\n${failures.join('\n')}\n` : '';
    // Where the suite's time goes, for a CI log of which little survives: the files that took longest.
    const slowest = [...modules]
      .map((m) => ({ file: m.relativeModuleId.replace(/^test\/|\.test\.ts$/g, ''), s: Math.round(m.diagnostic().duration / 1000) }))
      .sort((a, b) => b.s - a.s)
      .slice(0, SLOWEST)
      .map((m) => `${m.file} ${m.s} s`);
    // The Node the run used (the test processes are forks of this one), for a CI log that shows which it was.
    process.stdout.write(`${summary}\nslowest files: ${slowest.join(', ')}\nnode: ${process.version}\ntests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`);
  }
}
