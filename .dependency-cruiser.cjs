// The layering rule, checked by `npm run lint:deps` and in `npm test`. Lower layers never import upward,
// so each can be used (and tested) without what sits above it:
//   contract < plan < activities, workflows < worker, client;  codec, sandbox, identity beside, below activities.
// Paths are relative to the project root; only the project's own folders are constrained (npm packages
// and node built-ins are free). TypeScript is read before compilation so type-only imports are seen,
// and told apart from value imports where a rule allows only types.

/** Every folder of the project: a rule "imports only X" forbids the others among these. */
const PROJECT = '^(contract|plan|codec|identity|sandbox|activities|workflows|worker|client|app|scripts|docker|bench|test|bin)/';

/** A forbidden dependency: from modules matching `from` to modules matching `to`. */
const forbid = (name, from, to, comment) => ({ name, comment, severity: 'error', from, to });

/** `from` may import, among the project's folders, only what `allowed` matches. */
const only = (name, from, allowed, comment) => forbid(name, { path: from }, { path: PROJECT, pathNot: allowed }, comment);

/** `from` may import `to` for its types only (`import type`), never its code. */
const typesOnly = (name, from, to, comment) => forbid(name, { path: from }, { path: to, dependencyTypesNot: ['type-only'] }, comment);

module.exports = {
  forbidden: [
    only('contract-imports-only-contract', '^contract/', '^contract/|^plan/types\\.ts$',
      'contract/ is the lowest level: what workflows, activities, client and sandbox share. It may name plan types, nothing else above it.'),
    typesOnly('contract-plan-types-only', '^contract/', '^plan/types\\.ts$',
      'contract/ may use the plan\'s types, never its code.'),
    only('plan-imports-only-contract-and-provider-declarations', '^plan/',
      '^(contract|plan)/|^activities/registry\\.ts$|^activities/[^/]+/provider\\.ts$|^identity/ssh\\.ts$',
      'Loading a plan needs no worker or Temporal: only the contract, what each provider declares about its plan fields, and the allowed-signers rules.'),
    only('codec-imports-only-contract', '^codec/', '^(contract|codec)/',
      'The codec runs in the worker, the CLI and the codec server alike.'),
    only('identity-imports-only-contract', '^identity/', '^(contract|identity)/',
      'Signing in and verifying tokens serve the CLI, the worker and an offline audit alike.'),
    only('sandbox-imports-only-contract-codec-identity', '^sandbox/', '^(contract|codec|identity|sandbox)/',
      'The sandbox stands up processes; it knows nothing of migrations.'),
    only('activities-import-only-contract-plan-identity-sandbox', '^activities/', '^(contract|plan|identity|activities|sandbox)/',
      'Activities run a resolved plan step; what the workflow and they share lives in contract/.'),
    forbid('only-the-local-provider-uses-the-sandbox', { path: '^activities/', pathNot: '^activities/local/' }, { path: '^sandbox/' },
      'The sandbox is the local provider\'s world; another provider reaching into it would only work on a developer\'s machine.'),
    only('workflows-import-only-contract-plan', '^workflows/', '^(contract|plan|workflows|activities)/',
      'Workflow code is bundled into the Temporal worker\'s deterministic sandbox: no providers, clients, processes or I/O.'),
    typesOnly('workflows-import-only-activity-types', '^workflows/', '^activities/',
      'Workflows call activities through proxies and need only their signatures.'),
    forbid('worker-not-client-or-tools', { path: '^worker/' }, { path: '^(client|test|bench|scripts)/' },
      'The worker is deployed without the CLI, tests and benchmarks; what both need belongs in contract/.'),
    forbid('product-not-tests-or-bench', { path: '^(contract|plan|codec|identity|sandbox|activities|workflows|worker|client|app|scripts|docker|bin)/' }, { path: '^(test|bench)/' },
      'Shipped code must not depend on tests or benchmarks (they may depend on it).'),
    forbid('bench-uses-only-test-support', { path: '^bench/' }, { path: '^test/', pathNot: '^test/support/' },
      'Benchmarks share fixtures (plans, shoppers, instant activities) with the tests, never test files themselves.'),
    only('app-is-standalone', '^app/', '^app/',
      'The demo shop is a separate process (its own container): it shares nothing with tiershift but npm packages.'),
    only('docker-imports-only-contract-and-sandbox', '^docker/', '^(contract|codec|sandbox|docker)/',
      'Container helpers seed services as the sandbox does, from its state.'),
    only('bin-imports-only-client', '^bin/', '^(bin|client)/', 'The executable only picks a supported Node (bin/supported-node.mjs) and starts the CLI.'),
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    // Read TypeScript before compilation, so `import type` is seen (and marked type-only) rather than erased.
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.mjs', '.js', '.json'] },
  },
};
