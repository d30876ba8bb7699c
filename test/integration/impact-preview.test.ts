import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acmeCsv, PipelineHarness, type Customer } from '../support/pipeline.js';

/*
 * `flowthru preview SOURCE --config FILE`: what a candidate configuration would change for the
 * users already synced (and, with --read-source, for the source as it is now), with no side effect.
 */

let h: PipelineHarness;

const joe = { employee_id: 'E1', login: 'jadams', mail: 'joe@acme.example', given_name: 'Joe', surname: 'Adams', department: 'Engineering', city: 'Chicago', title: 'Engineer' };
const bea = { employee_id: 'E2', login: 'bboston', mail: 'bea@acme.example', given_name: 'Bea', surname: 'Boston', department: 'Engineering', city: 'Boston', title: 'Engineer' };
const sal = { employee_id: 'E3', login: 'ssales', mail: 'sal@acme.example', given_name: 'Sal', surname: 'Sales', department: 'Sales', city: 'Dallas', mobile: '+12145559999' };
const dan = { employee_id: 'E4', login: 'ddallas', mail: 'dan@acme.example', given_name: 'Dan', surname: 'Dallas', department: 'Engineering', city: 'Dallas', title: 'Engineer' };

/** The candidate: Boston joins Dallas, engineers get another phone and a SCIM target, a rule for a department nobody is in. */
function candidate(): Customer {
  return h.acmeCustomer('acme', (c) => {
    const dallas = c.criteria.find((k: Customer) => k.name === 'city-dallas');
    dallas.when = { attribute: 'city', op: 'in', values: ['Dallas', 'Boston'] };
    c.profiles.find((p: Customer) => p.name === 'engineering').services[0].model = 'Cisco 9871';
    c.criteria.push({ name: 'legal', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Legal' } });
    c.ftpCriteria[0].rules.push({ criteria: 'legal', profile: 'sales' });
    c.targets = [{ name: 'saas', kind: 'scim', url: 'https://scim.invalid/scim/v2', tokenEnv: 'TEST_IMPACT_SCIM_TOKEN', group: { attribute: 'department', op: 'equals', value: 'Engineering' } }];
    c.settings.deleteThreshold = '10%';
  });
}

const cli = (...args: string[]) => h.cli(...args);

/** Everything a preview could touch: table sizes, the newest log entry, the configuration versions, workflows. */
async function footprint() {
  const count = async (table: 'users' | 'transaction_log' | 'config_versions' | 'email_outbox' | 'number_inventory' | 'user_services' | 'target_state') =>
    Number((await h.db.selectFrom(table).select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()).n);
  const users = await h.db.selectFrom('users').select(['external_id', 'status', 'site_id', 'profile_id', 'source_hash', 'updated_at']).orderBy('external_id').execute();
  const numbers = await h.db.selectFrom('number_inventory').select(['number', 'status', 'user_id']).where('status', '<>', 'available').orderBy('number').execute();
  const workflows = await h.client.workflow.count(`TaskQueue = "${h.taskQueue}"`);
  return {
    tables: Object.fromEntries(await Promise.all((['users', 'transaction_log', 'config_versions', 'email_outbox', 'number_inventory', 'user_services', 'target_state'] as const).map(async (t) => [t, await count(t)]))),
    users,
    numbers,
    workflows: workflows.count,
  };
}

beforeAll(async () => {
  h = await PipelineHarness.create();
  await h.startWorker();
  const version = await h.apply({ version: 1, customers: [h.acmeCustomer('acme')] });
  h.writeFile('acme.csv', acmeCsv([joe, bea, sal, dan]));
  expect((await h.sync('acme', 'hr', version)).counts).toMatchObject({ seen: 4, provisioned: 3, unplaced: 1 });
  process.env.TEST_IMPACT_SCIM_TOKEN = 'unused';
}, 60_000);
afterAll(async () => h?.close());

describe('preview --config: the impact of a candidate configuration', () => {
  it('lists what would change for each synced user, with counts per site, profile and rule, and changes nothing', async () => {
    const file = join(h.dir, 'candidate.yaml');
    writeFileSync(file, stringify({ version: 1, customers: [candidate()] }));
    const before = await footprint();
    const result = await cli('preview', 'hr', '--config', file, '--json');
    expect(result.code, result.err).toBe(0);
    const report = JSON.parse(result.out);
    const byId = Object.fromEntries(report.users.map((u: { externalId: string }) => [u.externalId, u]));
    // Bea, in Boston, is placed at dallas and gets the engineering profile, a dallas number, the services and the target.
    expect(byId.E2).toMatchObject({
      kind: 'synced',
      status: 'unplaced',
      site: { from: null, to: 'dallas' },
      move: false,
      profile: { from: null, to: 'engineering' },
      rule: 1,
      line: { pool: 'site dallas', from: [], keeps: false },
      services: { added: ['phone', 'voicemail', 'teams', 'group:engineers'], changed: [], removed: [] },
      targets: { added: ['saas'], removed: [] },
    });
    expect(byId.E2.why.site.considered.at(-1)).toMatchObject({ site: 'dallas', explanation: { held: true } });
    // Joe stays where he is with his number; his phone changes model and the target would hold him.
    expect(byId.E1).toMatchObject({ site: { from: 'chicago', to: 'chicago' }, profile: { from: 'engineering', to: 'engineering' }, line: { keeps: true }, services: { added: [], changed: ['phone'], removed: [] }, targets: { added: ['saas'] } });
    // Sal (Sales) would not change at all: not listed.
    expect(byId.E3).toBeUndefined();
    expect(report).toMatchObject({
      customer: 'acme',
      source: 'hr',
      readSource: false,
      counts: { evaluated: 4, changed: 3, unchanged: 1, moves: 0, placed: 4, unplaced: 0, profileChanges: 1, serviceChanges: 3, targetChanges: 3 },
      bySite: { chicago: 1, dallas: 3 },
      byProfile: { engineering: 3, sales: 1 },
      byRule: [
        { rule: 1, criteria: 'engineering', profile: 'engineering', users: 3 },
        { rule: 2, criteria: 'sales', profile: 'sales', users: 1 },
        { rule: 3, criteria: 'legal', profile: 'sales', users: 0 },
      ],
      matchingNobody: { sites: [], rules: [3] },
    });
    // No side effect: the database, the outbox, Temporal are as they were.
    expect(await footprint()).toEqual(before);

    // The human form: one line per user, then the counts.
    const text = await cli('preview', 'hr', '--config', file);
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(/^E2 +bboston +place +- → dallas +- → engineering +- → new from site dallas +\+phone, \+voicemail, \+teams, \+group:engineers +\+saas$/m);
    expect(text.out).toMatch(/^E1 +jadams +update +chicago +engineering +keeps \+13125550100 +~phone +\+saas$/m);
    expect(text.out).toContain('4 users evaluated, 3 would change, 1 would not');
    expect(text.out).toContain('by rule:    1 engineering → engineering: 3; 2 sales → sales: 1; 3 legal → sales: 0');
    expect(text.out).toContain('matching nobody: rule 3 (legal)');
  });

  it('--read-source: new people, who left, and whether the candidate’s threshold would hold the deletions', async () => {
    const file = join(h.dir, 'candidate-source.yaml');
    writeFileSync(file, stringify({ version: 1, customers: [candidate()] }));
    h.writeFile('acme.csv', acmeCsv([joe, bea, { ...dan, city: 'Chicago' }, { employee_id: 'E5', login: 'nnew', mail: 'n@acme.example', department: 'Engineering', city: 'Boston', title: 'Engineer' }]));
    const before = await footprint();
    const result = await cli('preview', 'hr', '--config', file, '--read-source', '--json');
    expect(result.code, result.err).toBe(0);
    const report = JSON.parse(result.out);
    const byId = Object.fromEntries(report.users.map((u: { externalId: string }) => [u.externalId, u]));
    expect(byId.E5).toMatchObject({ kind: 'new', site: { from: null, to: 'dallas' }, profile: { to: 'engineering' } });
    // Dan moved to Chicago in the source: a move, and a number from the chicago pool.
    expect(byId.E4).toMatchObject({ kind: 'synced', move: true, site: { from: 'dallas', to: 'chicago' }, line: { pool: 'site chicago', keeps: false } });
    expect(byId.E3).toMatchObject({ kind: 'gone', site: { from: 'dallas', to: null } });
    expect(report.counts).toMatchObject({ evaluated: 4, new: 1, deletions: 1, moves: 1 });
    // 1 of 4 gone is over the candidate's 10 %: a delete sync would be held.
    expect(report.threshold).toMatchObject({ deletions: 1, sourceUsers: 4, held: true });
    expect(await footprint()).toEqual(before);
    const text = await cli('preview', 'hr', '--config', file, '--read-source');
    expect(text.out).toMatch(/^E3 +ssales +offboard +dallas → - +sales → - +/m);
    expect(text.out).toContain('A delete sync would be held, offboarding nobody');
  });

  it('names a user the candidate would keep where they are, because no site matches them any more', async () => {
    h.writeFile('acme.csv', acmeCsv([joe, bea, sal, dan]));
    const file = join(h.dir, 'candidate-kept.yaml');
    writeFileSync(
      file,
      stringify({
        version: 1,
        customers: [
          h.acmeCustomer('acme', (c) => {
            c.criteria.find((k: Customer) => k.name === 'city-chicago').when = { attribute: 'city', op: 'equals', value: 'Springfield' };
          }),
        ],
      }),
    );
    const result = await cli('preview', 'hr', '--config', file, '--json');
    expect(result.code, result.err).toBe(0);
    const report = JSON.parse(result.out);
    expect(report.users).toHaveLength(1);
    expect(report.users[0]).toMatchObject({ externalId: 'E1', kept: true, move: false, site: { from: 'chicago', to: 'chicago' }, profile: { from: 'engineering', to: 'engineering' } });
    expect(report.counts).toMatchObject({ kept: 1, changed: 1 });
    // Joe stays at chicago, but its move criteria take nobody any more.
    expect(report.matchingNobody).toEqual({ sites: ['chicago'], rules: [] });
    const text = await cli('preview', 'hr', '--config', file);
    expect(text.out).toMatch(/^E1 +jadams +kept +chicago +engineering +/m);
  });

  it('refuses a candidate that is not valid, and options that go with --config only', async () => {
    const file = h.writeFile('broken.yaml', 'version: 1\ncustomers:\n  - name: acme\n    sites: 3\n');
    const result = await cli('preview', 'hr', '--config', file);
    expect(result.code).toBe(1);
    expect(result.err).toContain('is not a valid configuration');
    expect(await cli('preview', 'hr', '--read-source')).toMatchObject({ code: 1, err: 'flowthru: --read-source and --all go with --config FILE' });
    const other = join(h.dir, 'other.yaml');
    writeFileSync(other, stringify({ version: 1, customers: [candidate()] }));
    expect(await cli('preview', 'nope', '--config', other)).toMatchObject({ code: 1, err: `flowthru: no source "nope" in ${other}` });
  });
});
