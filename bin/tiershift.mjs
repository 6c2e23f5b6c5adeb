#!/usr/bin/env node
// Entry point. On a Node older than 22 it first runs itself again on the Node that `npm run setup` installed
// (bin/supported-node.mjs), so `npx tiershift` works on a machine whose own Node is too old; on a supported Node
// there is no second process. It then runs the compiled CLI in dist/ when that was built from the sources as
// they are (bin/dist.mjs), else the TypeScript through tsx, so there is no build step to forget: an edited
// source is run as edited. TIERSHIFT_FROM_SOURCE=1 always runs the sources.
import { reexecIfUnsupported } from './supported-node.mjs';

if (!reexecIfUnsupported()) {
  // V8's compiled code for the modules kept on disk between runs (Node 22.1+): the Temporal client, gRPC and
  // protobufjs are parsed and compiled anew by every command otherwise, a fifth of what `status` spends.
  const { enableCompileCache } = await import('node:module');
  enableCompileCache?.();
  const { canRunDist, distIsCurrent, registerDistResolution } = await import('./dist.mjs');
  if (canRunDist && !process.env.TIERSHIFT_FROM_SOURCE && distIsCurrent()) {
    registerDistResolution();
    await import('../dist/client/cli.js');
  } else {
    const { register } = await import('tsx/esm/api');
    register();
    await import('../client/cli.ts');
  }
}
