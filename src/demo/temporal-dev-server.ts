import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_NAMES } from '../workflows/config.js';

export const DEFAULT_TEMPORAL_BIN = join(homedir(), '.cache', 'flowthru', 'temporal-v1.5.1', 'temporal');

export interface DevServerOptions {
  readonly port: number;
  readonly uiPort: number;
  /** A file to keep history in across restarts; in memory when absent. */
  readonly dbFile?: string;
  readonly bin?: string;
  /** No Web UI (tests). */
  readonly headless?: boolean;
  /** A codec server the Web UI decodes payloads through (flowthru codec-server). */
  readonly uiCodecEndpoint?: string;
}

export interface DevServer {
  readonly address: string;
  readonly uiUrl: string;
  /** The server's process id (the benchmark reads its CPU time). */
  readonly pid: number | undefined;
  stop(): Promise<void>;
  /** Kills the server outright (SIGKILL), as a crash would; tests restart it on the same store. */
  kill(): Promise<void>;
}

async function reachable(address: string): Promise<boolean> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: 1_000 });
    try {
      // Ready means the default namespace answers, not only the port: a server that is still
      // starting resets connections, and calls made then are retried after the caller has moved on.
      await connection.workflowService.describeNamespace({ namespace: 'default' });
      return true;
    } finally {
      await connection.close();
    }
  } catch {
    return false;
  }
}

/** Starts `temporal server start-dev` (server and Web UI) and waits until it answers. */
export async function startTemporalDevServer(options: DevServerOptions): Promise<DevServer> {
  const bin = options.bin ?? process.env.FLOWTHRU_TEMPORAL_BIN ?? DEFAULT_TEMPORAL_BIN;
  if (!existsSync(bin)) throw new Error(`no Temporal CLI at ${bin}: run ./dev.sh setup, or set FLOWTHRU_TEMPORAL_BIN`);
  const address = `127.0.0.1:${options.port}`;
  const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(options.port), '--log-level', 'error'];
  args.push(...(options.headless ? ['--headless'] : ['--ui-port', String(options.uiPort)]));
  if (options.dbFile) args.push('--db-filename', options.dbFile);
  if (options.uiCodecEndpoint && !options.headless) args.push('--ui-codec-endpoint', options.uiCodecEndpoint);
  for (const name of SEARCH_ATTRIBUTE_NAMES) args.push('--search-attribute', `${name}=Keyword`);
  const child: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const deadline = Date.now() + 60_000;
  while (!(await reachable(address))) {
    if (child.exitCode !== null) throw new Error(`the Temporal dev server exited (${child.exitCode}): ${stderr.trim()}`);
    if (Date.now() > deadline) throw new Error(`the Temporal dev server did not answer at ${address} within a minute: ${stderr.trim()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    address,
    uiUrl: `http://127.0.0.1:${options.uiPort}`,
    pid: child.pid,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    },
  };
}

export { reachable as temporalReachable };
