import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PreviewReport } from '../../src/client/preview.js';
import { onboardWorkflowId } from '../../src/workflows/config.js';
import { acmeCsv, PipelineHarness, type Customer } from '../support/pipeline.js';

/*
 * The lifecycle after onboarding (seed 000, SPEC §3): update syncs move people with their services
 * and re-match their profile, delete syncs offboard the people who left (held by the threshold
 * when too many go at once), and people who come back are restored as the same user.
 */

let h: PipelineHarness;
let version: number;

const acmeCustomer = (name: string, edit?: (customer: Customer) => void) => h.acmeCustomer(name, edit);

const jane = { employee_id: 'E10', login: 'jmurphy', mail: 'jane.murphy@acme.example', given_name: 'Jane', surname: 'Murphy', department: 'Engineering', city: 'Chicago', title: 'Engineer' };
const joe = { employee_id: 'E1', login: 'jadams', mail: 'joe.adams@acme.example', given_name: 'Joe', surname: 'Adams', department: 'Engineering', city: 'Chicago', title: 'Engineer', mobile: '+13125559999' };
const sal = { employee_id: 'E4', login: 'ssales', mail: 'sal@acme.example', given_name: 'Sal', surname: 'Sales', department: 'Sales', city: 'Dallas', mobile: '+12145559999' };
const person = (i: number) => ({ employee_id: `L${i}`, login: `leaver${i}`, mail: `leaver${i}@acme.example`, given_name: `L${i}`, surname: 'Person', department: 'Engineering', city: 'Chicago' });

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
  version = await h.apply({
    version: 1,
    customers: [
      acmeCustomer('acme'),
      acmeCustomer('keeper', (c) => (c.settings.numberAssignmentOnMove = 'keep-existing')),
      acmeCustomer('frozen', (c) => (c.settings.flowThrough.updateSync = false)),
      acmeCustomer('fixed', (c) => (c.settings.updateSyncProfile = 'sales')),
      acmeCustomer('told', (c) => (c.settings.movedEmail = { enabled: true, subject: 'You have moved to {{site}}, {{firstName}}' })),
      // One Chicago number: the second engineer there waits, blocked.
      acmeCustomer('tight', (c) => (c.sites[0].numberRanges = [{ from: '+13125550100', to: '+13125550100' }])),
      // 240 Chicago numbers for 250 engineers: more than one page of the preview's free numbers.
      acmeCustomer('crowd', (c) => (c.sites[0].numberRanges = [{ from: '+13125550100', to: '+13125550339' }])),
      // The default threshold (more than 10 % and more than 10 users), no cooling.
      acmeCustomer('leavers', (c) => {
        delete c.settings.deleteThreshold;
        c.settings.numberCooling = { enabled: false, days: 30 };
      }),
    ],
  });
});
afterAll(async () => h?.close());

const userRow = (customer: string, externalId: string) => h.userRow(customer, externalId);
const numbersOf = (userId: string) => h.numbersOf(userId);

async function inventory(customer: string, number: string) {
  return h.db
    .selectFrom('number_inventory')
    .innerJoin('customers', 'customers.id', 'number_inventory.customer_id')
    .leftJoin('sites', 'sites.id', 'number_inventory.site_id')
    .select(['number_inventory.status', 'number_inventory.user_id', 'number_inventory.cooling_until', 'sites.name as site'])
    .where('customers.name', '=', customer)
    .where('number_inventory.number', '=', number)
    .executeTakeFirstOrThrow();
}

async function activeServices(userId: string) {
  return (await h.db.selectFrom('user_services').select('kind').where('user_id', '=', userId).where('status', '<>', 'removed').orderBy('kind').execute()).map((s) => s.kind);
}

const update = (customer: string) => h.sync(customer, 'hr', version, { mode: 'update' });
const add = (customer: string) => h.sync(customer, 'hr', version);

describe('update sync: Jane Murphy moves from Chicago to Dallas (seed 000)', () => {
  it('assign-new: the Chicago number cools, the lowest Dallas number is hers, one transaction, no second email', async () => {
    h.writeFile('acme.csv', acmeCsv([jane, joe, sal]));
    expect((await add('acme')).counts).toMatchObject({ placed: 3, provisioned: 3, emailed: 3 });
    const before = await userRow('acme', 'E10');
    expect(before).toMatchObject({ site: 'chicago', profile: 'engineering' });
    // Jane and Joe were provisioned side by side: either may hold the lower Chicago number.
    const [chicago] = (await numbersOf(before.id)).map((n) => n.split(':')[0]!);
    expect(chicago).toMatch(/^\+1312555010[01]$/);

    h.writeFile('acme.csv', acmeCsv([{ ...jane, city: 'Dallas' }, joe, sal]));
    // Preview first: the move, the numbers and the services, with nothing changed.
    const preview = JSON.parse((await h.cli('preview', 'hr', '--customer', 'acme', '--mode', 'update', '--json')).out);
    expect(preview.users.filter((u: { pass: string | null }) => u.pass !== null)).toEqual([
      expect.objectContaining({
        externalId: 'E10',
        pass: 'update',
        move: true,
        currentSite: 'chicago',
        site: 'dallas',
        profile: 'engineering',
        numbers: { from: [chicago], to: '+12145550100' },
        services: { added: [], changed: ['phone'], removed: [] },
      }),
    ]);
    // --mode update lists only the users an update would touch: not Joe and Sal, unchanged.
    expect(preview.users.map((u: { externalId: string }) => u.externalId)).toEqual(['E10']);
    expect(preview).toMatchObject({ modes: ['update'], deletions: [], threshold: null });
    const text = (await h.cli('preview', 'hr', '--customer', 'acme', '--mode', 'update')).out;
    expect(text).toMatch(new RegExp(`E10 +jmurphy +changed +update +chicago → dallas +engineering +\\${chicago} → \\+12145550100 +~phone`));
    const report = await update('acme');
    // Only Jane changed: one pipeline, one move, nobody placed, nobody emailed.
    expect(report.counts).toMatchObject({ seen: 3, imported: 1, moved: 1, placed: 0, provisioned: 1, emailed: 0, kept: 0 });
    const after = await userRow('acme', 'E10');
    expect(after).toMatchObject({ id: before.id, site: 'dallas', profile: 'engineering', status: 'provisioned', role: 'engineer' });
    // The update's run: its move and its line and services in one local activity, then the welcome
    // step (sent before: it records the outcome and sends nothing).
    const [started] = (await h.client.workflow.getHandle(onboardWorkflowId('acme', 'hr', 'E10')).fetchHistory()).events ?? [];
    const mode = started?.workflowExecutionStartedEventAttributes?.searchAttributes?.indexedFields?.FlowthruSyncMode?.data;
    expect(Buffer.from(mode!).toString()).toBe('"update"');
    expect(await h.localActivities('acme', 'hr', 'E10')).toEqual(['placeUser', 'sendWelcomeEmail']);
    // Sal holds a customer number: the lowest Dallas number is free.
    expect(await numbersOf(after.id)).toEqual(['+12145550100:used']);
    const old = await inventory('acme', chicago!);
    expect(old).toMatchObject({ status: 'cooling', user_id: null, site: 'chicago' });
    const days = (old.cooling_until!.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);
    // Her services moved with her: the phone's line is the new number.
    const phone = await h.db.selectFrom('user_services').select('settings').where('user_id', '=', after.id).where('kind', '=', 'phone').executeTakeFirstOrThrow();
    expect(phone.settings).toMatchObject({ line: '+12145550100' });
    expect(h.smtp.to('jane.murphy@acme.example')).toHaveLength(1);

    const log = JSON.parse((await h.cli('log', '--user', 'jmurphy', '--json')).out) as { action: string; subject: string }[];
    expect(log.map((e) => e.subject)).toContainEqual('moved from chicago to dallas');
    expect(log.find((e) => e.action === 'provision' && e.subject.includes('+12145550100'))?.subject).toContain(`${chicago} released`);
  });

  it('keep-existing: the number moves with her, its inventory row stays in the Chicago range', async () => {
    h.writeFile('keeper.csv', acmeCsv([jane]));
    await add('keeper');
    h.writeFile('keeper.csv', acmeCsv([{ ...jane, city: 'Dallas' }]));
    expect((await update('keeper')).counts).toMatchObject({ moved: 1, provisioned: 1 });
    const row = await userRow('keeper', 'E10');
    expect(row.site).toBe('dallas');
    expect(await numbersOf(row.id)).toEqual(['+13125550100:used']);
    expect(await inventory('keeper', '+13125550100')).toMatchObject({ status: 'used', user_id: row.id, site: 'chicago' });
    expect(await inventory('keeper', '+12145550100')).toMatchObject({ status: 'available', user_id: null });
  });

  it('a department change re-matches the profile without a move: the difference in services, the line from the other pool', async () => {
    const joeRow = await userRow('acme', 'E1');
    expect(await activeServices(joeRow.id)).toEqual(['group', 'phone', 'teams', 'voicemail']);
    const [chicago] = (await numbersOf(joeRow.id)).map((n) => n.split(':')[0]!);
    expect(chicago).toMatch(/^\+1312555010[01]$/);
    h.writeFile('acme.csv', acmeCsv([{ ...jane, city: 'Dallas' }, { ...joe, department: 'Sales' }, sal]));
    expect((await update('acme')).counts).toMatchObject({ imported: 1, moved: 0, provisioned: 1, emailed: 0 });
    const after = await userRow('acme', 'E1');
    expect(after).toMatchObject({ site: 'chicago', profile: 'sales', role: 'sales' });
    expect(await activeServices(after.id)).toEqual(['phone', 'singleNumberReach']);
    // Sales draws from the customer pool: the site number goes back (cooling), Sal keeps +18005550100.
    expect(await numbersOf(after.id)).toEqual(['+18005550101:used']);
    expect(await inventory('acme', chicago!)).toMatchObject({ status: 'cooling', user_id: null });
    const provision = JSON.parse((await h.cli('log', '--user', 'jadams', '--json')).out).findLast((e: { action: string }) => e.action === 'provision');
    expect(provision.subject).toBe(`provisioned sales with +18005550101: +singleNumberReach, ~phone, -voicemail, -teams, -group:engineers; ${chicago} released`);
  });

  it('a city matching no site keeps her where she is, with the reason', async () => {
    h.writeFile('acme.csv', acmeCsv([{ ...jane, city: 'Springfield' }, { ...joe, department: 'Sales' }, sal]));
    const report = await update('acme');
    expect(report.counts).toMatchObject({ imported: 1, kept: 1, moved: 0, provisioned: 0 });
    const row = await userRow('acme', 'E10');
    expect(row).toMatchObject({ site: 'dallas', status: 'provisioned', status_reason: expect.stringMatching(/^kept at dallas: no site's microsoft move criteria match any more/) });
    expect(await numbersOf(row.id)).toEqual(['+12145550100:used']);
    const users = JSON.parse((await h.cli('users', '--customer', 'acme', '--json')).out) as { externalId: string; reason: string | null }[];
    expect(users.find((u) => u.externalId === 'E10')?.reason).toMatch(/^kept at dallas/);
  });

  it('updateSyncProfile: after a move the configured profile, not the rules', async () => {
    h.writeFile('fixed.csv', acmeCsv([jane]));
    await add('fixed');
    h.writeFile('fixed.csv', acmeCsv([{ ...jane, city: 'Dallas', mobile: '+12145550000' }]));
    expect((await update('fixed')).counts).toMatchObject({ moved: 1, provisioned: 1 });
    const row = await userRow('fixed', 'E10');
    expect(row).toMatchObject({ site: 'dallas', profile: 'sales' });
    expect(await numbersOf(row.id)).toEqual(['+18005550100:used']);
  });

  it('an update that cannot be provisioned fails the user with the reason, and a later change puts it right', async () => {
    // updateSyncProfile is sales, whose single number reach needs a mobile number Kim does not have.
    const kim = { ...jane, employee_id: 'E12', login: 'kim', mail: 'kim@acme.example' };
    h.writeFile('fixed.csv', acmeCsv([{ ...jane, city: 'Dallas', mobile: '+12145550000' }, kim]));
    await add('fixed');
    h.writeFile('fixed.csv', acmeCsv([{ ...jane, city: 'Dallas', mobile: '+12145550000' }, { ...kim, city: 'Dallas' }]));
    expect((await update('fixed')).counts).toMatchObject({ moved: 1, failed: 1, provisioned: 0 });
    const failed = await userRow('fixed', 'E12');
    expect(failed).toMatchObject({ site: 'dallas', status: 'failed', status_reason: "single number reach needs the user's mobile number, and the user has none" });
    // Nothing of the failed step was written: Kim still holds her Chicago number, and only it.
    expect(await numbersOf(failed.id)).toEqual([expect.stringMatching(/^\+1312555\d{4}:used$/)]);
    h.writeFile('fixed.csv', acmeCsv([{ ...jane, city: 'Dallas', mobile: '+12145550000' }, { ...kim, city: 'Dallas', mobile: '+12145550001' }]));
    expect((await update('fixed')).counts).toMatchObject({ moved: 0, provisioned: 1, failed: 0 });
    // She is at Dallas already: no move, so the FTP rules choose (engineering, a Dallas number).
    const fixed = await userRow('fixed', 'E12');
    expect(fixed).toMatchObject({ status: 'provisioned', site: 'dallas', profile: 'engineering' });
    expect(await numbersOf(fixed.id)).toEqual(['+12145550100:used']);
  });

  it('movedEmail: a user who moves is told their new site and number, once per move', async () => {
    const tia = { ...jane, employee_id: 'E20', login: 'tia', mail: 'tia@acme.example', given_name: 'Tia' };
    h.writeFile('told.csv', acmeCsv([tia]));
    await add('told');
    h.writeFile('told.csv', acmeCsv([{ ...tia, city: 'Dallas' }]));
    expect((await update('told')).counts).toMatchObject({ moved: 1, emailed: 1 });
    const mails = h.smtp.to('tia@acme.example');
    expect(mails.map((m) => m.subject)).toEqual(['Welcome to Acme, Tia', 'You have moved to Dallas, Tia']);
    expect(mails[1]!.text).toContain('You have moved from the Chicago site to the Dallas site of Acme Corp.');
    expect(mails[1]!.text).toContain('Your phone number is now +12145550100.');
    // Another change without a move sends nothing; a move back sends one more.
    h.writeFile('told.csv', acmeCsv([{ ...tia, city: 'Dallas', title: 'Lead' }]));
    expect((await update('told')).counts).toMatchObject({ moved: 0, emailed: 0 });
    h.writeFile('told.csv', acmeCsv([{ ...tia, city: 'Chicago', title: 'Lead' }]));
    expect((await update('told')).counts).toMatchObject({ moved: 1, emailed: 1 });
    expect(h.smtp.to('tia@acme.example').map((m) => m.subject)).toEqual(['Welcome to Acme, Tia', 'You have moved to Dallas, Tia', 'You have moved to Chicago, Tia']);
  });

  it('updateSync off: the record is updated, nobody moves', async () => {
    h.writeFile('frozen.csv', acmeCsv([jane]));
    await add('frozen');
    h.writeFile('frozen.csv', acmeCsv([{ ...jane, city: 'Dallas' }]));
    const report = await update('frozen');
    expect(report.counts).toMatchObject({ imported: 1, moved: 0, provisioned: 0 });
    const row = await userRow('frozen', 'E10');
    expect(row).toMatchObject({ site: 'chicago', status: 'provisioned' });
    expect(row.attributes).toMatchObject({ city: 'Dallas' });
    expect(await numbersOf(row.id)).toEqual(['+13125550100:used']);
  });

  it("preview hands out a pool's numbers page after page, each once, and says who would be left blocked", async () => {
    h.writeFile('crowd.csv', acmeCsv(Array.from({ length: 250 }, (_, i) => person(i + 1))));
    const predicted = JSON.parse((await h.cli('preview', 'hr', '--customer', 'crowd', '--mode', 'add', '--json')).out) as PreviewReport;
    const numbers = predicted.users.flatMap((u) => (u.numbers?.to ? [u.numbers.to] : []));
    expect(numbers).toHaveLength(240);
    expect(new Set(numbers).size).toBe(240);
    expect([numbers[0], numbers[199], numbers[200], numbers.at(-1)]).toEqual(['+13125550100', '+13125550299', '+13125550300', '+13125550339']);
    expect(predicted.counts.blocked).toBe(10);
    expect(predicted.users.slice(240).every((u) => u.blocked === 'no available number in the site chicago pool: add numbers, then retry')).toBe(true);
  });

  it('a change for a user whose pipeline is still running (blocked) reaches that pipeline, applied once', async () => {
    const second = { ...jane, employee_id: 'E11', login: 'second', mail: 'second@acme.example' };
    // Before any sync, the preview gives the pool's one number to the first user it meets and says
    // the second would wait, blocked, with the pipeline's reason.
    h.writeFile('tight.csv', acmeCsv([jane, second]));
    const predicted = JSON.parse((await h.cli('preview', 'hr', '--customer', 'tight', '--mode', 'add', '--json')).out) as PreviewReport;
    expect(predicted.users.map((u) => [u.externalId, u.pass, u.numbers ?? null, u.blocked ?? null])).toEqual([
      ['E10', 'add', { from: [], to: '+13125550100' }, null],
      ['E11', 'add', { from: [], to: null }, 'no available number in the site chicago pool: add numbers, then retry'],
    ]);
    expect(predicted.counts.blocked).toBe(1);
    const text = (await h.cli('preview', 'hr', '--customer', 'tight', '--mode', 'add')).out;
    expect(text).toMatch(/E10 +jmurphy +new +chicago +engineering +site +- → \+13125550100/);
    expect(text).toMatch(/E11 +second +new +chicago +engineering +site +- → blocked \(no available number in the site chicago pool\)/);
    expect(text).toContain('; 1 would be blocked: their pool has no number left for them.');
    h.writeFile('tight.csv', acmeCsv([jane]));
    expect((await add('tight')).counts).toMatchObject({ provisioned: 1 });
    h.writeFile('tight.csv', acmeCsv([jane, second]));
    // With the number taken, the preview says so again for the second, as the sync then does.
    const again = JSON.parse((await h.cli('preview', 'hr', '--customer', 'tight', '--mode', 'add', '--json')).out) as PreviewReport;
    expect(again.users.map((u) => [u.externalId, u.blocked ?? null])).toEqual([['E11', 'no available number in the site chicago pool: add numbers, then retry']]);
    expect((await add('tight')).counts).toMatchObject({ blocked: 1 });
    const handle = h.client.workflow.getHandle(onboardWorkflowId('tight', 'hr', 'E11'));
    const { runId, status } = await handle.describe();
    expect(status.name).toBe('RUNNING');
    h.writeFile('tight.csv', acmeCsv([jane, { ...second, city: 'Dallas' }]));
    const report = await update('tight');
    expect(report.counts).toMatchObject({ imported: 1, moved: 1, provisioned: 1 });
    const row = await userRow('tight', 'E11');
    expect(row).toMatchObject({ site: 'dallas', status: 'provisioned' });
    expect(await numbersOf(row.id)).toEqual(['+12145550100:used']);
    // The same run of the same workflow did it.
    const log = JSON.parse((await h.cli('log', '--user', 'second', '--json')).out) as { action: string; subject: string; runId: string }[];
    expect(log.filter((e) => e.subject === 'moved from chicago to dallas').map((e) => e.runId)).toEqual([runId]);
  });
});

describe('delete sync', () => {
  const everyone = Array.from({ length: 12 }, (_, i) => person(i + 1));

  it('offboards the users gone from the source: services removed, numbers released, record kept as deleted', async () => {
    h.writeFile('leavers.csv', acmeCsv(everyone));
    expect((await add('leavers')).counts).toMatchObject({ provisioned: 12 });
    const leaver = await userRow('leavers', 'L3');
    const [number] = await numbersOf(leaver.id);
    h.writeFile('leavers.csv', acmeCsv(everyone.filter((p) => p.employee_id !== 'L3')));
    expect((await h.cli('preview', 'hr', '--customer', 'leavers', '--mode', 'delete')).out).toMatch(/A delete sync would offboard 1 user of 12 \(the threshold allows 10\): L3\./);
    const report = await h.sync('leavers', 'hr', version, { mode: 'delete' });
    expect(report).toMatchObject({ status: 'succeeded', counts: { seen: 11, removed: 1, imported: 0 } });
    const gone = await userRow('leavers', 'L3');
    // Kept for audit with where they were; nothing is held any more.
    expect(gone).toMatchObject({ id: leaver.id, status: 'deleted', site: 'chicago', status_reason: 'gone from the source' });
    expect(await numbersOf(gone.id)).toEqual([]);
    expect(await activeServices(gone.id)).toEqual([]);
    // No cooling for this customer: the number is available at once.
    expect(await inventory('leavers', number!.split(':')[0]!)).toMatchObject({ status: 'available', user_id: null });
    const log = JSON.parse((await h.cli('log', '--user', 'leaver3', '--json')).out) as { action: string; subject: string }[];
    expect(log.at(-1)).toMatchObject({ action: 'offboard', subject: expect.stringMatching(/^offboarded: gone from the source; removed/) });
  });

  it('a user who comes back is restored as the same user, under the same workflow id', async () => {
    const before = await userRow('leavers', 'L3');
    h.writeFile('leavers.csv', acmeCsv(everyone));
    const report = await add('leavers');
    expect(report.counts).toMatchObject({ imported: 1, restored: 1, placed: 1, provisioned: 1 });
    const back = await userRow('leavers', 'L3');
    expect(back).toMatchObject({ id: before.id, status: 'provisioned', site: 'chicago' });
    expect(await numbersOf(back.id)).toHaveLength(1);
    const { status } = await h.client.workflow.getHandle(onboardWorkflowId('leavers', 'hr', 'L3')).describe();
    expect(status.name).toBe('COMPLETED');
  });

  it('more deletions than the threshold: held, nothing changed, and the report says how to let them through', async () => {
    const kept = everyone.slice(0, 1);
    h.writeFile('leavers.csv', acmeCsv(kept));
    const preview = JSON.parse((await h.cli('preview', 'hr', '--customer', 'leavers', '--mode', 'delete', '--json')).out);
    expect(preview).toMatchObject({ users: [], threshold: { deletions: 11, limit: 10, sourceUsers: 12, held: true } });
    expect(preview.deletions).toHaveLength(11);
    expect((await h.cli('preview', 'hr', '--customer', 'leavers', '--mode', 'delete')).out).toMatch(/A delete sync would be held, offboarding nobody: 11 of 12 users would be offboarded/);
    const result = await h.cli('sync', 'hr', '--customer', 'leavers', '--mode', 'delete', '--wait');
    expect(result.code, result.err).toBe(3);
    expect(result.out).toMatch(/deletions held/);
    expect(result.out).toMatch(/11 of 12 users would be offboarded, more than the default threshold/);
    // The advice once, with the source's own name.
    expect(result.out).toContain('If that is right, let them through: flowthru sync hr --customer leavers --mode delete --allow-deletes 11');
    expect(result.out.match(/--allow-deletes/g)).toHaveLength(1);
    const statuses = await h.db.selectFrom('users').innerJoin('customers', 'customers.id', 'users.customer_id').select('users.status').where('customers.name', '=', 'leavers').execute();
    expect(statuses.every((u) => u.status === 'provisioned')).toBe(true);
    // The sync's own entry and the operator's start, newest first in either order: the CLI writes
    // its entry once the start call returns, by when the sync may have written its own.
    const entries = JSON.parse((await h.cli('log', '--customer', 'leavers', '--json', '--limit', '2')).out) as { action: string; status: string }[];
    expect(entries.map((e) => `${e.action} ${e.status}`).sort()).toEqual(['sync.delete held', 'sync.start succeeded']);
  });

  it('--allow-deletes N lets exactly that many through, and no more', async () => {
    const tooFew = await h.cli('sync', 'hr', '--customer', 'leavers', '--mode', 'delete', '--allow-deletes', '10', '--wait', '--json');
    expect(tooFew.code).toBe(3);
    expect(JSON.parse(tooFew.out)).toMatchObject({ status: 'held', reason: expect.stringMatching(/11 users would be offboarded, more than the 10 allowed/), counts: { removed: 0 } });
    const result = await h.cli('sync', 'hr', '--customer', 'leavers', '--mode', 'delete', '--allow-deletes', '11', '--wait', '--json');
    expect(result.code, result.err).toBe(0);
    expect(JSON.parse(result.out)).toMatchObject({ ok: true, status: 'succeeded', counts: { removed: 11 } });
  });

  it('an empty export offboards nobody without --allow-deletes', async () => {
    h.writeFile('leavers.csv', acmeCsv([]));
    const report = await h.sync('leavers', 'hr', version, { mode: 'delete' });
    expect(report).toMatchObject({ status: 'held', reason: expect.stringMatching(/the source returned no users at all/), counts: { removed: 0 } });
    expect((await userRow('leavers', 'L1')).status).toBe('provisioned');
  });

  it('a threshold as a share: 10 % of 3 users lets nobody go', async () => {
    // Acme's deleteThreshold is "10%": with three users, any deletion is a quarter or more.
    h.writeFile('acme.csv', acmeCsv([{ ...jane, city: 'Springfield' }, { ...joe, department: 'Sales' }]));
    const report = await h.sync('acme', 'hr', version, { mode: 'delete' });
    expect(report).toMatchObject({ status: 'held', held: { deletions: 1, threshold: 0, sourceUsers: 3 } });
    expect((await userRow('acme', 'E4')).status).toBe('provisioned');
  });
});

describe('one sync of a source at a time', () => {
  it('a second sync of the same source with other modes is refused while the first runs', async () => {
    h.writeFile('leavers.csv', acmeCsv(everyoneAgain()));
    const first = await h.startSync('leavers', 'hr', version, { mode: 'add' });
    const second = await h.cli('sync', 'hr', '--customer', 'leavers', '--mode', 'delete');
    await first.result();
    expect(second).toMatchObject({ code: 4, err: expect.stringMatching(/another sync of this source is running \(sync\/leavers\/hr, add\)/) });
  });
});

function everyoneAgain() {
  return Array.from({ length: 12 }, (_, i) => person(i + 1));
}
