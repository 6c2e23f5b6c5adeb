// 1. Approval latency: from the approval call returning to the next activity starting (measured inside
// that activity, same process and clock), p50/p95 over N gates; approvals by Update (what
// `tiershift approve` sends) beside approvals by Signal (`temporal workflow signal`). Both migrations
// run at once on one worker with no-op activities; their gates are approved alternately.
import type { WorkflowHandle } from '@temporalio/client';
import { parsePlan } from '../plan/load';
import { createWorker } from '../worker/worker';
import { workerIdentityPolicy } from '../activities/identity';
import type { migration } from '../workflows/migration';
import { approveSignal, approveUpdate, statusQuery } from '../workflows/shared';
import { completed, eventually, ms, now, percentile, stamp, startOn, table, type BenchContext, type Section } from './lib';
import { noopActivities } from '../test/support/scripted-activities';

const QUEUE = 'bench-approval';

function approvalPlan(gates: number) {
  const phases = ['  - check: { resources: [db] }'];
  for (let i = 1; i <= gates; i++) phases.push(`  - gate: { name: g${i} }`, '  - check: { resources: [db] }');
  return parsePlan(
    `apiVersion: tiershift/v1
identity: unverified
name: bench-approval
resources:
  db: { kind: postgres, provider: local, cluster: source }
phases:
${phases.join('\n')}
`,
    'bench-approval.yaml',
  );
}

/** Activity start times by `${workflowId}/${stepId}`, with waiters for the ones still to come. */
class Starts {
  private seen = new Map<string, number>();
  private waiting = new Map<string, (at: number) => void>();
  record(key: string, at: number): void {
    if (this.seen.has(key)) return;
    this.seen.set(key, at);
    this.waiting.get(key)?.(at);
  }
  wait(key: string, timeoutMs: number): Promise<number> {
    const at = this.seen.get(key);
    if (at !== undefined) return Promise.resolve(at);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`activity ${key} did not start within ${timeoutMs} ms of the approval`)), timeoutMs);
      this.waiting.set(key, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
    });
  }
}

type Method = 'update' | 'signal';

export async function approvalLatency(ctx: BenchContext): Promise<Section> {
  const gates = ctx.sizes.gates;
  const plan = approvalPlan(gates);
  const starts = new Starts();
  const worker = await createWorker({ identityPolicy: workerIdentityPolicy({ sandbox: true }),
    connection: ctx.connection,
    taskQueue: QUEUE,
    activities: noopActivities((_name, input, at) => starts.record(`${input.migrationId}/${input.step.id}`, at)),
  });
  const samples: Record<Method, { returnedToStart: number[]; sentToStart: number[]; call: number[] }> = {
    update: { returnedToStart: [], sentToStart: [], call: [] },
    signal: { returnedToStart: [], sentToStart: [], call: [] },
  };
  await worker.runUntil(async () => {
    const id = stamp();
    const handles: Record<Method, WorkflowHandle<typeof migration>> = {
      update: await startOn(ctx.client, plan, QUEUE, `bench-approval-update-${id}`),
      signal: await startOn(ctx.client, plan, QUEUE, `bench-approval-signal-${id}`),
    };
    for (let i = 0; i < gates; i++) {
      const gateIndex = plan.steps.findIndex((s) => s.kind === 'gate' && s.gate === `g${i + 1}`);
      const next = plan.steps[gateIndex + 1]!;
      for (const method of ['update', 'signal'] as const) {
        const handle = handles[method];
        const gate = `g${i + 1}`;
        await eventually(() => handle.query(statusQuery), (s) => s.pendingGate?.gate === gate, 60_000, `gate ${gate} of ${handle.workflowId} open`, 20);
        const started = starts.wait(`${handle.workflowId}/${next.id}`, 60_000);
        const sent = now();
        if (method === 'update') await handle.executeUpdate(approveUpdate, { args: [{ gate, by: 'bob', comment: 'bench' }] });
        else await handle.signal(approveSignal, { gate, by: 'bob', comment: 'bench' });
        const returned = now();
        const at = await started;
        samples[method].returnedToStart.push(at - returned);
        samples[method].sentToStart.push(at - sent);
        samples[method].call.push(returned - sent);
      }
    }
    await Promise.all([completed(handles.update), completed(handles.signal)]);
  });

  const row = (label: string, pick: (m: Method) => number[], p: number) => [label, ms(percentile(pick('update'), p)), ms(percentile(pick('signal'), p))];
  const negatives = samples.update.returnedToStart.filter((v) => v < 0).length;
  return {
    title: '1. Approval latency',
    method:
      `Two migrations of the same plan (${gates} gates, a no-op check activity after each) run at once on one worker; their gates are approved alternately, ` +
      'one by the `approve` Update (what `tiershift approve` sends), the other by the `approve-signal` Signal. The next activity records `performance.now()` when it starts, ' +
      `in the same process as the client. Percentiles are nearest-rank over ${gates} gates each.`,
    body: [
      ...table(
        ['', 'tiershift: approve by Update', 'alternative: approve by Signal'],
        [
          ['gates approved', gates, gates],
          row('approval call returned → next activity started, p50', (m) => samples[m].returnedToStart, 50),
          row('approval call returned → next activity started, p95', (m) => samples[m].returnedToStart, 95),
          row('approval call sent → next activity started, p50', (m) => samples[m].sentToStart, 50),
          row('approval call sent → next activity started, p95', (m) => samples[m].sentToStart, 95),
          row('the approval call itself (round trip), p50', (m) => samples[m].call, 50),
        ],
      ),
      '',
      'An Update returns only once the workflow has run the handler, so the workflow task that opens the next step completes together with it: ' +
        `the next activity is already scheduled when \`approve\` returns (a negative figure means it started before the answer reached the client; ${negatives} of ${gates} gates). ` +
        'A Signal returns as soon as the server has stored it; the workflow task that reacts to it comes after, and the caller learns nothing about whether the approval was accepted.',
    ],
    shortfalls: [],
  };
}
