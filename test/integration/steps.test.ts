import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runStep } from '../../src/adapters/db/steps.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let t: TestDatabase;
beforeAll(async () => {
  t = await createTestDatabase();
  await sql`create table counter (n integer not null)`.execute(t.db);
  await sql`insert into counter values (0)`.execute(t.db);
});
afterAll(async () => t?.drop());

const ctx = { customerId: 0, userId: '0', workflowId: 'wf', runId: 'run-1', attempt: 1 };
const count = async () => (await sql<{ n: number }>`select n from counter`.execute(t.db)).rows[0]!.n;

describe('a pipeline step', () => {
  beforeAll(async () => {
    // Steps log against a user of a customer; make one.
    await sql`insert into customers (id, name) values (0, 'c')`.execute(t.db);
    await sql`insert into sync_sources (id, customer_id, name, type, user_type, settings, attribute_map) values (0, 0, 's', 'csv', 'csv', '{}', '{}')`.execute(t.db);
    await sql`insert into users (id, customer_id, source_id, external_id, user_type, attributes, source_hash) values (0, 0, 0, 'e', 'csv', '{}', 'h')`.execute(t.db);
  });

  it('runs once: a rerun returns the recorded result and its own work is rolled back', async () => {
    const work = async (tx: Parameters<Parameters<typeof runStep>[3]>[0]) => {
      await sql`update counter set n = n + 1`.execute(tx);
      return { status: 'succeeded' as const, result: { at: await count() } };
    };
    const first = await runStep(t.db, ctx, 'bump', work);
    const second = await runStep(t.db, ctx, 'bump', work);
    expect(second).toEqual(first);
    expect(await count()).toBe(1);
    // Another pass (a retry of a blocked step, a new change) is another step.
    await runStep(t.db, { ...ctx, attempt: 2 }, 'bump', work);
    expect(await count()).toBe(2);
  });

  it('concurrent reruns of one step still do the work once', async () => {
    const work = async (tx: Parameters<Parameters<typeof runStep>[3]>[0]) => {
      await sql`update counter set n = n + 1`.execute(tx);
      await new Promise((r) => setTimeout(r, 50));
      return { status: 'succeeded' as const, result: 'done' };
    };
    const before = await count();
    const results = await Promise.all(Array.from({ length: 5 }, () => runStep(t.db, { ...ctx, runId: 'run-2' }, 'bump', work)));
    expect(results).toEqual(['done', 'done', 'done', 'done', 'done']);
    expect(await count()).toBe(before + 1);
  });

  it('a step that fails writes nothing', async () => {
    const before = await count();
    await expect(
      runStep(t.db, { ...ctx, runId: 'run-3' }, 'bump', async (tx) => {
        await sql`update counter set n = n + 1`.execute(tx);
        throw new Error('permanent');
      }),
    ).rejects.toThrow('permanent');
    expect(await count()).toBe(before);
    expect(await t.db.selectFrom('transaction_log').select('id').where('run_id', '=', 'run-3').execute()).toEqual([]);
  });
});
