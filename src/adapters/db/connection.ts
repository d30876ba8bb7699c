import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.js';

// bigint (int8) stays a string: ids must not lose precision; counts are cast where read.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => value);

export function createDatabase(connectionString: string, options: { max?: number } = {}): Kysely<Database> {
  const pool = new pg.Pool({ connectionString, max: options.max ?? 10 });
  // An idle client's error (the server restarting) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
