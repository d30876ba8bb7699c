import { sql } from 'kysely';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { reservationCandidates, reserveNumber } from '../../src/adapters/db/numbers.js';
import { refreshStatistics } from '../../src/adapters/db/statistics.js';
import { PipelineHarness } from '../support/pipeline.js';

/*
 * The reservation's query plan, on a database of its own: statistics taken while nobody held a
 * number (a fresh inventory, as a first sync finds it), then thousands held. A plan that scans the
 * held numbers once per reservation grows with every user provisioned: it made a 100,000-user sync
 * quadratic (23 ms per reservation at 6,000 held).
 */

let h: PipelineHarness;
beforeAll(async () => {
  h = await PipelineHarness.create();
});
afterAll(async () => h?.close());

interface PlanNode {
  readonly Alias?: string;
  readonly 'Actual Rows': number;
  readonly 'Actual Loops': number;
  readonly 'Rows Removed by Join Filter'?: number;
  readonly 'Rows Removed by Filter'?: number;
  readonly Plans?: readonly PlanNode[];
}

/** Rows of the table (by alias) the plan read, whether kept or filtered out afterwards. */
function rowsRead(node: PlanNode, alias: string): number {
  const own = node.Alias === alias ? node['Actual Rows'] * node['Actual Loops'] + (node['Rows Removed by Filter'] ?? 0) : 0;
  return own + (node['Rows Removed by Join Filter'] ?? 0) + (node.Plans ?? []).reduce((sum, child) => sum + rowsRead(child, alias), 0);
}

const heldRowsRead = (node: PlanNode) => rowsRead(node, 'h');

const SIZE = 4000;
const HELD = 3000;

it('a reservation looks at the numbers it may take, not at every number held, whatever the statistics say', async () => {
  await h.apply({
    version: 1,
    customers: [
      {
        name: 'plan',
        criteria: [{ name: 'everyone', usage: 'move', when: { all: [] } }],
        profiles: [{ name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }] }],
        sources: [{ name: 'hr', type: 'csv', userType: 'csv', path: `${h.dir}/plan.csv`, externalId: 'employee_id', attributeMap: { employee_id: 'employeeId' } }],
        sites: [{ name: 'hq', moveCriteria: { csv: 'everyone' }, numberRanges: [{ from: '10000', to: String(10000 + SIZE - 1) }] }],
      },
    ],
  });
  const { customerId, sourceId, siteId } = await h.db
    .selectFrom('sites')
    .innerJoin('sync_sources', 'sync_sources.customer_id', 'sites.customer_id')
    .select(['sites.customer_id as customerId', 'sync_sources.id as sourceId', 'sites.id as siteId'])
    .executeTakeFirstOrThrow();
  await sql`alter table number_inventory set (autovacuum_enabled = false)`.execute(h.db);
  try {
    await sql`analyze number_inventory`.execute(h.db);
    await sql`insert into users (customer_id, source_id, external_id, user_type, attributes, source_hash, status, site_id)
      select ${customerId}, ${sourceId}, 'P' || g, 'csv', '{}', 'x', 'provisioned', ${siteId} from generate_series(1, ${HELD + 1}) g`.execute(h.db);
    // Every user but the last holds a number: the lowest ones, as a sync hands them out.
    await sql`with free as (select id, row_number() over (order by length(number), number) as rn from number_inventory where customer_id = ${customerId}),
        holders as (select id, row_number() over (order by id) as rn from users where customer_id = ${customerId} and external_id <> ${`P${HELD + 1}`})
      update number_inventory n set status = 'used', user_id = holders.id from free join holders using (rn) where n.id = free.id`.execute(h.db);
    const pool = { customerId, siteId };
    const plan = await sql<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>`explain (analyze, costs off, format json) ${reservationCandidates(pool)} limit 1`.execute(h.db);
    const top = plan.rows[0]!['QUERY PLAN'][0].Plan;
    // An anti join reads every held number of the customer (3,000) and filters them; the probe
    // looks up the candidate's number (one, here: it is held by nobody) and reads no held row.
    expect(heldRowsRead(top), JSON.stringify(top)).toBeLessThanOrEqual(1);
    const { id: holdsNothing } = await h.db.selectFrom('users').select('id').where('external_id', '=', `P${HELD + 1}`).executeTakeFirstOrThrow();
    const taken = await h.db.transaction().execute((tx) => reserveNumber(tx, pool, holdsNothing, 'test'));
    expect(taken).toBe(String(10000 + HELD));

    // One user's numbers (the welcome email's, the target's view, a release): with the statistics
    // of an inventory nobody held, a scan of every held number. A sync refreshes the statistics of
    // the tables it changed a lot, and the lookup goes by the user.
    const byUser = async () => {
      const explained = await sql<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>`explain (analyze, costs off, format json)
        select number from number_inventory u where u.user_id = ${holdsNothing} and u.status = 'reserved' order by number`.execute(h.db);
      return rowsRead(explained.rows[0]!['QUERY PLAN'][0].Plan, 'u');
    };
    // PostgreSQL counts changes a moment after they commit.
    const changed = async () =>
      (await sql<{ relname: string }>`select relname from pg_stat_user_tables where relname in ('users', 'number_inventory') and n_mod_since_analyze >= ${HELD} order by relname`.execute(h.db)).rows.map((r) => r.relname);
    await expect.poll(changed, { timeout: 15_000, interval: 250 }).toEqual(['number_inventory', 'users']);
    // Autovacuum is off for number_inventory here: the 3,000 numbers handed out left as many dead
    // row versions, which the search for the next free number would step over. They are vacuumed.
    const dead = async () => Number((await sql<{ n: string }>`select n_dead_tup as n from pg_stat_user_tables where relname = 'number_inventory'`.execute(h.db)).rows[0]!.n);
    expect(await dead()).toBeGreaterThanOrEqual(HELD);
    const refreshed = await refreshStatistics(h.db);
    expect(refreshed.analyzed).toEqual(['number_inventory', 'users']);
    expect(refreshed.vacuumed).toContain('number_inventory');
    await expect.poll(dead, { timeout: 15_000, interval: 250 }).toBeLessThan(50);
    expect(await byUser()).toBe(1);
    // Nothing changed since: nothing analyzed, nothing vacuumed.
    await expect.poll(() => refreshStatistics(h.db), { timeout: 15_000, interval: 250 }).toEqual({ analyzed: [], vacuumed: [] });
  } finally {
    await sql`alter table number_inventory reset (autovacuum_enabled)`.execute(h.db);
  }
});
