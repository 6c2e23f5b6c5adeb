// `tiershift demo`: the whole loop on one machine — sandbox, worker, a plan started, its gates approved
// (by you from a second terminal, or by the demo with --yes), and the outcome.
import { NativeConnection } from '@temporalio/worker';
import path from 'node:path';
import { loadPlan } from '../plan/load';
import { PROJECT_ROOT } from '../sandbox/binaries';
import { sandboxStatus, sandboxUp } from '../sandbox';
import { createWorker } from '../worker/worker';
import { TERMINAL_STATES, type MigrationStatus } from '../workflows/shared';
import { connectClient, workflowUrl } from './connection';
import { formatStatus } from './format';
import { approveGate, migrationStatus, startMigration } from './migrations';

export const DEMO_PLAN = path.join(PROJECT_ROOT, 'plans', 'demo.yaml');

export interface DemoOptions {
  plan?: string;
  autoApprove: boolean;
  by: string;
  log?: (line: string) => void;
}

export async function runDemo(opts: DemoOptions): Promise<MigrationStatus> {
  const log = opts.log ?? console.log;
  const plan = loadPlan(opts.plan ?? DEMO_PLAN);
  log('Starting the sandbox (Temporal, PostgreSQL x2, Azurite, HAProxy, demo app)...');
  const state = await sandboxUp({ log: (line) => log(`  ${line}`) });
  const unhealthy = (await sandboxStatus({ home: state.home })).filter((s) => !s.healthy);
  if (unhealthy.length) throw new Error(`sandbox services are not healthy: ${unhealthy.map((s) => `${s.name} (${s.detail})`).join(', ')}`);

  const { client, resolved } = await connectClient({ address: state.temporal?.address });
  const connection = await NativeConnection.connect({ address: resolved.address });
  try {
    const worker = await createWorker({ connection, namespace: resolved.namespace });
    return await worker.runUntil(async () => {
      const handle = await startMigration(client, plan, opts.by, { id: `migration-${plan.name}-${Date.now().toString(36)}` });
      log(`Started ${handle.workflowId} from ${path.relative(process.cwd(), plan.source) || plan.source}`);
      const url = workflowUrl(resolved, handle.workflowId);
      if (url) log(`Temporal UI: ${url}`);
      let last = '';
      for (;;) {
        const status = await migrationStatus(client, handle.workflowId);
        const current = status.steps.find((s) => s.id === status.currentStep);
        const line = status.pendingGate ? `gate ${status.pendingGate.gate}` : `${status.state}${current ? `: ${current.title}` : ''}`;
        if (line !== last) {
          log(`  ${line}`);
          last = line;
          const gate = status.pendingGate;
          if (gate && opts.autoApprove) {
            const approver = gate.approvers.find((a) => a !== opts.by) ?? 'demo-approver';
            await approveGate(client, handle.workflowId, { gate: gate.gate, by: approver, comment: 'approved by tiershift demo --yes' });
            log(`  approved gate ${gate.gate} as ${approver}`);
          } else if (gate) {
            log(`  waiting for you: tiershift approve ${handle.workflowId} --gate ${gate.gate} --by <name>`);
          }
        }
        if (TERMINAL_STATES.includes(status.state)) {
          log('');
          log(formatStatus(status));
          if (url) log(`\nSee it in the Temporal UI: ${url}`);
          return status;
        }
        await new Promise((r) => setTimeout(r, 500));
      }
    });
  } finally {
    await connection.close();
  }
}
