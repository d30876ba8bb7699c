import { freePort } from '../../src/demo/ports.js';
import { startTemporalDevServer, type DevServer } from '../../src/demo/temporal-dev-server.js';


/** The Temporal dev server for a test run: in memory, headless, on a free port. */
export async function startDevServer(): Promise<DevServer> {
  return startTemporalDevServer({ port: await freePort(), uiPort: 0, headless: true });
}
