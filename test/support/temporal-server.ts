import { createServer } from 'node:net';
import { startTemporalDevServer, type DevServer } from '../../src/demo/temporal-dev-server.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** The Temporal dev server for a test run: in memory, headless, on a free port. */
export async function startDevServer(): Promise<DevServer> {
  return startTemporalDevServer({ port: await freePort(), uiPort: 0, headless: true });
}
