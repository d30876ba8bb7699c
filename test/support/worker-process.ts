// A worker in a process of its own, so a test can kill it outright (SIGKILL) mid-sync.
// Environment: DATABASE_URL, TEMPORAL_ADDRESS, FLOWTHRU_TASK_QUEUE.
import { startWorker, StoppedWhileWaiting } from '../../src/worker/main.js';
import { readSettings } from '../../src/settings.js';

const running = await startWorker(readSettings(), { handleSignals: true }).catch((error: unknown) => {
  // As `flowthru worker`: SIGTERM while it waited for PostgreSQL or Temporal stops it, exit 0.
  if (error instanceof StoppedWhileWaiting) process.exit(0);
  throw error;
});
process.stdout.write('ready\n');
await running.done;
