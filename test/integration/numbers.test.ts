import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPipelineActivities } from '../../src/activities/pipeline.js';
import { reserveNumber } from '../../src/adapters/db/numbers.js';
import { ConfigSnapshots } from '../../src/adapters/db/snapshots.js';
import { createSmtpMailer } from '../../src/adapters/mail/smtp.js';
import { onboardWorkflowId } from '../../src/workflows/config.js';
import { retrySignal } from '../../src/workflows/messages.js';
import { acmeCsv, PipelineHarness } from '../support/pipeline.js';

let h: PipelineHarness;

/** One site that takes everyone; `line` profile draws from the site's `size` numbers. */
function config(size: number) {
  const everyone = { name: 'everyone', usage: 'move', when: { all: [] } };
  return {
    version: 1,
    customers: [
      {
        name: 'race',
        settings: { flowThrough: { enabled: true, addSync: true, criteria: 'ftp' } },
        criteria: [
          everyone,
          { name: 'anyone', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Engineering' } },
          { name: 'reach', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Field' } },
        ],
        profiles: [
          { name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }, { kind: 'voicemail' }] },
          { name: 'field', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }, { kind: 'singleNumberReach' }] },
        ],
        ftpCriteria: [{ name: 'ftp', rules: [{ criteria: 'anyone', profile: 'line' }, { criteria: 'reach', profile: 'field' }] }],
        sources: [
          { name: 'hr', type: 'csv', userType: 'csv', path: `${h.dir}/race.csv`, externalId: 'employee_id', attributeMap: { employee_id: 'employeeId', login: 'username', department: 'department', mobile: 'mobile' } },
        ],
        sites: [{ name: 'hq', moveCriteria: { csv: 'everyone' }, numberRanges: [{ from: '5000', to: String(5000 + size - 1) }] }],
      },
    ],
  };
}

const engineers = (n: number, prefix = 'R') =>
  Array.from({ length: n }, (_, i) => ({ employee_id: `${prefix}${String(i).padStart(3, '0')}`, login: `${prefix.toLowerCase()}${i}`, department: 'Engineering' }));

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
});
afterAll(async () => h?.close());

describe('number allocation', () => {
  it('200 users racing for 50 numbers get 50 distinct numbers; 150 are blocked with the reason', async () => {
    const version = await h.apply(config(50));
    h.writeFile('race.csv', acmeCsv(engineers(200)));
    const report = await h.sync('race', 'hr', version, { window: 200, pageSize: 200 });
    expect(report.counts).toMatchObject({ seen: 200, imported: 200, provisioned: 50, blocked: 150, failed: 0 });

    const held = await h.db.selectFrom('number_inventory').select(['number', 'user_id', 'status']).where('user_id', 'is not', null).execute();
    expect(held).toHaveLength(50);
    expect(new Set(held.map((n) => n.number)).size).toBe(50);
    expect(new Set(held.map((n) => n.user_id)).size).toBe(50);
    expect(held.every((n) => n.status === 'used')).toBe(true);
    const blocked = await h.db.selectFrom('users').select(['status_reason']).where('status', '=', 'blocked').execute();
    expect(blocked).toHaveLength(150);
    expect(blocked[0]?.status_reason).toBe('no available number in the site hq pool: add numbers, then retry');
  });

  it('a cooling number is reserved once its cooling period has ended, not before (lowest first)', async () => {
    // After the race the pool is full. Two numbers come back as cooling: the lower one for a week
    // more, the higher one since yesterday. (Rolled back at the end: later tests see the race's state.)
    class Rollback extends Error {}
    const [a, b] = (await h.db.selectFrom('users').select('id').where('status', '=', 'blocked').orderBy('id').limit(2).execute()).map((u) => u.id);
    const pool = await h.db.selectFrom('number_inventory').select(['customer_id', 'site_id']).where('number', '=', '5001').executeTakeFirstOrThrow();
    await h.db
      .transaction()
      .execute(async (tx) => {
        const cool = (number: string, days: number) =>
          tx
            .updateTable('number_inventory')
            .set({ status: 'cooling', user_id: null, reserved_by: null, cooling_until: new Date(Date.now() + days * 86_400_000) })
            .where('customer_id', '=', pool.customer_id)
            .where('number', '=', number)
            .execute();
        await cool('5001', 7);
        await cool('5003', -1);
        const first = await reserveNumber(tx, { customerId: pool.customer_id, siteId: pool.site_id }, a!, 'test/run');
        const second = await reserveNumber(tx, { customerId: pool.customer_id, siteId: pool.site_id }, b!, 'test/run');
        expect([first, second]).toEqual(['5003', null]);
        const still = await tx.selectFrom('number_inventory').select('status').where('customer_id', '=', pool.customer_id).where('number', '=', '5001').executeTakeFirstOrThrow();
        expect(still.status).toBe('cooling');
        throw new Rollback();
      })
      .catch((error: unknown) => {
        if (!(error instanceof Rollback)) throw error;
      });
  });

  it('a number whose cooling ends as a reservation is made comes before the available ones: still lowest first', async () => {
    // 5003's cooling ended yesterday; 5010 is available (given back). One statement reserves 5010
    // and ends 5003's cooling; 5003 comes first, so 5010 goes back and 5003 is taken. Then 5010.
    class Rollback extends Error {}
    const [a, b, c] = (await h.db.selectFrom('users').select('id').where('status', '=', 'blocked').orderBy('id').limit(3).execute()).map((u) => u.id);
    const pool = await h.db.selectFrom('number_inventory').select(['customer_id', 'site_id']).where('number', '=', '5001').executeTakeFirstOrThrow();
    await h.db
      .transaction()
      .execute(async (tx) => {
        const set = (number: string, values: { status: 'cooling' | 'available'; cooling_until: Date | null }) =>
          tx.updateTable('number_inventory').set({ ...values, user_id: null, reserved_by: null }).where('customer_id', '=', pool.customer_id).where('number', '=', number).execute();
        await set('5003', { status: 'cooling', cooling_until: new Date(Date.now() - 86_400_000) });
        await set('5010', { status: 'available', cooling_until: null });
        const reserve = (user: string) => reserveNumber(tx, { customerId: pool.customer_id, siteId: pool.site_id }, user, 'test/run');
        expect([await reserve(a!), await reserve(b!), await reserve(c!)]).toEqual(['5003', '5010', null]);
        // A rerun for a user who holds a number gets it back and takes no other.
        expect(await reserve(a!)).toBe('5003');
        const held = await tx.selectFrom('number_inventory').select(['number', 'status', 'user_id']).where('customer_id', '=', pool.customer_id).where('number', 'in', ['5003', '5010']).orderBy('number').execute();
        expect(held).toEqual([
          { number: '5003', status: 'reserved', user_id: a },
          { number: '5010', status: 'reserved', user_id: b },
        ]);
        throw new Rollback();
      })
      .catch((error: unknown) => {
        if (!(error instanceof Rollback)) throw error;
      });
  });

  it('blocked users are provisioned once numbers are added and they are retried', async () => {
    await h.apply(config(200));
    const blocked = await h.db.selectFrom('users').select(['external_id', 'username']).where('status', '=', 'blocked').orderBy('external_id').execute();
    // One through the CLI's path (signal-with-start of a new change), the rest with the retry signal.
    const { main } = await import('../../src/client/cli.js');
    const saved = { ...process.env };
    Object.assign(process.env, { DATABASE_URL: h.t.url, TEMPORAL_ADDRESS: (await import('vitest')).inject('temporalAddress'), FLOWTHRU_TASK_QUEUE: h.taskQueue });
    const out: string[] = [];
    try {
      expect(await main(['node', 'flowthru', 'retry', blocked[0]!.username!], { out: (l) => out.push(l), err: (l) => out.push(l) })).toBe(0);
    } finally {
      process.env = saved;
    }
    for (const user of blocked.slice(1)) {
      await h.client.workflow.getHandle(onboardWorkflowId('race', 'hr', user.external_id)).signal(retrySignal);
    }
    await expect
      .poll(async () => (await h.db.selectFrom('users').select('id').where('status', '=', 'provisioned').execute()).length, { timeout: 60_000, interval: 500 })
      .toBe(200);
    const held = await h.db.selectFrom('number_inventory').select('number').where('status', '=', 'used').execute();
    expect(new Set(held.map((n) => n.number)).size).toBe(200);
    const { status } = await h.client.workflow.getHandle(onboardWorkflowId('race', 'hr', blocked[5]!.external_id)).describe();
    expect(status.name).toBe('COMPLETED');
  });

  it('a provisioning that fails for good holds no number and says why', async () => {
    const version = await h.apply(config(201));
    h.writeFile('race.csv', acmeCsv([...engineers(200), { employee_id: 'F1', login: 'field1', department: 'Field' }]));
    const report = await h.sync('race', 'hr', version);
    expect(report.counts).toMatchObject({ imported: 1, failed: 1, provisioned: 0 });
    const user = await h.db.selectFrom('users').selectAll().where('external_id', '=', 'F1').executeTakeFirstOrThrow();
    expect(user).toMatchObject({ status: 'failed', status_reason: "single number reach needs the user's mobile number, and the user has none" });
    expect(await h.db.selectFrom('number_inventory').select('number').where('user_id', '=', user.id).execute()).toEqual([]);
    const last = await h.db.selectFrom('number_inventory').select(['status']).where('number', '=', '5200').executeTakeFirstOrThrow();
    expect(last.status).toBe('available');
    const steps = await h.db.selectFrom('transaction_log').select(['action', 'status', 'error', 'subject']).where('user_id', '=', user.id).orderBy('id').execute();
    // The number and the services are one transaction: the failure wrote neither, so no reservation is left to give back.
    expect(steps.map((s) => `${s.action}:${s.status}`)).toEqual(['create:succeeded', 'move:succeeded', 'profile:succeeded', 'compensate:failed']);
    expect(steps.at(-1)).toMatchObject({ subject: 'provisioning failed', error: expect.stringMatching(/mobile number/) });
    // Placed with the line, which failed for good and took the placement with it; placed again
    // alone, the line's own step failed the same way, and the failure was recorded.
    expect(await h.localActivities('race', 'hr', 'F1')).toEqual(['placeUser', 'placeUser', 'provisionLine', 'abandonProvisioning', 'recordOutcome']);
  });

  it('placeUser asked for the line answers a placement an earlier attempt recorded without it, and leaves the line to its own step', async () => {
    // A worker of the code before (or the fallback) placed the user and died before Temporal heard
    // of it; the attempt after it asks for the line too. It must answer, not retry for ever.
    const mailer = createSmtpMailer();
    afterAll(() => mailer.close());
    const activities = createPipelineActivities({ db: h.db, snapshots: new ConfigSnapshots(h.db), mailer });
    const user = await h.db.selectFrom('users').select(['id']).where('external_id', '=', 'R007').executeTakeFirstOrThrow();
    const { id: configVersion } = await h.db.selectFrom('config_versions').select('id').orderBy('id', 'desc').limit(1).executeTakeFirstOrThrow();
    const ids = { userId: String(user.id), customer: 'race', configVersion: Number(configVersion), mode: 'add' as const, workflowId: 'wf/manual', runId: 'manual-1', attempt: 1 };
    const placed = await activities.placeUser(ids);
    expect(placed.matched).toMatchObject({ profile: 'line', numberFrom: 'site' });
    expect(await activities.placeUser({ ...ids, line: true })).toEqual(placed);
    const line = await activities.provisionLine({ ...ids, pool: 'site' });
    expect(line.number).toMatch(/^5\d{3}$/);
    expect(await h.userRow('race', 'R007')).toMatchObject({ status: 'provisioned' });
  });
});
