import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import { pino } from 'pino';
import type { Client } from '@temporalio/client';
import type { Kysely } from 'kysely';
import { loadConfigVersion } from '../adapters/db/config-store.js';
import { createDatabase } from '../adapters/db/connection.js';
import { migrateToLatest } from '../adapters/db/migrate.js';
import { closeLdapConnections } from '../adapters/sources/ldap.js';
import { createSmtpMailer } from '../adapters/mail/smtp.js';
import { TargetPlugins } from '../adapters/targets/index.js';
import type { Database } from '../adapters/db/schema.js';
import { assertSecretsSet } from '../adapters/secrets.js';
import { dataConverterFromEnv } from '../adapters/temporal/data-converter.js';
import { describeReconcile, reconcileSchedules } from '../client/schedules.js';
import { connectClient, ensureSearchAttributes, TemporalUnreachableError } from '../client/temporal.js';
import { classifyDatabaseError, databaseAddress, databaseUnavailableMessage, sqlState } from '../adapters/db/errors.js';
import type { Config } from '../domain/config/schema.js';
import type { Settings } from '../settings.js';
import { tuneWorkerHeap } from './heap.js';
import { createWorker } from './index.js';
import { withoutPersonalData } from './log.js';

export const logger = pino({ name: 'flowthru', level: process.env.LOG_LEVEL ?? 'info' });

let runtimeInstalled = false;

export interface RunningWorker {
  readonly worker: Worker;
  /** Resolves when the worker has shut down (after `stop` or a signal). */
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

/** A signal (SIGINT, SIGTERM) stopped the worker while it waited for PostgreSQL or Temporal at start. */
export class StoppedWhileWaiting extends Error {
  override readonly name = 'StoppedWhileWaiting';
}

/** The first wait between tries at start, and the longest (the wait doubles from one to the other). */
export const START_RETRY = { firstMs: 1_000, maxMs: 30_000 };

/**
 * A worker started at boot may come up before PostgreSQL or Temporal does. It waits for each,
 * trying again (1 s, doubling up to 30 s) and logging what it waits for and why each time, rather
 * than exiting into a restart loop. What cannot get better by waiting (a malformed address, a
 * refused login, a database that does not exist) is thrown at once.
 */
async function untilAvailable<T>(what: string, attempt: () => Promise<T>, whileDown: (error: unknown) => string | null, signal: AbortSignal): Promise<T> {
  for (let wait = START_RETRY.firstMs, tries = 1; ; tries++, wait = Math.min(wait * 2, START_RETRY.maxMs)) {
    if (signal.aborted) throw new StoppedWhileWaiting(`stopped while waiting for ${what}`);
    try {
      return await attempt();
    } catch (error) {
      const reason = whileDown(error);
      if (reason === null) throw error;
      // A signal that came while the attempt ran (a connect can take its 10 s) ends the wait now.
      if (signal.aborted) throw new StoppedWhileWaiting(`stopped while waiting for ${what}`);
      logger.warn({ waitingFor: what, tries, retryInMs: wait }, `${reason}; the worker tries again in ${Math.round(wait / 1000)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, wait);
        signal.addEventListener('abort', done, { once: true });
        function done() {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          resolve();
        }
      });
    }
  }
}

/** Why PostgreSQL (at `where`) cannot be used for now (down, restarting, unreachable), or null when waiting cannot help. */
const databaseDown = (where: string | undefined) => (error: unknown): string | null => {
  if (classifyDatabaseError(error) !== 'transient') return null;
  const code = sqlState(error);
  // A refused login or an unknown database is the operator's to fix, not PostgreSQL's to come up.
  if (code === '28000' || code === '28P01' || code === '3D000') return null;
  return databaseUnavailableMessage(error, where) ?? `the database${where ? ` at ${where}` : ''} is not answering (${error instanceof Error ? error.message : String(error)})`;
};

/** Why Temporal cannot be reached for now, or null when waiting cannot help (a malformed TEMPORAL_ADDRESS). */
function temporalDown(error: unknown): string | null {
  if (error instanceof TemporalUnreachableError) return error.malformed ? null : error.message;
  const message = error instanceof Error ? error.message : String(error);
  return /failed to connect|deadline|unavailable|connection refused|transport/i.test(message) ? `Temporal is not answering: ${message}` : null;
}

/**
 * Migrates the schema and reads the newest configuration. A worker without a secret the
 * configuration names would fail every sync or email needing it, one by one and much later: it
 * refuses to start instead (MissingSecrets), before anything else starts.
 */
async function prepareDatabase(db: Kysely<Database>, url: string, env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<Config | undefined> {
  try {
    await untilAvailable('PostgreSQL', () => migrateToLatest(db), databaseDown(databaseAddress(url)), signal);
    const newest = await loadConfigVersion(db);
    if (newest) assertSecretsSet(newest.version, newest.config, env);
    return newest?.config;
  } catch (error) {
    await db.destroy();
    throw error;
  }
}

/** Starts a worker with everything it needs; SIGINT/SIGTERM shut it down gracefully. */
export async function startWorker(
  settings: Settings,
  options: { handleSignals?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<RunningWorker> {
  const env = options.env ?? process.env;
  // A signal while the worker waits at start (for PostgreSQL or Temporal) stops the wait.
  const starting = new AbortController();
  const abortStart = () => starting.abort();
  if (options.handleSignals) for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, abortStart);
  let running: RunningWorker;
  try {
    running = await start(settings, env, options, starting.signal);
  } finally {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.removeListener(signal, abortStart);
  }
  // A signal after the waits but before the worker ran (registering search attributes, bundling
  // the workflows) is honoured now rather than lost.
  if (starting.signal.aborted) {
    await running.stop();
    throw new StoppedWhileWaiting('stopped while starting');
  }
  return running;
}

async function start(settings: Settings, env: NodeJS.ProcessEnv, options: { handleSignals?: boolean }, signal: AbortSignal): Promise<RunningWorker> {
  const heapGrowth = tuneWorkerHeap();
  // No key, no worker: a missing or malformed payload key stops it here, in one sentence, rather
  // than failing workflows one by one later (PayloadKeyError).
  const dataConverter = dataConverterFromEnv(env);
  const db = createDatabase(settings.databaseUrl, { max: 20 });
  const config = await prepareDatabase(db, settings.databaseUrl, env, signal);
  if (!runtimeInstalled) {
    const level = logger.levelVal >= 50 ? 'ERROR' : 'WARN';
    const debug = logger.levelVal <= 20;
    Runtime.install({ logger: new DefaultLogger(level, (entry) => logger.warn(withoutPersonalData(entry.meta, debug), entry.message)), shutdownSignals: [] });
    runtimeInstalled = true;
  }
  let client: Client;
  try {
    client = await untilAvailable(`Temporal at ${settings.temporalAddress}`, () => connectClient(settings, env), temporalDown, signal);
  } catch (error) {
    await db.destroy();
    throw error;
  }
  try {
    const added = await ensureSearchAttributes(client);
    if (added.length > 0) logger.info({ added }, 'registered search attributes');
  } catch (error) {
    logger.warn({ err: error }, 'could not register search attributes; register them with temporal operator search-attribute create');
  }
  if (config) {
    // An apply that could not reach Temporal left the schedules behind the configuration: catch up.
    try {
      const changes = describeReconcile(await reconcileSchedules(client, config, settings.taskQueue));
      if (changes) logger.info({ changes }, 'reconciled schedules with the configuration');
    } catch (error) {
      logger.warn({ err: error }, 'could not reconcile schedules; flowthru config apply reconciles them too');
    }
  }
  const connection = await NativeConnection.connect({ address: settings.temporalAddress });
  const mailer = createSmtpMailer();
  const plugins = new TargetPlugins();
  const worker = await createWorker({ connection, client, dataConverter, db, mailer, plugins, namespace: settings.temporalNamespace, taskQueue: settings.taskQueue });
  logger.info({ taskQueue: settings.taskQueue, namespace: settings.temporalNamespace, temporal: settings.temporalAddress, heapGrowingPercent: heapGrowth ?? 'as set' }, 'worker started');

  const done = worker.run().finally(async () => {
    mailer.close();
    await closeLdapConnections();
    await plugins.close();
    await connection.close();
    await client.connection.close();
    await db.destroy();
    logger.info('worker stopped');
  });
  const stop = async () => {
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await done;
  };
  if (options.handleSignals) {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      process.once(signal, () => {
        logger.info({ signal }, 'shutting down');
        void stop();
      });
    }
  }
  return { worker, done, stop };
}
