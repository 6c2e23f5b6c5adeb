// Docker's counterpart of the sandbox's blob seeding: uploads the demo `assets` blobs into the
// compose Azurite (named in docker/state.json) once it answers; a no-op when they are already there.
import { seedAssets } from '../sandbox/azurite';
import { sleep } from '../sandbox/process';
import { readState, sandboxHome } from '../contract/home';

const accounts = readState(sandboxHome())?.azurite?.accounts;
if (!accounts) throw new Error(`no Azurite accounts in ${sandboxHome()}/state.json`);
for (let attempt = 1; ; attempt++) {
  try {
    await seedAssets(accounts, console.log);
    break;
  } catch (err) {
    if (attempt >= 30) throw err;
    await sleep(1_000);
  }
}
