/* eslint-disable @typescript-eslint/no-explicit-any -- migrations run against any schema version */
import { sql, type Kysely } from 'kysely';

/*
 * The console (flowthru console) and operators' actions:
 * - transaction_log kind `operator`: an action an operator took (retry, trigger a sync, pause a
 *   schedule, let held deletions through), with who took it, from the CLI or the console;
 * - users by status, for the console's "needs attention" and its status filter at 100,000 users;
 * - sync runs (the sync's own entry, the one with a run id) newest first, for the console's syncs;
 * - the console's free-text search (username, email, external id) as a trigram index, where the
 *   server has pg_trgm (a trusted extension since PostgreSQL 13); without it the search scans.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table transaction_log drop constraint transaction_log_kind_check`.execute(db);
  await sql`alter table transaction_log add constraint transaction_log_kind_check
    check (kind in ('sync', 'step', 'config', 'operator'))`.execute(db);
  await sql`create index users_status_idx on users (customer_id, status)`.execute(db);
  await sql`create index transaction_log_sync_runs_idx on transaction_log (customer_id, id) where kind = 'sync' and run_id is not null`.execute(db);
  await sql`do $$ begin
      create extension if not exists pg_trgm;
    exception when others then
      raise notice 'pg_trgm is not available (%): the console''s text search scans the users', sqlerrm;
    end $$`.execute(db);
  await sql`do $$ begin
      if exists (select 1 from pg_extension where extname = 'pg_trgm') then
        create index users_search_idx on users using gin ((${sql.raw(USER_SEARCH_TEXT)}) gin_trgm_ops);
      end if;
    end $$`.execute(db);
}

/** What the console's free-text search looks in: username, email and external id, a newline apart (a search box holds none). */
export const USER_SEARCH_TEXT = "coalesce(username, '') || E'\\n' || coalesce(email, '') || E'\\n' || external_id";

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index if exists users_search_idx`.execute(db);
  await sql`drop index transaction_log_sync_runs_idx`.execute(db);
  await sql`drop index users_status_idx`.execute(db);
  await sql`delete from transaction_log where kind = 'operator'`.execute(db);
  await sql`alter table transaction_log drop constraint transaction_log_kind_check`.execute(db);
  await sql`alter table transaction_log add constraint transaction_log_kind_check
    check (kind in ('sync', 'step', 'config'))`.execute(db);
}
