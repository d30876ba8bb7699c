/* eslint-disable @typescript-eslint/no-explicit-any -- a migration sees the schema as it was, not as it is typed now */
import { sql, type Kysely } from 'kysely';

/*
 * What the update and delete syncs need:
 * - users.seen_by: the last sync whose full read saw the user; a delete sync offboards the users of
 *   its source it did not see. users.offboard_by: the sync that decided to offboard the user (its
 *   pipeline takes them in batches).
 * - sync_sources.running_sync: the sync holding the source; one sync of a source at a time, manual
 *   or scheduled, whatever its modes.
 * - pipeline_outcomes.placed / restored: an add places a user; an update moves one site to site.
 * - transaction_log status `held`: a delete sync whose deletions exceeded the threshold.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('users').addColumn('seen_by', 'text').addColumn('offboard_by', 'text').execute();
  await sql`create index users_offboard_idx on users (customer_id, source_id, offboard_by, id) where offboard_by is not null`.execute(db);
  await db.schema.alterTable('sync_sources').addColumn('running_sync', 'text').execute();
  await db.schema
    .alterTable('pipeline_outcomes')
    .addColumn('placed', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('restored', 'boolean', (c) => c.notNull().defaultTo(false))
    .execute();
  await sql`alter table transaction_log drop constraint transaction_log_status_check`.execute(db);
  await sql`alter table transaction_log add constraint transaction_log_status_check
    check (status in ('started', 'succeeded', 'failed', 'skipped', 'blocked', 'held'))`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`update transaction_log set status = 'skipped' where status = 'held'`.execute(db);
  await sql`alter table transaction_log drop constraint transaction_log_status_check`.execute(db);
  await sql`alter table transaction_log add constraint transaction_log_status_check
    check (status in ('started', 'succeeded', 'failed', 'skipped', 'blocked'))`.execute(db);
  await db.schema.alterTable('pipeline_outcomes').dropColumn('placed').dropColumn('restored').execute();
  await db.schema.alterTable('sync_sources').dropColumn('running_sync').execute();
  await sql`drop index users_offboard_idx`.execute(db);
  await db.schema.alterTable('users').dropColumn('seen_by').dropColumn('offboard_by').execute();
}
