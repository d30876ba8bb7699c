import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrateDownAll, migrateToLatest } from '../../src/adapters/db/migrate.js';
import { DATABASE_COLUMNS } from '../../src/adapters/db/schema.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => t?.drop());

async function columns(): Promise<Record<string, string[]>> {
  const { rows } = await sql<{ table_name: string; column_name: string }>`
    select table_name, column_name from information_schema.columns
    where table_schema = 'public' and table_name not like 'kysely_%'
    order by table_name, ordinal_position`.execute(t.db);
  const out: Record<string, string[]> = {};
  for (const row of rows) (out[row.table_name] ??= []).push(row.column_name);
  return out;
}

/** Inserts a customer with a site, a source and a user; returns their ids. */
async function seedTenant(name: string) {
  const { id: customerId } = await t.db.insertInto('customers').values({ name, display_name: null }).returning('id').executeTakeFirstOrThrow();
  const { id: siteId } = await t.db
    .insertInto('sites')
    .values({ customer_id: customerId, name: 'hq', display_name: null, position: 0 })
    .returning('id')
    .executeTakeFirstOrThrow();
  const { id: sourceId } = await t.db
    .insertInto('sync_sources')
    .values({ customer_id: customerId, name: 'hr', type: 'csv', user_type: 'csv', settings: '{}' as never, attribute_map: '{}' as never })
    .returning('id')
    .executeTakeFirstOrThrow();
  const user = (externalId: string) =>
    t.db
      .insertInto('users')
      .values({ customer_id: customerId, source_id: sourceId, external_id: externalId, user_type: 'csv', attributes: '{}' as never, source_hash: 'h', username: null, email: null, ldap_entry: null, site_id: null, role: null, profile_id: null, status_reason: null, deleted_at: null })
      .returning('id')
      .executeTakeFirstOrThrow();
  const { id: userId } = await user('e1');
  const { id: otherUserId } = await user('e2');
  return { customerId, siteId, sourceId, userId, otherUserId, user };
}

const failsWith = async (promise: Promise<unknown>, code: string) => expect(promise).rejects.toMatchObject({ code });

describe('the database schema', () => {
  it('matches the typed Database interface, table for table and column for column', async () => {
    const actual = await columns();
    const expected = Object.fromEntries(Object.entries(DATABASE_COLUMNS).map(([table, cols]) => [table, [...cols]]));
    expect(actual).toEqual(expected);
  });

  it('migrates down completely and up again', async () => {
    expect(await migrateDownAll(t.db)).toEqual(['0008_console', '0007_targets', '0006_lifecycle', '0005_licence_assignments', '0004_licences', '0003_number_lookups', '0002_pipeline_outcomes', '0001_initial']);
    expect(Object.keys(await columns())).toEqual([]);
    expect(await migrateToLatest(t.db)).toEqual(['0001_initial', '0002_pipeline_outcomes', '0003_number_lookups', '0004_licences', '0005_licence_assignments', '0006_lifecycle', '0007_targets', '0008_console']);
    expect(Object.keys(await columns()).sort()).toEqual(Object.keys(DATABASE_COLUMNS).sort());
  });

  it('has one user per (customer, source, externalId)', async () => {
    const a = await seedTenant('unique-users');
    await failsWith(a.user('e1'), '23505');
  });

  it('lets a number be held by one user at most, even across pools', async () => {
    const a = await seedTenant('held-once');
    await t.db
      .insertInto('number_inventory')
      .values([
        { customer_id: a.customerId, site_id: a.siteId, number: '1000', prevent_duplicates: false, status: 'used', user_id: a.userId },
        { customer_id: a.customerId, site_id: null, number: '1000', prevent_duplicates: false },
      ])
      .execute();
    await failsWith(
      t.db
        .updateTable('number_inventory')
        .set({ status: 'used', user_id: a.otherUserId })
        .where('customer_id', '=', a.customerId)
        .where('site_id', 'is', null)
        .execute(),
      '23505',
    );
  });

  it('keeps status and holder consistent', async () => {
    const a = await seedTenant('consistent');
    await failsWith(
      t.db.insertInto('number_inventory').values({ customer_id: a.customerId, site_id: null, number: '2000', prevent_duplicates: true, status: 'used' }).execute(),
      '23514',
    );
    await failsWith(
      t.db.insertInto('number_inventory').values({ customer_id: a.customerId, site_id: null, number: '2001', prevent_duplicates: true, status: 'cooling' }).execute(),
      '23514',
    );
  });

  it('with preventDuplicateNumbers, a number exists once per customer', async () => {
    const a = await seedTenant('no-dupes');
    await t.db.insertInto('number_inventory').values({ customer_id: a.customerId, site_id: a.siteId, number: '3000', prevent_duplicates: true }).execute();
    await failsWith(
      t.db.insertInto('number_inventory').values({ customer_id: a.customerId, site_id: null, number: '3000', prevent_duplicates: true }).execute(),
      '23505',
    );
    // Without it, another pool may hold the same extension (each site has its own dial plan).
    await t.db.insertInto('number_inventory').values({ customer_id: a.customerId, site_id: null, number: '3001', prevent_duplicates: false }).execute();
    await t.db.insertInto('number_inventory').values({ customer_id: a.customerId, site_id: a.siteId, number: '3001', prevent_duplicates: false }).execute();
  });

  it("never lets a row point at another customer's site, user or criteria", async () => {
    const a = await seedTenant('tenant-a');
    const b = await seedTenant('tenant-b');
    await failsWith(t.db.updateTable('users').set({ site_id: b.siteId }).where('id', '=', a.userId).execute(), '23503');
    await failsWith(
      t.db.insertInto('number_inventory').values({ customer_id: a.customerId, site_id: null, number: '4000', prevent_duplicates: true, status: 'used', user_id: b.userId }).execute(),
      '23503',
    );
    const { id: criteriaId } = await t.db
      .insertInto('criteria')
      .values({ customer_id: b.customerId, name: 'x', usage: 'move', condition: '{"all":[]}' as never, description: null })
      .returning('id')
      .executeTakeFirstOrThrow();
    await failsWith(
      t.db.insertInto('site_move_criteria').values({ customer_id: a.customerId, site_id: a.siteId, user_type: 'csv', criteria_id: criteriaId }).execute(),
      '23503',
    );
  });

  it('refuses ftp criteria as move criteria at the database level too', async () => {
    const a = await seedTenant('usage');
    const { id } = await t.db
      .insertInto('criteria')
      .values({ customer_id: a.customerId, name: 'eng', usage: 'ftp', condition: '{"all":[]}' as never, description: null })
      .returning('id')
      .executeTakeFirstOrThrow();
    await failsWith(
      t.db.insertInto('site_move_criteria').values({ customer_id: a.customerId, site_id: a.siteId, user_type: 'csv', criteria_id: id }).execute(),
      '23503',
    );
  });
});

describe('flowthru db migrate', () => {
  it('creates a database that does not exist yet, then migrates it', async () => {
    const { main } = await import('../../src/client/cli.js');
    const { inject } = await import('vitest');
    const url = new URL(inject('adminDatabaseUrl'));
    const name = `${inject('templateDatabase').replace(/_template$/, '')}_created`;
    url.pathname = `/${name}`;
    const saved = process.env.DATABASE_URL;
    process.env.DATABASE_URL = url.toString();
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) };
    try {
      expect(await main(['node', 'flowthru', 'db', 'migrate'], io)).toBe(0);
      expect(out[0]).toBe(`Created database ${name}.`);
      expect(out[1]).toMatch(/^Ran migrations: 0001_initial/);
      out.length = 0;
      expect(await main(['node', 'flowthru', 'db', 'migrate'], io)).toBe(0);
      expect(out).toEqual(['Database schema is up to date.']);
      expect(err).toEqual([]);
    } finally {
      process.env.DATABASE_URL = saved;
    }
  });

  it('says how in one sentence when the database cannot be created', async () => {
    const { main } = await import('../../src/client/cli.js');
    const { inject } = await import('vitest');
    // A role that may log in but not create databases.
    await sql`do $$ begin create role flowthru_test_nocreate login nocreatedb; exception when duplicate_object then null; end $$`.execute(t.db);
    const url = new URL(inject('adminDatabaseUrl'));
    url.username = 'flowthru_test_nocreate';
    url.pathname = '/flowthru_test_never_created';
    const saved = process.env.DATABASE_URL;
    process.env.DATABASE_URL = url.toString();
    const err: string[] = [];
    try {
      const code = await main(['node', 'flowthru', 'db', 'migrate'], { out: () => undefined, err: (l) => err.push(l) });
      expect(code).toBe(1);
      expect(err).toEqual([
        'flowthru: database "flowthru_test_never_created" does not exist and could not be created (permission denied to create database): create it (createdb flowthru_test_never_created) or point DATABASE_URL at an existing one',
      ]);
    } finally {
      process.env.DATABASE_URL = saved;
    }
  });
});
