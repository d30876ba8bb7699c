import { sql, type Kysely } from 'kysely';
import type { Database } from './schema.js';

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
  numbers: string[];
  services: string[];
}

export interface NumberView {
  number: string;
  customer: string;
  site: string | null;
  status: string;
  user: string | null;
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
}

export interface Scope {
  readonly customer?: string | undefined;
  readonly site?: string | undefined;
}

export async function listUsers(db: Kysely<Database>, scope: Scope = {}): Promise<UserView[]> {
  let query = db
    .selectFrom('users as u')
    .innerJoin('customers as c', 'c.id', 'u.customer_id')
    .innerJoin('sync_sources as src', 'src.id', 'u.source_id')
    .leftJoin('sites as s', 's.id', 'u.site_id')
    .leftJoin('user_profiles as p', 'p.id', 'u.profile_id')
    .select([
      'c.name as customer',
      'src.name as source',
      'u.external_id as externalId',
      'u.username',
      'u.email',
      's.name as site',
      'u.role',
      'p.name as profile',
      'u.status',
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
    .select(['n.number', 'c.name as customer', 's.name as site', 'n.status', sql<string | null>`coalesce(u.username, u.external_id)`.as('user')])
    .orderBy('c.name')
    .orderBy(sql`s.name nulls first`)
    .orderBy(sql`length(n.number)`)
    .orderBy('n.number');
  if (scope.customer) query = query.where('c.name', '=', scope.customer);
  if (scope.site) query = query.where('s.name', '=', scope.site);
  return query.execute();
}

export async function listLog(db: Kysely<Database>, options: { user?: string; customer?: string; limit?: number } = {}): Promise<LogEntry[]> {
  let query = db
    .selectFrom('transaction_log as l')
    .leftJoin('customers as c', 'c.id', 'l.customer_id')
    .leftJoin('users as u', 'u.id', 'l.user_id')
    .select([
      sql<string>`to_char(l.started_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`.as('at'),
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
    .select(['u.id', 'u.external_id as externalId', 'u.status', 'c.name as customer', 'src.name as source'])
    .where((eb) => eb.or([eb('u.username', '=', who), eb('u.external_id', '=', who), eb('u.email', '=', who)]));
  if (customer) query = query.where('c.name', '=', customer);
  return query.execute();
}
