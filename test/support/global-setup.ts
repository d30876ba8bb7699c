import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { createDatabase } from '../../src/adapters/db/connection.js';
import { migrateToLatest } from '../../src/adapters/db/migrate.js';
import { startDevServer } from './temporal-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** A migrated database that test files copy (CREATE DATABASE … TEMPLATE) to get one of their own. */
    templateDatabase: string;
    adminDatabaseUrl: string;
    /** One Temporal dev server for the whole run; each test file uses task queues of its own. */
    temporalAddress: string;
  }
}

const ADMIN_URL = process.env.FLOWTHRU_TEST_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** The run's own databases share this prefix, so teardown (and a later run) can find leftovers. */
export const RUN_PREFIX = `flowthru_test_${process.pid}`;

export default async function setup(project: TestProject) {
  const template = `${RUN_PREFIX}_template`;
  await admin((c) => c.query(`create database "${template}"`));
  const url = new URL(ADMIN_URL);
  url.pathname = `/${template}`;
  const db = createDatabase(url.toString(), { max: 1 });
  try {
    await migrateToLatest(db);
  } finally {
    await db.destroy();
  }
  project.provide('templateDatabase', template);
  project.provide('adminDatabaseUrl', ADMIN_URL);
  const temporal = await startDevServer();
  project.provide('temporalAddress', temporal.address);

  return async () => {
    await temporal.stop();
    await admin(async (c) => {
      const { rows } = await c.query<{ datname: string }>(`select datname from pg_database where datname like $1`, [
        `${RUN_PREFIX}%`,
      ]);
      for (const { datname } of rows) await c.query(`drop database if exists "${datname}" with (force)`);
    });
  };
}
