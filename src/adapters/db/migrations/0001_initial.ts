/* eslint-disable @typescript-eslint/no-explicit-any -- a migration sees the schema as it was, not as it is typed now */
import { sql, type Kysely } from 'kysely';

/*
 * Tenancy is enforced by the database, not only by queries: every table below customers carries
 * customer_id, and references between tenant tables are composite (customer_id, id) foreign keys,
 * so a row can never point at another customer's site, criteria, profile, user or number.
 */

const now = sql`now()`;

export async function up(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable('config_versions')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('document', 'jsonb', (c) => c.notNull())
    .addColumn('source_file', 'text')
    .addColumn('applied_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .addColumn('applied_by', 'text')
    .execute();

  await db.schema
    .createTable('customers')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('display_name', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .execute();

  await db.schema
    .createTable('sites')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull().references('customers.id').onDelete('restrict'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('display_name', 'text')
    .addColumn('position', 'integer', (c) => c.notNull())
    .addUniqueConstraint('sites_customer_name_key', ['customer_id', 'name'])
    .addUniqueConstraint('sites_customer_id_key', ['customer_id', 'id'])
    .execute();

  await db.schema
    .createTable('criteria')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull().references('customers.id').onDelete('restrict'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('usage', 'text', (c) => c.notNull().check(sql`usage in ('move', 'ftp')`))
    .addColumn('condition', 'jsonb', (c) => c.notNull())
    .addUniqueConstraint('criteria_customer_name_key', ['customer_id', 'name'])
    // Lets references demand a usage: a site's move criteria must be 'move' criteria.
    .addUniqueConstraint('criteria_customer_id_usage_key', ['customer_id', 'id', 'usage'])
    .execute();

  await db.schema
    .createTable('site_defaults')
    .addColumn('site_id', 'integer', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull())
    .addColumn('default_role', 'text')
    .addColumn('locale', 'text')
    .addColumn('time_zone', 'text')
    .addForeignKeyConstraint('site_defaults_site_fk', ['customer_id', 'site_id'], 'sites', ['customer_id', 'id'], (fk) =>
      fk.onDelete('cascade'),
    )
    .execute();

  await db.schema
    .createTable('site_move_criteria')
    .addColumn('site_id', 'integer', (c) => c.notNull())
    .addColumn('customer_id', 'integer', (c) => c.notNull())
    .addColumn('user_type', 'text', (c) => c.notNull().check(sql`user_type in ('microsoft', 'ldap', 'cucm', 'webex', 'csv')`))
    .addColumn('criteria_id', 'integer', (c) => c.notNull())
    .addColumn('criteria_usage', 'text', (c) => c.notNull().defaultTo('move').check(sql`criteria_usage = 'move'`))
    .addPrimaryKeyConstraint('site_move_criteria_pk', ['site_id', 'user_type'])
    .addForeignKeyConstraint('site_move_criteria_site_fk', ['customer_id', 'site_id'], 'sites', ['customer_id', 'id'], (fk) =>
      fk.onDelete('cascade'),
    )
    .addForeignKeyConstraint(
      'site_move_criteria_criteria_fk',
      ['customer_id', 'criteria_id', 'criteria_usage'],
      'criteria',
      ['customer_id', 'id', 'usage'],
    )
    .execute();

  await db.schema
    .createTable('user_profiles')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull().references('customers.id').onDelete('restrict'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('role', 'text')
    .addColumn('number_from', 'text', (c) => c.check(sql`number_from in ('site', 'customer')`))
    .addColumn('services', 'jsonb', (c) => c.notNull().defaultTo(sql`'[]'::jsonb`))
    .addUniqueConstraint('user_profiles_customer_name_key', ['customer_id', 'name'])
    .addUniqueConstraint('user_profiles_customer_id_key', ['customer_id', 'id'])
    .execute();

  await db.schema
    .createTable('ftp_criteria')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull().references('customers.id').onDelete('restrict'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addUniqueConstraint('ftp_criteria_customer_name_key', ['customer_id', 'name'])
    .addUniqueConstraint('ftp_criteria_customer_id_key', ['customer_id', 'id'])
    .execute();

  await db.schema
    .createTable('ftp_rules')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull())
    .addColumn('ftp_criteria_id', 'integer', (c) => c.notNull())
    .addColumn('position', 'integer', (c) => c.notNull())
    .addColumn('criteria_id', 'integer', (c) => c.notNull())
    .addColumn('criteria_usage', 'text', (c) => c.notNull().defaultTo('ftp').check(sql`criteria_usage = 'ftp'`))
    .addColumn('profile_id', 'integer', (c) => c.notNull())
    .addColumn('role', 'text')
    .addUniqueConstraint('ftp_rules_position_key', ['ftp_criteria_id', 'position'])
    .addForeignKeyConstraint('ftp_rules_ftp_criteria_fk', ['customer_id', 'ftp_criteria_id'], 'ftp_criteria', ['customer_id', 'id'], (fk) =>
      fk.onDelete('cascade'),
    )
    .addForeignKeyConstraint(
      'ftp_rules_criteria_fk',
      ['customer_id', 'criteria_id', 'criteria_usage'],
      'criteria',
      ['customer_id', 'id', 'usage'],
    )
    .addForeignKeyConstraint('ftp_rules_profile_fk', ['customer_id', 'profile_id'], 'user_profiles', ['customer_id', 'id'])
    .execute();

  await db.schema
    .createTable('global_settings')
    .addColumn('customer_id', 'integer', (c) => c.primaryKey().references('customers.id').onDelete('cascade'))
    .addColumn('flow_through_enabled', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('flow_through_add_sync', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('flow_through_update_sync', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('ftp_criteria_id', 'integer')
    .addColumn('number_assignment_on_move', 'text', (c) =>
      c.notNull().defaultTo('assign-new').check(sql`number_assignment_on_move in ('assign-new', 'keep-existing')`),
    )
    .addColumn('update_sync_profile_id', 'integer')
    .addColumn('prevent_duplicate_numbers', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('number_cooling_enabled', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('number_cooling_days', 'integer', (c) => c.notNull().defaultTo(30).check(sql`number_cooling_days >= 0`))
    .addColumn('welcome_email', 'jsonb', (c) => c.notNull())
    .addColumn('smtp', 'jsonb')
    .addColumn('delete_threshold', 'text')
    .addForeignKeyConstraint('global_settings_ftp_criteria_fk', ['customer_id', 'ftp_criteria_id'], 'ftp_criteria', ['customer_id', 'id'])
    .addForeignKeyConstraint('global_settings_update_profile_fk', ['customer_id', 'update_sync_profile_id'], 'user_profiles', [
      'customer_id',
      'id',
    ])
    .execute();

  await db.schema
    .createTable('sync_sources')
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull().references('customers.id').onDelete('restrict'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull().check(sql`type in ('csv', 'ldap', 'entra', 'cucm', 'webex')`))
    .addColumn('user_type', 'text', (c) => c.notNull().check(sql`user_type in ('microsoft', 'ldap', 'cucm', 'webex', 'csv')`))
    .addColumn('settings', 'jsonb', (c) => c.notNull())
    .addColumn('attribute_map', 'jsonb', (c) => c.notNull())
    // Incremental sync state: a delta link, a modifyTimestamp or a USN, written after a successful sync.
    .addColumn('watermark', 'jsonb')
    .addUniqueConstraint('sync_sources_customer_name_key', ['customer_id', 'name'])
    .addUniqueConstraint('sync_sources_customer_id_key', ['customer_id', 'id'])
    .execute();

  await db.schema
    .createTable('users')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull())
    .addColumn('source_id', 'integer', (c) => c.notNull())
    .addColumn('external_id', 'text', (c) => c.notNull())
    .addColumn('user_type', 'text', (c) => c.notNull())
    .addColumn('username', 'text')
    .addColumn('email', 'text')
    .addColumn('attributes', 'jsonb', (c) => c.notNull())
    // Hash of the source record: an unchanged record is recognised without comparing attributes.
    .addColumn('source_hash', 'text', (c) => c.notNull())
    // The sync that last imported a change: a retried page read finds the users it imported again.
    .addColumn('imported_by', 'text')
    .addColumn('ldap_entry', 'jsonb')
    .addColumn('site_id', 'integer')
    .addColumn('role', 'text')
    .addColumn('profile_id', 'integer')
    .addColumn('status', 'text', (c) =>
      c
        .notNull()
        .defaultTo('imported')
        .check(
          sql`status in ('imported', 'unplaced', 'moved', 'unmatched', 'provisioning', 'provisioned', 'blocked', 'failed', 'deleted')`,
        ),
    )
    .addColumn('status_reason', 'text')
    .addColumn('deleted_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .addUniqueConstraint('users_customer_source_external_key', ['customer_id', 'source_id', 'external_id'])
    .addUniqueConstraint('users_customer_id_key', ['customer_id', 'id'])
    .addForeignKeyConstraint('users_source_fk', ['customer_id', 'source_id'], 'sync_sources', ['customer_id', 'id'])
    .addForeignKeyConstraint('users_site_fk', ['customer_id', 'site_id'], 'sites', ['customer_id', 'id'])
    .addForeignKeyConstraint('users_profile_fk', ['customer_id', 'profile_id'], 'user_profiles', ['customer_id', 'id'])
    .execute();
  await db.schema.createIndex('users_site_idx').on('users').columns(['customer_id', 'site_id']).execute();

  await db.schema
    .createTable('user_services')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull())
    .addColumn('user_id', 'bigint', (c) => c.notNull())
    .addColumn('service_key', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('settings', 'jsonb', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('active').check(sql`status in ('active', 'removed')`))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .addUniqueConstraint('user_services_user_key', ['user_id', 'service_key'])
    .addForeignKeyConstraint('user_services_user_fk', ['customer_id', 'user_id'], 'users', ['customer_id', 'id'], (fk) =>
      fk.onDelete('cascade'),
    )
    .execute();

  await db.schema
    .createTable('number_inventory')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull().references('customers.id').onDelete('restrict'))
    .addColumn('site_id', 'integer')
    .addColumn('number', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c.notNull().defaultTo('available').check(sql`status in ('available', 'reserved', 'used', 'cooling')`),
    )
    .addColumn('user_id', 'bigint')
    // The workflow run that reserved the number: a retried step finds its own reservation again.
    .addColumn('reserved_by', 'text')
    .addColumn('cooling_until', 'timestamptz')
    // Copied from the customer's preventDuplicateNumbers so a partial unique index can enforce it.
    .addColumn('prevent_duplicates', 'boolean', (c) => c.notNull())
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .addForeignKeyConstraint('number_inventory_site_fk', ['customer_id', 'site_id'], 'sites', ['customer_id', 'id'])
    .addForeignKeyConstraint('number_inventory_user_fk', ['customer_id', 'user_id'], 'users', ['customer_id', 'id'])
    .addCheckConstraint('number_inventory_holder_check', sql`(status in ('reserved', 'used')) = (user_id is not null)`)
    .addCheckConstraint('number_inventory_cooling_check', sql`(status = 'cooling') = (cooling_until is not null)`)
    .execute();
  await sql`create unique index number_inventory_owner_number_key
    on number_inventory (customer_id, site_id, number) nulls not distinct`.execute(db);
  // A number is held by at most one user, whichever site's pool it came from.
  await sql`create unique index number_inventory_held_key
    on number_inventory (customer_id, number) where user_id is not null`.execute(db);
  await sql`create unique index number_inventory_no_duplicates_key
    on number_inventory (customer_id, number) where prevent_duplicates`.execute(db);
  // "Next available" is the lowest available number of a pool: shorter first, then by digits.
  await sql`create index number_inventory_available_idx
    on number_inventory (customer_id, site_id, length(number), number) where status = 'available'`.execute(db);

  await db.schema
    .createTable('email_outbox')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.notNull())
    .addColumn('user_id', 'bigint', (c) => c.notNull())
    .addColumn('event', 'text', (c) => c.notNull())
    .addColumn('message_id', 'text', (c) => c.notNull().unique())
    .addColumn('to_address', 'text', (c) => c.notNull())
    .addColumn('subject', 'text', (c) => c.notNull())
    .addColumn('html', 'text', (c) => c.notNull())
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('pending').check(sql`status in ('pending', 'sent', 'failed')`))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_error', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .addColumn('sent_at', 'timestamptz')
    .addUniqueConstraint('email_outbox_user_event_key', ['user_id', 'event'])
    .addForeignKeyConstraint('email_outbox_user_fk', ['customer_id', 'user_id'], 'users', ['customer_id', 'id'])
    .execute();

  await db.schema
    .createTable('transaction_log')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('customer_id', 'integer', (c) => c.references('customers.id'))
    .addColumn('user_id', 'bigint')
    .addColumn('kind', 'text', (c) => c.notNull().check(sql`kind in ('sync', 'step', 'config')`))
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('subject', 'text')
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('started', 'succeeded', 'failed', 'skipped', 'blocked')`))
    .addColumn('started_at', 'timestamptz', (c) => c.notNull().defaultTo(now))
    .addColumn('ended_at', 'timestamptz')
    .addColumn('error', 'text')
    .addColumn('details', 'jsonb')
    .addColumn('workflow_id', 'text')
    .addColumn('run_id', 'text')
    // One entry per workflow step: a retried activity updates its entry instead of adding another.
    .addColumn('idempotency_key', 'text', (c) => c.unique())
    .addForeignKeyConstraint('transaction_log_user_fk', ['customer_id', 'user_id'], 'users', ['customer_id', 'id'])
    .execute();
  await db.schema.createIndex('transaction_log_user_idx').on('transaction_log').columns(['user_id', 'started_at']).execute();
}

export async function down(db: Kysely<any>): Promise<void> {
  for (const table of [
    'transaction_log',
    'email_outbox',
    'number_inventory',
    'user_services',
    'users',
    'sync_sources',
    'global_settings',
    'ftp_rules',
    'ftp_criteria',
    'user_profiles',
    'site_move_criteria',
    'site_defaults',
    'criteria',
    'sites',
    'customers',
    'config_versions',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}
