import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { acmeCsv, PipelineHarness } from '../support/pipeline.js';

let h: PipelineHarness;

/** The shipped Acme example, pointed at this test's SMTP server and CSV file. */
function acme(csvPath: string, edit: (customer: Record<string, unknown>) => void = () => undefined) {
  const config = parse(readFileSync('examples/acme.yaml', 'utf8'));
  const customer = config.customers[0];
  customer.settings.smtp.port = h.smtp.port;
  customer.settings.welcomeEmail.template = `${process.cwd()}/examples/templates/welcome.html`;
  customer.sources[0].path = csvPath;
  customer.sources[0].attributeMap.mobile = 'mobile';
  edit(customer);
  return config;
}

const joe = { employee_id: 'E1', login: 'jadams', mail: 'joe.adams@acme.example', given_name: 'Joe', surname: 'Adams', department: 'Engineering', city: 'Chicago', title: 'Engineer' };
const bea = { employee_id: 'E2', login: 'bboston', mail: 'bea@acme.example', given_name: 'Bea', surname: 'Boston', department: 'Engineering', city: 'Boston' };
const max = { employee_id: 'E3', login: 'mmarket', mail: 'max@acme.example', given_name: 'Max', surname: 'Market', department: 'Marketing', city: 'Chicago' };
const sal = { employee_id: 'E4', login: 'ssales', mail: 'sal@acme.example', given_name: 'Sal', surname: 'Sales', department: 'Sales', city: 'Dallas', mobile: '+12145559999' };

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
});
afterAll(async () => h?.close());

async function userRow(externalId: string) {
  return h.db
    .selectFrom('users')
    .leftJoin('sites', 'sites.id', 'users.site_id')
    .leftJoin('user_profiles', 'user_profiles.id', 'users.profile_id')
    .select(['users.id', 'users.status', 'users.role', 'users.status_reason', 'sites.name as site', 'user_profiles.name as profile'])
    .where('users.external_id', '=', externalId)
    .executeTakeFirstOrThrow();
}

async function numbersOf(userId: string) {
  return (await h.db.selectFrom('number_inventory').select(['number', 'status']).where('user_id', '=', userId).execute()).map((n) => `${n.number}:${n.status}`);
}

describe('the Acme add sync', () => {
  it('moves, provisions and welcomes each user as the criteria say', async () => {
    const csv = h.writeFile('acme.csv', acmeCsv([joe, bea, max, sal]));
    const version = await h.apply(acme(csv));
    const report = await h.sync('acme', 'hr', version);
    expect(report.counts).toEqual({
      seen: 4,
      imported: 4,
      moved: 3,
      provisioned: 2,
      unplaced: 1,
      unmatched: 1,
      blocked: 0,
      failed: 0,
      emailed: 2,
      removed: 0,
      invalid: 0,
    });

    const joeRow = await userRow('E1');
    expect(joeRow).toMatchObject({ status: 'provisioned', site: 'chicago', profile: 'engineering', role: 'engineer' });
    expect(await numbersOf(joeRow.id)).toEqual(['+13125550100:used']);
    const joeMail = h.smtp.to('joe.adams@acme.example');
    expect(joeMail).toHaveLength(1);
    expect(joeMail[0]!.html).toContain('+13125550100');
    expect(joeMail[0]!.text).toContain('+13125550100');
    expect(joeMail[0]!.subject).toBe('Welcome to Acme, Joe');

    const beaRow = await userRow('E2');
    expect(beaRow).toMatchObject({ status: 'unplaced', site: null, profile: null });
    expect(await numbersOf(beaRow.id)).toEqual([]);
    expect(h.smtp.to('bea@acme.example')).toEqual([]);

    const maxRow = await userRow('E3');
    expect(maxRow).toMatchObject({ status: 'unmatched', site: 'chicago', profile: null, role: 'user' });
    expect(await numbersOf(maxRow.id)).toEqual([]);
    expect(h.smtp.to('max@acme.example')).toEqual([]);

    const salRow = await userRow('E4');
    expect(salRow).toMatchObject({ status: 'provisioned', site: 'dallas', profile: 'sales', role: 'sales' });
    expect(await numbersOf(salRow.id)).toEqual(['+18005550100:used']);
  });

  it('run again, the same sync changes nothing and sends nothing', async () => {
    const version = await h.apply(acme(`${h.dir}/acme.csv`));
    const before = await h.db.selectFrom('transaction_log').select('id').where('kind', '=', 'step').execute();
    const report = await h.sync('acme', 'hr', version);
    expect(report.counts).toMatchObject({ seen: 4, imported: 0, moved: 0, provisioned: 0, emailed: 0 });
    expect(h.smtp.messages).toHaveLength(2);
    const after = await h.db.selectFrom('transaction_log').select('id').where('kind', '=', 'step').execute();
    expect(after).toHaveLength(before.length);
  });
});
