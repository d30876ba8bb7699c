/* eslint-disable @typescript-eslint/no-explicit-any -- a migration sees the schema as it was, not as it is typed now */
import { sql, type Kysely } from 'kysely';

/*
 * A customer's tenant licences (Microsoft Graph subscribedSkus), refreshed by each sync of an Entra
 * source. Profiles name licences by SKU part number; provisioning takes one when it grants a
 * service that needs it, and blocks the user when none is left.
 */
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('licences')
    .addColumn('customer_id', 'integer', (c) => c.notNull().references('customers.id').onDelete('cascade'))
    .addColumn('sku_part_number', 'text', (c) => c.notNull())
    .addColumn('sku_id', 'text', (c) => c.notNull())
    .addColumn('enabled', 'integer', (c) => c.notNull())
    // What the tenant reported as consumed at the last refresh.
    .addColumn('consumed', 'integer', (c) => c.notNull())
    // Taken by flowthru's provisioning since that refresh (the next refresh's `consumed` includes them).
    .addColumn('taken', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('refreshed_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('licences_pk', ['customer_id', 'sku_part_number'])
    .addCheckConstraint('licences_counts_check', sql`enabled >= 0 and consumed >= 0 and taken >= 0`)
    .execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('licences').execute();
}
