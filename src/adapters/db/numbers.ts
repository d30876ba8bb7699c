import { sql, type Kysely, type RawBuilder, type Transaction } from 'kysely';
import { keptLine, type HeldNumber } from '../../domain/numbers.js';
import type { Database } from './schema.js';

type Tx = Transaction<Database>;

export interface Pool {
  readonly customerId: number;
  /** The site's pool, or null for the customer's pool. */
  readonly siteId: number | null;
}

/**
 * The candidate `n` is held by nobody in any pool of the customer (the same extension at another
 * site). Written as a probe of the held-numbers index per candidate, not as `not exists`: the
 * planner turns that into an anti join and, with statistics taken while nobody held a number (a
 * fresh inventory: the estimate is one held row), scans every held number of the customer for each
 * reservation — 23 ms at 6,000 held numbers, growing with every user provisioned. The probe costs
 * one index lookup per candidate looked at, usually one, whatever the statistics say.
 */
const notHeldElsewhere = sql`(select h.id from number_inventory h
    where h.customer_id = n.customer_id and h.number = n.number and h.user_id is not null limit 1) is null`;

/**
 * Reserves the lowest available number of a pool for a user, or returns the one they already hold
 * from it (a rerun keeps what it reserved). Safe under any concurrency: the candidate row is locked
 * (`for update skip locked`), so racing allocations take different numbers, and the database's
 * unique index on held numbers backs that up. Numbers whose cooling period has ended become
 * available first; a number held by another user in another pool (same extension, another site) is
 * skipped. Returns null when the pool is exhausted.
 *
 * One statement as a rule: it ends the pool's expired cooling (usually finding nothing through the
 * cooling index and writing nothing), looks up the number the user holds, and reserves the lowest
 * available one if they hold none. Its reservation cannot see the numbers whose cooling it ends
 * (one snapshot): when one of them comes before the number it reserved, or it reserved nothing,
 * the reservation is given back and made again (up to two statements more, once per pool per
 * expiry), so the lowest number is still the one taken. The candidate is read from the partial
 * index of available numbers in dialling order, so the cost does not grow with the pool:
 * `site_id = x` (not `is not distinct from`, which no index serves).
 */
export async function reserveNumber(tx: Tx, pool: Pool, userId: string, reservedBy: string): Promise<string | null> {
  const inPool = (alias: string) => (pool.siteId === null ? sql`${sql.ref(alias)}.site_id is null` : sql`${sql.ref(alias)}.site_id = ${pool.siteId}`);
  const reserve = (unless: RawBuilder<unknown> = sql`true`) => sql`update number_inventory set status = 'reserved', user_id = ${userId}, reserved_by = ${reservedBy},
      cooling_until = null, updated_at = now()
    where id = (${reservationCandidates(pool, unless)} limit 1 for update skip locked)`;
  // Data-modifying WITHs run to completion whether or not the query reads them; the reservation and
  // the end of cooling touch different rows (available ones, cooling ones). The reservation locks
  // nothing when the user holds a number (the test sits in the candidates' query, under the lock).
  // Which number comes first is decided by the database, in its own order (its collation).
  const found = await sql<{ held: string | null; taken: string | null; again: boolean }>`
    with cooled as (
      update number_inventory c set status = 'available', cooling_until = null, updated_at = now()
      where c.customer_id = ${pool.customerId} and c.status = 'cooling' and c.cooling_until <= now() and ${inPool('c')}
      returning c.number),
    held as (
      select h.number from number_inventory h
      where h.customer_id = ${pool.customerId} and ${inPool('h')} and h.user_id = ${userId} and h.status in ('reserved', 'used')
      order by length(h.number), h.number
      limit 1),
    taken as (${reserve(sql`not exists (select 1 from held)`)} returning number)
    select (select number from held) as held, (select number from taken) as taken,
      exists (select 1 from cooled c
        where not exists (select 1 from taken)
          or exists (select 1 from taken t where (length(c.number), c.number) < (length(t.number), t.number))) as again`.execute(tx);
  const { held, taken, again } = found.rows[0]!;
  if (held !== null) return held;
  if (!again) return taken;
  // A number whose cooling just ended comes first (or is the only one): take the lowest now that the pool sees it.
  if (taken !== null) await releaseReservation(tx, pool.customerId, userId, taken);
  const retaken = await sql<{ number: string }>`${reserve()} returning number`.execute(tx);
  return retaken.rows[0]?.number ?? null;
}

/** The ids of the pool's numbers a reservation may take, best first: available, held by nobody, in dialling order. */
export function reservationCandidates(pool: Pool, unless: RawBuilder<unknown> = sql`true`): RawBuilder<{ id: string }> {
  const inPool = pool.siteId === null ? sql`n.site_id is null` : sql`n.site_id = ${pool.siteId}`;
  return sql<{ id: string }>`select n.id from number_inventory n
      where ${unless} and n.customer_id = ${pool.customerId} and ${inPool} and n.status = 'available' and ${notHeldElsewhere}
      order by length(n.number), n.number`;
}

/** Gives back a number a run reserved but never used: straight to available, nobody dialled it. */
export async function releaseReservation(tx: Tx, customerId: number, userId: string, number: string): Promise<void> {
  await tx
    .updateTable('number_inventory')
    .set({ status: 'available', user_id: null, reserved_by: null, updated_at: new Date() })
    .where('customer_id', '=', customerId)
    .where('user_id', '=', userId)
    .where('number', '=', number)
    .where('status', '=', 'reserved')
    .execute();
}

export async function numbersOfUser(tx: Tx, userId: string): Promise<string[]> {
  const rows = await tx.selectFrom('number_inventory').select('number').where('user_id', '=', userId).orderBy('number').execute();
  return rows.map((r) => r.number);
}

export interface Cooling {
  readonly enabled: boolean;
  readonly days: number;
}

/**
 * The user holds `keep` in use (a reserved one taken into use) and gives back every other number
 * they hold: a number only reserved goes straight back to available (nobody dialled it); one in use
 * rests in `cooling` for the customer's cooling period when cooling is on, so the next holder does
 * not get the last one's calls. One statement. Returns the numbers released: a user never holds a
 * number their current profile does not give them. `keep` null gives back everything.
 */
export async function holdOnly(tx: Tx, customerId: number, userId: string, keep: string | null, cooling: Cooling): Promise<string[]> {
  const cool = cooling.enabled && cooling.days > 0;
  const kept = keep === null ? sql<boolean>`false` : sql<boolean>`number = ${keep}`;
  const result = await sql<{ number: string; kept: boolean }>`
    update number_inventory set
      status = case when ${kept} then 'used' when status = 'used' and ${cool} then 'cooling' else 'available' end,
      cooling_until = case when not ${kept} and status = 'used' and ${cool} then now() + make_interval(days => ${cooling.days}) else null end,
      user_id = case when ${kept} then user_id end,
      reserved_by = null, updated_at = now()
    where customer_id = ${customerId} and user_id = ${userId} and status in ('reserved', 'used')
      and not (${kept} and status = 'used')
    returning number, ${kept} as kept`.execute(tx);
  return result.rows
    .filter((r) => !r.kept)
    .map((r) => r.number)
    .sort();
}

export interface LineRequest {
  readonly customerId: number;
  readonly userId: string;
  /** The user's site now. */
  readonly siteId: number | null;
  /** Where the profile's number comes from; null: the profile gives no line. */
  readonly pool: 'site' | 'customer' | null;
  /** `numberAssignmentOnMove: keep-existing`: a number held from another site's pool stays. */
  readonly keepExisting: boolean;
  readonly reservedBy: string;
}

/**
 * The number the profile gives the user, inside the caller's transaction: the one they hold from
 * the right pool, else (keep-existing) one they hold from another site's pool, else the lowest
 * available one reserved now. `exhausted` names nothing: the pool has no number left.
 */
export async function allocateLine(tx: Tx, request: LineRequest): Promise<{ number: string | null; exhausted?: true }> {
  if (request.pool === null) return { number: null };
  const pool: Pool = { customerId: request.customerId, siteId: request.pool === 'site' ? request.siteId : null };
  const kept = keptLine((await numbersHeld(tx, [request.userId])).get(request.userId) ?? [], pool.siteId, request.keepExisting);
  if (kept) return { number: kept };
  const number = await reserveNumber(tx, pool, request.userId, request.reservedBy);
  return number === null ? { number: null, exhausted: true } : { number };
}

/**
 * The next `limit` numbers a reservation from this pool would hand out, in order, without taking
 * any: what a preview predicts. Cooling numbers whose time has passed count as available.
 */
export async function nextAvailableNumbers(db: Kysely<Database>, pool: Pool, limit: number, after?: string): Promise<string[]> {
  const inPool = pool.siteId === null ? sql`n.site_id is null` : sql`n.site_id = ${pool.siteId}`;
  // The next page, in dialling order, after the last number of the page before.
  const next = after === undefined ? sql`true` : sql`(length(n.number), n.number) > (length(${after}::text), ${after}::text)`;
  const result = await sql<{ number: string }>`
    select n.number from number_inventory n
    where n.customer_id = ${pool.customerId} and ${inPool}
      and (n.status = 'available' or (n.status = 'cooling' and n.cooling_until <= now()))
      and ${notHeldElsewhere} and ${next}
    order by length(n.number), n.number
    limit ${limit}`.execute(db);
  return result.rows.map((r) => r.number);
}

/** The numbers each of these users holds (reserved or used), with the pool each belongs to, in dialling order. */
export async function numbersHeld(db: Kysely<Database>, userIds: readonly string[]): Promise<Map<string, HeldNumber[]>> {
  const held = new Map<string, HeldNumber[]>();
  if (userIds.length === 0) return held;
  const rows = await db
    .selectFrom('number_inventory')
    .select(['user_id', 'number', 'site_id'])
    .where('user_id', 'in', [...userIds])
    .where('status', 'in', ['reserved', 'used'])
    .orderBy(sql`length(number)`)
    .orderBy('number')
    .execute();
  for (const row of rows) held.set(String(row.user_id), [...(held.get(String(row.user_id)) ?? []), { number: row.number, siteId: row.site_id }]);
  return held;
}
