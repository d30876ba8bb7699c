// A worker in a process of its own, so a test can kill it outright (SIGKILL) mid-sync.
// Environment: DATABASE_URL, TEMPORAL_ADDRESS, FLOWTHRU_TASK_QUEUE.
import { startWorker } from '../../src/worker/main.js';
import { readSettings } from '../../src/settings.js';

const running = await startWorker(readSettings(), { handleSignals: true });
process.stdout.write('ready\n');
await running.done;
