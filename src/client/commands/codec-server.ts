import { once } from 'node:events';
import { InvalidArgumentError, type Command } from 'commander';
import { pino } from 'pino';
import { AesGcmPayloadCodec, payloadKeysFromEnv } from '../../adapters/temporal/codec.js';
import { readSettings } from '../../settings.js';
import { startCodecServer, type CodecServer } from '../codec-server.js';
import { UserError, type CliIo } from '../cli.js';
import { isLoopback } from '../loopback.js';

/*
 * `flowthru codec-server`: decodes flowthru's encrypted payloads for Temporal UI and the Temporal
 * CLI (Temporal's remote codec protocol). It holds the payload keys, so it listens on loopback
 * unless a token guards it.
 */

export const DEFAULT_CODEC_PORT = 8234;
export const DEFAULT_UI_ORIGINS = ['http://127.0.0.1:8233', 'http://localhost:8233'];


export interface CodecServerCommandOptions {
  readonly host: string;
  readonly port: number;
  readonly origins: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

/** Starts the codec server with the environment's keys and token; refuses an open address without a token. */
export async function serveCodec(options: CodecServerCommandOptions): Promise<CodecServer> {
  const env = options.env ?? process.env;
  const token = env.FLOWTHRU_CODEC_TOKEN?.trim() || undefined;
  if (!isLoopback(options.host) && token === undefined) {
    throw new UserError(`the codec server decrypts every payload it is sent: listening on ${options.host} needs FLOWTHRU_CODEC_TOKEN set (or listen on 127.0.0.1)`);
  }
  for (const origin of options.origins) {
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw new UserError(`--origin ${origin} is not a URL: give Temporal UI's address, e.g. http://127.0.0.1:8233`);
    }
    if (url.origin !== origin.replace(/\/+$/, '')) throw new UserError(`--origin ${origin}: an origin is scheme, host and port only (${url.origin})`);
  }
  const logger = pino({ name: 'flowthru-codec', level: env.LOG_LEVEL ?? 'info' });
  return startCodecServer({
    codec: new AesGcmPayloadCodec(payloadKeysFromEnv(env)),
    host: options.host,
    port: options.port,
    origins: options.origins,
    token,
    namespace: readSettings(env).temporalNamespace,
    // Refusals are worth a line; the UI's many decodes are not, unless LOG_LEVEL=debug.
    log: (entry) => (entry.status >= 400 ? logger.warn(entry, 'codec request refused') : logger.debug(entry, 'codec request')),
  });
}

export const parsePort = (value: string) => {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('a port is a number from 0 to 65535');
  return port;
};

export function registerCodecServerCommand(program: Command, io: CliIo): void {
  program
    .command('codec-server')
    .description("decode flowthru's encrypted payloads for Temporal UI and the Temporal CLI (Temporal's remote codec protocol)")
    .option('--port <port>', 'the port to listen on', parsePort, DEFAULT_CODEC_PORT)
    .option('--host <address>', 'the address to listen on (anything but loopback needs FLOWTHRU_CODEC_TOKEN)', '127.0.0.1')
    .option('--origin <url...>', "Temporal UI's origin, the one browser page allowed to call it (repeatable)", DEFAULT_UI_ORIGINS)
    .action(async (opts: { port: number; host: string; origin: string[] }) => {
      const server = await serveCodec({ host: opts.host, port: opts.port, origins: opts.origin });
      io.out(`Codec server at ${server.url} for Temporal UI at ${opts.origin.join(', ')}.`);
      io.out(`In Temporal UI: Settings (the data encoder), or start the dev server with --ui-codec-endpoint ${server.url}.`);
      io.out(`Temporal CLI:   temporal workflow show --workflow-id ID --codec-endpoint ${server.url}${process.env.FLOWTHRU_CODEC_TOKEN ? ' --codec-auth "Bearer $FLOWTHRU_CODEC_TOKEN"' : ''}`);
      await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')]);
      await server.close();
    });
}
