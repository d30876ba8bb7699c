import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import { pino } from 'pino';
import { createDatabase } from '../adapters/db/connection.js';
import { migrateToLatest } from '../adapters/db/migrate.js';
import { closeLdapConnections } from '../adapters/sources/ldap.js';
import { createSmtpMailer } from '../adapters/mail/smtp.js';
import { connectClient, ensureSearchAttributes } from '../client/temporal.js';
import type { Settings } from '../settings.js';
import { createWorker } from './index.js';

export const logger = pino({ name: 'flowthru', level: process.env.LOG_LEVEL ?? 'info' });

let runtimeInstalled = false;

export interface RunningWorker {
  readonly worker: Worker;
  /** Resolves when the worker has shut down (after `stop` or a signal). */
  readonly done: Promise<void>;
  stop(): Promise<void>;
}

/** Starts a worker with everything it needs; SIGINT/SIGTERM shut it down gracefully. */
export async function startWorker(settings: Settings, options: { handleSignals?: boolean } = {}): Promise<RunningWorker> {
  if (!runtimeInstalled) {
    const level = logger.levelVal >= 50 ? 'ERROR' : 'WARN';
    Runtime.install({ logger: new DefaultLogger(level, (entry) => logger.warn(entry.meta ?? {}, entry.message)), shutdownSignals: [] });
    runtimeInstalled = true;
  }
  const db = createDatabase(settings.databaseUrl, { max: 20 });
  await migrateToLatest(db);
  const client = await connectClient(settings);
  try {
    const added = await ensureSearchAttributes(client);
    if (added.length > 0) logger.info({ added }, 'registered search attributes');
  } catch (error) {
    logger.warn({ err: error }, 'could not register search attributes; register them with temporal operator search-attribute create');
  }
  const connection = await NativeConnection.connect({ address: settings.temporalAddress });
  const mailer = createSmtpMailer();
  const worker = await createWorker({ connection, client, db, mailer, namespace: settings.temporalNamespace, taskQueue: settings.taskQueue });
  logger.info({ taskQueue: settings.taskQueue, namespace: settings.temporalNamespace, temporal: settings.temporalAddress }, 'worker started');

  const done = worker.run().finally(async () => {
    mailer.close();
    await closeLdapConnections();
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
