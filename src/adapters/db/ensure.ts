import pg from 'pg';
import { assertDatabaseUrl } from './connection.js';
import { sqlState } from './errors.js';

/** The database a connection string names, and the same server's maintenance database. */
function databaseOf(connectionString: string): { name: string; admin: string } {
  const url = new URL(connectionString);
  const name = decodeURIComponent(url.pathname.slice(1)) || (url.username ? decodeURIComponent(url.username) : 'postgres');
  const admin = new URL(url);
  admin.pathname = '/postgres';
  return { name, admin: admin.toString() };
}

export class DatabaseMissing extends Error {}

/**
 * Creates the database DATABASE_URL names when the server does not have it yet (what `createdb`
 * would do), connecting to the server's `postgres` database for that. Returns the name when it
 * created one, null when it was there. A database that cannot be created is one sentence saying how.
 */
export async function ensureDatabase(connectionString: string): Promise<string | null> {
  assertDatabaseUrl(connectionString);
  const probe = new pg.Client({ connectionString });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return null;
  } catch (error) {
    if (sqlState(error) !== '3D000') throw error;
  } finally {
    await probe.end().catch(() => undefined);
  }
  const { name, admin } = databaseOf(connectionString);
  const client = new pg.Client({ connectionString: admin });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(`create database "${name.replaceAll('"', '""')}"`);
    return name;
  } catch (error) {
    // Another process created it meanwhile: fine.
    if (sqlState(error) === '42P04') return null;
    throw new DatabaseMissing(
      `database "${name}" does not exist and could not be created (${(error as Error).message}): create it (createdb ${name}) or point DATABASE_URL at an existing one`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}
