// `run`: a command on the worker, as an argument list (never a shell string), with environment variables
// from secret references, a timeout and its exit code judged. It runs at most once per migration unless
// the plan marks it rerunnable: a command's effects are unknown to tiershift, so a second run after a
// lost attempt could do them twice. An optional undo command runs on rollback.
import { z } from 'zod';
import type { Command, RunStep, SecretRef } from '../types';
import { duration, phaseKind, retryDetail, stepCommon, type SchemaParts } from './kit';

const argv = z.array(z.string().min(1).max(10_000), {
  error: 'expected the command as an argument list such as [node, scripts/warm-cache.mjs, --all] (a shell string is refused: nothing runs through a shell)',
}).min(1).max(200);
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' });
const command = (parts: SchemaParts) => ({
  command: argv,
  /** Variables from secret references, resolved on the worker; a value never enters the plan or history. */
  env: z.record(envName, parts.secretRef).optional(),
  /** Working directory, relative to the worker's. */
  cwd: z.string().min(1).max(1000).optional(),
});

type CommandBody = { command: string[]; env?: Record<string, SecretRef>; cwd?: string };
type Body = CommandBody & {
  id?: string;
  title?: string;
  retry?: { maximumAttempts?: number };
  timeouts?: Record<string, string>;
  timeout?: string;
  successCodes?: number[];
  rerunnable?: boolean;
  undo?: CommandBody;
};

const toCommand = (b: CommandBody): Command => ({ argv: b.command, ...(b.env ? { env: b.env } : {}), ...(b.cwd ? { cwd: b.cwd } : {}) });

/** The command exactly as it would run: each argument quoted where a reader could misread it. */
export function showCommand(c: Command): string {
  const args = c.argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
  const env = Object.entries(c.env ?? {}).map(([k, ref]) => `${k} from ${JSON.stringify(ref)}`);
  return `${args}${c.cwd ? ` (in ${c.cwd})` : ''}${env.length ? `; env ${env.join(', ')}` : ''}`;
}

export const run = phaseKind<Body>({
  schema: (parts) =>
    z.strictObject({
      ...stepCommon,
      ...command(parts),
      timeout: duration.optional(),
      successCodes: z.array(z.int().min(0).max(255)).min(1).optional(),
      rerunnable: z.boolean().optional(),
      undo: z.strictObject(command(parts)).optional(),
    }),
  resolve(b, ctx) {
    const base = ctx.base();
    const rerunnable = b.rerunnable ?? false;
    const step: RunStep = {
      ...base,
      // One attempt unless rerunnable: a retry would only find the first attempt's marker and refuse.
      retry: rerunnable ? base.retry : { ...base.retry, maximumAttempts: 1 },
      kind: 'run',
      title: ctx.title(`Run ${b.command.join(' ').slice(0, 80)}`),
      command: toCommand(b),
      timeout: b.timeout ?? '10m',
      successCodes: b.successCodes ?? [0],
      rerunnable,
      ...(b.undo ? { undo: toCommand(b.undo) } : {}),
    };
    return [step];
  },
  check(b, ctx) {
    const attempts = b.retry?.maximumAttempts;
    if (!b.rerunnable && attempts !== undefined && attempts > 1) {
      ctx.problem(
        ctx.at('retry', 'maximumAttempts'),
        `expected 1 attempt for a run step that is not rerunnable (it runs at most once per migration, so a retry could never run it again), got ${attempts}; add rerunnable: true if running it twice is harmless`,
      );
    }
  },
  undo: (step) => (step.kind === 'run' && step.undo ? `Run ${showCommand(step.undo)}` : undefined),
  describe(step) {
    if (step.kind !== 'run') return '';
    const once = step.rerunnable ? 'rerunnable' : 'at most once per migration';
    return `${retryDetail(step)}; runs exactly: ${showCommand(step.command)}; timeout ${step.timeout}, success on exit ${step.successCodes.join(' or ')}, ${once}`;
  },
  allowedAfterFinalize: true,
});
