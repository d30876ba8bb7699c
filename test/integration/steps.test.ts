import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runStep, runSteps, StepNotRecorded } from '../../src/adapters/db/steps.js';
import { lockUser, setReason, setStatus } from '../../src/adapters/db/user-state.js';
import { applyServices } from '../../src/adapters/db/user-services.js';
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

  it('a rerun that fails on what the committed pass left answers what that pass recorded', async () => {
    // An attempt beside one that committed does the work again on what the first left (an update
    // that finds the user moved already takes another path) and may fail where the first did not.
    const pass = { ...ctx, runId: 'run-8' };
    const work = (fail: boolean) => async (tx: Parameters<Parameters<typeof runStep>[3]>[0]) => {
      await lockUser(tx, 0, '0');
      if (fail) throw new Error('another path, and it fails');
      return { status: 'succeeded' as const, result: 'first' };
    };
    expect(await runStep(t.db, pass, 'place', work(false))).toBe('first');
    expect(await runStep(t.db, pass, 'place', work(true))).toBe('first');
    // A pass nobody recorded fails as it fails.
    await expect(runStep(t.db, { ...pass, runId: 'run-9' }, 'place', work(true))).rejects.toThrow('another path, and it fails');
  });

  it('a rerun that asks for a step the committed pass did not take is told so, and writes nothing', async () => {
    const pass = { ...ctx, runId: 'run-10' };
    const place = async (tx: Parameters<Parameters<typeof runStep>[3]>[0]) => {
      await lockUser(tx, 0, '0');
      return { status: 'succeeded' as const, result: 'placed' };
    };
    await runSteps(t.db, pass, (step) => step('place', place));
    // The same pass again, now with a line after the placement (placeUser asked for its line).
    const again = await runSteps(t.db, pass, async (step) => {
      const placed = await step('place', place);
      try {
        return [placed, await step('line', async () => ({ status: 'succeeded' as const, result: 'line' }))];
      } catch (error) {
        if (error instanceof StepNotRecorded) return [placed, `no ${error.action}`];
        throw error;
      }
    });
    expect(again).toEqual(['placed', 'no line']);
    expect((await t.db.selectFrom('transaction_log').select('action').where('run_id', '=', 'run-10').execute()).map((e) => e.action)).toEqual(['place']);
  });

  it('several steps in one transaction: every entry written, in order, and a rerun answers from them', async () => {
    const pass = { ...ctx, runId: 'run-4' };
    const body = (bump: boolean) => async (step: Parameters<Parameters<typeof runSteps>[2]>[0]) => {
      const a = await step('a', async (tx) => {
        if (bump) await sql`update counter set n = n + 1`.execute(tx);
        return { status: 'succeeded' as const, result: { go: true }, summary: 'a' };
      });
      const b = a.go ? await step('b', async () => ({ status: 'skipped' as const, result: 'b', summary: 'b' })) : null;
      const c = await step('c', async () => ({ status: 'succeeded' as const, result: 3, summary: 'c' }));
      return [a, b, c];
    };
    const before = await count();
    const first = await runSteps(t.db, pass, body(true));
    const again = await runSteps(t.db, pass, body(true));
    expect(again).toEqual(first);
    expect(await count()).toBe(before + 1);
    const entries = await t.db.selectFrom('transaction_log').select(['action', 'status', 'subject', 'started_at', 'ended_at']).where('run_id', '=', 'run-4').orderBy('id').execute();
    expect(entries.map((e) => [e.action, e.status, e.subject])).toEqual([
      ['a', 'succeeded', 'a'],
      ['b', 'skipped', 'b'],
      ['c', 'succeeded', 'c'],
    ]);
    for (const e of entries) expect(new Date(e.ended_at as unknown as string).getTime()).toBeGreaterThanOrEqual(new Date(e.started_at as unknown as string).getTime());
  });

  it('concurrent attempts of one pass of several steps do the work once and answer alike', async () => {
    const pass = { ...ctx, runId: 'run-5' };
    const before = await count();
    const results = await Promise.all(
      Array.from({ length: 4 }, () =>
        runSteps(t.db, pass, async (step) => {
          const first = await step('one', async (tx) => {
            await lockUser(tx, 0, '0');
            await sql`update counter set n = n + 1`.execute(tx);
            await new Promise((r) => setTimeout(r, 30));
            return { status: 'succeeded' as const, result: 1 };
          });
          const second = await step('two', async () => ({ status: 'succeeded' as const, result: first + 1 }));
          return [first, second];
        }),
      ),
    );
    expect(results).toEqual([[1, 2], [1, 2], [1, 2], [1, 2]]);
    expect(await count()).toBe(before + 1);
    expect(await t.db.selectFrom('transaction_log').select('action').where('run_id', '=', 'run-5').orderBy('id').execute()).toEqual([{ action: 'one' }, { action: 'two' }]);
  });

  it('a transaction locks and reads the user once, and sees its own changes', async () => {
    await t.db
      .transaction()
      .execute(async (tx) => {
        const user = await lockUser(tx, 0, '0');
        // Written behind lockUser's back: not read again, so not seen until a change returns the row.
        await sql`update users set status_reason = 'behind its back' where id = '0'`.execute(tx);
        expect((await lockUser(tx, 0, '0')).status_reason).toBe(user.status_reason);
        await setStatus(tx, '0', 'blocked', 'waiting');
        const again = await lockUser(tx, 0, '0');
        expect(again.status).toBe('blocked');
        expect(again.status_reason).toBe('waiting');
        expect(again.updated_at.getTime()).toBeGreaterThanOrEqual(user.updated_at.getTime());
        throw new Error('roll back');
      })
      .catch((error: Error) => expect(error.message).toBe('roll back'));
    // Another transaction reads the row anew: the rolled-back change is not there.
    const fresh = await t.db.transaction().execute((tx) => lockUser(tx, 0, '0'));
    expect(fresh.status).not.toBe('blocked');
  });

  it("a pass's changes to its user are written with its entries: not by a rerun, not by a step that fails", async () => {
    const userNow = () => t.db.selectFrom('users').select(['status', 'status_reason']).where('id', '=', '0').executeTakeFirstOrThrow();
    const pass = (runId: string, status: 'moved' | 'failed', fail = false) =>
      runSteps(t.db, { ...ctx, runId }, async (step) => {
        const a = await step('move', async (tx) => {
          await lockUser(tx, 0, '0');
          await setStatus(tx, '0', status, `${runId} moved`);
          return { status: 'succeeded' as const, result: 'a' };
        });
        const b = await step('profile', async (tx) => {
          // The change before is seen here, though not yet written.
          expect((await lockUser(tx, 0, '0')).status).toBe(status);
          await setReason(tx, '0', `${runId} profiled`);
          if (fail) throw new Error('profile failed');
          return { status: 'succeeded' as const, result: 'b' };
        });
        return [a, b];
      });
    expect(await pass('run-6', 'moved')).toEqual(['a', 'b']);
    expect(await userNow()).toEqual({ status: 'moved', status_reason: 'run-6 profiled' });
    // A rerun of the pass answers from the log and its own changes are rolled back with it.
    expect(await pass('run-6', 'failed')).toEqual(['a', 'b']);
    expect(await userNow()).toEqual({ status: 'moved', status_reason: 'run-6 profiled' });
    // A pass whose second step fails leaves neither step's change nor entry.
    await expect(pass('run-7', 'failed', true)).rejects.toThrow('profile failed');
    expect(await userNow()).toEqual({ status: 'moved', status_reason: 'run-6 profiled' });
    expect(await t.db.selectFrom('transaction_log').select('id').where('run_id', '=', 'run-7').execute()).toEqual([]);
  });
});

describe("a user's services", () => {
  const apply = (wanted: Array<{ key: string; settings: Record<string, unknown> }>) =>
    t.db.transaction().execute((tx) => applyServices(tx, 0, '0', wanted.map((w) => ({ ...w, kind: w.key.split(':')[0]! }))));
  const rows = () => t.db.selectFrom('user_services').select(['service_key', 'settings', 'status', 'updated_at']).where('user_id', '=', '0').orderBy('id').execute();

  it('are brought to what the profile wants, and nothing already so is rewritten', async () => {
    expect(await apply([{ key: 'phone', settings: { a: 1, b: { c: 'x' } } }, { key: 'voicemail', settings: {} }, { key: 'group:sales', settings: {} }])).toEqual({
      added: ['phone', 'voicemail', 'group:sales'],
      changed: [],
      removed: [],
    });
    const before = await rows();
    // The same settings, keys in another order: unchanged, not rewritten.
    expect(await apply([{ key: 'phone', settings: { b: { c: 'x' }, a: 1.0 } }, { key: 'voicemail', settings: {} }, { key: 'group:sales', settings: {} }])).toEqual({ added: [], changed: [], removed: [] });
    expect(await rows()).toEqual(before);
    // One changed, one gone (in the order they were added), one new; the last of a key given twice wins.
    expect(await apply([{ key: 'phone', settings: { a: 2 } }, { key: 'teams', settings: {} }, { key: 'teams', settings: { x: true } }])).toEqual({
      added: ['teams'],
      changed: ['phone'],
      removed: ['voicemail', 'group:sales'],
    });
    expect((await rows()).map((r) => [r.service_key, r.status, r.settings])).toEqual([
      ['phone', 'active', { a: 2 }],
      ['voicemail', 'removed', {}],
      ['group:sales', 'removed', {}],
      ['teams', 'active', { x: true }],
    ]);
    // A removed service given again is added again; nothing wanted removes them all.
    expect(await apply([{ key: 'voicemail', settings: {} }])).toEqual({ added: ['voicemail'], changed: [], removed: ['phone', 'teams'] });
    expect(await apply([])).toEqual({ added: [], changed: [], removed: ['voicemail'] });
    expect((await rows()).every((r) => r.status === 'removed')).toBe(true);
  });
});
