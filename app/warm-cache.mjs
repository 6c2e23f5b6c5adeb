#!/usr/bin/env node
// The demo shop's cache warm-up (seed 002, step 3.2): reads the most recent orders and the stats page
// through one of the sandbox app's instances, so its database's caches are warm before users arrive.
// A run step runs it: `node app/warm-cache.mjs green [count]`. It finds the instance's port in the
// sandbox's state file (TIERSHIFT_HOME, else .tiershift beside this folder), prints its progress, and
// exits 1 if any read fails, so the step fails.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [color = 'green', countArg = '200'] = process.argv.slice(2);
const count = Number(countArg);
if (!['blue', 'green'].includes(color) || !Number.isInteger(count) || count < 1 || count > 10_000) {
  console.error('usage: warm-cache.mjs [blue|green] [count of orders, 1..10000]');
  process.exit(2);
}
const home = process.env.TIERSHIFT_HOME ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '.tiershift');
const state = JSON.parse(readFileSync(path.join(home, 'state.json'), 'utf8'));
const app = state.apps?.[color];
if (!app) {
  console.error(`the sandbox's ${color} app is not running (${home}); deploy it first`);
  process.exit(1);
}
const base = `http://127.0.0.1:${app.port}`;
const stats = await fetch(`${base}/api/stats`);
if (!stats.ok) {
  console.error(`GET /api/stats answered ${stats.status}`);
  process.exit(1);
}
const { orders = count } = await stats.json().catch(() => ({}));
let failed = 0;
const last = Math.max(1, Number(orders) || count);
for (let i = 0; i < count; i += 1) {
  const id = Math.max(1, last - i);
  const res = await fetch(`${base}/api/orders/${id}`);
  await res.arrayBuffer();
  if (res.status >= 500) failed += 1;
  if ((i + 1) % 50 === 0) console.log(`warmed ${i + 1}/${count} orders on ${color}`);
}
console.log(`cache warm: ${count} orders read on ${color} (${base}), ${failed} failed`);
process.exit(failed ? 1 : 0);
