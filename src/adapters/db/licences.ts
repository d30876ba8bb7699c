import { sql, type Kysely, type Transaction } from 'kysely';
import type { SubscribedSku } from '../sources/entra.js';
import type { Database } from './schema.js';

/**
 * Replaces a customer's tenant licences with what Graph reports now. `taken` starts again from 0:
 * the tenant's `consumed` includes what flowthru assigned since the last refresh.
 */
export async function refreshLicences(db: Kysely<Database>, customerId: number, skus: readonly SubscribedSku[]): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await tx
      .deleteFrom('licences')
      .where('customer_id', '=', customerId)
      .where('sku_part_number', 'not in', [...skus.map((s) => s.skuPartNumber), ''])
      .execute();
    for (const sku of skus) {
      const row = { customer_id: customerId, sku_part_number: sku.skuPartNumber, sku_id: sku.skuId, enabled: sku.enabled, consumed: sku.consumed };
      await tx
        .insertInto('licences')
        .values(row)
        .onConflict((oc) => oc.columns(['customer_id', 'sku_part_number']).doUpdateSet({ ...row, taken: 0, refreshed_at: sql<Date>`now()` }))
        .execute();
    }
  });
}

/**
 * Takes one licence of each SKU for a user, all or none. Returns the reason when one is short or
 * unknown to the tenant, and takes nothing then. A customer with no licences on record (no Entra
 * source synced yet) is not checked. The rows stay locked until the caller's transaction ends, so
 * concurrent provisionings cannot both take the last licence.
 */
export async function takeLicences(tx: Transaction<Database>, customerId: number, skus: readonly string[]): Promise<string | null> {
  if (skus.length === 0) return null;
  const known = await tx.selectFrom('licences').select('sku_part_number').where('customer_id', '=', customerId).limit(1).execute();
  if (known.length === 0) return null;
  const wanted = [...new Set(skus)].sort();
  const rows = await tx
    .selectFrom('licences')
    .select(['sku_part_number', 'enabled', 'consumed', 'taken'])
    .where('customer_id', '=', customerId)
    .where('sku_part_number', 'in', wanted)
    .orderBy('sku_part_number')
    .forUpdate()
    .execute();
  for (const sku of wanted) {
    const row = rows.find((r) => r.sku_part_number === sku);
    if (!row) return `the tenant has no ${sku} licences (not among its subscribed SKUs)`;
    if (row.enabled - row.consumed - row.taken <= 0) {
      return `no ${sku} licence left (${row.enabled} enabled, ${row.consumed + row.taken} in use): add licences to the tenant, then retry`;
    }
  }
  await tx
    .updateTable('licences')
    .set((eb) => ({ taken: eb('taken', '+', 1) }))
    .where('customer_id', '=', customerId)
    .where('sku_part_number', 'in', wanted)
    .execute();
  return null;
}
