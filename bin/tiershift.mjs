#!/usr/bin/env node
// Entry point: loads the TypeScript CLI through tsx so there is no build step to forget. On a Node older than
// 22 it first runs itself again on the Node that `npm run setup` installed (bin/supported-node.mjs), so
// `npx tiershift` works on a machine whose own Node is too old; tsx is imported only after that choice.
import { reexecIfUnsupported } from './supported-node.mjs';

if (!reexecIfUnsupported()) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../client/cli.ts');
}
