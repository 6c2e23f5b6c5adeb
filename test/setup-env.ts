// Every test process talks to the run's sandbox: the CLI, the activities and the client read TIERSHIFT_HOME.
import { inject } from 'vitest';

process.env.TIERSHIFT_HOME = inject('sandboxHome');
