import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { loadConfigFile } from '../../src/adapters/config-file.js';
import { applyConfig, ConfigApplyRefused, loadConfigVersion } from '../../src/adapters/db/config-store.js';
import { main } from '../../src/client/cli.js';
import type { ResolvedConfig } from '../../src/domain/config/resolved.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let t: TestDatabase;
let dir: string;

beforeAll(async () => {
  t = await createTestDatabase();
  dir = mkdtempSync(join(tmpdir(), 'flowthru-config-'));
  mkdirSync(join(dir, 'templates'));
  copyFileSync('examples/templates/welcome.html', join(dir, 'templates/welcome.html'));
});
afterAll(async () => t?.drop());
beforeEach(async () => {
  await sql`truncate customers, config_versions, transaction_log restart identity cascade`.execute(t.db);
});

const acme = () => parse(readFileSync('examples/acme.yaml', 'utf8'));

async function load(document: unknown, name = 'config.yaml'): Promise<ResolvedConfig> {
  const file = join(dir, name);
  writeFileSync(file, stringify(document));
  const result = await loadConfigFile(file);
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config;
}

async function snapshot() {
  const tables = ['customers', 'sites', 'site_defaults', 'site_move_criteria', 'criteria', 'user_profiles', 'ftp_criteria', 'ftp_rules', 'global_settings', 'sync_sources'] as const;
  const out: Record<string, unknown> = {};
  for (const table of tables) out[table] = (await sql`select * from ${sql.table(table)} order by 1, 2`.execute(t.db)).rows;
  out.numbers = (await sql`select customer_id, site_id, number, status from number_inventory order by 1, 2, 3`.execute(t.db)).rows;
  return out;
}

const cli = (...args: string[]) => cliAt(t.url, ...args);

async function cliAt(url: string, ...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const previous = process.env.DATABASE_URL;
  process.env.DATABASE_URL = url;
  try {
    const code = await main(['node', 'flowthru', ...args], { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    process.env.DATABASE_URL = previous;
  }
}

describe('config apply', () => {
  it('writes every part of the configuration', async () => {
    const result = await applyConfig(t.db, await load(acme()));
    expect(result).toMatchObject({ version: 1, changed: true });
    const sites = await t.db.selectFrom('sites').select(['name', 'position']).orderBy('position').execute();
    expect(sites).toEqual([
      { name: 'chicago', position: 0 },
      { name: 'dallas', position: 1 },
    ]);
    const pools = await sql<{ site: string | null; count: string; lowest: string }>`
      select s.name as site, count(*) as count, min(n.number) as lowest
      from number_inventory n left join sites s on s.id = n.site_id group by s.name order by s.name nulls first`.execute(t.db);
    expect(pools.rows).toEqual([
      { site: null, count: '50', lowest: '+18005550100' },
      { site: 'chicago', count: '200', lowest: '+13125550100' },
      { site: 'dallas', count: '200', lowest: '+12145550100' },
    ]);
    const settings = await t.db.selectFrom('global_settings').selectAll().executeTakeFirstOrThrow();
    expect(settings).toMatchObject({ flow_through_enabled: true, number_cooling_days: 30, delete_threshold: '10%' });
    expect(await t.db.selectFrom('ftp_rules').select(['position', 'role']).orderBy('position').execute()).toEqual([
      { position: 0, role: null },
      { position: 1, role: 'sales' },
    ]);
    const snapshotOfVersion = await loadConfigVersion(t.db, 1);
    expect(snapshotOfVersion?.config.templates.acme).toContain('Welcome to {{customer}}');
    expect(snapshotOfVersion?.config.customers[0]?.sources[0]).toMatchObject({ path: join(dir, 'data/acme-users.csv') });
  });

  it('is idempotent: the same file twice changes nothing and records no new version', async () => {
    const config = await load(acme());
    await applyConfig(t.db, config);
    const before = await snapshot();
    expect(await applyConfig(t.db, config)).toMatchObject({ version: 1, changed: false });
    expect(await snapshot()).toEqual(before);
    expect(await t.db.selectFrom('config_versions').select('id').execute()).toHaveLength(1);
  });

  it('records a new version for a change and updates in place', async () => {
    await applyConfig(t.db, await load(acme()));
    const changed = acme();
    changed.customers[0].sites[0].numberRanges = [{ from: '+13125550100', to: '+13125550109' }];
    changed.customers[0].sites.push({ name: 'austin', moveCriteria: {}, numberRanges: [] });
    changed.customers[0].criteria = changed.customers[0].criteria.filter((c: { name: string }) => c.name !== 'sales');
    changed.customers[0].ftpCriteria[0].rules.pop();
    const result = await applyConfig(t.db, await load(changed));
    expect(result).toMatchObject({ version: 2, changed: true });
    expect((await t.db.selectFrom('sites').select('name').orderBy('position').execute()).map((s) => s.name)).toEqual(['chicago', 'dallas', 'austin']);
    expect(await t.db.selectFrom('criteria').select('name').where('name', '=', 'sales').execute()).toEqual([]);
    const { count } = await t.db
      .selectFrom('number_inventory')
      .innerJoin('sites', 'sites.id', 'number_inventory.site_id')
      .where('sites.name', '=', 'chicago')
      .select(sql<string>`count(*)`.as('count'))
      .executeTakeFirstOrThrow();
    expect(count).toBe('10');
  });

  it('refuses to remove a site that still has users, and writes nothing', async () => {
    await applyConfig(t.db, await load(acme()));
    const customer = await t.db.selectFrom('customers').select('id').executeTakeFirstOrThrow();
    const site = await t.db.selectFrom('sites').select('id').where('name', '=', 'dallas').executeTakeFirstOrThrow();
    const source = await t.db.selectFrom('sync_sources').select('id').executeTakeFirstOrThrow();
    await t.db
      .insertInto('users')
      .values({ customer_id: customer.id, source_id: source.id, external_id: 'u1', user_type: 'microsoft', attributes: '{}' as never, source_hash: 'x', site_id: site.id, username: 'u1', email: null, ldap_entry: null, role: null, profile_id: null, status_reason: null, deleted_at: null })
      .execute();
    const before = await snapshot();
    const withoutDallas = acme();
    withoutDallas.customers[0].sites.pop();
    const error = await applyConfig(t.db, await load(withoutDallas)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigApplyRefused);
    expect((error as ConfigApplyRefused).problems.map((p) => p.message)).toEqual([
      'site "dallas" of customer "acme" still has 1 user(s); move or offboard them before removing it',
    ]);
    expect(await snapshot()).toEqual(before);
    expect(await t.db.selectFrom('config_versions').select('id').execute()).toHaveLength(1);
  });

  it('refuses to drop a number a user holds', async () => {
    await applyConfig(t.db, await load(acme()));
    const customer = await t.db.selectFrom('customers').select('id').executeTakeFirstOrThrow();
    const source = await t.db.selectFrom('sync_sources').select('id').executeTakeFirstOrThrow();
    const user = await t.db
      .insertInto('users')
      .values({ customer_id: customer.id, source_id: source.id, external_id: 'u1', user_type: 'microsoft', attributes: '{}' as never, source_hash: 'x', site_id: null, username: 'u1', email: null, ldap_entry: null, role: null, profile_id: null, status_reason: null, deleted_at: null })
      .returning('id')
      .executeTakeFirstOrThrow();
    await t.db.updateTable('number_inventory').set({ status: 'used', user_id: user.id }).where('number', '=', '+13125550250').execute();
    const shrunk = acme();
    shrunk.customers[0].sites[0].numberRanges = [{ from: '+13125550100', to: '+13125550199' }];
    const error = await applyConfig(t.db, await load(shrunk)).catch((e: unknown) => e);
    // The refusal points at the ranges of the pool that held it (there, validate places it in the file).
    expect((error as ConfigApplyRefused).problems).toEqual([
      { path: ['customers', 0, 'sites', 0, 'numberRanges'], message: 'customer "acme": numbers held by users are no longer in any range of site "chicago": +13125550250 (used); release them first' },
    ]);
    expect(await t.db.selectFrom('number_inventory').select('number').where('number', '=', '+13125550299').execute()).toHaveLength(1);
  });

  it('keeps customers apart: applying one file for two tenants scopes every row', async () => {
    const two = acme();
    const globex = structuredClone(two.customers[0]);
    globex.name = 'globex';
    two.customers.push(globex);
    await applyConfig(t.db, await load(two));
    const perCustomer = await sql<{ name: string; criteria: string; numbers: string }>`
      select c.name, (select count(*) from criteria k where k.customer_id = c.id) as criteria,
             (select count(*) from number_inventory n where n.customer_id = c.id) as numbers
      from customers c order by c.name`.execute(t.db);
    expect(perCustomer.rows).toEqual([
      { name: 'acme', criteria: '4', numbers: '450' },
      { name: 'globex', criteria: '4', numbers: '450' },
    ]);
  });
});

describe('flowthru config (CLI)', () => {
  it('validate reports every problem with file, line and path, exits 1 and writes nothing', async () => {
    const bad = acme();
    bad.customers[0].sites[1].moveCriteria.microsoft = 'city-chicgo';
    bad.customers[0].settings.smtp.password = 'hunter2';
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, stringify(bad));
    const result = await cli('config', 'apply', file);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/bad\.yaml:\d+:\d+: customers\[0\]\.sites\[1\]\.moveCriteria\.microsoft: unknown criteria "city-chicgo"/);
    expect(result.err).toMatch(/customers\[0\]\.settings\.smtp\.password: literal secret/);
    // The example's CSV is not in the test folder: a warning, counted apart.
    expect(result.err).toMatch(/bad\.yaml:\d+:\d+: customers\[0\]\.sources\[0\]\.path: warning: cannot read .*acme-users\.csv here \(ENOENT\)/);
    expect(result.err).toMatch(/2 problems and \d warnings? in .*bad\.yaml; nothing was applied\./);
    expect(await t.db.selectFrom('customers').select('id').execute()).toEqual([]);

    const json = await cli('config', 'validate', file, '--json');
    expect(json.code).toBe(1);
    const report = JSON.parse(json.out);
    expect(report).toMatchObject({ ok: false, problems: [{ path: expect.any(Array), line: expect.any(Number) }, expect.anything()] });
    expect(report.problems).toHaveLength(2);
    expect(report.warnings).toContainEqual(expect.objectContaining({ severity: 'warning', path: ['customers', 0, 'sources', 0, 'path'], line: expect.any(Number) }));
  });

  it('warnings do not block: validate exits 0 and apply applies, both saying how many', async () => {
    const config = acme();
    config.customers[0].sites.push({ name: 'austin', moveCriteria: { csv: 'city-dallas' } });
    const variable = 'FLOWTHRU_TEST_LDAP_PASSWORD';
    config.customers[0].sources[1].passwordEnv = variable;
    delete process.env[variable];
    const file = join(dir, 'warned.yaml');
    writeFileSync(file, stringify(config));

    const validated = await cli('config', 'validate', file);
    expect(validated.code).toBe(0);
    expect(validated.err.split('\n')).toEqual([
      expect.stringMatching(/^.*warned\.yaml:\d+:\d+: customers\[0\]\.sites\[2\]\.numberRanges: warning: site "austin" has no numberRanges/),
      expect.stringMatching(/^.*warned\.yaml:\d+:\d+: customers\[0\]\.sources\[0\]\.path: warning: cannot read .*data\/acme-users\.csv here/),
      expect.stringMatching(new RegExp(`^.*warned\\.yaml:\\d+:\\d+: customers\\[0\\]\\.sources\\[1\\]\\.passwordEnv: warning: the environment variable ${variable} is not set here`)),
    ]);
    expect(validated.out).toMatch(/warned\.yaml is valid \(1 customer\), 3 warnings\.$/);
    const json = JSON.parse((await cli('config', 'validate', file, '--json')).out);
    expect(json).toMatchObject({ ok: true, problems: [], warnings: [expect.objectContaining({ severity: 'warning' }), expect.anything(), expect.anything()] });

    const applied = await cli('config', 'apply', file);
    expect(applied).toMatchObject({ code: 0, out: expect.stringMatching(/Applied .*warned\.yaml as configuration version 1 \(3 warnings\)\.$/) });
    expect(JSON.parse((await cli('config', 'apply', file, '--json')).out)).toMatchObject({ ok: true, version: 1, changed: false, problems: [], warnings: expect.any(Array) });
  });

  it('a CSV whose header lacks the external id column is an error, with the columns there are', async () => {
    mkdirSync(join(dir, 'data'), { recursive: true });
    writeFileSync(join(dir, 'data/acme-users.csv'), '\ufeff"id";login;mail\n1;a;a@example.com\n');
    const config = acme();
    config.customers[0].sources[0].delimiter = ';';
    const file = join(dir, 'header.yaml');
    writeFileSync(file, stringify(config));
    try {
      const result = await cli('config', 'validate', file);
      expect(result.code).toBe(1);
      expect(result.err).toMatch(/header\.yaml:\d+:\d+: customers\[0\]\.sources\[0\]\.externalId: column "employee_id" is not in the header of .*acme-users\.csv \(columns: "id", "login", "mail"\)/);
      expect(result.err).toMatch(/customers\[0\]\.sources\[0\]\.attributeMap\.given_name: warning: column "given_name" is not in the header/);
      expect(result.err).toMatch(/1 problem and \d+ warnings in .*header\.yaml; nothing was written\./);
    } finally {
      rmSync(join(dir, 'data/acme-users.csv'));
    }
  });

  it('an alias bomb is bad input: exit 1, located, and JSON like any problem', async () => {
    const file = join(dir, 'bomb.yaml');
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x]', ...'bcdef'.split('').map((l, i) => `${l}: &${l} [${Array(9).fill(`*${'abcdef'[i]}`).join(', ')}]`)];
    writeFileSync(file, `version: 1\n${levels.join('\n')}\ncustomers: []\n`);
    const result = await cli('config', 'validate', file, '--json');
    expect(result.code).toBe(1);
    expect(JSON.parse(result.out)).toMatchObject({ ok: false, problems: [{ line: 5, column: 8, message: expect.stringMatching(/YAML aliases expand too far/) }], warnings: [] });
  });

  it('a template that does not parse: the whole message, at its line in the template', async () => {
    writeFileSync(join(dir, 'templates/broken.html'), '<p>\nHello {{firstName}}\n{{#if number}<b>{{number}}</b>{{/if}}\n</p>\n');
    const config = acme();
    config.customers[0].settings.welcomeEmail.template = 'templates/broken.html';
    config.customers[0].settings.welcomeEmail.subject = 'Welcome {{#if}';
    const file = join(dir, 'broken-template.yaml');
    writeFileSync(file, stringify(config));
    const result = await cli('config', 'validate', file);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/broken-template\.yaml:\d+:\d+: customers\[0\]\.settings\.welcomeEmail\.subject: invalid subject template: Parse error on line 1: expecting .*, got '\w+' near "Welcome \{\{#if\}"/);
    expect(result.err).toMatch(/templates\/broken\.html:3: customers\[0\]\.settings\.welcomeEmail\.template: invalid template: Parse error on line 3: expecting .*, got 'INVALID' near "/);
  });

  it('apply applies, then says the second time that nothing changed', async () => {
    const file = join(dir, 'acme.yaml');
    writeFileSync(file, readFileSync('examples/acme.yaml'));
    mkdirSync(join(dir, 'data'), { recursive: true });
    expect(await cli('config', 'apply', file)).toMatchObject({ code: 0, out: expect.stringMatching(/as configuration version 1/) });
    expect(await cli('config', 'apply', file)).toMatchObject({ code: 0, out: expect.stringMatching(/already applied .*nothing changed/) });
    expect(JSON.parse((await cli('config', 'apply', file, '--json')).out)).toMatchObject({ ok: true, version: 1, changed: false });
  });

  it('a missing file is a clear error', async () => {
    const result = await cli('config', 'validate', join(dir, 'nope.yaml'));
    expect(result).toMatchObject({ code: 1, err: expect.stringMatching(/cannot read .*nope\.yaml: ENOENT/) });
  });

  it('a missing template is reported at its path', async () => {
    const config = acme();
    config.customers[0].settings.welcomeEmail.template = 'templates/missing.html';
    const file = join(dir, 'missing-template.yaml');
    writeFileSync(file, stringify(config));
    const result = await cli('config', 'validate', file);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/missing-template\.yaml:\d+:\d+: customers\[0\]\.settings\.welcomeEmail\.template: cannot read template .*missing\.html/);
  });
});

describe('a DATABASE_URL at fault', () => {
  it('is told in one sentence naming what to fix: the URL itself, the host, the login', async () => {
    const users = (url: string) => cliAt(url, 'users', '--json');
    // The URL itself is the input at fault: exit 1.
    expect(await users('notaurl')).toEqual({ code: 1, out: '', err: 'flowthru: DATABASE_URL is not a URL: expected postgres://user@host:5432/database' });
    expect((await users('http://127.0.0.1/flowthru')).err).toBe('flowthru: DATABASE_URL names http:, not PostgreSQL: expected postgres://user@host:5432/database');
    expect((await users('postgres://postgres@no-such-host.invalid/flowthru')).err).toMatch(/^flowthru: the database host "no-such-host\.invalid" (is not known \(ENOTFOUND\): check the host in|cannot be looked up now \(EAI_AGAIN: DNS\); try again, or check) DATABASE_URL$/);
    const login = new URL(t.url);
    login.username = 'no_such_role';
    login.password = 'secret-pw';
    const refused = await users(login.toString());
    expect(refused).toMatchObject({ code: 2, out: '' });
    expect(refused.err).toBe(`flowthru: the database at ${login.hostname}:${login.port || '5432'} refused the login: role "no_such_role" does not exist; check the user and password in DATABASE_URL`);
    expect(refused.err).not.toContain('secret-pw');
  });
});

describe('flowthru worker', () => {
  it('refuses to start, in one sentence, while a secret the applied configuration names is not set', async () => {
    const config = acme();
    config.customers[0].sources[1].passwordEnv = 'FLOWTHRU_TEST_UNSET_LDAP';
    config.customers[0].settings.smtp = { ...config.customers[0].settings.smtp, username: 'flowthru', passwordEnv: 'FLOWTHRU_TEST_UNSET_SMTP' };
    const file = join(dir, 'secrets.yaml');
    writeFileSync(file, stringify(config));
    expect((await cli('config', 'apply', file)).code).toBe(0);
    delete process.env.FLOWTHRU_TEST_UNSET_LDAP;
    delete process.env.FLOWTHRU_TEST_UNSET_SMTP;
    // Should the check ever let it through, the worker fails on an unreachable Temporal instead of running on.
    const temporal = process.env.TEMPORAL_ADDRESS;
    process.env.TEMPORAL_ADDRESS = '127.0.0.1:1';
    try {
      const result = await cli('worker');
      expect(result).toEqual({
        code: 1,
        out: '',
        err:
          'flowthru: the worker cannot start: configuration version 1 needs secret environment variables that are not set: ' +
          'FLOWTHRU_TEST_UNSET_LDAP (customer acme, source directory, passwordEnv), FLOWTHRU_TEST_UNSET_SMTP (customer acme, settings.smtp.passwordEnv); ' +
          'set them and start the worker again',
      });
    } finally {
      if (temporal === undefined) delete process.env.TEMPORAL_ADDRESS;
      else process.env.TEMPORAL_ADDRESS = temporal;
    }
  });
});
