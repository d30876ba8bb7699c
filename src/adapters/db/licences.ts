import { sql, type Kysely, type Transaction } from 'kysely';
import type { SubscribedSku } from '../sources/entra.js';
import type { Database } from './schema.js';

/**
 * Records a customer's tenant licences as Graph reports them now. A SKU the tenant no longer lists
 * stays on record with nothing enabled (provisioning that needs it then blocks, rather than going
 * unchecked). flowthru's own assignments are kept apart (licence_assignments) and never reset.
 */
export async function refreshLicences(db: Kysely<Database>, customerId: number, skus: readonly SubscribedSku[]): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx
      .updateTable('licences')
      .set({ enabled: 0, consumed: 0, refreshed_at: sql<Date>`now()` })
      .where('customer_id', '=', customerId)
      .where('sku_part_number', 'not in', [...skus.map((s) => s.skuPartNumber), ''])
      .execute();
    for (const sku of skus) {
      const row = { customer_id: customerId, sku_part_number: sku.skuPartNumber, sku_id: sku.skuId, enabled: sku.enabled, consumed: sku.consumed };
      await tx
        .insertInto('licences')
        .values(row)
        .onConflict((oc) => oc.columns(['customer_id', 'sku_part_number']).doUpdateSet({ ...row, refreshed_at: sql<Date>`now()` }))
        .execute();
    }
  });
}

/**
 * Gives a user one licence of each SKU they do not hold yet, all or none. Free is what the tenant
 * has enabled, less what it reports consumed, less what flowthru has assigned (flowthru does not
 * assign licences in the tenant yet, so its assignments are never in `consumed`). Returns the
 * reason when one is short or unknown to the tenant, and assigns nothing then. A customer with no
 * licences on record (no Entra source synced yet) is not checked. The licence rows stay locked
 * until the caller's transaction ends, so concurrent provisionings cannot both take the last one.
 */
export async function takeLicences(tx: Transaction<Database>, customerId: number, userId: string, skus: readonly string[]): Promise<string | null> {
  if (skus.length === 0) return null;
  const known = await tx.selectFrom('licences').select('sku_part_number').where('customer_id', '=', customerId).limit(1).execute();
  if (known.length === 0) return null;
  const held = new Set(
    (await tx.selectFrom('licence_assignments').select('sku_part_number').where('customer_id', '=', customerId).where('user_id', '=', userId).execute()).map(
      (r) => r.sku_part_number,
    ),
  );
  const wanted = [...new Set(skus)].filter((sku) => !held.has(sku)).sort();
  if (wanted.length === 0) return null;
  // Lock first, count after: in READ COMMITTED each statement sees what committed before it began,
  // so a count taken in the locking statement would predate the holder we waited for.
  const rows = await tx
    .selectFrom('licences')
    .select(['sku_part_number', 'enabled', 'consumed'])
    .where('customer_id', '=', customerId)
    .where('sku_part_number', 'in', wanted)
    .orderBy('sku_part_number')
    .forUpdate()
    .execute();
  const assigned = new Map(
    (
      await tx
        .selectFrom('licence_assignments')
        .select((eb) => ['sku_part_number', eb.fn.countAll<string>().as('n')])
        .where('customer_id', '=', customerId)
        .where('sku_part_number', 'in', wanted)
        .groupBy('sku_part_number')
        .execute()
    ).map((r) => [r.sku_part_number, Number(r.n)]),
  );
  for (const sku of wanted) {
    const row = rows.find((r) => r.sku_part_number === sku);
    if (!row) return `the tenant has no ${sku} licences (not among its subscribed SKUs)`;
    const inUse = row.consumed + (assigned.get(sku) ?? 0);
    if (row.enabled - inUse <= 0) {
      return `no ${sku} licence left (${row.enabled} enabled, ${inUse} in use): add licences to the tenant, then retry`;
    }
  }
  await tx
    .insertInto('licence_assignments')
    .values(wanted.map((sku) => ({ customer_id: customerId, sku_part_number: sku, user_id: userId })))
    .execute();
  return null;
}

/** Gives back the licences a user holds through flowthru that their services no longer need. */
export async function releaseLicences(tx: Transaction<Database>, customerId: number, userId: string, keep: readonly string[]): Promise<void> {
  await tx
    .deleteFrom('licence_assignments')
    .where('customer_id', '=', customerId)
    .where('user_id', '=', userId)
    .where('sku_part_number', 'not in', [...keep, ''])
    .execute();
}
