import type { Kysely, Transaction } from 'kysely';
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
 */
export async function applyServices(tx: Tx, customerId: number, userId: string, wanted: readonly ServiceRow[]): Promise<ServiceChanges> {
  const current = await tx.selectFrom('user_services').select(['service_key', 'settings', 'status']).where('user_id', '=', userId).execute();
  const byKey = new Map(current.map((row) => [row.service_key, row]));
  const changes: ServiceChanges = { added: [], changed: [], removed: [] };
  // One write per key (the last wins, as writing them one after the other would leave it).
  const writes = [...new Map(wanted.map((service) => [service.key, service])).values()].filter((service) => {
    const row = byKey.get(service.key);
    return !(row?.status === 'active' && sameSettings(row.settings, service.settings));
  });
  // The new and the changed, in one statement.
  if (writes.length > 0) {
    await tx
      .insertInto('user_services')
      .values(writes.map((service) => ({ customer_id: customerId, user_id: userId, service_key: service.key, kind: service.kind, settings: JSON.stringify(service.settings) as never })))
      .onConflict((oc) =>
        oc.columns(['user_id', 'service_key']).doUpdateSet((eb) => ({ kind: eb.ref('excluded.kind'), settings: eb.ref('excluded.settings'), status: 'active', updated_at: new Date() })),
      )
      .execute();
  }
  for (const service of writes) (byKey.get(service.key)?.status === 'active' ? changes.changed : changes.added).push(service.key);
  const keep = new Set(wanted.map((s) => s.key));
  const gone = current.filter((row) => row.status === 'active' && !keep.has(row.service_key)).map((row) => row.service_key);
  if (gone.length > 0) {
    await tx.updateTable('user_services').set({ status: 'removed', updated_at: new Date() }).where('user_id', '=', userId).where('service_key', 'in', gone).execute();
    changes.removed.push(...gone);
  }
  return changes;
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
