import { sql, type Kysely } from 'kysely';
import { isoUtc, userDetail, type UserDetail } from '../adapters/db/queries.js';
import type { Database } from '../adapters/db/schema.js';
import type { Explanation } from '../domain/criteria.js';
import { USER_STATUSES, type UserStatus } from '../domain/user.js';
import { USER_SEARCH_TEXT } from '../adapters/db/migrations/0008_console.js';
import { isFtpResolution, isSiteResolution, profileVerdict, siteVerdict } from '../client/commands/user.js';
import type { SyncCounts, SyncReport } from '../workflows/messages.js';

/*
 * What the console's pages show, read from PostgreSQL. Every list is paged on the server and
 * filtered with indexes it can use, so pages stay fast with 100,000 users (bench/console.ts).
 */


/** `%text%` for ILIKE, with the pattern's own characters taken literally. */
const containing = (text: string) => `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

export const PAGE_SIZE = 50;

export async function customerNames(db: Kysely<Database>): Promise<string[]> {
  return (await db.selectFrom('customers').select('name').orderBy('name').execute()).map((c) => c.name);
}

export interface PoolUsage {
  readonly pool: string;
  readonly site: string | null;
  readonly used: number;
  readonly reserved: number;
  readonly cooling: number;
  readonly available: number;
  readonly total: number;
  /** Blocked users whose profile draws its line from this pool (a retry once numbers were added). */
  readonly blocked: number;
}

export interface SyncRun {
  readonly id: string;
  readonly customer: string | null;
  readonly source: string | null;
  readonly mode: string;
  readonly status: string;
  readonly startedAt: string;
  readonly endedAt: string | null;
  readonly seconds: number | null;
  readonly workflowId: string;
  readonly runId: string;
  readonly error: string | null;
  readonly configVersion: number | null;
  readonly report: SyncReport | null;
  readonly counts: SyncCounts | null;
}

export interface AttentionUser {
  readonly id: string;
  readonly name: string;
  readonly source: string;
  readonly site: string | null;
  readonly status: string;
  readonly reason: string | null;
}

export interface Overview {
  readonly customer: string;
  readonly sites: readonly string[];
  /** Users per site (null: customer level) and status. */
  readonly placement: readonly { site: string | null; status: string; users: number }[];
  readonly totals: { readonly users: number; readonly byStatus: Readonly<Record<string, number>> };
  readonly pools: readonly PoolUsage[];
  readonly syncs: readonly SyncRun[];
  readonly attention: readonly AttentionUser[];
  readonly attentionTotal: number;
  /** Sources whose newest delete sync was held: nobody offboarded until an operator lets them through. */
  readonly held: readonly { source: string; deletions: number; threshold: number | null; reason: string | null; at: string }[];
}

const syncRunColumns = [
  'l.id',
  'c.name as customer',
  'l.subject as source',
  'l.action',
  'l.status',
  'l.workflow_id',
  'l.run_id',
  'l.error',
  'l.details',
] as const;

type SyncRunRow = {
  id: string;
  customer: string | null;
  source: string | null;
  action: string;
  status: string;
  workflow_id: string | null;
  run_id: string | null;
  error: string | null;
  details: unknown;
  startedAt: string | null;
  endedAt: string | null;
  seconds: number | null;
};

function syncRunsQuery(db: Kysely<Database>) {
  return db
    .selectFrom('transaction_log as l')
    .leftJoin('customers as c', 'c.id', 'l.customer_id')
    .select(syncRunColumns)
    .select([
      isoUtc('l.started_at').as('startedAt'),
      isoUtc('l.ended_at').as('endedAt'),
      sql<number | null>`extract(epoch from (l.ended_at - l.started_at))::float8`.as('seconds'),
    ])
    .where('l.kind', '=', 'sync')
    .where('l.run_id', 'is not', null);
}

function toSyncRun(row: SyncRunRow): SyncRun {
  const details = (row.details ?? {}) as { configVersion?: number; mode?: string; report?: SyncReport | null };
  return {
    id: row.id,
    customer: row.customer,
    source: row.source,
    mode: (details.report?.modes ?? [details.mode ?? row.action.replace(/^sync\./, '')]).join(', '),
    status: row.status,
    startedAt: row.startedAt ?? '',
    endedAt: row.endedAt,
    seconds: row.seconds,
    workflowId: row.workflow_id ?? '',
    runId: row.run_id ?? '',
    error: row.error,
    configVersion: details.configVersion ?? null,
    report: details.report ?? null,
    counts: details.report?.counts ?? null,
  };
}

async function customerId(db: Kysely<Database>, customer: string): Promise<number | undefined> {
  return (await db.selectFrom('customers').select('id').where('name', '=', customer).executeTakeFirst())?.id;
}

/** The order the overview shows statuses in: along the pipeline, then the ones that need attention. */
export const PLACEMENT_STATUS_ORDER: readonly UserStatus[] = ['provisioned', 'provisioning', 'moved', 'imported', 'unplaced', 'unmatched', 'blocked', 'failed', 'deleted'];

export async function overview(db: Kysely<Database>, customer: string): Promise<Overview | undefined> {
  const id = await customerId(db, customer);
  if (id === undefined) return undefined;
  const [sites, placement, pools, syncs, attention, attentionTotal, held] = await Promise.all([
    db.selectFrom('sites').select('name').where('customer_id', '=', id).orderBy('position').execute(),
    db
      .selectFrom('users as u')
      .leftJoin('sites as s', 's.id', 'u.site_id')
      .select(['s.name as site', 'u.status', sql<number>`count(*)::int`.as('users')])
      .where('u.customer_id', '=', id)
      .groupBy(['s.name', 'u.status'])
      .execute(),
    sql<PoolUsage>`
      select coalesce(s.name, 'customer pool') as pool, s.name as site,
        count(*) filter (where n.status = 'used')::int as used,
        count(*) filter (where n.status = 'reserved')::int as reserved,
        count(*) filter (where n.status = 'cooling' and n.cooling_until > now())::int as cooling,
        count(*) filter (where n.status = 'available' or (n.status = 'cooling' and n.cooling_until <= now()))::int as available,
        count(*)::int as total,
        (select count(*)::int from users u join user_profiles p on p.id = u.profile_id
          where u.customer_id = ${id} and u.status = 'blocked'
            and ((s.name is null and p.number_from = 'customer') or (p.number_from = 'site' and u.site_id = min(s.id)))) as blocked
      from number_inventory n left join sites s on s.id = n.site_id
      where n.customer_id = ${id}
      group by s.name, s.position order by s.position nulls first`.execute(db),
    syncRunsQuery(db).where('l.customer_id', '=', id).orderBy('l.id', 'desc').limit(8).execute(),
    db
      .selectFrom('users as u')
      .innerJoin('sync_sources as src', 'src.id', 'u.source_id')
      .leftJoin('sites as s', 's.id', 'u.site_id')
      .select(['u.id', sql<string>`coalesce(u.username, u.external_id)`.as('name'), 'src.name as source', 's.name as site', 'u.status', 'u.status_reason as reason'])
      .where('u.customer_id', '=', id)
      .where('u.status', 'in', ['blocked', 'failed'])
      .orderBy('u.updated_at', 'desc')
      .limit(12)
      .execute(),
    db
      .selectFrom('users')
      .select(sql<number>`count(*)::int`.as('n'))
      .where('customer_id', '=', id)
      .where('status', 'in', ['blocked', 'failed'])
      .executeTakeFirstOrThrow(),
    // The newest run of each source, when it was held.
    sql<{ source: string; details: { report?: SyncReport | null } | null; at: string; error: string | null }>`
      select * from (
        select distinct on (l.subject) l.subject as source, l.status, l.details, l.error,
          to_char(l.started_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') as at
        from transaction_log l
        where l.customer_id = ${id} and l.kind = 'sync' and l.run_id is not null
        order by l.subject, l.id desc
      ) newest where status = 'held'`.execute(db),
  ]);
  const byStatus: Record<string, number> = {};
  let users = 0;
  for (const row of placement) {
    byStatus[row.status] = (byStatus[row.status] ?? 0) + row.users;
    users += row.users;
  }
  // Sites in the configuration's order, customer level last (as the chart), each site's statuses in the pipeline's order.
  const siteRank = (site: string | null) => (site === null ? sites.length : sites.findIndex((s) => s.name === site));
  const statusRank = (status: string) => PLACEMENT_STATUS_ORDER.indexOf(status as UserStatus);
  placement.sort((a, b) => siteRank(a.site) - siteRank(b.site) || statusRank(a.status) - statusRank(b.status));
  return {
    customer,
    sites: sites.map((s) => s.name),
    placement,
    totals: { users, byStatus },
    pools: pools.rows,
    syncs: syncs.map((r) => toSyncRun(r as SyncRunRow)),
    attention,
    attentionTotal: attentionTotal.n,
    held: held.rows.map((h) => ({
      source: h.source,
      deletions: h.details?.report?.held?.deletions ?? 0,
      threshold: h.details?.report?.held?.threshold ?? null,
      reason: h.details?.report?.reason ?? h.error,
      at: h.at,
    })),
  };
}

export const USER_SORTS = {
  name: sql`coalesce(u.username, u.external_id)`,
  email: sql`u.email`,
  site: sql`s.name`,
  profile: sql`p.name`,
  status: sql`u.status`,
  source: sql`src.name`,
  updated: sql`u.updated_at`,
} as const;
export type UserSort = keyof typeof USER_SORTS;

export interface UserFilter {
  readonly customer?: string | undefined;
  readonly site?: string | undefined;
  readonly profile?: string | undefined;
  readonly status?: string | undefined;
  readonly source?: string | undefined;
  /** Free text: part of the username, email or external id, any case. */
  readonly q?: string | undefined;
  readonly sort?: UserSort | undefined;
  readonly desc?: boolean | undefined;
  /** 1-based. */
  readonly page?: number | undefined;
}

export interface UserRow {
  readonly id: string;
  readonly customer: string;
  readonly source: string;
  readonly externalId: string;
  readonly username: string | null;
  readonly email: string | null;
  readonly site: string | null;
  readonly profile: string | null;
  readonly status: string;
  readonly reason: string | null;
  readonly updatedAt: string;
}

export async function usersPage(db: Kysely<Database>, filter: UserFilter): Promise<{ rows: UserRow[]; total: number; page: number; pages: number }> {
  // The count joins only what the filters name: at 100,000 users it is most of a page's time.
  let counted = db.selectFrom('users as u');
  let query = db
    .selectFrom('users as u')
    .innerJoin('customers as c', 'c.id', 'u.customer_id')
    .innerJoin('sync_sources as src', 'src.id', 'u.source_id')
    .leftJoin('sites as s', 's.id', 'u.site_id')
    .leftJoin('user_profiles as p', 'p.id', 'u.profile_id');
  if (filter.customer) {
    const customer = db.selectFrom('customers').select('id').where('name', '=', filter.customer);
    counted = counted.where('u.customer_id', 'in', customer);
    query = query.where('u.customer_id', 'in', customer);
  }
  if (filter.site) {
    const site = db.selectFrom('sites').select('id').where('name', '=', filter.site);
    counted = filter.site === '-' ? counted.where('u.site_id', 'is', null) : counted.where('u.site_id', 'in', site);
    query = filter.site === '-' ? query.where('u.site_id', 'is', null) : query.where('u.site_id', 'in', site);
  }
  if (filter.profile) {
    const profile = db.selectFrom('user_profiles').select('id').where('name', '=', filter.profile);
    counted = filter.profile === '-' ? counted.where('u.profile_id', 'is', null) : counted.where('u.profile_id', 'in', profile);
    query = filter.profile === '-' ? query.where('u.profile_id', 'is', null) : query.where('u.profile_id', 'in', profile);
  }
  if (filter.status && (USER_STATUSES as readonly string[]).includes(filter.status)) {
    const status = filter.status as (typeof USER_STATUSES)[number];
    counted = counted.where('u.status', '=', status);
    query = query.where('u.status', '=', status);
  }
  if (filter.source) {
    const source = db.selectFrom('sync_sources').select('id').where('name', '=', filter.source);
    counted = counted.where('u.source_id', 'in', source);
    query = query.where('u.source_id', 'in', source);
  }
  if (filter.q) {
    // The expression the trigram index (migration 0008) is on, where the server has pg_trgm.
    const text = sql<string>`(${sql.raw(USER_SEARCH_TEXT.replace(/\b(username|email|external_id)\b/g, 'u.$1'))})`;
    counted = counted.where(text, 'ilike', containing(filter.q));
    query = query.where(text, 'ilike', containing(filter.q));
  }
  const { n: total } = await counted.select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow();
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const page = Math.min(Math.max(1, filter.page ?? 1), pages);
  const order = USER_SORTS[filter.sort ?? 'name'];
  const rows = await query
    .select([
      'u.id',
      'c.name as customer',
      'src.name as source',
      'u.external_id as externalId',
      'u.username',
      'u.email',
      's.name as site',
      'p.name as profile',
      'u.status',
      'u.status_reason as reason',
      isoUtc('u.updated_at').$castTo<string>().as('updatedAt'),
    ])
    .orderBy(sql`${order} ${sql.raw(filter.desc ? 'desc nulls last' : 'asc nulls first')}`)
    .orderBy('u.id')
    .limit(PAGE_SIZE)
    .offset((page - 1) * PAGE_SIZE)
    .execute();
  return { rows, total, page, pages };
}

/** What the filters can choose from: the sites, profiles and sources of the customers shown. */
export async function filterChoices(db: Kysely<Database>, customer: string | undefined) {
  const byCustomer = <N extends 'sites' | 'user_profiles' | 'sync_sources'>(table: N) => {
    let q = db.selectFrom(`${table} as t` as 'sites as t').innerJoin('customers as c', 'c.id', 't.customer_id').select('t.name').distinct().orderBy('t.name');
    if (customer) q = q.where('c.name', '=', customer);
    return q.execute().then((rows) => rows.map((r) => r.name));
  };
  const [sites, profiles, sources] = await Promise.all([byCustomer('sites'), byCustomer('user_profiles'), byCustomer('sync_sources')]);
  return { sites, profiles, sources, statuses: [...USER_STATUSES] };
}

/** A condition's verdict as the user page draws it: the condition, the value seen, the parts beneath. */
export interface ExplanationView {
  readonly held: boolean;
  readonly condition: string;
  readonly seen: string | null;
  readonly reason: string | null;
  readonly parts: readonly ExplanationView[];
}

/** A site or profile decision, readable: the verdict, and each candidate with its conditions. */
export interface DecisionView {
  readonly verdict: string;
  readonly candidates: readonly { title: string; matched: boolean | null; explanation: ExplanationView | null }[];
}

function explanationView(e: Explanation): ExplanationView {
  return {
    held: e.held,
    condition: e.condition,
    seen: e.seen === undefined ? null : JSON.stringify(e.seen),
    reason: e.reason ?? null,
    parts: (e.parts ?? []).map(explanationView),
  };
}

export function decisionView(why: unknown): DecisionView | null {
  if (isSiteResolution(why)) {
    return {
      verdict: siteVerdict(why),
      candidates: why.considered.map((c) => ({
        title: c.explanation ? `site ${c.site}, move criteria ${c.criteria}` : `site ${c.site}: no move criteria for this user type, skipped`,
        matched: c.explanation ? c.explanation.held : null,
        explanation: c.explanation ? explanationView(c.explanation) : null,
      })),
    };
  }
  if (isFtpResolution(why)) {
    return {
      verdict: profileVerdict(why),
      candidates: why.considered.map((c, i) => ({ title: `rule ${i + 1}, criteria ${c.criteria} → profile ${c.profile}`, matched: c.explanation.held, explanation: explanationView(c.explanation) })),
    };
  }
  return null;
}

export interface TimelineEntry {
  readonly at: string;
  readonly kind: string;
  readonly action: string;
  readonly status: string;
  readonly subject: string | null;
  readonly error: string | null;
  readonly workflowId: string | null;
  readonly runId: string | null;
  readonly decision: DecisionView | null;
}

export interface UserPage extends UserDetail {
  readonly id: string;
  readonly attributes: Record<string, unknown>;
  readonly userType: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly timeline: readonly TimelineEntry[];
  readonly timelineTotal: number;
}

/** The newest steps of a user's timeline the page shows (all of them are in flowthru log --user). */
export const TIMELINE_LIMIT = 200;

export async function userPage(db: Kysely<Database>, id: string): Promise<UserPage | undefined> {
  if (!/^\d{1,18}$/.test(id)) return undefined;
  const [detail, row, entries, count] = await Promise.all([
    userDetail(db, id),
    db
      .selectFrom('users as u')
      .select(['u.attributes', 'u.user_type as userType', isoUtc('u.created_at').$castTo<string>().as('createdAt'), isoUtc('u.updated_at').$castTo<string>().as('updatedAt')])
      .where('u.id', '=', id)
      .executeTakeFirst(),
    db
      .selectFrom('transaction_log as l')
      .select([
        isoUtc('l.started_at').$castTo<string>().as('at'),
        'l.kind',
        'l.action',
        'l.status',
        'l.subject',
        'l.error',
        'l.workflow_id as workflowId',
        'l.run_id as runId',
        sql<unknown>`l.details -> 'why'`.as('why'),
      ])
      .where('l.user_id', '=', id)
      .orderBy('l.started_at', 'desc')
      .orderBy('l.id', 'desc')
      .limit(TIMELINE_LIMIT)
      .execute(),
    db.selectFrom('transaction_log').select(sql<number>`count(*)::int`.as('n')).where('user_id', '=', id).executeTakeFirstOrThrow(),
  ]);
  if (!detail || !row) return undefined;
  return {
    ...detail,
    id,
    attributes: row.attributes,
    userType: row.userType,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    timeline: entries.reverse().map(({ why, ...e }) => ({ ...e, decision: decisionView(why) })),
    timelineTotal: count.n,
  };
}

export interface NumberFilter {
  readonly customer?: string | undefined;
  readonly site?: string | undefined;
  readonly status?: string | undefined;
  readonly q?: string | undefined;
  readonly page?: number | undefined;
}

export const NUMBER_STATUSES = ['available', 'reserved', 'used', 'cooling'] as const;

export async function numbersPage(db: Kysely<Database>, filter: NumberFilter) {
  const status = sql<string>`case when n.status = 'cooling' and n.cooling_until <= now() then 'available' else n.status end`;
  let query = db
    .selectFrom('number_inventory as n')
    .innerJoin('customers as c', 'c.id', 'n.customer_id')
    .leftJoin('sites as s', 's.id', 'n.site_id')
    .leftJoin('users as u', 'u.id', 'n.user_id');
  if (filter.customer) query = query.where('c.name', '=', filter.customer);
  if (filter.site) query = filter.site === '-' ? query.where('n.site_id', 'is', null) : query.where('s.name', '=', filter.site);
  if (filter.status && (NUMBER_STATUSES as readonly string[]).includes(filter.status)) query = query.where(status, '=', filter.status);
  if (filter.q) query = query.where('n.number', 'like', containing(filter.q));
  const { n: total } = await query.select(sql<number>`count(*)::int`.as('n')).executeTakeFirstOrThrow();
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const page = Math.min(Math.max(1, filter.page ?? 1), pages);
  const rows = await query
    .select([
      'n.number',
      'c.name as customer',
      's.name as site',
      status.as('status'),
      'u.id as userId',
      sql<string | null>`coalesce(u.username, u.external_id)`.as('holder'),
      sql<string | null>`case when n.status = 'cooling' and n.cooling_until > now() then ${isoUtc('n.cooling_until')} end`.as('coolingUntil'),
    ])
    .orderBy('c.name')
    .orderBy(sql`s.position nulls first`)
    .orderBy(sql`length(n.number)`)
    .orderBy('n.number')
    .limit(PAGE_SIZE)
    .offset((page - 1) * PAGE_SIZE)
    .execute();
  return { rows, total, page, pages };
}

export async function syncRuns(db: Kysely<Database>, filter: { customer?: string | undefined; page?: number | undefined }) {
  let query = syncRunsQuery(db);
  if (filter.customer) query = query.where('c.name', '=', filter.customer);
  const page = Math.max(1, filter.page ?? 1);
  const rows = await query
    .orderBy('l.id', 'desc')
    .limit(PAGE_SIZE + 1)
    .offset((page - 1) * PAGE_SIZE)
    .execute();
  return { runs: rows.slice(0, PAGE_SIZE).map((r) => toSyncRun(r as SyncRunRow)), page, more: rows.length > PAGE_SIZE };
}

/** One sync run with the records it skipped (each with where it is in the source and why). */
export async function syncRun(db: Kysely<Database>, id: string) {
  if (!/^\d{1,18}$/.test(id)) return undefined;
  const row = await syncRunsQuery(db).where('l.id', '=', id).executeTakeFirst();
  if (!row) return undefined;
  const run = toSyncRun(row as SyncRunRow);
  const problems = await db
    .selectFrom('transaction_log')
    .select(['subject', 'error'])
    .where('kind', '=', 'sync')
    .where('action', '=', 'source.invalid-record')
    .where('workflow_id', '=', `${run.workflowId}/${run.runId}`)
    .orderBy('id')
    .limit(500)
    .execute();
  return { run, problems: problems.map((p) => ({ at: (p.subject ?? '').replace(/^\S+ /, ''), message: p.error ?? '' })) };
}
