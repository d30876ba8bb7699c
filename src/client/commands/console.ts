import { once } from 'node:events';
import type { Command } from 'commander';
import { pino } from 'pino';
import { readSettings } from '../../settings.js';
import { UserError, type CliIo } from '../cli.js';
import { parsePort } from './codec-server.js';

/** The console's port (8235): beside Temporal UI's 8233 and the codec server's 8234. */
export const DEFAULT_CONSOLE_PORT = 8235;

export function registerConsoleCommand(program: Command, io: CliIo): void {
  program
    .command('console')
    .option('--host <address>', 'the address to listen on; beyond loopback FLOWTHRU_CONSOLE_TOKEN must be set', '127.0.0.1')
    .option('--port <port>', 'the port to listen on', parsePort, DEFAULT_CONSOLE_PORT)
    .option('--read-only', 'show everything, take no action (help-desk use)')
    .description('the web console: customers, users, numbers, syncs and schedules, with a few confirmed actions')
    .action(async (opts: { host: string; port: number; readOnly?: boolean }) => {
      // Fastify and the views load when the console runs, not at every start of the CLI.
      const { ConsoleRefused, startConsole } = await import('../../console/server.js');
      const logger = pino({ name: 'flowthru-console', level: process.env.LOG_LEVEL ?? 'info' });
      let running;
      try {
        running = await startConsole({ settings: readSettings(), host: opts.host, port: opts.port, token: process.env.FLOWTHRU_CONSOLE_TOKEN, readOnly: Boolean(opts.readOnly), logger });
      } catch (error) {
        if (error instanceof ConsoleRefused) throw new UserError(error.message);
        if ((error as { code?: string }).code === 'EADDRINUSE') throw new UserError(`port ${opts.port} on ${opts.host} is in use: choose another with --port`);
        throw error;
      }
      io.out(`flowthru console at ${running.url}${opts.readOnly ? ' (read-only)' : ''}${process.env.FLOWTHRU_CONSOLE_TOKEN ? '; requests need FLOWTHRU_CONSOLE_TOKEN' : ''}. Ctrl-C stops it.`);
      await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
      await running.close();
    });
}
