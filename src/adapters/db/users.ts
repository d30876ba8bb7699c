import { sql, type Kysely } from 'kysely';
import type { UserType } from '../../domain/user.js';
import type { SourceUser } from '../sources/records.js';
import type { Database } from './schema.js';

export interface ImportBatch {
  readonly customerId: number;
  readonly sourceId: number;
  readonly userType: UserType;
  /** The sync importing them; a retried page read finds its own imports again by it. */
  readonly syncId: string;
  readonly users: readonly SourceUser[];
}

export interface ImportResult {
  /** Users that are new or changed (including any this sync imported in an earlier try). */
  readonly imported: readonly { userId: string; externalId: string }[];
}

/**
 * Step 1 of the pipeline for a whole page at once: upsert by (customer, source, externalId) in one
 * statement. Unchanged records are no-ops and start no pipeline.
 */
export async function importUsers(db: Kysely<Database>, batch: ImportBatch): Promise<ImportResult> {
  if (batch.users.length === 0) return { imported: [] };
  const { users } = batch;
  const result = await sql<{ id: string; external_id: string }>`
    with incoming as (
      select * from unnest(
        ${users.map((u) => u.externalId)}::text[],
        ${users.map((u) => u.user.username ?? null)}::text[],
        ${users.map((u) => u.user.email ?? null)}::text[],
        ${users.map((u) => JSON.stringify(u.user))}::jsonb[],
        ${users.map((u) => u.hash)}::text[],
        ${users.map((u) => (u.entry ? JSON.stringify(u.entry) : null))}::jsonb[]
      ) as t(external_id, username, email, attributes, source_hash, ldap_entry)
    ), upserted as (
      insert into users (customer_id, source_id, external_id, user_type, username, email, attributes, source_hash, ldap_entry, imported_by)
      select ${batch.customerId}, ${batch.sourceId}, external_id, ${batch.userType}, username, email, attributes, source_hash, ldap_entry, ${batch.syncId}
      from incoming
      on conflict (customer_id, source_id, external_id) do update set
        username = excluded.username,
        email = excluded.email,
        attributes = excluded.attributes,
        source_hash = excluded.source_hash,
        ldap_entry = excluded.ldap_entry,
        imported_by = excluded.imported_by,
        updated_at = now()
      where users.source_hash is distinct from excluded.source_hash
      returning id, external_id
    )
    select id, external_id from upserted
    union all
    select u.id, u.external_id from users u join incoming i on i.external_id = u.external_id
    where u.customer_id = ${batch.customerId} and u.source_id = ${batch.sourceId}
      and u.imported_by = ${batch.syncId} and u.source_hash = i.source_hash
      and u.id not in (select id from upserted)`.execute(db);
  return { imported: result.rows.map((r) => ({ userId: r.id, externalId: r.external_id })) };
}
