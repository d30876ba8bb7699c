import { sql, type Kysely, type Transaction } from 'kysely';
import type { Database } from './schema.js';

type Tx = Transaction<Database>;

export interface ServiceRow {
  readonly key: string;
  readonly kind: string;
  readonly settings: Readonly<Record<string, unknown>>;
}

export interface ServiceChanges {
  readonly added: string[];
  readonly changed: string[];
  readonly removed: string[];
}

/** JSON with sorted keys: PostgreSQL's jsonb hands keys back in its own order, not the one written. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export const sameSettings = (a: unknown, b: unknown) => canonical(a) === canonical(b);

/** What would change to bring `current` (active services by key) to `wanted`: the difference applyServices applies. */
export function diffServices(current: ReadonlyMap<string, unknown>, wanted: readonly ServiceRow[]): ServiceChanges {
  const changes: ServiceChanges = { added: [], changed: [], removed: [] };
  for (const service of wanted) {
    if (!current.has(service.key)) changes.added.push(service.key);
    else if (!sameSettings(current.get(service.key), service.settings)) changes.changed.push(service.key);
  }
  const keep = new Set(wanted.map((s) => s.key));
  changes.removed.push(...[...current.keys()].filter((key) => !keep.has(key)));
  return changes;
}

/** The active services of each of these users, by key, with their settings. */
export async function activeServices(db: Kysely<Database>, userIds: readonly string[]): Promise<Map<string, Map<string, unknown>>> {
  const byUser = new Map<string, Map<string, unknown>>();
  if (userIds.length === 0) return byUser;
  const rows = await db.selectFrom('user_services').select(['user_id', 'service_key', 'settings']).where('user_id', 'in', [...userIds]).where('status', '=', 'active').orderBy('id').execute();
  for (const row of rows) {
    const id = String(row.user_id);
    if (!byUser.has(id)) byUser.set(id, new Map());
    byUser.get(id)!.set(row.service_key, row.settings);
  }
  return byUser;
}

/**
 * Brings the user's active services to exactly `wanted`: the difference is applied — new ones
 * added, changed settings updated, the rest removed — and nothing is rewritten that is already so.
 * One statement: what was there is read in the same snapshot as the writes (the user is locked by
 * the step's transaction, so nothing else writes their services meanwhile).
 */
export async function applyServices(tx: Tx, customerId: number, userId: string, wanted: readonly ServiceRow[]): Promise<ServiceChanges> {
  // One write per key (the last wins, as writing them one after the other would leave it).
  const writes = [...new Map(wanted.map((service) => [service.key, service])).values()];
  const keys = writes.map((s) => s.key);
  const now = new Date();
  // jsonb compares settings by value (key order and number spelling aside), as sameSettings does.
  const { rows } = await sql<{ what: 'written' | 'removed'; service_key: string; was: string | null }>`
    with wanted (service_key, kind, settings) as (
      select * from unnest(${keys}::text[], ${writes.map((s) => s.kind)}::text[], ${writes.map((s) => JSON.stringify(s.settings))}::jsonb[])
    ),
    was as (select service_key, status from user_services where user_id = ${userId}),
    written as (
      insert into user_services (customer_id, user_id, service_key, kind, settings)
      select ${customerId}, ${userId}, service_key, kind, settings from wanted
      on conflict (user_id, service_key) do update
        set kind = excluded.kind, settings = excluded.settings, status = 'active', updated_at = ${now}
        where user_services.status <> 'active' or user_services.settings is distinct from excluded.settings
      returning service_key
    ),
    gone as (
      update user_services set status = 'removed', updated_at = ${now}
      where user_id = ${userId} and status = 'active' and service_key <> all(${keys}::text[])
      returning id, service_key
    )
    select 'written' as what, written.service_key, was.status as was, 0::bigint as id from written left join was using (service_key)
    union all
    select 'removed', service_key, null, id from gone
    order by id`.execute(tx);
  const changed = new Set(rows.filter((r) => r.what === 'written' && r.was === 'active').map((r) => r.service_key));
  const written = new Set(rows.filter((r) => r.what === 'written').map((r) => r.service_key));
  return {
    added: keys.filter((k) => written.has(k) && !changed.has(k)),
    changed: keys.filter((k) => changed.has(k)),
    // In the order they were given (the order of the earlier profile's services).
    removed: rows.filter((r) => r.what === 'removed').map((r) => r.service_key),
  };
}

/** Removes every active service of the user (offboarding, or no profile any more). */
export async function removeServices(tx: Tx, userId: string): Promise<string[]> {
  const rows = await tx
    .updateTable('user_services')
    .set({ status: 'removed', updated_at: new Date() })
    .where('user_id', '=', userId)
    .where('status', '=', 'active')
    .returning('service_key')
    .execute();
  return rows.map((r) => r.service_key).sort();
}

/** `+phone, ~teams, -group:sales`: what a provisioning changed, for the log. */
export function describeChanges(changes: ServiceChanges): string {
  const parts = [...changes.added.map((k) => `+${k}`), ...changes.changed.map((k) => `~${k}`), ...changes.removed.map((k) => `-${k}`)];
  return parts.length > 0 ? parts.join(', ') : 'services unchanged';
}
