// tiershift runs on Node.js 22 or newer. On a machine whose own Node is older, `npm run setup` installs Node 24
// into .tools/node and bin/supported-node.mjs runs the CLI (and so the worker) and the tests on it.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../contract/home';
import { isOneSentence } from './support/cli';

const BIN = path.join(PROJECT_ROOT, 'bin');
const TOOLS_NODE = path.join(PROJECT_ROOT, '.tools', 'node', 'bin', 'node');
const major = (version: string) => Number(version.replace(/^v/, '').split('.')[0]);

/** A node on PATH older than 22 (the machine's own, beside which setup installed Node 24), if there is one. */
function olderNode(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'node');
    if (!dir || !existsSync(candidate)) continue;
    try {
      if (major(execFileSync(candidate, ['-p', 'process.versions.node']).toString()) < 22) return realpathSync(candidate);
    } catch {
      // Not a runnable node: look further.
    }
  }
  return undefined;
}
const OLD_NODE = olderNode();

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(node: string, args: string[], options: { env?: NodeJS.ProcessEnv; whenReady?: (out: string, kill: (s: NodeJS.Signals) => void) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(node, args, { cwd: PROJECT_ROOT, env: { ...process.env, ...options.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => ((stdout += d.toString()), options.whenReady?.(stdout, (s) => child.kill(s))));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => (clearTimeout(timer), resolve({ code, signal, stdout, stderr })));
  });
}

const temp = mkdtempSync(path.join(os.tmpdir(), 'tiershift-node-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('the Node.js tiershift runs on', () => {
  it('the tests themselves run on Node 22 or newer', () => {
    expect(major(process.version), `vitest runs on ${process.version}; run the tests with npm test`).toBeGreaterThanOrEqual(22);
  });

  it.skipIf(!OLD_NODE || !existsSync(TOOLS_NODE))('bin/tiershift.mjs started on an older Node runs the CLI on the Node setup installed', async () => {
    // Every Node process started reports its version first: the wrapper's, then the CLI's.
    const report = path.join(temp, 'report-version.mjs');
    writeFileSync(report, 'process.stderr.write(`node ${process.version}\\n`);\n');
    const r = await run(OLD_NODE!, [path.join(BIN, 'tiershift.mjs'), 'plan', 'plans/demo.yaml'], { env: { NODE_OPTIONS: `--import ${report}` } });
    expect(r.code, r.stderr).toBe(0);
    const versions = [...r.stderr.matchAll(/^node (v[\d.]+)$/gm)].map((m) => m[1]!);
    const installed = execFileSync(TOOLS_NODE, ['--version']).toString().trim();
    expect(major(versions[0]!)).toBeLessThan(22);
    expect(versions[1]).toBe(installed);
    expect(major(installed)).toBe(24);
    expect(r.stdout).toMatch(/Nothing was run\. Start it with: tiershift start plans\/demo\.yaml/);
  });

  it.skipIf(!OLD_NODE)('on an older Node without the installed one, says in one sentence to run setup', async () => {
    // A copy of bin/ has no .tools beside it: as a clone before `npm run setup`.
    const bin = path.join(temp, 'clone', 'bin');
    mkdirSync(bin, { recursive: true });
    for (const f of ['tiershift.mjs', 'supported-node.mjs']) copyFileSync(path.join(BIN, f), path.join(bin, f));
    const r = await run(OLD_NODE!, [path.join(bin, 'tiershift.mjs'), 'plan', 'plans/demo.yaml']);
    expect(r.code).toBe(1);
    expect(isOneSentence(r.stderr), r.stderr).toBe(true);
    expect(r.stderr).toMatch(/^tiershift: this is Node\.js v\d+\.\d+\.\d+ and tiershift needs 22 or newer; run `npm run setup` \(it installs Node 24 into \.tools\/\) or install Node\.js 22 or newer\.$/m);
  });

  it('the launcher hands a SIGTERM to the process it runs and ends with its exit code', async () => {
    // What a test's stop() or a service manager does to `npx tiershift worker`: the wrapper must not die alone.
    const script = 'process.on("SIGTERM", () => { console.log("draining"); process.exit(7); }); console.log(`ready ${process.version}`); setInterval(() => {}, 1000);';
    let sent = false;
    // From an older Node the launcher needs the Node setup installed; without it (a Node 22+ first on PATH, so
    // setup installed none) the launcher runs the script on this Node.
    const launcherNode = OLD_NODE && existsSync(TOOLS_NODE) ? OLD_NODE : process.execPath;
    const r = await run(launcherNode, [path.join(BIN, 'supported-node.mjs'), '-e', script], {
      whenReady: (out, kill) => {
        if (!sent && out.includes('ready')) (sent = true), kill('SIGTERM');
      },
    });
    expect(r.stdout).toMatch(/^ready v(2[2-9]|[3-9]\d)\./m);
    expect(r.stdout).toMatch(/^draining$/m);
    expect(r).toMatchObject({ code: 7, signal: null });
  });

  it('the launcher dies of the signal that killed the process it runs', async () => {
    const r = await run(process.execPath, [path.join(BIN, 'supported-node.mjs'), '-e', 'process.kill(process.pid, "SIGKILL")']);
    expect(r).toMatchObject({ code: null, signal: 'SIGKILL' });
  });
});
