import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Database, UserStatus } from './schema.js';

/** A timestamp as ISO 8601 in UTC (milliseconds, `Z`), the form every --json listing uses. */
export const isoUtc = (column: string): RawBuilder<string | null> => sql<string | null>`to_char(${sql.ref(column)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** A user as `flowthru users --json` shows it (SPEC §5). */
export interface UserView {
  customer: string;
  source: string;
  externalId: string;
  username: string | null;
  email: string | null;
  site: string | null;
  role: string | null;
  profile: string | null;
  status: string;
  /** Why the user is in that status (blocked, failed, unplaced, …); null when nothing needs saying. */
  reason: string | null;
  numbers: string[];
  services: string[];
}

export interface NumberView {
  number: string;
  customer: string;
  site: string | null;
  /** A cooling number whose time has passed is `available`: the next reservation takes it. */
  status: string;
  user: string | null;
  /** When a `cooling` number becomes available again (ISO time); null for any other status. */
  availableFrom: string | null;
}

export interface LogEntry {
  at: string;
  customer: string | null;
  user: string | null;
  kind: string;
  action: string;
  status: string;
  subject: string | null;
  error: string | null;
  workflowId: string | null;
  runId: string | null;
  /** With `why`: the explanation the step kept (`details.why`: the criteria it evaluated), else null. */
  why?: unknown;
}

export interface Scope {
  readonly customer?: string | undefined;
  readonly site?: string | undefined;
}

/** Users with where they are: customer, source, site and profile by name. */
function usersWithPlace(db: Kysely<Database>) {
  return db
    .selectFrom('users as u')
    .innerJoin('customers as c', 'c.id', 'u.customer_id')
    .innerJoin('sync_sources as src', 'src.id', 'u.source_id')
    .leftJoin('sites as s', 's.id', 'u.site_id')
    .leftJoin('user_profiles as p', 'p.id', 'u.profile_id')
    .select(['c.name as customer', 'src.name as source', 'u.external_id as externalId', 'u.username', 'u.email', 's.name as site', 'u.role', 'p.name as profile', 'u.status', 'u.status_reason as reason']);
}

export async function listUsers(db: Kysely<Database>, scope: Scope = {}): Promise<UserView[]> {
  let query = usersWithPlace(db)
    .select([
      sql<string[]>`coalesce((select array_agg(n.number order by n.number) from number_inventory n where n.user_id = u.id and n.status in ('reserved', 'used')), '{}')`.as('numbers'),
      sql<string[]>`coalesce((select array_agg(us.service_key order by us.id) from user_services us where us.user_id = u.id and us.status = 'active'), '{}')`.as('services'),
    ])
    .orderBy('c.name')
    .orderBy('src.name')
    .orderBy('u.external_id');
  if (scope.customer) query = query.where('c.name', '=', scope.customer);
  if (scope.site) query = query.where('s.name', '=', scope.site);
  return query.execute();
}

export async function listNumbers(db: Kysely<Database>, scope: Scope = {}): Promise<NumberView[]> {
  let query = db
    .selectFrom('number_inventory as n')
    .innerJoin('customers as c', 'c.id', 'n.customer_id')
    .leftJoin('sites as s', 's.id', 'n.site_id')
    .leftJoin('users as u', 'u.id', 'n.user_id')
    .select([
      'n.number',
      'c.name as customer',
      's.name as site',
      // Expired cooling numbers are freed lazily, by the next reservation: they can be handed out now.
      sql<string>`case when n.status = 'cooling' and n.cooling_until <= now() then 'available' else n.status end`.as('status'),
      sql<string | null>`coalesce(u.username, u.external_id)`.as('user'),
      sql<string | null>`case when n.status = 'cooling' and n.cooling_until > now() then ${isoUtc('n.cooling_until')} end`.as('availableFrom'),
    ])
    .orderBy('c.name')
    .orderBy(sql`s.name nulls first`)
    .orderBy(sql`length(n.number)`)
    .orderBy('n.number');
  if (scope.customer) query = query.where('c.name', '=', scope.customer);
  if (scope.site) query = query.where('s.name', '=', scope.site);
  return query.execute();
}

export async function listLog(db: Kysely<Database>, options: { user?: string; customer?: string; limit?: number; why?: boolean } = {}): Promise<LogEntry[]> {
  let query = db
    .selectFrom('transaction_log as l')
    .leftJoin('customers as c', 'c.id', 'l.customer_id')
    .leftJoin('users as u', 'u.id', 'l.user_id')
    .select([
      isoUtc('l.started_at').$castTo<string>().as('at'),
      'c.name as customer',
      sql<string | null>`coalesce(u.username, u.external_id)`.as('user'),
      'l.kind',
      'l.action',
      'l.status',
      'l.subject',
      'l.error',
      'l.workflow_id as workflowId',
      'l.run_id as runId',
    ])
    .$if(Boolean(options.why), (q) => q.select(sql<unknown>`l.details -> 'why'`.as('why')))
    .orderBy('l.id', 'desc')
    .limit(options.limit ?? 100);
  if (options.user) query = query.where((eb) => eb.or([eb('u.username', '=', options.user!), eb('u.external_id', '=', options.user!), eb('u.email', '=', options.user!)]));
  if (options.customer) query = query.where('c.name', '=', options.customer);
  return (await query.execute()).reverse();
}

/** Finds a user by username, external id or email, optionally within a customer. */
export async function findUsers(db: Kysely<Database>, who: string, customer?: string) {
  let query = db
    .selectFrom('users as u')
    .innerJoin('customers as c', 'c.id', 'u.customer_id')
    .innerJoin('sync_sources as src', 'src.id', 'u.source_id')
    .select(['u.id', 'u.external_id as externalId', 'u.username', 'u.status', 'c.name as customer', 'src.name as source', sql<boolean>`u.site_id is not null`.as('placed')])
    .where((eb) => eb.or([eb('u.username', '=', who), eb('u.external_id', '=', who), eb('u.email', '=', who)]));
  if (customer) query = query.where('c.name', '=', customer);
  return query.orderBy('c.name').orderBy('src.name').orderBy('u.external_id').execute();
}

/** A decision a pipeline step took and kept in the transaction log, with its explanation. */
export interface Decision {
  readonly at: string;
  /** The step's one-line summary (`moved to chicago`, `profile engineering (rule 1), role engineer`). */
  readonly summary: string | null;
  readonly workflowId: string | null;
  readonly runId: string | null;
  /** `details.why` as the step recorded it: a site resolution (move) or an FTP rule resolution (profile). */
  readonly why: unknown;
}

/** One user in full, as `flowthru user` shows them. */
export interface UserDetail {
  readonly customer: string;
  readonly source: string;
  readonly externalId: string;
  readonly username: string | null;
  readonly email: string | null;
  readonly status: UserStatus;
  readonly reason: string | null;
  readonly site: string | null;
  readonly profile: string | null;
  readonly role: string | null;
  /** Numbers the user holds (reserved or used), with the pool they belong to (site, or null: the customer's). */
  readonly numbers: readonly { number: string; status: string; site: string | null }[];
  readonly services: readonly { key: string; kind: string; settings: Record<string, unknown> }[];
  readonly deletedAt: string | null;
  /** What each provisioning target holds of the user, by target. */
  readonly targets: readonly { target: string; status: string; event: string | null; error: string | null; remoteId: string | null; pushedAt: string | null }[];
  /** The newest site decision (the `move` step) and profile decision (the `profile` step) that explained themselves. */
  readonly decisions: { readonly site: Decision | null; readonly profile: Decision | null };
}

/** Everything on record about one user (by id), or undefined. */
export async function userDetail(db: Kysely<Database>, userId: string): Promise<UserDetail | undefined> {
  const user = await usersWithPlace(db).select(isoUtc('u.deleted_at').as('deletedAt')).where('u.id', '=', userId).executeTakeFirst();
  if (!user) return undefined;
  const numbers = await db
    .selectFrom('number_inventory as n')
    .leftJoin('sites as s', 's.id', 'n.site_id')
    .select(['n.number', 'n.status', 's.name as site'])
    .where('n.user_id', '=', userId)
    .where('n.status', 'in', ['reserved', 'used'])
    .orderBy(sql`length(n.number)`)
    .orderBy('n.number')
    .execute();
  const services = await db
    .selectFrom('user_services')
    .select(['service_key as key', 'kind', 'settings'])
    .where('user_id', '=', userId)
    .where('status', '=', 'active')
    .orderBy('id')
    .execute();
  // Steps that decided nothing (a placed user's move is skipped) keep no `why`: the decision is the last one that did.
  const decided = await db
    .selectFrom('transaction_log as l')
    .distinctOn('l.action')
    .select([
      'l.action',
      isoUtc('l.started_at').$castTo<string>().as('at'),
      'l.subject as summary',
      'l.workflow_id as workflowId',
      'l.run_id as runId',
      sql<unknown>`l.details -> 'why'`.as('why'),
    ])
    .where('l.user_id', '=', userId)
    .where('l.kind', '=', 'step')
    .where('l.action', 'in', ['move', 'profile'])
    .where(sql<boolean>`l.details ? 'why'`)
    .orderBy('l.action')
    .orderBy('l.id', 'desc')
    .execute();
  const decision = (action: string): Decision | null => {
    const row = decided.find((d) => d.action === action);
    return row ? { at: row.at, summary: row.summary, workflowId: row.workflowId, runId: row.runId, why: row.why } : null;
  };
  const targets = await db
    .selectFrom('target_state as t')
    .select(['t.target', 't.status', 't.last_event as event', 't.last_error as error', 't.remote_id as remoteId', isoUtc('t.pushed_at').as('pushedAt')])
    .where('t.user_id', '=', userId)
    .orderBy('t.target')
    .execute();
  return { ...user, numbers, services, targets, decisions: { site: decision('move'), profile: decision('profile') } };
}

export interface RetryScope extends Scope {
  readonly status: UserStatus;
  readonly source?: string | undefined;
  /** Users whose profile draws its line from this pool: `customer`, or a site's name (its own pool). */
  readonly pool?: string | undefined;
}

/** The users in one status (blocked, failed), within a customer, site or source: whom `retry --status` hands back to their pipelines. */
export async function usersInStatus(db: Kysely<Database>, scope: RetryScope) {
  let query = db
    .selectFrom('users as u')
    .innerJoin('customers as c', 'c.id', 'u.customer_id')
    .innerJoin('sync_sources as src', 'src.id', 'u.source_id')
    .leftJoin('sites as s', 's.id', 'u.site_id')
    .select(['u.id', 'c.name as customer', 'src.name as source', 'u.external_id as externalId', 'u.username', 's.name as site', 'u.status', 'u.status_reason as reason', sql<boolean>`u.site_id is not null`.as('placed')])
    .where('u.status', '=', scope.status)
    .orderBy('c.name')
    .orderBy('src.name')
    .orderBy('u.external_id');
  if (scope.customer) query = query.where('c.name', '=', scope.customer);
  if (scope.site) query = query.where('s.name', '=', scope.site);
  if (scope.source) query = query.where('src.name', '=', scope.source);
  if (scope.pool) {
    const pool = scope.pool;
    query = query
      .innerJoin('user_profiles as p', 'p.id', 'u.profile_id')
      .where((eb) => (pool === 'customer' ? eb('p.number_from', '=', 'customer') : eb.and([eb('p.number_from', '=', 'site'), eb('s.name', '=', pool)])));
  }
  return query.execute();
}
