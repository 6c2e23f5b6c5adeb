// `npm run setup -- --with-temporal-server`, and the test command before vitest: builds the real Temporal
// server for `tiershift sandbox up --temporal cluster` when it is missing (sandbox/temporal-server-build.ts),
// and says in one line that it is there otherwise. Progress goes to stderr while Go downloads and compiles.
import { UserError } from '../contract/errors';
import { buildTemporalServer } from '../sandbox/temporal-server-build';

try {
  await buildTemporalServer();
} catch (err) {
  if (!(err instanceof UserError)) throw err;
  console.error(`temporal-server: ${err.message}`);
  process.exit(1);
}
