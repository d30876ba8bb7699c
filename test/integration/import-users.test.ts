import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importUsers } from '../../src/adapters/db/users.js';
import type { SourceUser } from '../../src/adapters/sources/records.js';
import { PipelineHarness } from '../support/pipeline.js';

/*
 * The database side of "a record that can never succeed is reported and skipped": whatever the
 * record checks let through, a statement PostgreSQL refuses for one record's data must not take
 * the page with it, nor be retried forever.
 */

let h: PipelineHarness;
let ids: { customerId: number; sourceId: number };

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.apply({
    version: 1,
    customers: [{ name: 'imp', sources: [{ name: 'hr', type: 'csv', userType: 'csv', path: 'x.csv', externalId: 'id' }] }],
  });
  const source = await h.db.selectFrom('sync_sources').innerJoin('customers', 'customers.id', 'sync_sources.customer_id').select(['customers.id as customerId', 'sync_sources.id as sourceId']).executeTakeFirstOrThrow();
  ids = source;
});
afterAll(async () => h?.close());

const user = (n: number, extra: Record<string, string> = {}): SourceUser => ({
  externalId: `U${n}`,
  user: { username: `u${n}`, attributes: { id: `U${n}`, ...extra } },
  hash: `h${n}-${JSON.stringify(extra)}`,
  at: `line ${n + 1}`,
});

describe('importing a page the database partly refuses', () => {
  it('imports every record it can and reports the others by line', async () => {
    const users = Array.from({ length: 20 }, (_, i) => user(i));
    // jsonb cannot hold \u0000: SQLSTATE 22P05, a data exception.
    users[6] = user(6, { note: 'a\u0000b' });
    users[13] = user(13, { note: '\u0000' });
    const result = await importUsers(h.db, { ...ids, userType: 'csv', syncId: 'sync/imp/hr/add/run1', users });
    expect(result.imported.map((u) => u.externalId).sort()).toEqual(users.map((u) => u.externalId).filter((id) => id !== 'U6' && id !== 'U13').sort());
    expect(result.rejected).toEqual([
      { at: 'line 7', externalId: 'U6', message: expect.stringMatching(/^the database refused it: .*\(SQLSTATE 22P05, data exception\)$/) },
      { at: 'line 14', externalId: 'U13', message: expect.stringMatching(/SQLSTATE 22P05/) },
    ]);
    expect(await h.db.selectFrom('users').select('external_id').execute()).toHaveLength(18);
  });
});
