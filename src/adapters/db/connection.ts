import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { databaseUrlProblem } from './errors.js';
import type { Database } from './schema.js';

// bigint (int8) stays a string: ids must not lose precision; counts are cast where read.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => value);

/** DATABASE_URL is not a PostgreSQL URL: said before anything tries to connect with it. */
export class DatabaseUrlError extends Error {
  override readonly name = 'DatabaseUrlError';
}

/** Throws DatabaseUrlError when `url` is not a PostgreSQL URL (see databaseUrlProblem). */
export function assertDatabaseUrl(url: string): void {
  const problem = databaseUrlProblem(url);
  if (problem) throw new DatabaseUrlError(problem);
}

export function createDatabase(connectionString: string, options: { max?: number } = {}): Kysely<Database> {
  assertDatabaseUrl(connectionString);
  const pool = new pg.Pool({ connectionString, max: options.max ?? 10 });
  // A connection the server drops (a restart, 57P01) emits 'error' on its client. pg-pool listens on
  // idle clients only (and re-emits on the pool); a client checked out at that moment has no
  // listener, and an unhandled 'error' event ends the process. The query in flight rejects anyway
  // and the broken client is discarded on release; the next query connects anew.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
