import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WORKER_TUNING } from '../../src/worker/index.js';
import { acmeCsv, oneSiteCustomer, PipelineHarness } from '../support/pipeline.js';

let h: PipelineHarness;

function config(customer: string, users: number) {
  return oneSiteCustomer(customer, { csvPath: `${h.dir}/${customer}.csv`, smtpPort: h.smtp.port, range: { from: '7000', to: String(7000 + users * 2) } });
}

/** Two sites by city, update syncs on, cooling on: for moving many users at once. */
function movers() {
  const customer = oneSiteCustomer('movers', { csvPath: `${h.dir}/movers.csv`, smtpPort: h.smtp.port, range: { from: '4000', to: '4199' } }) as ReturnType<typeof oneSiteCustomer> & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  customer.settings.flowThrough = { ...customer.settings.flowThrough, updateSync: true } as never;
  (customer.settings as Record<string, unknown>).numberCooling = { enabled: true, days: 7 };
  customer.sources[0]!.attributeMap = { ...customer.sources[0]!.attributeMap, city: 'city' } as never;
  customer.criteria = [
    { name: 'in-hq', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'HQ' } } as never,
    { name: 'in-branch', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Branch' } } as never,
    customer.criteria[1]!,
  ];
  customer.sites = [
    { name: 'hq', moveCriteria: { csv: 'in-hq' }, numberRanges: [{ from: '4000', to: '4199' }] },
    { name: 'branch', moveCriteria: { csv: 'in-branch' }, numberRanges: [{ from: '6000', to: '6199' }] },
  ];
  return customer;
}

const people = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => ({ employee_id: `${prefix}${i}`, login: `${prefix}${i}`, mail: `${prefix}${i}@example.com`, given_name: `P${i}` }));

let version: number;
beforeAll(async () => {
  h = await PipelineHarness.create();
  version = await h.apply({ version: 1, customers: [config('crash', 150), config('smtpdown', 5), config('slowsmtp', 2), config('stale', 2), movers()] });
});
afterAll(async () => h?.close());

const provisioned = async (customer: string) =>
  Number(
    (
      await h.db
        .selectFrom('users')
        .innerJoin('customers', 'customers.id', 'users.customer_id')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .where('customers.name', '=', customer)
        .where('users.status', '=', 'provisioned')
        .executeTakeFirstOrThrow()
    ).n,
  );

describe('crash safety', () => {
  it('a worker killed in the middle of a sync loses no user and duplicates no number or email', async () => {
    h.writeFile('crash.csv', acmeCsv(people(150, 'c')));
    const child = await h.workerProcess();
    const handle = await h.startSync('crash', 'hr', version, { window: 50, pageSize: 40 });
    await expect.poll(() => provisioned('crash'), { timeout: 60_000, interval: 100 }).toBeGreaterThanOrEqual(20);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const atKill = await provisioned('crash');
    expect(atKill).toBeLessThan(150);

    await h.startWorker();
    const report = await handle.result();
    expect(report.counts).toMatchObject({ seen: 150, provisioned: 150, failed: 0, blocked: 0 });
    expect(await provisioned('crash')).toBe(150);
    const numbers = await h.db.selectFrom('number_inventory').select(['number', 'user_id']).where('status', '=', 'used').execute();
    expect(numbers).toHaveLength(150);
    expect(new Set(numbers.map((n) => n.user_id)).size).toBe(150);
    // One welcome email per user: one Message-ID each. SMTP has no idempotency, so a worker killed
    // between the server accepting a message and the outbox recording it resends that message, with
    // the same Message-ID (mail clients drop such duplicates): at most the emails in flight then.
    const deliveries = h.smtp.messages.filter((m) => m.to[0]!.startsWith('c'));
    const idsByRecipient = new Map<string, Set<string | undefined>>();
    for (const m of deliveries) idsByRecipient.set(m.to[0]!, (idsByRecipient.get(m.to[0]!) ?? new Set()).add(m.messageId));
    expect(idsByRecipient.size).toBe(150);
    expect([...idsByRecipient.values()].every((ids) => ids.size === 1)).toBe(true);
    expect(deliveries.length - 150).toBeLessThanOrEqual(WORKER_TUNING.maxConcurrentLocalActivityExecutions);
    const outbox = await h.db.selectFrom('email_outbox').select(['status']).where('to_address', 'like', 'c%').execute();
    expect(outbox).toHaveLength(150);
    expect(outbox.every((m) => m.status === 'sent')).toBe(true);
  }, 180_000);
});

describe('SMTP outage', () => {
  it('users are provisioned while SMTP is down; their emails go out once it is back', async () => {
    await h.smtp.stop();
    try {
      h.writeFile('smtpdown.csv', acmeCsv(people(5, 's')));
      const report = await h.sync('smtpdown', 'hr', version);
      expect(report.counts).toMatchObject({ provisioned: 5, emailed: 0 });
      const outbox = await h.db.selectFrom('email_outbox').select(['status', 'attempts', 'last_error']).where('to_address', 'like', 's%').execute();
      expect(outbox).toHaveLength(5);
      expect(outbox.every((m) => m.status === 'pending' && m.attempts >= 1 && /ECONNREFUSED/.test(m.last_error ?? ''))).toBe(true);
    } finally {
      await h.smtp.start();
    }
    await expect.poll(() => h.smtp.messages.filter((m) => m.to[0]!.startsWith('s')).length, { timeout: 90_000, interval: 500 }).toBe(5);
    await expect
      .poll(async () => (await h.db.selectFrom('email_outbox').select('status').where('to_address', 'like', 's%').where('status', '=', 'sent').execute()).length, { timeout: 10_000 })
      .toBe(5);
  }, 120_000);

  it('a mail server slower than the email step takes each message once: the timed-out attempt\'s send is the retry\'s', async () => {
    // Longer than the quick email attempt's 20 s start-to-close: the attempt times out while its
    // send is still in flight, and its retry finds the message pending.
    h.smtp.acceptDelayMs = 24_000;
    try {
      h.writeFile('slowsmtp.csv', acmeCsv(people(2, 'slow')));
      const report = await h.sync('slowsmtp', 'hr', version);
      expect(report.counts).toMatchObject({ provisioned: 2, emailed: 2 });
      // A second send of a message would still be in the server's hands now.
      await expect.poll(() => h.smtp.receiving, { timeout: 30_000 }).toBe(0);
    } finally {
      h.smtp.acceptDelayMs = 0;
    }
    const received = h.smtp.messages.filter((m) => m.to[0]!.startsWith('slow'));
    expect(received.map((m) => m.to[0]).sort()).toEqual(['slow0@example.com', 'slow1@example.com']);
    const outbox = await h.db.selectFrom('email_outbox').select(['status', 'attempts']).where('to_address', 'like', 'slow%').execute();
    expect(outbox).toEqual([
      { status: 'sent', attempts: 1 },
      { status: 'sent', attempts: 1 },
    ]);
  }, 120_000);
});

describe('a pipeline that ends without an outcome', () => {
  it('(an operator terminated it) is counted as failed instead of holding the sync forever', async () => {
    // The only worker runs syncs but starts pipelines on a queue nobody serves: they never run.
    await h.stopWorkers();
    const nowhere = `${h.taskQueue}-nowhere`;
    const running = await h.startWorker({}, nowhere);
    h.writeFile('stale.csv', acmeCsv(people(2, 'z')));
    const handle = await h.startSync('stale', 'hr', version, { taskQueue: h.taskQueue });
    await expect.poll(async () => (await h.db.selectFrom('users').select('id').where('external_id', 'like', 'z%').execute()).length, { timeout: 20_000 }).toBe(2);
    for (const id of ['z0', 'z1']) {
      const pipeline = h.client.workflow.getHandle(`onboard/stale/hr/${id}`);
      await expect.poll(async () => (await pipeline.describe().catch(() => null))?.status.name, { timeout: 20_000 }).toBe('RUNNING');
      await pipeline.terminate('operator says stop');
    }
    const report = await handle.result();
    expect(report.counts).toMatchObject({ seen: 2, imported: 2, failed: 2, provisioned: 0 });
    await running.stop();
  }, 120_000);
});

describe('crash safety during moves', () => {
  it('a worker killed in the middle of a batch of moves holds no number twice, loses none, and sends no email', async () => {
    const movers = (city: string) => people(120, 'm').map((p) => ({ ...p, city }));
    h.writeFile('movers.csv', acmeCsv(movers('HQ')));
    await h.stopWorkers();
    const placing = await h.startWorker();
    expect((await h.sync('movers', 'hr', version)).counts).toMatchObject({ placed: 120, provisioned: 120 });
    await placing.stop();
    const welcomed = h.smtp.messages.filter((m) => m.to[0]!.startsWith('m')).length;

    h.writeFile('movers.csv', acmeCsv(movers('Branch')));
    const child = await h.workerProcess();
    const handle = await h.startSync('movers', 'hr', version, { mode: 'update', window: 40, pageSize: 40 });
    const atBranch = async () => Number((await h.db.selectFrom('number_inventory').select((eb) => eb.fn.countAll<string>().as('n')).where('number', 'like', '6%').where('status', '=', 'used').executeTakeFirstOrThrow()).n);
    await expect.poll(atBranch, { timeout: 60_000, interval: 50 }).toBeGreaterThanOrEqual(15);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(await atBranch()).toBeLessThan(120);

    await h.startWorker();
    const report = await handle.result();
    expect(report.counts).toMatchObject({ seen: 120, imported: 120, moved: 120, provisioned: 120, failed: 0, blocked: 0, emailed: 0 });
    const customerId = (await h.db.selectFrom('customers').select('id').where('name', '=', 'movers').executeTakeFirstOrThrow()).id;
    const held = await h.db.selectFrom('number_inventory').select(['number', 'user_id', 'status']).where('customer_id', '=', customerId).where('user_id', 'is not', null).execute();
    // Everyone holds exactly one number, a Branch one, in use; every HQ number cools.
    expect(held).toHaveLength(120);
    expect(new Set(held.map((n) => n.user_id)).size).toBe(120);
    expect(held.every((n) => n.number.startsWith('6') && n.status === 'used')).toBe(true);
    const hq = await h.db.selectFrom('number_inventory').select('status').where('customer_id', '=', customerId).where('number', 'like', '4%').execute();
    expect(hq.filter((n) => n.status === 'cooling')).toHaveLength(120);
    expect(hq.filter((n) => n.status !== 'cooling' && n.status !== 'available')).toEqual([]);
    const users = await h.db.selectFrom('users').innerJoin('sites', 'sites.id', 'users.site_id').select(['sites.name', 'users.status']).where('users.customer_id', '=', customerId).execute();
    expect(users.every((u) => u.name === 'branch' && u.status === 'provisioned')).toBe(true);
    // A move sends no email, killed or not.
    expect(h.smtp.messages.filter((m) => m.to[0]!.startsWith('m')).length).toBe(welcomed);
  }, 180_000);
});
