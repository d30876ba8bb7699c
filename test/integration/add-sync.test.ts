import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onboardWorkflowId } from '../../src/workflows/config.js';
import { acmeCsv, PipelineHarness, type Customer } from '../support/pipeline.js';

let h: PipelineHarness;
let version: number;

const acmeCustomer = (name: string, edit?: (customer: Customer) => void) => h.acmeCustomer(name, edit);

const joe = { employee_id: 'E1', login: 'jadams', mail: 'joe.adams@acme.example', given_name: 'Joe', surname: 'Adams', department: 'Engineering', city: 'Chicago', title: 'Engineer' };
const bea = { employee_id: 'E2', login: 'bboston', mail: 'bea@acme.example', given_name: 'Bea', surname: 'Boston', department: 'Engineering', city: 'Boston' };
const max = { employee_id: 'E3', login: 'mmarket', mail: 'max@acme.example', given_name: 'Max', surname: 'Market', department: 'Marketing', city: 'Chicago' };
const sal = { employee_id: 'E4', login: 'ssales', mail: 'sal@acme.example', given_name: 'Sal', surname: 'Sales', department: 'Sales', city: 'Dallas', mobile: '+12145559999' };

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
  version = await h.apply({
    version: 1,
    customers: [
      acmeCustomer('acme'),
      acmeCustomer('quiet', (c) => (c.settings.flowThrough.enabled = false)),
      acmeCustomer('noaddsync', (c) => (c.settings.flowThrough.addSync = false)),
      acmeCustomer('nomail', (c) => (c.settings.welcomeEmail.enabled = false)),
      // Validation refuses a welcome email without a server, so this customer has neither.
      acmeCustomer('nosmtp', (c) => {
        delete c.settings.smtp;
        c.settings.welcomeEmail.enabled = false;
      }),
      // A second tenant with the same site, source and criteria names but other cities and numbers.
      acmeCustomer('globex', (c) => {
        c.criteria[0].when.value = 'Springfield';
        c.numberRanges = [{ from: '+18005559000', to: '+18005559009' }];
        c.sites[0].numberRanges = [{ from: '+13125550100', to: '+13125550109' }];
        c.sites[1].numberRanges = [{ from: '+12145550100', to: '+12145550109' }];
        c.settings.preventDuplicateNumbers = true;
      }),
    ],
  });
});
afterAll(async () => h?.close());

const userRow = (customer: string, externalId: string) => h.userRow(customer, externalId);
const numbersOf = (userId: string) => h.numbersOf(userId);

const cli = (...args: string[]) => h.cli(...args);

describe('the Acme add sync', () => {
  it('moves, provisions and welcomes each user as the criteria say', async () => {
    h.writeFile('acme.csv', acmeCsv([joe, bea, max, sal]));
    const report = await h.sync('acme', 'hr', version);
    expect(report.counts).toEqual({ seen: 4, imported: 4, placed: 3, moved: 0, kept: 0, restored: 0, provisioned: 2, unplaced: 1, unmatched: 1, blocked: 0, failed: 0, emailed: 2, removed: 0, invalid: 0, disabled: 0, unidentified: 0 });

    // A Chicago engineer: Chicago, the Engineering profile, the lowest Chicago number, one email with it.
    const joeRow = await userRow('acme', 'E1');
    expect(joeRow).toMatchObject({ status: 'provisioned', site: 'chicago', profile: 'engineering', role: 'engineer' });
    expect(await numbersOf(joeRow.id)).toEqual(['+13125550100:used']);
    const joeMail = h.smtp.to('joe.adams@acme.example');
    expect(joeMail).toHaveLength(1);
    expect(joeMail[0]!.html).toContain('+13125550100');
    expect(joeMail[0]!.text).toContain('+13125550100');
    expect(joeMail[0]!.subject).toBe('Welcome to Acme, Joe');
    expect(joeMail[0]!.messageId).toMatch(/^<welcome\.\d+\.acme@acme\.example>$/);

    // A city no site matches: customer level, no number, no email.
    const beaRow = await userRow('acme', 'E2');
    expect(beaRow).toMatchObject({ status: 'unplaced', site: null, profile: null });
    expect(await numbersOf(beaRow.id)).toEqual([]);
    expect(h.smtp.to('bea@acme.example')).toEqual([]);

    // In Chicago but no FTP rule matches: moved, not provisioned.
    const maxRow = await userRow('acme', 'E3');
    expect(maxRow).toMatchObject({ status: 'unmatched', site: 'chicago', profile: null, role: 'user' });
    expect(await numbersOf(maxRow.id)).toEqual([]);
    expect(h.smtp.to('max@acme.example')).toEqual([]);

    // Sales draws from the customer pool; the rule's role wins over the profile's.
    const salRow = await userRow('acme', 'E4');
    expect(salRow).toMatchObject({ status: 'provisioned', site: 'dallas', profile: 'sales', role: 'sales' });
    expect(await numbersOf(salRow.id)).toEqual(['+18005550100:used']);
  });

  it("a welcome's send records the pass's outcome with it: no recordOutcome after it", async () => {
    const localActivities = (externalId: string) => h.localActivities('acme', 'hr', externalId);
    const joe = await localActivities('E1');
    // Placed and provisioned in one local activity (each step still its own log entry, below).
    expect(joe).toEqual(['placeUser', 'sendWelcomeEmail']);
    const steps = await h.db
      .selectFrom('transaction_log')
      .innerJoin('users', 'users.id', 'transaction_log.user_id')
      .select('transaction_log.action')
      .where('users.external_id', '=', 'E1')
      .where('transaction_log.kind', '=', 'step')
      .orderBy('transaction_log.id')
      .execute();
    expect(steps.map((s) => s.action)).toEqual(['create', 'move', 'profile', 'number', 'provision', 'email']);
    // No email (unplaced): the outcome is recorded on its own.
    expect((await localActivities('E2')).at(-1)).toBe('recordOutcome');
    // Started with the pipeline's shape: no patch markers, no TemporalChangeVersion upserts. Started,
    // signalled, one workflow task (3 events), 2 local activities, the site and status, completed.
    const events = (await h.client.workflow.getHandle(onboardWorkflowId('acme', 'hr', 'E1')).fetchHistory()).events ?? [];
    expect(events.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_patch')).toEqual([]);
    expect(events.filter((e) => e.upsertWorkflowSearchAttributesEventAttributes).map((e) => Object.keys(e.upsertWorkflowSearchAttributesEventAttributes!.searchAttributes!.indexedFields!).sort())).toEqual([['FlowthruSite', 'FlowthruStatus']]);
    expect(events).toHaveLength(9);
    // The sync's counts above (provisioned 2, emailed 2) were read from these records.
  });

  it('run again, the same sync changes nothing and sends nothing', async () => {
    const before = await h.db.selectFrom('transaction_log').select('id').where('kind', '=', 'step').execute();
    const report = await h.sync('acme', 'hr', version);
    expect(report.counts).toMatchObject({ seen: 4, imported: 0, moved: 0, provisioned: 0, emailed: 0 });
    expect(h.smtp.to('joe.adams@acme.example')).toHaveLength(1);
    const after = await h.db.selectFrom('transaction_log').select('id').where('kind', '=', 'step').execute();
    expect(after).toHaveLength(before.length);
  });

  it('an add sync leaves a placed user\'s change to the update sync', async () => {
    h.writeFile('acme.csv', acmeCsv([{ ...joe, title: 'Staff Engineer' }, bea, max, sal]));
    const report = await h.sync('acme', 'hr', version);
    expect(report.counts).toMatchObject({ seen: 4, imported: 0, placed: 0, provisioned: 0 });
  });

  it('a changed record runs its pipeline again (update) without a second number or email', async () => {
    h.writeFile('acme.csv', acmeCsv([{ ...joe, title: 'Staff Engineer' }, bea, max, sal]));
    const report = await h.sync('acme', 'hr', version, { mode: 'update' });
    // Joe was welcomed by the first sync: this one sent nothing, and counts no email.
    expect(report.counts).toMatchObject({ seen: 4, imported: 1, moved: 0, provisioned: 1, emailed: 0 });
    const joeRow = await userRow('acme', 'E1');
    expect(await numbersOf(joeRow.id)).toEqual(['+13125550100:used']);
    expect(h.smtp.to('joe.adams@acme.example')).toHaveLength(1);
  });

  it('a profile that draws from another pool takes the old number back: one number, never two', async () => {
    // Sal (Sales, the customer pool) moves to Engineering (the Dallas pool), then to Marketing (no profile).
    h.writeFile('acme.csv', acmeCsv([{ ...joe, title: 'Staff Engineer' }, bea, max, { ...sal, department: 'Engineering' }]));
    const report = await h.sync('acme', 'hr', version, { mode: 'update' });
    expect(report.counts).toMatchObject({ imported: 1, provisioned: 1, emailed: 0 });
    const salRow = await userRow('acme', 'E4');
    expect(salRow).toMatchObject({ status: 'provisioned', site: 'dallas', profile: 'engineering' });
    expect(await numbersOf(salRow.id)).toEqual(['+12145550100:used']);
    // The customer number was in use: it cools for the customer's 30 days before anyone gets it.
    const old = await h.db.selectFrom('number_inventory').select(['status', 'user_id', 'cooling_until']).where('number', '=', '+18005550100').where('customer_id', '=', (await h.db.selectFrom('customers').select('id').where('name', '=', 'acme').executeTakeFirstOrThrow()).id).executeTakeFirstOrThrow();
    expect(old).toMatchObject({ status: 'cooling', user_id: null });
    expect(old.cooling_until!.getTime()).toBeGreaterThan(Date.now() + 29 * 86_400_000);

    h.writeFile('acme.csv', acmeCsv([{ ...joe, title: 'Staff Engineer' }, bea, max, { ...sal, department: 'Marketing' }]));
    expect((await h.sync('acme', 'hr', version, { mode: 'update' })).counts).toMatchObject({ imported: 1, unmatched: 1 });
    const unmatched = await userRow('acme', 'E4');
    expect(unmatched).toMatchObject({ status: 'unmatched', site: 'dallas', profile: null });
    expect(await numbersOf(unmatched.id)).toEqual([]);
    const services = await h.db.selectFrom('user_services').select('status').where('user_id', '=', unmatched.id).execute();
    expect(services.every((x) => x.status === 'removed')).toBe(true);

    h.writeFile('acme.csv', acmeCsv([{ ...joe, title: 'Staff Engineer' }, bea, max, sal]));
    expect((await h.sync('acme', 'hr', version, { mode: 'update' })).counts).toMatchObject({ imported: 1, provisioned: 1, emailed: 0 });
    const back = await userRow('acme', 'E4');
    expect(back).toMatchObject({ status: 'provisioned', profile: 'sales' });
    // The cooling number is not handed out again; the next customer number is.
    expect(await numbersOf(back.id)).toEqual(['+18005550101:used']);
    const log = JSON.parse((await cli('log', '--user', 'ssales', '--json', '--limit', '400')).out) as { action: string; subject: string }[];
    expect(log.filter((e) => e.action === 'create').at(-1)?.subject).toBe('local user exists at site dallas (unmatched)');
    expect(log.filter((e) => e.action === 'create')[0]?.subject).toBe('local user created at customer level');
    expect(log.filter((e) => e.action === 'provision').map((e) => e.subject)).toContainEqual(expect.stringMatching(/\+18005550100 released$/));
  });

  it('records every step in the transaction log with its Temporal run', async () => {
    const result = await cli('log', '--user', 'jadams', '--json');
    expect(result.code).toBe(0);
    const entries = JSON.parse(result.out) as { action: string; status: string; workflowId: string; runId: string }[];
    expect(entries.slice(0, 6).map((e) => `${e.action}:${e.status}`)).toEqual([
      'create:succeeded',
      'move:succeeded',
      'profile:succeeded',
      'number:succeeded',
      'provision:succeeded',
      'email:succeeded',
    ]);
    expect(entries[0]).toMatchObject({ workflowId: 'onboard/acme/hr/E1', runId: expect.any(String) });
  });
});

describe('settings gate the steps', () => {
  it('flow-through off: users are imported and created, not moved or provisioned', async () => {
    h.writeFile('quiet.csv', acmeCsv([joe]));
    const report = await h.sync('quiet', 'hr', version);
    expect(report.counts).toMatchObject({ seen: 1, imported: 1, moved: 0, provisioned: 0, emailed: 0 });
    expect(await userRow('quiet', 'E1')).toMatchObject({ status: 'imported', site: null, profile: null });
  });

  it('add sync off: the same', async () => {
    h.writeFile('noaddsync.csv', acmeCsv([joe]));
    expect((await h.sync('noaddsync', 'hr', version)).counts).toMatchObject({ imported: 1, moved: 0, provisioned: 0 });
    expect(await userRow('noaddsync', 'E1')).toMatchObject({ status: 'imported', site: null });
  });

  it('welcome email off, no SMTP server, or no address: provisioned, no email', async () => {
    const mailsBefore = h.smtp.messages.length;
    h.writeFile('nomail.csv', acmeCsv([{ ...joe, mail: 'nomail@acme.example' }]));
    h.writeFile('nosmtp.csv', acmeCsv([{ ...joe, mail: 'nosmtp@acme.example' }]));
    h.writeFile('acme.csv', acmeCsv([{ ...joe, title: 'Staff Engineer' }, bea, max, sal, { ...joe, employee_id: 'E5', login: 'noaddr', mail: '' }]));
    expect((await h.sync('nomail', 'hr', version)).counts).toMatchObject({ provisioned: 1, emailed: 0 });
    expect((await h.sync('nosmtp', 'hr', version)).counts).toMatchObject({ provisioned: 1, emailed: 0 });
    expect((await h.sync('acme', 'hr', version)).counts).toMatchObject({ imported: 1, provisioned: 1, emailed: 0 });
    expect(h.smtp.messages.length).toBe(mailsBefore);
  });
});

describe('bad records', () => {
  it('are reported with their line and skipped; the rest of the sync proceeds', async () => {
    const header = 'employee_id,login,mail,given_name,surname,department,city,title,mobile';
    h.writeFile(
      'globex.csv',
      [
        `\uFEFF${header}`,
        'G1,homer,homer@globex.example,Homer,Simpson,Engineering,Springfield,"Safety ""Inspector""",',
        'G2,marge,not-an-email,Marge,Simpson,Engineering,Springfield,,',
        'G3,bart,bart@globex.example,Bart,Simpson,Engineering',
        ',nobody,nobody@globex.example,No,Body,Engineering,Springfield,,',
        'G4,lisa,lisa@globex.example,Lisa,"Simp\nson",Engineering,Springfield,,',
        'G5,maggie,maggie@globex.example,Maggie,Simpson,Engineering,Springfield,,',
      ].join('\n') + '\n',
    );
    const report = await h.sync('globex', 'hr', version);
    expect(report.counts).toMatchObject({ seen: 6, imported: 3, provisioned: 3, invalid: 3 });
    expect(report.problems).toEqual([
      { at: 'line 4', message: expect.stringMatching(/^6 fields where the header has 9: 3 "," missing/) },
      { at: 'line 3', message: '"not-an-email" is not an email address' },
      { at: 'line 5', message: 'no employee_id (the external id)' },
    ]);
    expect((await userRow('globex', 'G4'))).toMatchObject({ status: 'provisioned' });
    const log = await h.db.selectFrom('transaction_log').select(['subject', 'error']).where('action', '=', 'source.invalid-record').execute();
    expect(log.map((l) => l.subject).sort()).toEqual(['hr line 3', 'hr line 4', 'hr line 5']);
  });

  it('an unreadable file fails the sync with a clear message, logged', async () => {
    const { rmSync } = await import('node:fs');
    rmSync(join(h.dir, 'quiet.csv'));
    const handle = await h.startSync('quiet', 'hr', version);
    const error = await handle.result().catch((e: unknown) => e);
    expect(String((error as { cause?: { cause?: Error } }).cause?.cause?.message)).toMatch(/cannot read .*quiet\.csv: ENOENT/);
    const entry = await h.db.selectFrom('transaction_log').select(['status', 'error']).where('workflow_id', '=', handle.workflowId).orderBy('id', 'desc').executeTakeFirstOrThrow();
    expect(entry).toMatchObject({ status: 'failed', error: expect.stringMatching(/ENOENT/) });

    // The CLI prints the cause where the user reads it, not only in flowthru log.
    const human = await cli('sync', 'hr', '--customer', 'quiet', '--mode', 'add', '--wait');
    expect(human.code).toBe(1);
    expect(human.err).toMatch(/^flowthru: sync of quiet\/hr \(add\) failed: cannot read .*quiet\.csv: ENOENT$/m);
    const json = await cli('sync', 'hr', '--customer', 'quiet', '--mode', 'add', '--wait', '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toEqual({
      ok: false,
      workflowId: 'sync/quiet/hr',
      mode: 'add',
      modes: ['add'],
      error: { message: expect.stringMatching(/cannot read .*quiet\.csv: ENOENT/), kind: 'SourceUnreadable' },
    });
  });
});

describe('tenancy', () => {
  it("two customers never see each other's users, criteria or numbers", async () => {
    // Joe (Chicago) is placed at acme's chicago; globex's chicago site matches Springfield only.
    h.writeFile('globex.csv', acmeCsv([{ ...joe, employee_id: 'G9' }]));
    await h.sync('globex', 'hr', version);
    expect(await userRow('globex', 'G9')).toMatchObject({ status: 'unplaced', site: null });
    const acmeUsers = JSON.parse((await cli('users', '--customer', 'acme', '--json')).out) as { customer: string }[];
    expect(acmeUsers.every((u) => u.customer === 'acme')).toBe(true);
    const globexNumbers = JSON.parse((await cli('numbers', '--customer', 'globex', '--json')).out) as { customer: string; number: string; user: string | null }[];
    expect(globexNumbers.every((n) => n.customer === 'globex')).toBe(true);
    expect(globexNumbers.filter((n) => n.user !== null).map((n) => n.user).sort()).toEqual(['homer', 'lisa', 'maggie']);
    // The same number exists in both tenants' inventories, held by different people.
    const held = await h.db
      .selectFrom('number_inventory')
      .innerJoin('customers', 'customers.id', 'number_inventory.customer_id')
      .innerJoin('users', 'users.id', 'number_inventory.user_id')
      .select(['customers.name as customer', 'users.username'])
      .where('number', '=', '+13125550100')
      .where('customers.name', 'in', ['acme', 'globex'])
      .orderBy('customers.name')
      .execute();
    // Which of globex's three users got its lowest number depends on who got there first.
    expect(held).toEqual([
      { customer: 'acme', username: 'jadams' },
      { customer: 'globex', username: expect.stringMatching(/^(homer|lisa|maggie)$/) },
    ]);
  });
});

describe('starting a sync', () => {
  it('twice at once joins the running sync instead of doubling the work', async () => {
    h.writeFile('nomail.csv', acmeCsv(Array.from({ length: 20 }, (_, i) => ({ ...joe, employee_id: `N${i}`, login: `n${i}`, mail: `n${i}@acme.example` }))));
    const [a, b] = await Promise.all([h.startSync('nomail', 'hr', version), h.startSync('nomail', 'hr', version)]);
    expect(a.workflowId).toBe(b.workflowId);
    const [ra, rb] = await Promise.all([a.result(), b.result()]);
    expect(ra).toEqual(rb);
    expect(ra.counts).toMatchObject({ imported: 20, provisioned: 20 });
    expect(await h.db.selectFrom('users').innerJoin('customers', 'customers.id', 'users.customer_id').select('users.id').where('customers.name', '=', 'nomail').execute()).toHaveLength(21);
  });

  it('flowthru sync --wait --json prints the report of SPEC §5', async () => {
    h.writeFile('nosmtp.csv', acmeCsv([{ ...joe, mail: 'nosmtp@acme.example' }, sal]));
    const result = await cli('sync', 'hr', '--customer', 'nosmtp', '--mode', 'add', '--wait', '--json');
    expect(result).toMatchObject({ code: 0 });
    expect(JSON.parse(result.out)).toMatchObject({
      ok: true,
      workflowId: 'sync/nosmtp/hr',
      mode: 'add',
      modes: ['add'],
      status: 'succeeded',
      customer: 'nosmtp',
      source: 'hr',
      configVersion: version,
      counts: { seen: 2, imported: 1, placed: 1, moved: 0, provisioned: 1, unplaced: 0, unmatched: 0, blocked: 0, failed: 0, emailed: 0, removed: 0, invalid: 0 },
      problems: [],
    });
  });

  it('flowthru users --json has the fields of SPEC §5', async () => {
    const users = JSON.parse((await cli('users', '--customer', 'acme', '--site', 'chicago', '--json')).out);
    expect(users[0]).toEqual({
      customer: 'acme',
      source: 'hr',
      externalId: 'E1',
      username: 'jadams',
      email: 'joe.adams@acme.example',
      site: 'chicago',
      role: 'engineer',
      profile: 'engineering',
      status: 'provisioned',
      reason: null,
      numbers: ['+13125550100'],
      services: ['phone', 'voicemail', 'teams', 'group:engineers'],
    });
  });

  it('refuses a mode that does not exist, and --allow-deletes without a delete', async () => {
    const result = await cli('sync', 'hr', '--customer', 'acme', '--mode', 'remove');
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/"remove" is not a sync mode: use add, update or delete/);
    expect(await cli('sync', 'hr', '--customer', 'acme', '--mode', 'add', '--allow-deletes', '3')).toMatchObject({ code: 1, err: expect.stringMatching(/--allow-deletes goes with a delete sync/) });
    expect(await cli('sync', 'hr', '--customer', 'acme', '--mode', 'delete', '--allow-deletes', 'many')).toMatchObject({ code: 1, err: expect.stringMatching(/--allow-deletes must be a whole number/) });
  });

  it('an ambiguous or unknown source is a clear error', async () => {
    expect(await cli('sync', 'hr', '--mode', 'add')).toMatchObject({ code: 1, err: expect.stringMatching(/source "hr" exists for customers acme, quiet, .*--customer/) });
    expect(await cli('sync', 'nope', '--mode', 'add')).toMatchObject({ code: 1, err: expect.stringMatching(/no source "nope"/) });
    // With --json the failure is on stdout too, for whatever reads it.
    const json = await cli('sync', 'nope', '--mode', 'add,update', '--wait', '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toEqual({ ok: false, workflowId: null, mode: 'add', modes: ['add', 'update'], error: { message: expect.stringMatching(/^no source "nope"/), kind: 'InvalidInput' } });
  });

  it('a customer, site, pool or user that does not exist is refused by name, not answered with an empty list', async () => {
    expect(await cli('users', '--customer', 'nope')).toMatchObject({ code: 1, out: '', err: expect.stringMatching(/^flowthru: no customer "nope" \(customers: acme, .*\)$/) });
    expect(await cli('users', '--customer', 'acme', '--site', 'nowhere')).toMatchObject({ code: 1, err: 'flowthru: --site: no site "nowhere" at customer "acme" (sites: chicago, dallas)' });
    expect(await cli('numbers', '--site', 'nowhere')).toMatchObject({ code: 1, err: expect.stringMatching(/^flowthru: --site: no site "nowhere" \(sites: /) });
    expect(await cli('log', '--customer', 'acme', '--user', 'nobody')).toMatchObject({ code: 1, err: 'flowthru: no user "nobody" at customer "acme" (a username, external id or email)' });
    expect(await cli('retry', '--status', 'blocked', '--customer', 'acme', '--pool', 'nowhere')).toMatchObject({ code: 1, err: expect.stringMatching(/^flowthru: --pool: no site "nowhere" at customer "acme" \(sites: chicago, dallas; or customer\)$/) });
    expect(await cli('schedule', 'list', '--customer', 'nope')).toMatchObject({ code: 1, err: expect.stringMatching(/^flowthru: no customer "nope"/) });
    // What exists answers as before, empty or not.
    expect(await cli('users', '--customer', 'acme', '--site', 'dallas', '--json')).toMatchObject({ code: 0 });
    expect(await cli('log', '--customer', 'acme', '--user', 'jadams', '--limit', '1')).toMatchObject({ code: 0 });
  });

  it('Temporal unreachable is said at once (not after the SDK\'s 10 s deadline), naming the address; with --json on stdout too', async () => {
    const { createServer } = await import('node:net');
    // A port nothing listens on: bound for a moment, then released.
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
    });
    // The message is the probe's (ECONNREFUSED), not the SDK's "Failed to connect before the deadline".
    const human = await h.cliWith({ TEMPORAL_ADDRESS: `127.0.0.1:${port}` }, 'sync', 'hr', '--customer', 'acme', '--mode', 'add', '--wait');
    expect(human).toEqual({ code: 2, out: '', err: `flowthru: cannot reach Temporal at 127.0.0.1:${port} (ECONNREFUSED): is it running? check TEMPORAL_ADDRESS` });
    const json = await h.cliWith({ TEMPORAL_ADDRESS: `127.0.0.1:${port}` }, 'sync', 'hr', '--customer', 'acme', '--mode', 'add', '--wait', '--json');
    expect(json.code).toBe(2);
    expect(JSON.parse(json.out)).toMatchObject({ ok: false, workflowId: null, error: { message: expect.stringMatching(/^cannot reach Temporal at 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/), kind: 'TemporalUnreachable' } });
    const unknown = await h.cliWith({ TEMPORAL_ADDRESS: 'no-such-host.invalid:7233' }, 'users', '--customer', 'acme');
    expect(unknown).toMatchObject({ code: 0 });
    const retry = await h.cliWith({ TEMPORAL_ADDRESS: 'no-such-host.invalid:7233' }, 'sync', 'hr', '--customer', 'acme', '--mode', 'add');
    expect(retry).toMatchObject({ code: 2, err: expect.stringMatching(/^flowthru: cannot reach Temporal at no-such-host\.invalid:7233: the host "no-such-host\.invalid" (is not known \(ENOTFOUND\); check|cannot be looked up now \(EAI_AGAIN: DNS\); try again, or check) TEMPORAL_ADDRESS$/) });
  });
});

describe('a CLI whose payload keys the worker does not have', () => {
  it('sync --wait says the worker cannot read the sync, instead of waiting forever', async () => {
    h.writeFile('nomail.csv', acmeCsv([joe]));
    const other = { FLOWTHRU_PAYLOAD_KEYS: `other=${Buffer.alloc(32, 7).toString('base64')}`, FLOWTHRU_PAYLOAD_KEY_ID: 'other' };
    try {
      const stuck = await h.cliWith(other, 'sync', 'hr', '--customer', 'nomail', '--mode', 'update', '--wait', '--json');
      expect(stuck.code).toBe(2);
      expect(JSON.parse(stuck.out)).toMatchObject({
        ok: false,
        workflowId: 'sync/nomail/hr',
        error: { kind: 'PayloadKey', message: expect.stringMatching(/^the worker cannot read it \(its failure is sealed with a key this CLI cannot open: .+\): the worker's FLOWTHRU_PAYLOAD_KEYS must hold the key/) },
      });
    } finally {
      await h.client.workflow.getHandle('sync/nomail/hr').terminate('test: sealed with a key the worker does not have').catch(() => undefined);
    }
  }, 90_000);
});
