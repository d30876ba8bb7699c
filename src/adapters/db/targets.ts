import { sql, type InsertObject, type Kysely, type QueryCreator, type Selectable } from 'kysely';
import type { TargetUserView } from '../../domain/targets.js';
import type { CanonicalUser } from '../../domain/user.js';
import type { Database, TargetStateStatus, TargetStateTable } from './schema.js';

/*
 * What flowthru remembers of each user at each target (migration 0007), and the user as a target
 * sees them.
 */

export type TargetStateRow = Selectable<TargetStateTable>;

/** The user with their placement, line and services, as a target's data filter reads them; undefined if unknown. */
export async function loadTargetView(db: Kysely<Database>, customer: { id: number; name: string }, userId: string): Promise<TargetUserView | undefined> {
  const row = await db
    .selectFrom('users as u')
    .leftJoin('sites as s', 's.id', 'u.site_id')
    .leftJoin('site_defaults as sd', 'sd.site_id', 'u.site_id')
    .leftJoin('user_profiles as p', 'p.id', 'u.profile_id')
    .leftJoin('sync_sources as src', 'src.id', 'u.source_id')
    .select([
      'u.id',
      'u.external_id',
      'u.user_type',
      'u.status',
      'u.status_reason',
      'u.role',
      'u.attributes',
      's.name as site',
      's.display_name as site_display_name',
      'sd.locale as site_locale',
      'sd.time_zone as site_time_zone',
      'p.name as profile',
      'src.name as source',
      sql<string | null>`(select n.number from number_inventory n where n.user_id = u.id and n.status = 'used' order by n.number limit 1)`.as('number'),
      sql<string[]>`coalesce((select array_agg(distinct us.kind order by us.kind) from user_services us where us.user_id = u.id), '{}')`.as('services'),
    ])
    .where('u.id', '=', userId)
    .where('u.customer_id', '=', customer.id)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    userId: row.id,
    externalId: row.external_id,
    customer: customer.name,
    source: row.source,
    userType: row.user_type,
    status: row.status,
    reason: row.status_reason,
    site: row.site,
    siteDisplayName: row.site_display_name,
    siteLocale: row.site_locale,
    siteTimeZone: row.site_time_zone,
    profile: row.profile,
    role: row.role,
    number: row.number,
    services: row.services,
    attributes: row.attributes as CanonicalUser,
  };
}

export async function readTargetState(db: Kysely<Database>, customerId: number, target: string, userId: string): Promise<TargetStateRow | undefined> {
  return db.selectFrom('target_state').selectAll().where('customer_id', '=', customerId).where('target', '=', target).where('user_id', '=', userId).executeTakeFirst();
}

type StatePatch = Partial<Omit<TargetStateRow, 'customer_id' | 'target' | 'user_id' | 'pushed'>> & {
  pushed?: Record<string, string | null> | null;
  status: TargetStateStatus;
};

/** What several targets were last given for one user, by target (a target never pushed is absent). */
export async function readTargetStates(db: Kysely<Database>, customerId: number, targets: readonly string[], userId: string): Promise<Map<string, TargetStateRow>> {
  if (targets.length === 0) return new Map();
  const rows = await db.selectFrom('target_state').selectAll().where('customer_id', '=', customerId).where('target', 'in', targets).where('user_id', '=', userId).execute();
  return new Map(rows.map((row) => [row.target, row]));
}

/**
 * Writes the target's state of the user (inserting the row the first time); with `log`, the
 * transaction-log entry of the push too, in the same statement (one round trip, both or neither).
 */
export async function writeTargetState(
  db: Kysely<Database>,
  key: { customerId: number; target: string; userId: string },
  patch: StatePatch,
  log?: InsertObject<Database, 'transaction_log'>,
): Promise<void> {
  const values = {
    ...patch,
    ...(patch.pushed === undefined ? {} : { pushed: patch.pushed === null ? null : (JSON.stringify(patch.pushed) as never) }),
    updated_at: new Date(),
  };
  const upsert = (q: QueryCreator<Database>) =>
    q
      .insertInto('target_state')
      .values({ customer_id: key.customerId, target: key.target, user_id: key.userId, ...values })
      .onConflict((oc) => oc.columns(['customer_id', 'target', 'user_id']).doUpdateSet(values));
  if (!log) {
    await upsert(db).execute();
    return;
  }
  await db
    .with('state', (q) => upsert(q))
    .insertInto('transaction_log')
    .values(log)
    .onConflict((oc) => oc.column('idempotency_key').doNothing())
    .execute();
}

/** A try that failed and will be retried: counted, with its error, for `flowthru target jobs`. */
export async function recordTargetAttempt(db: Kysely<Database>, key: { customerId: number; target: string; userId: string }, error: string): Promise<void> {
  await db
    .insertInto('target_state')
    .values({ customer_id: key.customerId, target: key.target, user_id: key.userId, status: 'pending', attempts: 1, last_error: error })
    .onConflict((oc) =>
      oc.columns(['customer_id', 'target', 'user_id']).doUpdateSet((eb) => ({
        status: 'pending',
        attempts: eb('target_state.attempts', '+', 1),
        last_error: error,
        updated_at: new Date(),
      })),
    )
    .execute();
}

/**
 * The push failed for good: state `failed` with the reason. Returns the failure episode: one begins
 * when the target was not failing for the user (a success since the last failure, or none yet) and
 * lasts until the next successful push, whatever the retries, passes and queued jobs in between; the
 * administrators hear once per episode (a retried recording of the same failure keeps its episode).
 */
export async function recordTargetFailed(db: Kysely<Database>, key: { customerId: number; target: string; userId: string }, error: string): Promise<number> {
  const row = await db
    .insertInto('target_state')
    .values({ customer_id: key.customerId, target: key.target, user_id: key.userId, status: 'failed', last_error: error, failure_episode: 1, failing_since: new Date() })
    .onConflict((oc) =>
      oc.columns(['customer_id', 'target', 'user_id']).doUpdateSet((eb) => ({
        failure_episode: sql<number>`${eb.ref('target_state.failure_episode')} + case when ${eb.ref('target_state.failing_since')} is null then 1 else 0 end`,
        failing_since: sql<Date>`coalesce(${eb.ref('target_state.failing_since')}, now())`,
        status: 'failed',
        last_error: error,
        updated_at: new Date(),
      })),
    )
    .returning('failure_episode')
    .executeTakeFirstOrThrow();
  return row.failure_episode;
}

export interface TargetJobView {
  readonly customer: string;
  readonly target: string;
  readonly externalId: string;
  readonly username: string | null;
  readonly status: TargetStateStatus;
  readonly event: string | null;
  readonly attempts: number;
  readonly error: string | null;
  readonly remoteId: string | null;
  readonly workflowId: string | null;
  readonly pushedAt: Date | null;
  readonly updatedAt: Date;
}

/** Target state per user for `flowthru target jobs`: pending and failed by default, newest first. */
export async function listTargetJobs(
  db: Kysely<Database>,
  filter: { customer?: string; target?: string; statuses?: readonly TargetStateStatus[]; limit?: number },
): Promise<TargetJobView[]> {
  let query = db
    .selectFrom('target_state as t')
    .innerJoin('customers as c', 'c.id', 't.customer_id')
    .innerJoin('users as u', 'u.id', 't.user_id')
    .select([
      'c.name as customer',
      't.target',
      'u.external_id',
      'u.username',
      't.status',
      't.last_event',
      't.attempts',
      't.last_error',
      't.remote_id',
      't.job_workflow_id',
      't.pushed_at',
      't.updated_at',
    ])
    .orderBy('t.updated_at', 'desc')
    .limit(filter.limit ?? 1000);
  if (filter.customer) query = query.where('c.name', '=', filter.customer);
  if (filter.target) query = query.where('t.target', '=', filter.target);
  if (filter.statuses && filter.statuses.length > 0) query = query.where('t.status', 'in', [...filter.statuses]);
  const rows = await query.execute();
  return rows.map((r) => ({
    customer: r.customer,
    target: r.target,
    externalId: r.external_id,
    username: r.username,
    status: r.status,
    event: r.last_event,
    attempts: r.attempts,
    error: r.last_error,
    remoteId: r.remote_id,
    workflowId: r.job_workflow_id,
    pushedAt: r.pushed_at,
    updatedAt: r.updated_at,
  }));
}

/**
 * The users "reprovision all" goes over, in id order after `after`: everyone the target holds or
 * should hold (not deleted, or held by the target), so a deleted user still held is removed.
 */
export async function targetSubjects(
  db: Kysely<Database>,
  input: { customerId: number; target: string; after: string | null; limit: number },
): Promise<string[]> {
  let query = db
    .selectFrom('users as u')
    .select('u.id')
    .where('u.customer_id', '=', input.customerId)
    .where((eb) =>
      eb.or([
        eb('u.status', 'in', ['provisioning', 'provisioned', 'blocked', 'failed', 'unmatched']),
        eb.exists(
          eb
            .selectFrom('target_state as t')
            .select(sql`1`.as('one'))
            .whereRef('t.user_id', '=', 'u.id')
            .where('t.target', '=', input.target)
            .where('t.status', 'in', ['provisioned', 'pending', 'failed']),
        ),
      ]),
    )
    .orderBy(sql`u.id::bigint`)
    .limit(input.limit);
  if (input.after !== null) query = query.where(sql`u.id::bigint`, '>', sql`${input.after}::bigint`);
  return (await query.execute()).map((r) => r.id);
}
