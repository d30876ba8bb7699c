import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { UserType } from '../../domain/user.js';
import type { SourceUser } from '../sources/records.js';
import { describeDatabaseError, isRecordDatabaseError } from './errors.js';
import type { Database } from './schema.js';

/** Which records a sync takes: those of users not at a site (an add's), those of placed users (an update's). */
export interface Take {
  readonly unplaced: boolean;
  readonly placed: boolean;
}

export interface ImportBatch {
  readonly customerId: number;
  readonly sourceId: number;
  readonly userType: UserType;
  /** The sync importing them; a retried page read finds its own imports again by it. */
  readonly syncId: string;
  readonly users: readonly SourceUser[];
  /**
   * Which records the sync takes (default both): users not at a site yet — new, unplaced, or
   * offboarded and back — are an add's; users placed at a site an update's. A record a sync does
   * not take is left unchanged (its hash too) for the sync whose job it is.
   */
  readonly take?: Take;
}

export interface ImportedUser {
  readonly userId: string;
  readonly externalId: string;
  /** At a site (and not offboarded) before this import: an update's user, not an add's. */
  readonly placed: boolean;
}

export interface ImportResult {
  /** Users that are new or changed (including any this sync imported in an earlier try). */
  readonly imported: readonly ImportedUser[];
  /** Records the database refused for what they carry: reported by where they are, and skipped. */
  readonly rejected: readonly { at: string; externalId: string; message: string }[];
}

/**
 * Step 1 of the pipeline for a whole page at once: upsert by (customer, source, externalId) in one
 * statement. Unchanged records are no-ops and start no pipeline.
 *
 * A record the database refuses (a byte it cannot store, a value out of range) must not take the
 * page with it, nor be retried forever: when the statement fails for its data, the page is split
 * in halves until the records at fault stand alone; they are rejected, the rest imported. A
 * transient error (the server restarting) is thrown for the activity to retry.
 */
export async function importUsers(db: Kysely<Database>, batch: ImportBatch): Promise<ImportResult> {
  if (batch.users.length === 0) return { imported: [], rejected: [] };
  try {
    return { imported: await upsertUsers(db, batch, batch.users), rejected: [] };
  } catch (error) {
    if (!isRecordDatabaseError(error)) throw error;
    const { users } = batch;
    if (users.length === 1) return { imported: [], rejected: [{ at: users[0]!.at, externalId: users[0]!.externalId, message: `the database refused it: ${describeDatabaseError(error)}` }] };
    const half = Math.ceil(users.length / 2);
    const first = await importUsers(db, { ...batch, users: users.slice(0, half) });
    const second = await importUsers(db, { ...batch, users: users.slice(half) });
    return { imported: [...first.imported, ...second.imported], rejected: [...first.rejected, ...second.rejected] };
  }
}

/** Whether a user row (by table alias) counts as placed: at a site and not offboarded. */
const placedIn = (alias: string) => sql<boolean>`(${sql.ref(`${alias}.site_id`)} is not null and ${sql.ref(`${alias}.status`)} <> 'deleted')`;

/** Whether a sync taking `take` takes a record whose user is placed (or not) as `placed` says. */
const takes = (take: Take, placed: RawBuilder<boolean>) => sql<boolean>`case when ${placed} then ${take.placed}::boolean else ${take.unplaced}::boolean end`;

async function upsertUsers(db: Kysely<Database>, batch: ImportBatch, users: readonly SourceUser[]): Promise<ImportResult['imported']> {
  const take = batch.take ?? { unplaced: true, placed: true };
  const result = await sql<{ id: string; external_id: string; placed: boolean }>`
    with incoming as (
      select * from unnest(
        ${users.map((u) => u.externalId)}::text[],
        ${users.map((u) => u.user.username ?? null)}::text[],
        ${users.map((u) => u.user.email ?? null)}::text[],
        ${users.map((u) => JSON.stringify(u.user))}::jsonb[],
        ${users.map((u) => u.hash)}::text[],
        ${users.map((u) => (u.entry ? JSON.stringify(u.entry) : null))}::jsonb[]
      ) as t(external_id, username, email, attributes, source_hash, ldap_entry)
    ), existing as (
      select u.id, u.external_id, ${placedIn('u')} as placed
      from users u join incoming i on i.external_id = u.external_id
      where u.customer_id = ${batch.customerId} and u.source_id = ${batch.sourceId}
    ), taken as (
      select i.* from incoming i left join existing e on e.external_id = i.external_id
      where ${takes(take, sql<boolean>`coalesce(e.placed, false)`)}
    ), upserted as (
      insert into users (customer_id, source_id, external_id, user_type, username, email, attributes, source_hash, ldap_entry, imported_by)
      select ${batch.customerId}, ${batch.sourceId}, external_id, ${batch.userType}, username, email, attributes, source_hash, ldap_entry, ${batch.syncId}
      from taken
      on conflict (customer_id, source_id, external_id) do update set
        username = excluded.username,
        email = excluded.email,
        attributes = excluded.attributes,
        source_hash = excluded.source_hash,
        ldap_entry = excluded.ldap_entry,
        imported_by = excluded.imported_by,
        updated_at = now()
      -- Unchanged records are no-ops; an offboarded user seen again is imported to be restored.
      where users.source_hash is distinct from excluded.source_hash or users.status = 'deleted'
      returning id, external_id
    )
    select up.id, up.external_id, coalesce(e.placed, false) as placed
    from upserted up left join existing e on e.external_id = up.external_id
    union all
    select u.id, u.external_id, ${placedIn('u')} as placed
    from users u join taken i on i.external_id = u.external_id
    where u.customer_id = ${batch.customerId} and u.source_id = ${batch.sourceId}
      and u.imported_by = ${batch.syncId} and u.source_hash = i.source_hash
      and u.id not in (select id from upserted)`.execute(db);
  return result.rows.map((r) => ({ userId: r.id, externalId: r.external_id, placed: r.placed }));
}

/**
 * How many of these records a sync that takes only `take` leaves for another sync: changed (or new)
 * records of users it does not take. Such a read must not move the source's watermark past them.
 */
export async function countDeferred(db: Kysely<Database>, batch: Pick<ImportBatch, 'customerId' | 'sourceId' | 'users'> & { take: Take }): Promise<number> {
  if (batch.users.length === 0 || (batch.take.placed && batch.take.unplaced)) return 0;
  const { rows } = await sql<{ n: string }>`
    with incoming as (
      select * from unnest(${batch.users.map((u) => u.externalId)}::text[], ${batch.users.map((u) => u.hash)}::text[]) as t(external_id, source_hash)
    )
    select count(*) as n from incoming i
    left join users u on u.customer_id = ${batch.customerId} and u.source_id = ${batch.sourceId} and u.external_id = i.external_id
    where (u.id is null or u.source_hash is distinct from i.source_hash or u.status = 'deleted')
      and not ${takes(batch.take, placedIn('u'))}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}
