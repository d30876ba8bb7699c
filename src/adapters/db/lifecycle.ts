import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

/*
 * What a sync knows about the users of its source beyond their records: which ones its read saw
 * (a delete sync offboards the rest), which ones it decided to offboard, and which sync holds the
 * source (one at a time).
 */

export interface SourceRef {
  readonly customerId: number;
  readonly sourceId: number;
}

const ofSource = (ref: SourceRef) => sql`customer_id = ${ref.customerId} and source_id = ${ref.sourceId}`;

/** Marks users the read saw (usable records, disabled accounts and invalid records with an id). */
export async function markSeen(db: Kysely<Database>, ref: SourceRef, syncId: string, externalIds: readonly string[]): Promise<void> {
  if (externalIds.length === 0) return;
  await sql`update users set seen_by = ${syncId}
    where ${ofSource(ref)} and external_id = any(${[...externalIds]}::text[]) and seen_by is distinct from ${syncId}`.execute(db);
}

/** Users the source said are gone (Graph's @removed): to be offboarded by this sync. Returns how many. */
export async function markRemoved(db: Kysely<Database>, ref: SourceRef, syncId: string, externalIds: readonly string[]): Promise<number> {
  if (externalIds.length === 0) return 0;
  const result = await sql`update users set offboard_by = ${syncId}
    where ${ofSource(ref)} and external_id = any(${[...externalIds]}::text[]) and status <> 'deleted'`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}

/**
 * Users of the source on record, not offboarded; with `before`, only those created before that sync
 * began (the base of a deletion threshold is the source as it was, not widened by the sync's adds).
 */
export async function countSourceUsers(db: Kysely<Database>, ref: SourceRef, options: { before?: string } = {}): Promise<number> {
  // A sync's own log entry (`sync/<workflow id>/<first run id>`) says when it began.
  const began = options.before ? sql`and created_at < coalesce((select started_at from transaction_log where idempotency_key = ${`sync/${options.before}`}), now())` : sql``;
  const { rows } = await sql<{ n: string }>`select count(*) as n from users where ${ofSource(ref)} and status <> 'deleted' ${began}`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** Users a sync would offboard: those it marked, and (after a full read) those it did not see. */
export async function countDeletions(db: Kysely<Database>, ref: SourceRef, syncId: string, unseenToo: boolean): Promise<number> {
  const { rows } = await sql<{ n: string }>`select count(*) as n from users where ${ofSource(ref)} and status <> 'deleted'
    and (offboard_by = ${syncId} ${unseenToo ? sql`or seen_by is distinct from ${syncId}` : sql``})`.execute(db);
  return Number(rows[0]?.n ?? 0);
}

/** The deletions go ahead: every user the full read did not see is marked for this sync too. */
export async function markUnseen(db: Kysely<Database>, ref: SourceRef, syncId: string): Promise<void> {
  await sql`update users set offboard_by = ${syncId}
    where ${ofSource(ref)} and status <> 'deleted' and seen_by is distinct from ${syncId}`.execute(db);
}

/** The next users this sync marked for offboarding, in id order after `afterId`. */
export async function takeMarked(db: Kysely<Database>, ref: SourceRef, syncId: string, afterId: string | null, limit: number) {
  return db
    .selectFrom('users')
    .select(['id as userId', 'external_id as externalId'])
    .where('customer_id', '=', ref.customerId)
    .where('source_id', '=', ref.sourceId)
    .where('offboard_by', '=', syncId)
    .where('status', '<>', 'deleted')
    .$if(afterId !== null, (q) => q.where(sql`id`, '>', sql`${afterId}::bigint`))
    .orderBy(sql`id`)
    .limit(limit)
    .execute();
}

/**
 * Claims the source for a sync: one sync of a source at a time, manual or scheduled. A claim left
 * by a sync that is no longer running (terminated, say) is taken over. Returns the sync holding
 * the source when it is not this one.
 */
export async function claimSource(
  db: Kysely<Database>,
  sourceId: number,
  syncId: string,
  holderRunning: (holder: string) => Promise<boolean>,
): Promise<string | null> {
  for (;;) {
    const row = await db.selectFrom('sync_sources').select('running_sync').where('id', '=', sourceId).executeTakeFirstOrThrow();
    const holder = row.running_sync;
    if (holder !== null && holder !== syncId && (await holderRunning(holder))) return holder;
    const taken = await db
      .updateTable('sync_sources')
      .set({ running_sync: syncId })
      .where('id', '=', sourceId)
      .where((eb) => (holder === null ? eb('running_sync', 'is', null) : eb('running_sync', '=', holder)))
      .executeTakeFirst();
    if (Number(taken.numUpdatedRows) === 1) return null;
  }
}

export async function releaseSource(db: Kysely<Database>, customerId: number, sourceName: string, syncId: string): Promise<void> {
  await db.updateTable('sync_sources').set({ running_sync: null }).where('customer_id', '=', customerId).where('name', '=', sourceName).where('running_sync', '=', syncId).execute();
}
