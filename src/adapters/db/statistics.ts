import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

/*
 * The planner's statistics of the tables a sync changes in bulk. A sync of a fresh inventory holds
 * thousands of numbers within minutes, where statistics taken at `config apply` say nobody holds
 * one; with those, a lookup of one user's numbers was planned as a scan of every held number (it
 * made a 100,000-user sync slow down as it went). Autovacuum refreshes statistics at most once a
 * minute per database, and not at all where it is off (PostgreSQL's default is on; some
 * installations, CI machines among them, turn it off), so a sync refreshes them itself when a
 * table has changed as much as autovacuum's own threshold allows.
 */

/** The tables whose lookups by user a sync's pipelines make, and whose contents a sync changes most. */
export const BULK_TABLES = ['users', 'number_inventory', 'user_services', 'email_outbox'] as const;

/** Autovacuum's default analyze threshold: 50 rows plus a tenth of the table. */
const BASE_THRESHOLD = 50;
const SCALE_FACTOR = 0.1;

/**
 * Analyzes those of the bulk tables that changed by more than autovacuum's default threshold since
 * their last analyze (by anyone: autovacuum, `config apply`, this). Another session analyzing a
 * table at the same moment is not waited for (`skip_locked`). Returns the tables analyzed.
 */
export async function refreshStatistics(db: Kysely<Database>): Promise<string[]> {
  const { rows } = await sql<{ relname: string }>`
    select relname from pg_stat_user_tables
    where schemaname = current_schema() and relname in (${sql.join([...BULK_TABLES])})
      and n_mod_since_analyze > ${BASE_THRESHOLD}::float8 + ${SCALE_FACTOR}::float8 * greatest(n_live_tup, 0)
    order by relname`.execute(db);
  const tables = rows.map((r) => r.relname);
  if (tables.length > 0) await sql`analyze (skip_locked) ${sql.join(tables.map((t) => sql.table(t)))}`.execute(db);
  return tables;
}

/**
 * refreshStatistics at most once per `intervalMs` in this process: a sync reads a page every few
 * seconds, and the check itself is a read of PostgreSQL's counters.
 */
export function statisticsRefresher(db: Kysely<Database>, intervalMs = 10_000): () => Promise<string[]> {
  let last = 0;
  return async () => {
    const now = Date.now();
    if (now - last < intervalMs) return [];
    last = now;
    return refreshStatistics(db);
  };
}
