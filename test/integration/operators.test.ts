import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onboardWorkflowId, searchAttributes } from '../../src/workflows/config.js';
import { acmeCsv, PipelineHarness, type Customer } from '../support/pipeline.js';

let h: PipelineHarness;
let version: number;

/** The shipped Acme example, number cooling on (30 days). */
const acmeCustomer = (name: string) => h.acmeCustomer(name, (c) => (c.settings.numberCooling = { enabled: true, days: 30 }));

/** Two sites taking engineers by city, each with `size` numbers: more engineers than numbers are blocked. */
function raceCustomer(size: number): Customer {
  const range = (base: number) => ({ from: String(base), to: String(base + size - 1) });
  return {
    name: 'race',
    settings: { flowThrough: { enabled: true, addSync: true, criteria: 'ftp' } },
    criteria: [
      { name: 'in-hq', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'HQ' } },
      { name: 'in-branch', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Branch' } },
      { name: 'engineers', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Engineering' } },
    ],
    profiles: [{ name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }] }],
    ftpCriteria: [{ name: 'ftp', rules: [{ criteria: 'engineers', profile: 'line' }] }],
    sources: [{ name: 'hr', type: 'csv', userType: 'csv', path: join(h.dir, 'race.csv'), externalId: 'employee_id', attributeMap: { employee_id: 'employeeId', login: 'username', department: 'department', city: 'city' } }],
    sites: [
      { name: 'hq', moveCriteria: { csv: 'in-hq' }, numberRanges: [range(5000)] },
      { name: 'branch', moveCriteria: { csv: 'in-branch' }, numberRanges: [range(6000)] },
    ],
  };
}

const configuration = (raceNumbers: number) => ({ version: 1, customers: [acmeCustomer('acme'), acmeCustomer('globex'), raceCustomer(raceNumbers)] });

const joe = { employee_id: 'E1', login: 'jadams', mail: 'joe.adams@acme.example', given_name: 'Joe', surname: 'Adams', department: 'Engineering', city: 'Chicago', title: 'Engineer' };
const bea = { employee_id: 'E2', login: 'bboston', mail: 'bea@acme.example', given_name: 'Bea', surname: 'Boston', department: 'Engineering', city: 'Boston' };
const sal = { employee_id: 'E4', login: 'ssales', mail: 'sal@acme.example', given_name: 'Sal', surname: 'Sales', department: 'Sales', city: 'Dallas', mobile: '+12145559999' };

const cli = (...args: string[]) => h.cli(...args);
const json = async <T>(...args: string[]): Promise<T> => {
  const result = await cli(...args);
  expect(result, result.err).toMatchObject({ code: 0 });
  return JSON.parse(result.out) as T;
};

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
  version = await h.apply(configuration(2));
  h.writeFile('acme.csv', acmeCsv([joe, bea, sal]));
  h.writeFile('globex.csv', acmeCsv([{ ...joe, employee_id: 'G1' }]));
  expect((await h.sync('acme', 'hr', version)).counts).toMatchObject({ provisioned: 2, unplaced: 1 });
  expect((await h.sync('globex', 'hr', version)).counts).toMatchObject({ provisioned: 1 });
});
afterAll(async () => h?.close());

describe('flowthru user', () => {
  it('shows one user: status, site, profile, numbers, services, why, and their pipeline', async () => {
    const { code, out } = await cli('user', 'jadams', '--customer', 'acme');
    expect(code).toBe(0);
    expect(out).toContain('jadams (acme/hr/E1)');
    expect(out).toMatch(/status +provisioned\n/);
    expect(out).toMatch(/site +chicago\n/);
    expect(out).toMatch(/profile +engineering\n/);
    expect(out).toMatch(/role +engineer\n/);
    expect(out).toMatch(/numbers +\+13125550100 \(used, site chicago\)\n/);
    expect(out).toMatch(/services +phone: line \+13125550100, model Cisco 8865\n/);
    expect(out).toContain('group:engineers (group): name engineers');
    expect(out).toContain('pipeline   http://127.0.0.1:8233/namespaces/default/workflows/onboard%2Facme%2Fhr%2FE1');
    // The site decision: the first site matched, the condition and the value seen.
    expect(out).toMatch(/Site decision \(\d{4}-\d\d-\d\dT[\d:.]+Z: moved to chicago\):\n {2}site chicago matched \(move criteria city-chicago\)\n/);
    expect(out).toContain('\n    site chicago, move criteria city-chicago: matched\n      ✓ city equals "Chicago" (seen: "Chicago")');
    // The profile decision: which rule, and every condition of its criteria.
    expect(out).toContain('  rule 1 matched (criteria engineering): profile engineering');
    expect(out).toContain('\n      ✓ all of 2\n        ✓ department equals "Engineering" (seen: "Engineering")\n        ✓ not (title contains "intern")\n          ✗ title contains "intern" (seen: "Engineer")');
  });

  it('says why a user was placed nowhere: every site considered and what it saw', async () => {
    const { out } = await cli('user', 'bea@acme.example');
    expect(out).toMatch(/status +unplaced: no site's microsoft move criteria match\n/);
    expect(out).toMatch(/site +- \(customer level\)\n/);
    expect(out).toContain('  no site matched (2 considered)');
    expect(out).toContain('\n    site chicago, move criteria city-chicago: did not match\n      ✗ city equals "Chicago" (seen: "Boston")');
    expect(out).toContain('\n    site dallas, move criteria city-dallas: did not match\n      ✗ city equals "Dallas" (seen: "Boston")');
    expect(out).toContain('Profile decision: none on record');
  });

  it('--json has the raw explanations and the Temporal UI link', async () => {
    const user = await json<Record<string, any>>('user', 'E1', '--customer', 'acme', '--json'); // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(user).toMatchObject({
      id: (await h.userRow('acme', 'E1')).id,
      customer: 'acme',
      source: 'hr',
      externalId: 'E1',
      username: 'jadams',
      email: 'joe.adams@acme.example',
      status: 'provisioned',
      reason: null,
      site: 'chicago',
      profile: 'engineering',
      role: 'engineer',
      numbers: [{ number: '+13125550100', status: 'used', site: 'chicago' }],
      deletedAt: null,
      workflowId: 'onboard/acme/hr/E1',
      temporalUi: 'http://127.0.0.1:8233/namespaces/default/workflows/onboard%2Facme%2Fhr%2FE1',
      decisions: { site: { at: expect.any(String), summary: 'moved to chicago', workflowId: 'onboard/acme/hr/E1', runId: expect.any(String) } },
    });
    expect(user.services).toContainEqual({ key: 'phone', kind: 'phone', settings: { model: 'Cisco 8865', line: '+13125550100' } });
    expect(user.services).toContainEqual({ key: 'teams', kind: 'teams', settings: { licences: ['MCOEV'], policies: { callingPolicy: 'AllowCalling' } } });
    expect(user.why.site).toEqual({
      site: 'chicago',
      considered: [{ site: 'chicago', criteria: 'city-chicago', explanation: { held: true, condition: 'city equals "Chicago"', seen: 'Chicago' } }],
    });
    expect(user.why.profile).toMatchObject({ rule: { profile: 'engineering', criteria: { name: 'engineering' } }, index: 0, considered: [{ criteria: 'engineering', profile: 'engineering' }] });
  });

  it('an ambiguous user asks for --customer; an unknown one says so', async () => {
    const ambiguous = await cli('user', 'jadams');
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.err).toBe('flowthru: "jadams" matches 2 users (acme/hr/E1, globex/hr/G1): say which with --customer, or use the external id');
    expect(await cli('user', 'nobody')).toMatchObject({ code: 1, err: 'flowthru: no user "nobody"' });
    expect(await cli('user', 'jadams', '--customer', 'initech')).toMatchObject({ code: 1, err: 'flowthru: no user "jadams" for customer initech' });
  });
});

describe('the log explains itself', () => {
  it('log --why --json gives each step the explanation it kept', async () => {
    const entries = await json<{ action: string; why: any }[]>('log', '--user', 'jadams', '--customer', 'acme', '--why', '--json'); // eslint-disable-line @typescript-eslint/no-explicit-any
    const move = entries.find((e) => e.action === 'move')!;
    expect(move.why).toMatchObject({ site: 'chicago', considered: [{ site: 'chicago', criteria: 'city-chicago' }] });
    expect(entries.find((e) => e.action === 'profile')!.why).toMatchObject({ rule: { profile: 'engineering' } });
    expect(entries.find((e) => e.action === 'create')!.why).toBeNull();
    // Without --why the entries keep exactly SPEC §5's fields.
    const plain = await json<object[]>('log', '--user', 'jadams', '--customer', 'acme', '--json');
    expect(Object.keys(plain[0]!).sort()).toEqual(['action', 'at', 'customer', 'error', 'kind', 'runId', 'status', 'subject', 'user', 'workflowId']);
  });

  it('log --why prints the explanation under its entry', async () => {
    const { code, out } = await cli('log', '--user', 'bboston', '--why');
    expect(code).toBe(0);
    const lines = out.split('\n');
    const move = lines.findIndex((l) => / move +succeeded +no site's microsoft move criteria match/.test(l));
    expect(move).toBeGreaterThan(0);
    expect(lines[move + 1]).toBe('    no site matched (2 considered)');
    expect(lines[move + 2]).toBe('    chicago: ✗ city equals "Chicago" (seen "Boston") | dallas: ✗ city equals "Dallas" (seen "Boston")');
  });
});

describe('users and numbers', () => {
  it('users --json has the reason of a blocked user; the table shows it shortened', async () => {
    const people = [1, 2, 3, 4].map((i) => ({ employee_id: `H${i}`, login: `hq${i}`, department: 'Engineering', city: 'HQ' }));
    h.writeFile('race.csv', acmeCsv([...people, ...[1, 2, 3].map((i) => ({ employee_id: `B${i}`, login: `branch${i}`, department: 'Engineering', city: 'Branch' }))]));
    expect((await h.sync('race', 'hr', version)).counts).toMatchObject({ seen: 7, provisioned: 4, blocked: 3 });
    const users = await json<{ externalId: string; status: string; reason: string | null }[]>('users', '--customer', 'race', '--json');
    expect(users.filter((u) => u.status === 'blocked').map((u) => [u.externalId.slice(0, 1), u.reason])).toEqual([
      ['B', 'no available number in the site branch pool: add numbers, then retry'],
      ['H', 'no available number in the site hq pool: add numbers, then retry'],
      ['H', 'no available number in the site hq pool: add numbers, then retry'],
    ]);
    expect(users.filter((u) => u.status === 'provisioned').every((u) => u.reason === null)).toBe(true);
    const table = (await cli('users', '--customer', 'race', '--site', 'hq')).out;
    expect(table.split('\n')[0]).toMatch(/STATUS +REASON +NUMBERS$/);
    expect(table).toContain('blocked      no available number in the site hq pool…');
  });

  it('numbers shows when a cooling number becomes available; one whose time has passed is available', async () => {
    // Sal's profile moves from Sales (the customer pool) to Engineering (the Dallas pool): the customer number cools.
    h.writeFile('acme.csv', acmeCsv([joe, bea, { ...sal, department: 'Engineering' }]));
    expect((await h.sync('acme', 'hr', version, { mode: 'update' })).counts).toMatchObject({ provisioned: 1 });
    type Row = { number: string; status: string; user: string | null; availableFrom: string | null };
    const numbers = await json<Row[]>('numbers', '--customer', 'acme', '--json');
    const cooled = numbers.find((n) => n.number === '+18005550100')!;
    expect(cooled).toMatchObject({ status: 'cooling', user: null, availableFrom: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/) });
    const days = (Date.parse(cooled.availableFrom!) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);
    expect(numbers.filter((n) => n.number !== '+18005550100').every((n) => n.availableFrom === null)).toBe(true);
    const table = (await cli('numbers', '--customer', 'acme')).out;
    expect(table.split('\n')[0]).toMatch(/STATUS +USER +AVAILABLE FROM$/);
    expect(table).toMatch(new RegExp(`cooling +- +${cooled.availableFrom!.slice(0, 16).replace('+', '\\+')}Z`));

    // Its time passes: the listing must not call "cooling" a number the next reservation hands out.
    await h.db.updateTable('number_inventory').set({ cooling_until: new Date(Date.now() - 60_000) }).where('number', '=', '+18005550100').where('status', '=', 'cooling').execute();
    const after = await json<Row[]>('numbers', '--customer', 'acme', '--json');
    expect(after.filter((n) => n.number === '+18005550100')).toEqual([{ number: '+18005550100', customer: 'acme', site: null, status: 'available', user: null, availableFrom: null }]);
  });
});

describe('flowthru retry', () => {
  it('retry --status blocked --site S hands every blocked user there to their pipeline', async () => {
    const next = await h.apply(configuration(10));
    // Which two hq engineers lost the race for numbers is up to the race.
    const waiting = (await h.db.selectFrom('users').select(['external_id', 'username']).where('status', '=', 'blocked').where('external_id', 'like', 'H%').orderBy('external_id').execute());
    expect(waiting).toHaveLength(2);
    const b3 = (await h.db.selectFrom('users').select('external_id').where('status', '=', 'blocked').where('external_id', 'like', 'B%').executeTakeFirstOrThrow()).external_id;
    const result = await cli('retry', '--status', 'blocked', '--customer', 'race', '--site', 'hq');
    expect(result.code, result.err).toBe(0);
    const lines = result.out.split('\n');
    expect(lines[0]).toBe(`Handed 2 blocked users at site hq of customer race to their pipelines (configuration version ${next}):`);
    expect(lines[1]).toMatch(/^CUSTOMER +SOURCE +EXTERNALID +USERNAME +SITE$/);
    expect(lines.slice(2).map((l) => l.split(/ +/).slice(0, 5))).toEqual(waiting.map((u) => ['race', 'hr', u.external_id, u.username, 'hq']));
    const [h1, h2] = waiting.map((u) => u.external_id) as [string, string];
    const status = async () =>
      Object.fromEntries(
        (await h.db.selectFrom('users').select(['external_id', 'status']).where('external_id', 'in', [h1, h2, b3]).execute()).map((u) => [u.external_id, u.status]),
      );
    await expect.poll(status, { timeout: 30_000, interval: 250 }).toEqual({ [h1]: 'provisioned', [h2]: 'provisioned', [b3]: 'blocked' });
    expect(await h.db.selectFrom('number_inventory').select('number').where('status', '=', 'used').where('number', 'like', '500%').execute()).toHaveLength(4);

    // The rest, as JSON; then nobody is left, which is no error.
    const rest = await json<{ status: string; retried: number; users: { externalId: string; workflowId: string }[] }>('retry', '--status', 'blocked', '--json');
    expect(rest).toMatchObject({ status: 'blocked', configVersion: next, retried: 1, users: [{ externalId: b3, workflowId: `onboard/race/hr/${b3}` }] });
    await expect.poll(status, { timeout: 30_000, interval: 250 }).toEqual({ [h1]: 'provisioned', [h2]: 'provisioned', [b3]: 'provisioned' });
    expect(await cli('retry', '--status', 'blocked', '--customer', 'race')).toMatchObject({ code: 0, out: 'No blocked users of customer race: nothing to retry.' });
    expect(await cli('retry', '--status', 'failed')).toMatchObject({ code: 0, out: 'No failed users: nothing to retry.' });
  });

  it('says whom: a USER or --status, not both, not neither', async () => {
    expect(await cli('retry')).toMatchObject({ code: 1, err: 'flowthru: say whom to retry: a USER, or --status blocked|failed' });
    expect(await cli('retry', 'H1', '--status', 'blocked')).toMatchObject({ code: 1, err: 'flowthru: retry takes a USER or --status, not both' });
    expect((await cli('retry', '--status', 'deleted')).code).toBe(1);
    expect(await cli('retry', 'jadams')).toMatchObject({ code: 1, err: expect.stringMatching(/matches 2 users .*--customer/) });
  });

  it('retry USER starts the pipeline with the search attributes a sync sets', async () => {
    const result = await cli('retry', 'bboston', '--customer', 'acme');
    expect(result).toMatchObject({ code: 0, out: 'Retrying E2 (unplaced): http://127.0.0.1:8233/namespaces/default/workflows/onboard%2Facme%2Fhr%2FE2' });
    const handle = h.client.workflow.getHandle(onboardWorkflowId('acme', 'hr', 'E2'));
    await handle.result();
    const { typedSearchAttributes } = await handle.describe();
    expect(typedSearchAttributes.get(searchAttributes.customer)).toBe('acme');
    expect(typedSearchAttributes.get(searchAttributes.source)).toBe('hr');
    expect(typedSearchAttributes.get(searchAttributes.syncMode)).toBe('add');
    expect(typedSearchAttributes.get(searchAttributes.status)).toBe('unplaced');
  });

  it('refuses an offboarded user', async () => {
    await h.db.updateTable('users').set({ status: 'deleted', deleted_at: new Date() }).where('external_id', '=', 'E2').execute();
    expect(await cli('retry', 'bboston', '--customer', 'acme')).toMatchObject({ code: 1, err: 'flowthru: user bboston was offboarded; a sync that sees them again restores them' });
    const user = await json<{ status: string; deletedAt: string | null }>('user', 'bboston', '--json');
    expect(user).toMatchObject({ status: 'deleted', deletedAt: expect.stringMatching(/Z$/) });
  });
});
