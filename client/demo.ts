// `tiershift demo`: the whole loop on one machine — sandbox, worker, a plan started, its gates approved
// (by you from a second terminal, or by the demo with --yes), shoppers hitting the front door the whole
// time, and the outcome with the number of requests that failed (the goal is 0).
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker';
import path from 'node:path';
import { loadPlan } from '../plan/load';
import { PROJECT_ROOT } from '../contract/home';
import { sandboxStatus, sandboxUp } from '../sandbox';
import { migrationLeftovers, resetSandbox } from '../sandbox/reset';
import { createWorker } from '../worker/worker';
import { workerIdentityPolicy } from '../activities/identity';
import { TERMINAL_STATES, type MigrationStatus } from '../contract/status';
import { connectClient } from './connection';
import { workflowUrl } from '../contract/ui-links';
import { runLoad, type LoadResult } from './load';
import { approveGate, migrationStatus, startMigration } from './migrations';
import { decisionFields, proofFor, startStatement } from './identity';
import type { IdentityPolicy } from '../contract/identity';
import { buildReport, reportMarkdown } from './report';

export const DEMO_PLAN = path.join(PROJECT_ROOT, 'plans', 'demo.yaml');

export interface DemoOptions {
  plan?: string;
  autoApprove: boolean;
  by: string;
  log?: (line: string) => void;
}

export interface DemoResult {
  status: MigrationStatus;
  reads: LoadResult;
  writes: LoadResult;
}

/** Shoppers: order lookups and a trickle of new orders through HAProxy, bounded in rate, count and time. */
function shoppers(frontendUrl: string) {
  const abort = new AbortController();
  const common = { durationMs: 30 * 60_000, signal: abort.signal, timeoutMs: 15_000 };
  const reads = runLoad({ ...common, url: (n) => new URL(`/api/orders/${((n * 7919) % 1000) + 1}`, frontendUrl).toString(), ratePerSecond: 20, maxRequests: 36_000 });
  const writes = runLoad({ ...common, url: new URL('/api/orders', frontendUrl).toString(), method: 'POST', body: {}, ratePerSecond: 2, maxRequests: 3_600 });
  return {
    async stop(): Promise<{ reads: LoadResult; writes: LoadResult }> {
      abort.abort();
      return { reads: await reads, writes: await writes };
    },
  };
}

/**
 * The demo's two people, each signed in to the sandbox's identity provider through its sign-in form, with
 * their sessions kept apart (and apart from yours) under the sandbox home.
 */
async function signInDemoPeople(policy: Extract<IdentityPolicy, { mode: 'oidc' }>, home: string, log: (line: string) => void) {
  const { login } = await import('../identity/oidc-login');
  const signIn = async (user: string) => {
    const configDir = path.join(home, 'demo-logins', user);
    const who = await login({ issuer: policy.issuer, clientId: policy.audience, user, configDir });
    return { subject: who.subject, configDir };
  };
  const starter = await signIn('alice');
  const approver = await signIn('bob');
  log(`Signed in to ${policy.issuer} as ${starter.subject} (starts) and ${approver.subject} (approves)`);
  return { starter, approver };
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const log = opts.log ?? console.log;
  const plan = loadPlan(opts.plan ?? DEMO_PLAN);
  log('Starting the sandbox (Temporal, PostgreSQL x2, Azurite, HAProxy, demo app)...');
  const state = await sandboxUp({ log: (line) => log(`  ${line}`) });
  const unhealthy = (await sandboxStatus({ home: state.home })).filter((s) => !s.healthy);
  if (unhealthy.length) throw new Error(`sandbox services are not healthy: ${unhealthy.map((s) => `${s.name} (${s.detail})`).join(', ')}`);
  const leftovers = await migrationLeftovers(state);
  if (leftovers.length) {
    log(`A previous migration left its mark (${leftovers.join('; ')}); putting the sandbox back to before the migration:`);
    await resetSandbox(state, (line) => log(`  ${line}`));
  }

  // The demo prints its own progress; the worker's lifecycle lines would only interleave with it.
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const { client, resolved } = await connectClient({ address: state.temporal?.address });
  // The worker's connection carries the client's token (the sandbox cluster's service token, renewed), if any.
  const connection = await NativeConnection.connect({ address: resolved.address, tls: resolved.tls, apiKey: resolved.apiKey });
  resolved.apiKeySource?.onRenew((token) => connection.setApiKey(token));
  const load = shoppers(state.haproxy!.frontendUrl);
  log(`Shoppers: 20 order lookups and 2 new orders per second through ${state.haproxy!.frontendUrl}`);
  let status: MigrationStatus;
  try {
    const worker = await createWorker({ identityPolicy: workerIdentityPolicy({ sandbox: true }), connection, namespace: resolved.namespace });
    status = await worker.runUntil(async () => {
      const id = `migration-${plan.name}-${Date.now().toString(36)}`;
      // With the sandbox's identity provider, alice starts and bob approves, each signed in for real.
      const people = plan.identity?.mode === 'oidc' ? await signInDemoPeople(plan.identity, state.home, log) : undefined;
      const startProof = people ? await proofFor(plan.identity!, startStatement(id, plan.hash), { configDir: people.starter.configDir }) : undefined;
      const handle = await startMigration(client, plan, people ? '' : opts.by, { id, startProof });
      log(`Started ${handle.workflowId} from ${path.relative(process.cwd(), plan.source) || plan.source}${people ? ` as ${people.starter.subject}, verified by ${(plan.identity as { issuer: string }).issuer}` : ''}`);
      const url = workflowUrl(resolved, handle.workflowId);
      if (url) log(`Temporal UI: ${url}`);
      const reported = new Set<string>();
      let announced = '';
      for (;;) {
        const status = await migrationStatus(client, handle.workflowId);
        for (const step of status.steps) {
          const key = `${step.id}:${step.state}`;
          if (reported.has(key) || step.state === 'pending') continue;
          reported.add(key);
          // A quick step may be done before a poll ever saw it running: its title still comes first.
          if (step.kind !== 'gate' && !reported.has(`${step.id}:running`)) {
            reported.add(`${step.id}:running`);
            log(`  > ${step.title}`);
          }
          if (step.state === 'done' && step.summary) log(`    ✓ ${step.summary}`);
          if (step.state === 'failed' || step.state === 'compensated') log(`    ${step.state}: ${step.error ?? step.summary ?? ''}`);
        }
        const gate = status.pendingGate;
        if (gate && announced !== gate.gate) {
          announced = gate.gate;
          log(`  ? gate "${gate.gate}": ${gate.instructions ?? 'approval needed'}`);
          if (opts.autoApprove) {
            const comment = 'approved by tiershift demo --yes';
            if (people) {
              const fields = await decisionFields(status, 'approve', { gate: gate.gate, note: comment }, { configDir: people.approver.configDir, me: () => people.approver.subject });
              const after = await approveGate(client, handle.workflowId, { gate: gate.gate, comment, ...fields });
              log(`    approved as ${after.decisionLog?.at(-1)?.subject ?? people.approver.subject} (token verified by the worker)`);
            } else {
              const approver = gate.approvers.find((a) => a !== opts.by) ?? 'demo-approver';
              await approveGate(client, handle.workflowId, { gate: gate.gate, by: approver, comment });
              log(`    approved as ${approver} (unverified)`);
            }
          } else {
            log(
              people
                ? `    waiting for you, in another terminal: npx tiershift login --user bob && npx tiershift approve ${handle.workflowId} --gate ${gate.gate}`
                : `    waiting for you, in another terminal: npx tiershift approve ${handle.workflowId} --gate ${gate.gate} --by <name>`,
            );
          }
        }
        if (status.state === 'awaiting-operator' && announced !== `failure:${status.failure?.stepId}`) {
          announced = `failure:${status.failure?.stepId}`;
          log(`  ! ${status.failure?.stepId} failed: ${status.failure?.error}`);
          log(`    decide in another terminal: npx tiershift resume ${handle.workflowId}  or  npx tiershift rollback ${handle.workflowId} --reason "..."`);
        }
        if (TERMINAL_STATES.includes(status.state)) return status;
        await new Promise((r) => setTimeout(r, 500));
      }
    });
  } finally {
    await connection.close();
  }
  const { reads, writes } = await load.stop();
  const url = workflowUrl(resolved, status.migrationId);
  log('');
  log(reportMarkdown(buildReport(status, { url })).trimEnd());
  log('');
  const served = (r: LoadResult) => Object.entries(r.byColor).map(([color, n]) => `${n} by ${color}`).join(', ');
  const failed = reads.failed + writes.failed;
  const why = failed ? ` (by status: ${[reads, writes].flatMap((r) => Object.entries(r.byStatus)).filter(([code]) => !/^[1-4]/.test(code)).map(([code, n]) => `${code} ${n}`).join(', ')})` : '';
  log(`Shoppers through HAProxy: ${reads.sent + writes.sent} requests (${reads.sent} lookups, ${writes.sent} new orders), ${failed} failed${why}; served ${served(reads)}.`);
  if (url) log(`See it in the Temporal UI: ${url}`);
  return { status, reads, writes };
}
