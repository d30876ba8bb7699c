import { createHash } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import { expandRange } from '../../domain/numbers.js';
import { licencesOf } from '../../domain/services.js';
import type { CustomerConfig } from '../../domain/config/schema.js';
import type { ResolvedConfig } from '../../domain/config/resolved.js';
import type { ConfigProblem } from '../../domain/config/validate.js';
import type { Database } from './schema.js';

/** Applying would orphan or lose data; nothing was written. */
export class ConfigApplyRefused extends Error {
  constructor(readonly problems: ConfigProblem[]) {
    super(`configuration not applied: ${problems.map((p) => p.message).join('; ')}`);
    this.name = 'ConfigApplyRefused';
  }
}

export interface ApplyResult {
  readonly version: number;
  readonly changed: boolean;
  readonly hash: string;
}

/** Serialises with keys in order so the same configuration always hashes the same. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function configHash(config: ResolvedConfig): string {
  return createHash('sha256').update(stableJson(config)).digest('hex');
}

// A fixed key for pg_advisory_xact_lock: two applies never interleave.
const APPLY_LOCK = 0x666c6f77;

type Tx = Transaction<Database>;
type Refusals = ConfigProblem[];

async function upsertByName<T extends 'criteria' | 'user_profiles' | 'ftp_criteria' | 'sites' | 'sync_sources'>(
  tx: Tx,
  table: T,
  customerId: number,
  rows: readonly Record<string, unknown>[],
): Promise<Map<string, number>> {
  const ids = new Map<string, number>();
  for (const row of rows) {
    const values = { ...row, customer_id: customerId };
    const { id } = await tx
      .insertInto(table as 'criteria')
      .values(values as never)
      .onConflict((oc) => oc.columns(['customer_id', 'name']).doUpdateSet(values as never))
      .returning('id')
      .executeTakeFirstOrThrow();
    ids.set(row.name as string, id);
  }
  return ids;
}

async function usersReferencing(
  tx: Tx,
  customerId: number,
  column: 'site_id' | 'profile_id' | 'source_id',
  ids: number[],
): Promise<Map<number, number>> {
  if (ids.length === 0) return new Map();
  const rows = await tx
    .selectFrom('users')
    .select([column, sql<string>`count(*)`.as('count')])
    .where('customer_id', '=', customerId)
    .where('deleted_at', 'is', null)
    .where(column, 'in', ids)
    .groupBy(column)
    .execute();
  return new Map(rows.map((r) => [Number(r[column as keyof typeof r]), Number(r.count)]));
}

/** Deletes rows of `table` the file no longer names, unless users still depend on them. */
async function removeUnnamed(
  tx: Tx,
  customer: { id: number; name: string; index: number },
  table: 'sites' | 'user_profiles' | 'sync_sources',
  keep: Map<string, number>,
  what: string,
  userColumn: 'site_id' | 'profile_id' | 'source_id',
  refusals: Refusals,
): Promise<void> {
  const stale = await tx
    .selectFrom(table)
    .select(['id', 'name'])
    .where('customer_id', '=', customer.id)
    .where('id', 'not in', [...keep.values(), -1])
    .execute();
  if (stale.length === 0) return;
  const inUse = await usersReferencing(tx, customer.id, userColumn, stale.map((s) => s.id));
  for (const row of stale) {
    const users = inUse.get(row.id);
    if (users) {
      refusals.push({
        path: ['customers', customer.index],
        message: `${what} "${row.name}" of customer "${customer.name}" still has ${users} user(s); move or offboard them before removing it`,
      });
    }
  }
  if (refusals.length > 0) return;
  const ids = stale.map((s) => s.id);
  // Deleted users keep their audit record; detach them from what is being removed.
  await tx.updateTable('users').set({ [userColumn]: null } as never).where('customer_id', '=', customer.id).where(userColumn, 'in', ids).execute();
  if (table === 'sites') {
    await tx.deleteFrom('number_inventory').where('customer_id', '=', customer.id).where('site_id', 'in', ids).execute();
  }
  await tx.deleteFrom(table).where('id', 'in', ids).execute();
}

async function syncNumbers(
  tx: Tx,
  customer: CustomerConfig,
  customerId: number,
  index: number,
  siteIds: Map<string, number>,
  refusals: Refusals,
): Promise<void> {
  const preventDuplicates = customer.settings.preventDuplicateNumbers;
  const pools: { siteId: number | null; ranges: CustomerConfig['numberRanges'] }[] = [
    { siteId: null, ranges: customer.numberRanges },
    ...customer.sites.map((site) => ({ siteId: siteIds.get(site.name)!, ranges: site.numberRanges })),
  ];
  await tx
    .updateTable('number_inventory')
    .set({ prevent_duplicates: preventDuplicates })
    .where('customer_id', '=', customerId)
    .where('prevent_duplicates', '!=', preventDuplicates)
    .execute();

  // The desired inventory goes through a temporary table so that comparing it with the current
  // one is two set operations, however many numbers the ranges hold.
  await sql`create temporary table if not exists desired_numbers (site_id integer, number text not null) on commit drop`.execute(tx);
  await sql`truncate desired_numbers`.execute(tx);
  for (const pool of pools) {
    let batch: { site_id: number | null; number: string }[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      await sql`insert into desired_numbers (site_id, number)
        select * from unnest(${batch.map((b) => b.site_id)}::integer[], ${batch.map((b) => b.number)}::text[])`.execute(tx);
      batch = [];
    };
    for (const range of pool.ranges) {
      for (const number of expandRange(range)) {
        batch.push({ site_id: pool.siteId, number });
        if (batch.length >= 5_000) await flush();
      }
    }
    await flush();
  }

  // Held numbers outside every range, a few of each pool: each pool's refusal points at its ranges.
  const held = await sql<{ number: string; status: string; site_id: number | null }>`
    select number, status, site_id from (
      select n.number, n.status, n.site_id, row_number() over (partition by n.site_id order by length(n.number), n.number) as nth
      from number_inventory n
      where n.customer_id = ${customerId} and n.status in ('reserved', 'used')
        and not exists (select 1 from desired_numbers d where d.site_id is not distinct from n.site_id and d.number = n.number)
    ) h where nth <= 6
    order by site_id nulls first, length(number), number`.execute(tx);
  if (held.rows.length > 0) {
    for (const pool of new Set(held.rows.map((r) => r.site_id))) {
      const rows = held.rows.filter((r) => r.site_id === pool);
      const listed = rows.slice(0, 5).map((r) => `${r.number} (${r.status})`).join(', ');
      const siteIndex = pool === null ? -1 : customer.sites.findIndex((site) => siteIds.get(site.name) === pool);
      const where = pool === null ? 'the customer pool' : siteIndex >= 0 ? `site "${customer.sites[siteIndex]!.name}"` : 'a site no longer configured';
      refusals.push({
        path: siteIndex >= 0 ? ['customers', index, 'sites', siteIndex, 'numberRanges'] : ['customers', index, 'numberRanges'],
        message: `customer "${customer.name}": numbers held by users are no longer in any range of ${where}: ${listed}${rows.length > 5 ? ', …' : ''}; release them first`,
      });
    }
    return;
  }
  await sql`delete from number_inventory n where n.customer_id = ${customerId}
    and not exists (select 1 from desired_numbers d where d.site_id is not distinct from n.site_id and d.number = n.number)`.execute(tx);
  try {
    await sql`insert into number_inventory (customer_id, site_id, number, prevent_duplicates)
      select ${customerId}, d.site_id, d.number, ${preventDuplicates} from desired_numbers d
      on conflict (customer_id, site_id, number) do nothing`.execute(tx);
  } catch (error) {
    if ((error as { code?: string }).code === '23505') {
      refusals.push({
        path: ['customers', index, 'settings', 'preventDuplicateNumbers'],
        message: `customer "${customer.name}": preventDuplicateNumbers is on but a number would exist twice (${(error as { detail?: string }).detail ?? 'duplicate number'})`,
      });
      return;
    }
    throw error;
  }
}

/**
 * Profiles name tenant licences by SKU part number: once an Entra sync has imported the customer's
 * licences, a name the tenant does not have is refused (a typo would otherwise block every user).
 */
async function checkLicences(tx: Tx, customer: CustomerConfig, customerId: number, index: number, refusals: Refusals): Promise<void> {
  const known = new Set((await tx.selectFrom('licences').select('sku_part_number').where('customer_id', '=', customerId).execute()).map((r) => r.sku_part_number));
  if (known.size === 0) return;
  for (const [p, profile] of customer.profiles.entries()) {
    for (const [k, service] of profile.services.entries()) {
      for (const sku of licencesOf(service)) {
        if (known.has(sku)) continue;
        refusals.push({
          path: ['customers', index, 'profiles', p, 'services', k],
          message: `unknown licence "${sku}": the tenant of customer "${customer.name}" has ${[...known].sort().join(', ')}`,
        });
      }
    }
  }
}

async function applyCustomer(tx: Tx, customer: CustomerConfig, index: number, refusals: Refusals): Promise<void> {
  const { id: customerId } = await tx
    .insertInto('customers')
    .values({ name: customer.name, display_name: customer.displayName ?? null })
    .onConflict((oc) => oc.column('name').doUpdateSet({ display_name: customer.displayName ?? null }))
    .returning('id')
    .executeTakeFirstOrThrow();
  const ref = { id: customerId, name: customer.name, index };
  await checkLicences(tx, customer, customerId, index, refusals);

  const criteriaIds = await upsertByName(
    tx,
    'criteria',
    customerId,
    customer.criteria.map((k) => ({ name: k.name, description: k.description ?? null, usage: k.usage, condition: JSON.stringify(k.when) })),
  );
  const profileIds = await upsertByName(
    tx,
    'user_profiles',
    customerId,
    customer.profiles.map((p) => ({
      name: p.name,
      description: p.description ?? null,
      role: p.role ?? null,
      number_from: p.line?.numberFrom ?? null,
      services: JSON.stringify(p.services),
    })),
  );
  const ftpIds = await upsertByName(tx, 'ftp_criteria', customerId, customer.ftpCriteria.map((f) => ({ name: f.name })));
  const siteIds = await upsertByName(
    tx,
    'sites',
    customerId,
    customer.sites.map((s, position) => ({ name: s.name, display_name: s.displayName ?? null, position })),
  );
  const sourceIds = await upsertByName(
    tx,
    'sync_sources',
    customerId,
    customer.sources.map(({ name, type, userType, attributeMap, ...settings }) => ({
      name,
      type,
      user_type: userType,
      attribute_map: JSON.stringify(attributeMap),
      settings: JSON.stringify(settings),
    })),
  );

  // Derived rows are rewritten whole: nothing references them, so this is both simple and idempotent.
  await tx.deleteFrom('global_settings').where('customer_id', '=', customerId).execute();
  await tx.deleteFrom('ftp_rules').where('customer_id', '=', customerId).execute();
  await tx.deleteFrom('site_move_criteria').where('customer_id', '=', customerId).execute();
  await tx.deleteFrom('site_defaults').where('customer_id', '=', customerId).execute();

  for (const site of customer.sites) {
    const siteId = siteIds.get(site.name)!;
    await tx
      .insertInto('site_defaults')
      .values({
        site_id: siteId,
        customer_id: customerId,
        default_role: site.defaultRole ?? null,
        locale: site.locale ?? null,
        time_zone: site.timeZone ?? null,
      })
      .execute();
    for (const [userType, criteria] of Object.entries(site.moveCriteria)) {
      if (criteria === undefined) continue;
      await tx
        .insertInto('site_move_criteria')
        .values({ site_id: siteId, customer_id: customerId, user_type: userType as never, criteria_id: criteriaIds.get(criteria)! })
        .execute();
    }
  }
  for (const ftp of customer.ftpCriteria) {
    for (const [position, rule] of ftp.rules.entries()) {
      await tx
        .insertInto('ftp_rules')
        .values({
          customer_id: customerId,
          ftp_criteria_id: ftpIds.get(ftp.name)!,
          position,
          criteria_id: criteriaIds.get(rule.criteria)!,
          profile_id: profileIds.get(rule.profile)!,
          role: rule.role ?? null,
        })
        .execute();
    }
  }
  const s = customer.settings;
  await tx
    .insertInto('global_settings')
    .values({
      customer_id: customerId,
      flow_through_enabled: s.flowThrough.enabled,
      flow_through_add_sync: s.flowThrough.addSync,
      flow_through_update_sync: s.flowThrough.updateSync,
      ftp_criteria_id: s.flowThrough.criteria ? ftpIds.get(s.flowThrough.criteria)! : null,
      number_assignment_on_move: s.numberAssignmentOnMove,
      update_sync_profile_id: s.updateSyncProfile ? profileIds.get(s.updateSyncProfile)! : null,
      prevent_duplicate_numbers: s.preventDuplicateNumbers,
      number_cooling_enabled: s.numberCooling.enabled,
      number_cooling_days: s.numberCooling.days,
      welcome_email: JSON.stringify(s.welcomeEmail) as never,
      smtp: s.smtp ? (JSON.stringify(s.smtp) as never) : null,
      delete_threshold: s.deleteThreshold === undefined ? null : String(s.deleteThreshold),
    })
    .execute();

  await removeUnnamed(tx, ref, 'sites', siteIds, 'site', 'site_id', refusals);
  await removeUnnamed(tx, ref, 'user_profiles', profileIds, 'profile', 'profile_id', refusals);
  await removeUnnamed(tx, ref, 'sync_sources', sourceIds, 'source', 'source_id', refusals);
  if (refusals.length > 0) return;
  await tx.deleteFrom('ftp_criteria').where('customer_id', '=', customerId).where('id', 'not in', [...ftpIds.values(), -1]).execute();
  await tx.deleteFrom('criteria').where('customer_id', '=', customerId).where('id', 'not in', [...criteriaIds.values(), -1]).execute();
  await syncNumbers(tx, customer, customerId, index, siteIds, refusals);
}

async function removeCustomers(tx: Tx, keep: readonly string[], refusals: Refusals): Promise<void> {
  const stale = await tx.selectFrom('customers').select(['id', 'name']).where('name', 'not in', [...keep, '']).execute();
  for (const customer of stale) {
    const { count } = await tx
      .selectFrom('users')
      .select(sql<string>`count(*)`.as('count'))
      .where('customer_id', '=', customer.id)
      .executeTakeFirstOrThrow();
    if (Number(count) > 0) {
      refusals.push({
        path: ['customers'],
        message: `customer "${customer.name}" is not in the file but has ${count} user(s) on record; it cannot be removed`,
      });
      continue;
    }
    const id = customer.id;
    for (const table of ['global_settings', 'ftp_rules', 'site_move_criteria', 'site_defaults', 'number_inventory', 'transaction_log'] as const) {
      await tx.deleteFrom(table).where('customer_id', '=', id).execute();
    }
    for (const table of ['ftp_criteria', 'criteria', 'user_profiles', 'sync_sources', 'sites'] as const) {
      await tx.deleteFrom(table).where('customer_id', '=', id).execute();
    }
    await tx.deleteFrom('customers').where('id', '=', id).execute();
  }
}

/**
 * Applies a validated configuration in one transaction: everything or, on a refusal or an error,
 * nothing. Applying the configuration that is already current changes nothing.
 */
export async function applyConfig(
  db: Kysely<Database>,
  config: ResolvedConfig,
  options: { sourceFile?: string; appliedBy?: string } = {},
): Promise<ApplyResult> {
  const hash = configHash(config);
  const result = await db.transaction().execute(async (tx) => {
    await sql`select pg_advisory_xact_lock(${APPLY_LOCK})`.execute(tx);
    const latest = await tx.selectFrom('config_versions').select(['id', 'hash']).orderBy('id', 'desc').limit(1).executeTakeFirst();
    if (latest?.hash === hash) return { version: latest.id, changed: false, hash };

    const refusals: Refusals = [];
    await removeCustomers(
      tx,
      config.customers.map((c) => c.name),
      refusals,
    );
    for (const [index, customer] of config.customers.entries()) {
      await applyCustomer(tx, customer, index, refusals);
    }
    // Throwing rolls the whole transaction back: nothing half-applied.
    if (refusals.length > 0) throw new ConfigApplyRefused(refusals);

    const { id } = await tx
      .insertInto('config_versions')
      .values({
        hash,
        document: JSON.stringify(config) as never,
        source_file: options.sourceFile ?? null,
        applied_by: options.appliedBy ?? null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await tx
      .insertInto('transaction_log')
      .values({
        kind: 'config',
        action: 'config.apply',
        subject: options.sourceFile ?? null,
        status: 'succeeded',
        ended_at: new Date(),
        customer_id: null,
        user_id: null,
        error: null,
        details: JSON.stringify({ version: id, hash }) as never,
        workflow_id: null,
        run_id: null,
        idempotency_key: null,
      })
      .execute();
    return { version: id, changed: true, hash };
  });
  // Number ranges may have added thousands of rows: fresh statistics keep the reservation query on
  // its index from the first sync on, rather than after autovacuum's next pass.
  if (result.changed) await sql`analyze number_inventory, sites, sync_sources`.execute(db);
  return result;
}

/** The configuration snapshot of a version (the newest when none is given). */
export async function loadConfigVersion(
  db: Kysely<Database>,
  version?: number,
): Promise<{ version: number; config: ResolvedConfig } | undefined> {
  let query = db.selectFrom('config_versions').select(['id', 'document']);
  query = version === undefined ? query.orderBy('id', 'desc').limit(1) : query.where('id', '=', version);
  const row = await query.executeTakeFirst();
  return row && { version: row.id, config: row.document as ResolvedConfig };
}
