/* eslint-disable @typescript-eslint/no-explicit-any -- a migration sees the schema as it was, not as it is typed now */
import { sql, type Kysely } from 'kysely';

/*
 * Lookups that 0001 left to scans, found by the 10,000-user benchmark: at that size the pipeline's
 * number queries scanned the whole pool per user and PostgreSQL used most of the machine.
 * - the numbers a user holds (a rerun finds its reservation; the welcome email names the number);
 * - numbers whose cooling period may have ended (the reservation frees them first).
 */
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index number_inventory_holder_idx on number_inventory (user_id) where user_id is not null`.execute(db);
  await sql`create index number_inventory_cooling_idx on number_inventory (customer_id, cooling_until) where status = 'cooling'`.execute(db);
}

export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index number_inventory_cooling_idx`.execute(db);
  await sql`drop index number_inventory_holder_idx`.execute(db);
}
