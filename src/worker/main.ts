import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import { pino } from 'pino';
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
import { connectClient, ensureSearchAttributes } from '../client/temporal.js';
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

/**
 * A worker without a secret the configuration names would fail every sync or email needing it, one
 * by one and much later: it refuses to start instead (MissingSecrets), before anything else starts.
 */
async function prepareDatabase(db: Kysely<Database>, env: NodeJS.ProcessEnv): Promise<Config | undefined> {
  try {
    await migrateToLatest(db);
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
  const heapGrowth = tuneWorkerHeap();
  // No key, no worker: a missing or malformed payload key stops it here, in one sentence, rather
  // than failing workflows one by one later (PayloadKeyError).
  const dataConverter = dataConverterFromEnv(env);
  const db = createDatabase(settings.databaseUrl, { max: 20 });
  const config = await prepareDatabase(db, env);
  if (!runtimeInstalled) {
    const level = logger.levelVal >= 50 ? 'ERROR' : 'WARN';
    const debug = logger.levelVal <= 20;
    Runtime.install({ logger: new DefaultLogger(level, (entry) => logger.warn(withoutPersonalData(entry.meta, debug), entry.message)), shutdownSignals: [] });
    runtimeInstalled = true;
  }
  const client = await connectClient(settings, env, { probe: false });
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
