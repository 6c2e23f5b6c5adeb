// The local app and traffic phases on the run's sandbox: green started by the app step, half the
// traffic shifted to it through HAProxy, the canary analysis on real loopback load (passing, then
// failing on an injected fault), and the undo. Leaves the sandbox as it found it: blue 256 / green 0,
// no green app, no fault.
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { observeApp, undoApp, updateApp } from '../activities/local/app';
import { sandboxState } from '../activities/local/sandbox';
import { createActivities } from '../activities';
import { localProvider } from '../activities/local';
import { analyseTraffic, shiftTraffic, undoTraffic } from '../activities/local/traffic';
import type { StepOutcome } from '../activities/types';
import { runLoad } from '../client/load';
import type { LocalApp, LocalPostgres, LocalTraffic } from '../activities/local/provider';
import type { AppStep, TrafficAnalysis, TrafficStep } from '../plan/types';
import { runtimeCommand, setServerWeight, stopApp, type SandboxState } from '../sandbox';
import { runActivity } from './support/local-ops';

const MIGRATION = 'test-local-traffic';
const database: LocalPostgres = { name: 'shop-source', kind: 'postgres', provider: 'local', cluster: 'source' };
const app: LocalApp = { name: 'shop-app', kind: 'app', provider: 'local', color: 'green' };
const front: LocalTraffic = { name: 'front-door', kind: 'traffic', provider: 'local', backend: 'app', stable: 'blue', canary: 'green' };
const resources = { [database.name]: database, [app.name]: app, [front.name]: front };
const common = {
  phaseIndex: 4,
  retry: { maximumAttempts: 1, initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s' },
  timeouts: { startToClose: '5m', heartbeat: '30s' },
};
// Green on the source database: the data phase is not under test here, and the orders are there.
const appStep: AppStep = { ...common, id: '4-app', kind: 'app', title: 'Start v2 on green', resource: app.name, version: 'v2', database: database.name };
const trafficStep = (weight: number, analysis: Partial<TrafficAnalysis> = {}): TrafficStep => ({
  ...common,
  id: '5-traffic',
  kind: 'traffic',
  title: `Shift ${weight}% to green`,
  resource: front.name,
  weight,
  bake: '1m',
  analysis: { maxErrorRate: 0.05, minRequests: 50, ...analysis },
});

let state: SandboxState;
let started: StepOutcome | undefined;

function activityEnv() {
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });
  return <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> => env.run<A, R, typeof fn>(fn, ...args);
}
const run = activityEnv();
const input = <S>(step: S) => ({ migrationId: MIGRATION, step, resources });

const weight = async (server: string) => Number(/^\d+/.exec(await runtimeCommand(state.haproxy!.runtimeApi, `get weight app/${server}`))![0]);
const setFault = (errorRate: number) =>
  fetch(`http://127.0.0.1:${state.ports.appGreen}/admin/fault`, { method: 'POST', body: JSON.stringify({ errorRate }) }).then((r) => expect(r.status).toBe(200));
/** Bounded loopback load through the front door, spread over order ids the seed holds. */
const load = (maxRequests: number) =>
  runLoad({ url: (n) => `${state.haproxy!.frontendUrl}/api/orders/${1 + (n % 1000)}`, ratePerSecond: 100, durationMs: 20_000, maxRequests });

describe('local app and traffic phases', () => {
  beforeAll(async () => {
    state = sandboxState();
    expect(state.apps.green).toBeUndefined();
    expect([await weight('blue'), await weight('green')]).toEqual([256, 0]);
  });

  // Always, also after a failure: other test files share this sandbox.
  afterAll(async () => {
    state = sandboxState();
    if (state.apps.green) await setFault(0).catch(() => undefined);
    await setServerWeight(state, 'blue', 256);
    await setServerWeight(state, 'green', 0);
    if (started) await run(undoApp, { ...input(appStep), undo: started.undo }).catch(() => undefined);
    await stopApp(sandboxState(), 'green');
    expect(sandboxState().apps.green).toBeUndefined();
  });

  it('starts green with the step version, and keeps it on a second call', async () => {
    started = await run(updateApp, input(appStep));
    expect(started.figures).toEqual({ 'shop-app.port': state.ports.appGreen, 'shop-app.version': 'v2', 'shop-app.database': 'source', 'shop-app.started': true });
    expect(started.undo).toEqual({ color: 'green', previous: null });
    const pid = sandboxState().apps.green?.pid;
    const health = await fetch(`http://127.0.0.1:${state.ports.appGreen}/health`);
    expect(await health.json()).toMatchObject({ color: 'green', version: 'v2', database: { ok: true } });

    const again = await run(updateApp, input(appStep));
    expect(again.figures['shop-app.started']).toBe(false);
    // Its undo would keep green: this call did not start it.
    expect(again.undo).toEqual({ color: 'green', previous: { version: 'v2', database: 'source' } });
    expect(sandboxState().apps.green?.pid).toBe(pid);
  });

  it('shifts half the traffic to green, sees it split and passes the analysis', async () => {
    const shift = await run(shiftTraffic, input(trafficStep(50)));
    expect(shift.figures).toMatchObject({ 'front-door.canaryWeight': 128, 'front-door.stableWeight': 128 });
    expect(shift.undo).toEqual({ stable: 256, canary: 0 });
    expect([await weight('blue'), await weight('green')]).toEqual([128, 128]);

    const traffic = await load(200);
    expect(traffic.failed).toBe(0);
    expect(traffic.byColor.green! / traffic.sent).toBeGreaterThan(0.3);
    expect(traffic.byColor.blue! / traffic.sent).toBeGreaterThan(0.3);

    const verdict = await run(analyseTraffic, { ...input(trafficStep(50)), baseline: shift.baseline });
    expect(verdict.pass, verdict.reason).toBe(true);
    expect(verdict.figures['front-door.requests']).toBe(traffic.byColor.green);
    expect(verdict.figures['front-door.errorRate']).toBe(0);
    expect(verdict.figures['front-door.observedCanaryShare']).toBeGreaterThan(0.3);
    expect(verdict.figures['front-door.observedCanaryShare']).toBeLessThan(0.7);
    expect(verdict.figures['front-door.weight']).toBe(50);
  });

  it('calls the analysis inconclusive without enough traffic, unless the plan asks for none', async () => {
    const shift = await run(shiftTraffic, input(trafficStep(50)));
    expect(shift.summary).toContain('already routed');
    const strict = await run(analyseTraffic, { ...input(trafficStep(50, { minRequests: 1000 })), baseline: shift.baseline });
    expect(strict).toMatchObject({ pass: false, inconclusive: true });
    expect(strict.reason).toMatch(/^not enough traffic: \d+ requests, the plan asks for at least 1000\.$/);
    const lenient = await run(analyseTraffic, { ...input(trafficStep(50, { minRequests: 0 })), baseline: shift.baseline });
    expect(lenient.pass).toBe(true);
  });

  it('fails the analysis when green answers errors', async () => {
    await setFault(1);
    const shift = await run(shiftTraffic, input(trafficStep(50)));
    const traffic = await load(200);
    expect(traffic.failed).toBe(traffic.byColor.green);
    const verdict = await run(analyseTraffic, { ...input(trafficStep(50)), baseline: shift.baseline });
    expect(verdict.pass).toBe(false);
    expect(verdict.reason).toBe(
      `the canary green failed ${traffic.byColor.green} of ${traffic.byColor.green} requests, an error rate of 100.0% above the plan's maximum of 5.0%.`,
    );
    expect(verdict.figures['front-door.errorRate']).toBe(1);
    await setFault(0);
  });

  it('judges a long bake every few seconds over its sliding window, and ends it within seconds of green starting to fail', async () => {
    // What a worker registers: the dispatcher's bake over the local provider's analysis.
    const { bakeTraffic } = createActivities({ local: localProvider });
    const step = { ...trafficStep(50, { interval: '2s' }), bake: '2m' };
    const shift = await run(shiftTraffic, input(step));
    const bakeMs = 120_000;
    const until = Date.now() + bakeMs;
    // Shoppers the whole time; green turns bad a few seconds in.
    const traffic = runLoad({ url: (n) => `${state.haproxy!.frontendUrl}/api/orders/${1 + (n % 1000)}`, ratePerSecond: 50, durationMs: 12_000, maxRequests: 600 });
    const fault = new Promise((resolve) => setTimeout(resolve, 5_000)).then(() => setFault(1));
    try {
      const verdict = await run(bakeTraffic, { ...input(step), baseline: shift.baseline });
      await fault;
      expect(verdict).toMatchObject({ pass: false, inconclusive: false });
      expect(verdict.reason).toMatch(/^the canary green failed \d+ of its last \d+ requests \(2s\), an error rate of [\d.]+% above the plan's maximum of 5\.0%\.$/);
      // Judged several times, and ended long before the bake would have.
      expect(verdict.figures['front-door.judgements']).toBeGreaterThan(1);
      expect(Date.now()).toBeLessThan(until - bakeMs / 2);
    } finally {
      await fault.catch(() => undefined);
      await setFault(0);
      await traffic;
    }
  });

  it('calls a bake too quiet for a verdict inconclusive at its end, not a failure', async () => {
    const { bakeTraffic } = createActivities({ local: localProvider });
    const step = { ...trafficStep(50, { interval: '1s', minRequests: 100_000 }), bake: '3s' };
    const shift = await run(shiftTraffic, input(step));
    const until = Date.now() + 3_000;
    const verdict = await run(bakeTraffic, { ...input(step), baseline: shift.baseline });
    expect(verdict).toMatchObject({ pass: false, inconclusive: true });
    expect(Date.now()).toBeGreaterThanOrEqual(until);
  });

  it('undo sends all traffic back to blue', async () => {
    const undone = await run(undoTraffic, { ...input(trafficStep(50)), undo: { stable: 256, canary: 0 } });
    expect(undone.summary).toContain('all traffic back on blue');
    expect([await weight('blue'), await weight('green')]).toEqual([256, 0]);
    const traffic = await load(100);
    expect(traffic.byColor).toEqual({ blue: traffic.sent });

    const again = await run(undoTraffic, { ...input(trafficStep(50)) });
    expect(again.summary).toContain('already on blue');
  });

  it('undo of the app step stops green, which the step started', async () => {
    const undone = await run(undoApp, { ...input(appStep), undo: started!.undo });
    expect(undone.figures).toEqual({ 'shop-app.stopped': true });
    expect(sandboxState().apps.green).toBeUndefined();
    await expect(fetch(`http://127.0.0.1:${state.ports.appGreen}/health`)).rejects.toThrow();
  });

  it('undo of a retried app step stops green, though the retry found it healthy and recorded it as the previous instance', async () => {
    expect(sandboxState().apps.green).toBeUndefined();
    const before = await run(observeApp, input(appStep));
    expect(before).toEqual({ color: 'green', previous: null });
    // The first attempt starts green; its result is lost.
    const first = await runActivity(updateApp, [input(appStep)]);
    expect(first.result.figures).toMatchObject({ 'shop-app.started': true });
    // A retry without that attempt's heartbeat takes its green for what ran before: the wrong record.
    const blind = await run(updateApp, input(appStep));
    expect(blind.undo).toMatchObject({ previous: { version: 'v2' } });
    // With the heartbeat, the retry keeps "nothing ran".
    const resumed = await runActivity(updateApp, [input(appStep)], { info: { heartbeatDetails: first.heartbeats.at(-1), attempt: 2 } });
    expect(resumed.result.undo).toEqual({ color: 'green', previous: null });

    const undone = await run(undoApp, { ...input(appStep), undo: blind.undo, before });
    expect(undone.figures).toEqual({ 'shop-app.stopped': true });
    expect(sandboxState().apps.green).toBeUndefined();
  });
});
