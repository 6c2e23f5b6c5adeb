// A CLI that answers at once: `--version` and `--help` load no Temporal, Azure, pg or zod module, whether the
// CLI runs compiled (dist/, built by `npm run build`) or from the sources through tsx; dist/ is run only while no
// source is newer than its build. Timings are measured in bench/cli.ts, not asserted here.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../contract/home';
import { distIsCurrent, SOURCE_DIRS } from '../bin/dist.mjs';

const BIN = path.join(PROJECT_ROOT, 'bin', 'tiershift.mjs');
const RECORDER = path.join(PROJECT_ROOT, 'test', 'support', 'loaded-modules.mjs');
const temp = mkdtempSync(path.join(os.tmpdir(), 'tiershift-startup-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

const DIST_BUILT = distIsCurrent();
const MODES = [
  { mode: 'from the sources (tsx)', env: { TIERSHIFT_FROM_SOURCE: '1' }, skip: false },
  // Built by `npm run setup`; stale or absent in a tree being edited, where the CLI runs the sources instead.
  { mode: 'compiled (dist/)', env: { TIERSHIFT_FROM_SOURCE: '' }, skip: !DIST_BUILT },
];

let runs = 0;
/** Runs the CLI with every module it resolves recorded; returns its output and those module URLs. */
function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string; modules: string[] }> {
  const out = path.join(temp, `modules-${++runs}.txt`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', RECORDER, BIN, ...args], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, ...env, TIERSHIFT_LOADED_MODULES: out },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, modules: readFileSync(out, 'utf8').split('\n').filter(Boolean) });
    });
  });
}

/** The packages among `modules` that a quick answer must not load. */
const heavy = (modules: string[]): string[] => [
  ...new Set(modules.flatMap((url) => /node_modules\/(@temporalio\/[^/]+|@azure\/[^/]+|@grpc\/[^/]+|pg|zod|yaml)\//.exec(url)?.[1] ?? [])),
];

describe.each(MODES)('tiershift $mode', ({ env, skip }) => {
  it.skipIf(skip)('--version prints the version and loads no Temporal, Azure, pg or zod module', async () => {
    const result = await run(['--version'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')).version}\n`);
    // The recorder saw the CLI itself: an empty list would pass for the wrong reason.
    expect(result.modules.some((m) => /\/client\/cli\.[jt]s$/.test(m))).toBe(true);
    expect(heavy(result.modules)).toEqual([]);
  });

  it.skipIf(skip)('--help and a usage error load none of them either', async () => {
    const help = await run(['--help'], env);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('approve [options] <id>');
    expect(heavy(help.modules)).toEqual([]);
    const wrong = await run(['list', '--state', 'sleeping'], env);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/^tiershift: --state takes one or more of running, /);
    expect(heavy(wrong.modules)).toEqual([]);
  });

  it.skipIf(skip)('a command loads what it needs when it runs: `plan` validates with zod', async () => {
    const result = await run(['plan', 'plans/minimal.yaml', '--json'], env);
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toMatchObject({ name: 'minimal' });
    expect(heavy(result.modules)).toContain('zod');
    expect(heavy(result.modules).filter((p) => p.startsWith('@temporalio/'))).toEqual([]);
  });
});

describe('which tiershift runs', () => {
  it.skipIf(!DIST_BUILT)('the compiled CLI when dist/ is up to date, the sources when TIERSHIFT_FROM_SOURCE is set', async () => {
    const compiled = await run(['--version'], { TIERSHIFT_FROM_SOURCE: '' });
    expect(compiled.modules.filter((m) => /\/client\/cli\.[jt]s$/.test(m)).map((m) => path.relative(PROJECT_ROOT, new URL(m).pathname))).toEqual(['dist/client/cli.js']);
    const source = await run(['--version'], { TIERSHIFT_FROM_SOURCE: '1' });
    expect(source.modules.filter((m) => /\/client\/cli\.[jt]s$/.test(m)).map((m) => path.relative(PROJECT_ROOT, new URL(m).pathname))).toEqual(['client/cli.ts']);
  });

  it('dist/ counts as up to date only while no source, folder or package file is newer than its build', () => {
    const root = path.join(temp, 'tree');
    for (const dir of SOURCE_DIRS) {
      mkdirSync(path.join(root, dir, 'sub'), { recursive: true });
      writeFileSync(path.join(root, dir, 'sub', 'a.ts'), 'export {};\n');
    }
    for (const file of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) writeFileSync(path.join(root, file), '{}\n');
    const current = () => distIsCurrent(root);
    // Everything a minute old, then a build stamped now.
    const past = new Date(Date.now() - 60_000);
    const age = (p: string) => utimesSync(p, past, past);
    const ageAll = () => {
      for (const dir of SOURCE_DIRS) [path.join(root, dir, 'sub', 'a.ts'), path.join(root, dir, 'sub'), path.join(root, dir)].filter(existsSync).forEach(age);
      for (const file of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) age(path.join(root, file));
    };
    ageAll();
    expect(current()).toBe(false); // no build at all
    mkdirSync(path.join(root, 'dist'));
    writeFileSync(path.join(root, 'dist', 'build-stamp.json'), JSON.stringify({ startedAt: Date.now() - 1000 }));
    expect(current()).toBe(true);

    writeFileSync(path.join(root, 'workflows', 'sub', 'a.ts'), 'export const edited = 1;\n');
    expect(current()).toBe(false); // a source edited
    ageAll();
    expect(current()).toBe(true);

    writeFileSync(path.join(root, 'package-lock.json'), '{"changed":true}\n');
    expect(current()).toBe(false); // other packages installed: the workflow bundle holds some of them
    ageAll();

    rmSync(path.join(root, 'client', 'sub', 'a.ts'));
    expect(current()).toBe(false); // a source deleted: its folder changed
  });
});
