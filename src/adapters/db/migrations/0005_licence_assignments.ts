/* eslint-disable @typescript-eslint/no-explicit-any -- a migration sees the schema as it was, not as it is typed now */
import { sql, type Kysely } from 'kysely';

/*
 * Which user holds which tenant licence through flowthru, one row per (user, SKU), instead of a
 * count that each refresh reset: flowthru does not assign licences in the tenant (yet), so the
 * tenant's `consumed` never includes them and a reset handed the same licences out again. A user
 * holding a SKU through two services holds it once; a service removed gives its licence back.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('licence_assignments')
    .addColumn('customer_id', 'integer', (c) => c.notNull())
    .addColumn('sku_part_number', 'text', (c) => c.notNull())
    .addColumn('user_id', 'bigint', (c) => c.notNull())
    .addColumn('assigned_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('licence_assignments_pk', ['customer_id', 'sku_part_number', 'user_id'])
    .addForeignKeyConstraint('licence_assignments_user_fk', ['customer_id', 'user_id'], 'users', ['customer_id', 'id'], (fk) => fk.onDelete('cascade'))
    .execute();
  await sql`create index licence_assignments_user_idx on licence_assignments (user_id)`.execute(db);
  await db.schema.alterTable('licences').dropColumn('taken').execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('licences').addColumn('taken', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.dropTable('licence_assignments').execute();
}
