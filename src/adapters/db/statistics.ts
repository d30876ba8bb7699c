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
 *
 * Where autovacuum is off (the server's setting, or the table's autovacuum_enabled), nothing
 * removes the row versions every update leaves behind either: the search for a pool's next free
 * number steps over every number handed out so far, and a 10,000-user sync spent half its
 * database time there. So a sync vacuums those tables too, at autovacuum's own threshold.
 */

/** The tables whose lookups by user a sync's pipelines make, and whose contents a sync changes most. */
export const BULK_TABLES = ['users', 'number_inventory', 'user_services', 'email_outbox'] as const;

/** Autovacuum's default analyze threshold: 50 rows plus a tenth of the table. */
const BASE_THRESHOLD = 50;
const SCALE_FACTOR = 0.1;
/** Autovacuum's default vacuum threshold: 50 dead rows plus a fifth of the table. */
const VACUUM_SCALE_FACTOR = 0.2;

/**
 * Analyzes those of the bulk tables that changed by more than autovacuum's default threshold since
 * their last analyze (by anyone: autovacuum, `config apply`, this), and, where autovacuum is off,
 * vacuums those holding more dead rows than its threshold (with analyze: one pass). Another
 * session working on a table at the same moment is not waited for (`skip_locked`).
 */
export async function refreshStatistics(db: Kysely<Database>): Promise<{ analyzed: string[]; vacuumed: string[] }> {
  const { rows } = await sql<{ relname: string; analyze: boolean; vacuum: boolean }>`
    select t.relname,
      t.n_mod_since_analyze > ${BASE_THRESHOLD}::float8 + ${SCALE_FACTOR}::float8 * greatest(t.n_live_tup, 0) as analyze,
      t.n_dead_tup > ${BASE_THRESHOLD}::float8 + ${VACUUM_SCALE_FACTOR}::float8 * greatest(t.n_live_tup, 0)
        and (not current_setting('autovacuum')::boolean
          or coalesce((select o.option_value from pg_options_to_table(c.reloptions) o where o.option_name = 'autovacuum_enabled'), 'on')::boolean = false) as vacuum
    from pg_stat_user_tables t join pg_class c on c.oid = t.relid
    where t.schemaname = current_schema() and t.relname in (${sql.join([...BULK_TABLES])})
    order by t.relname`.execute(db);
  const vacuumed = rows.filter((r) => r.vacuum).map((r) => r.relname);
  const analyzed = rows.filter((r) => r.analyze || r.vacuum).map((r) => r.relname);
  // VACUUM cannot run inside a transaction: each statement here runs on its own.
  if (vacuumed.length > 0) await sql`vacuum (analyze, skip_locked) ${sql.join(vacuumed.map((t) => sql.table(t)))}`.execute(db);
  const rest = analyzed.filter((t) => !vacuumed.includes(t));
  if (rest.length > 0) await sql`analyze (skip_locked) ${sql.join(rest.map((t) => sql.table(t)))}`.execute(db);
  return { analyzed, vacuumed };
}

/**
 * refreshStatistics at most once per `intervalMs` in this process: a sync reads a page every few
 * seconds, and the check itself is a read of PostgreSQL's counters.
 */
export function statisticsRefresher(db: Kysely<Database>, intervalMs = 10_000): () => Promise<{ analyzed: string[]; vacuumed: string[] }> {
  let last = 0;
  return async () => {
    const now = Date.now();
    if (now - last < intervalMs) return { analyzed: [], vacuumed: [] };
    last = now;
    return refreshStatistics(db);
  };
}
