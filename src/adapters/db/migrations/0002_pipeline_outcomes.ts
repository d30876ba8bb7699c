/* eslint-disable @typescript-eslint/no-explicit-any -- a migration sees the schema as it was, not as it is typed now */
import { sql, type Kysely } from 'kysely';

/*
 * How each user's pipeline ended, per sync that is waiting to hear it. Pipelines write a row with
 * a local activity as they finish; the sync reads rows for the users it has in flight, in batches.
 * (Before this, every pipeline signalled its sync: a workflow task and several events per user.)
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('pipeline_outcomes')
    .addColumn('sync_id', 'text', (c) => c.notNull())
    .addColumn('external_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'bigint', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('moved', 'boolean', (c) => c.notNull())
    .addColumn('emailed', 'boolean', (c) => c.notNull())
    .addColumn('site', 'text')
    .addColumn('profile', 'text')
    .addColumn('number', 'text')
    .addColumn('reason', 'text')
    .addColumn('recorded_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('pipeline_outcomes_pk', ['sync_id', 'external_id'])
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('pipeline_outcomes').execute();
}
