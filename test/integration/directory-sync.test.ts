import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PreviewReport } from '../../src/client/preview.js';
import { clearEntraTokenCache } from '../../src/adapters/sources/entra.js';
import { closeLdapConnections } from '../../src/adapters/sources/ldap.js';
import { makeClientCertificate, startFakeGraph, type FakeGraph, type GraphUser } from '../support/fake-graph.js';
import { syncProgressQuery } from '../../src/workflows/messages.js';
import { PipelineHarness } from '../support/pipeline.js';
import { startSlapd, type SeedEntry, type Slapd } from '../support/slapd.js';

/*
 * The directory sources end to end: an LDAP directory (a real slapd) and an Entra tenant (the fake
 * Graph server) synced through the Temporal workflows into PostgreSQL, with numbers and email.
 */

const PEOPLE = 'ou=people,dc=flowthru,dc=test';
const LDAP_USERS = 900;
const GRAPH_USERS = 250;
const CITIES = ['Chicago', 'Dallas', 'Boston'];
const DEPARTMENTS = ['Engineering', 'Sales', 'Marketing'];

let h: PipelineHarness;
let slapd: Slapd;
let graph: FakeGraph;
let version: number;

function ldapPerson(i: number): SeedEntry {
  const uid = `u${String(i).padStart(4, '0')}`;
  return {
    dn: `uid=${uid},${PEOPLE}`,
    attributes: {
      objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'],
      uid,
      cn: `Person ${i}`,
      givenName: i === 1 ? 'Zoë' : 'Person',
      sn: `${i}`,
      mail: `${uid}@corp.example`,
      l: CITIES[i % CITIES.length]!,
      departmentNumber: DEPARTMENTS[i % DEPARTMENTS.length]!,
      ...(i % 100 === 0 ? { jpegPhoto: Buffer.from([0xff, 0xd8, 0xff, 0xe0, i % 256]) } : {}),
      // A directory's entries were changed at different times (slapadd would stamp them all with
      // the same second): one second apart, in 2025.
      modifyTimestamp: new Date(Date.UTC(2025, 0, 1) + i * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z',
    },
  };
}

function graphUser(i: number): GraphUser {
  return {
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    displayName: `Cloud ${i}`,
    givenName: 'Cloud',
    surname: `${i}`,
    userPrincipalName: `cloud${i}@tenant.example`,
    mail: `cloud${i}@tenant.example`,
    city: CITIES[i % CITIES.length]!,
    department: DEPARTMENTS[i % DEPARTMENTS.length]!,
    accountEnabled: true,
    onPremisesExtensionAttributes: { extensionAttribute3: `cost-${i % 5}` },
  };
}

const TEAMS_PHONE = { kind: 'teams', licences: ['MCOEV'], policies: { callingPolicy: 'AllowCalling' } };

function customer(name: string, source: Record<string, unknown>, extraServices: Record<string, unknown>[] = []) {
  return {
    name,
    settings: {
      flowThrough: { enabled: true, addSync: true, updateSync: true, criteria: 'ftp' },
      welcomeEmail: { enabled: true, from: 'IT <it@corp.example>', subject: 'Welcome {{firstName}}' },
      smtp: { host: '127.0.0.1', port: h.smtp.port, security: 'none' },
    },
    criteria: [
      { name: 'chicago', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Chicago' } },
      { name: 'dallas', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'Dallas' } },
      { name: 'engineers', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Engineering' } },
    ],
    profiles: [{ name: 'engineering', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: 'Cisco 8865' }, { kind: 'voicemail' }, ...extraServices] }],
    ftpCriteria: [{ name: 'ftp', rules: [{ criteria: 'engineers', profile: 'engineering' }] }],
    sources: [source],
    sites: [
      { name: 'chicago', moveCriteria: { ldap: 'chicago', microsoft: 'chicago' }, numberRanges: [{ from: '+13125550000', to: '+13125550999' }] },
      { name: 'dallas', moveCriteria: { ldap: 'dallas', microsoft: 'dallas' }, numberRanges: [{ from: '+12145550000', to: '+12145550999' }] },
    ],
  };
}

beforeAll(async () => {
  h = await PipelineHarness.create();
  slapd = await startSlapd({ entries: Array.from({ length: LDAP_USERS }, (_, i) => ldapPerson(i + 1)), sizeLimit: 300 });
  // The tenant's app signs in with a certificate, named relative to the configuration file (as the
  // CA is): the worker reads them from the resolved paths.
  const app = makeClientCertificate(h.dir, 'graph-app');
  copyFileSync(app.file, join(h.dir, 'entra-app.pem'));
  graph = await startFakeGraph({
    certificates: [app.certificate],
    users: Array.from({ length: GRAPH_USERS }, (_, i) => graphUser(i + 1)),
    tokenLifetimeSeconds: 3600,
    skus: [
      // 85 Teams Phone licences free: enough for the 83 engineers of the first sync and one more.
      { skuId: 'e43b5b99-8dfb-405f-9987-dc307f34bcbd', skuPartNumber: 'MCOEV', consumedUnits: 5, prepaidUnits: { enabled: 90 } },
      { skuId: '6fd2c87f-b296-42f0-b197-1e91e994b900', skuPartNumber: 'ENTERPRISEPACK', consumedUnits: 10, prepaidUnits: { enabled: 50 } },
    ],
  });
  process.env.TEST_DIRECTORY_LDAP_PASSWORD = slapd.password;
  copyFileSync(graph.caFile, join(h.dir, 'entra-ca.pem'));
  await h.startWorker();
  version = await h.apply({
    version: 1,
    customers: [
      customer('corp', {
        name: 'directory',
        type: 'ldap',
        userType: 'ldap',
        url: slapd.url,
        bindDn: slapd.bindDn,
        passwordEnv: 'TEST_DIRECTORY_LDAP_PASSWORD',
        baseDn: PEOPLE,
        pageSize: 100,
        timeoutMs: 3000,
      }),
      // The same directory for the outage test: a customer of its own keeps its counts apart.
      customer('outage', {
        name: 'directory',
        type: 'ldap',
        userType: 'ldap',
        url: slapd.url,
        bindDn: slapd.bindDn,
        passwordEnv: 'TEST_DIRECTORY_LDAP_PASSWORD',
        baseDn: PEOPLE,
        pageSize: 50,
        timeoutMs: 2000,
      }),
      customer('badpass', {
        name: 'directory',
        type: 'ldap',
        userType: 'ldap',
        url: slapd.url,
        bindDn: slapd.bindDn,
        passwordEnv: 'TEST_DIRECTORY_WRONG_PASSWORD',
        baseDn: PEOPLE,
      }),
      customer('cloud', {
        name: 'tenant',
        type: 'entra',
        userType: 'microsoft',
        tenantId: graph.tenantId,
        clientId: graph.clientId,
        clientCertificateFile: 'entra-app.pem',
        authorityUrl: graph.url,
        graphUrl: graph.url,
        caFile: 'entra-ca.pem',
        attributeMap: { extensionAttribute3: 'attributes.costCentre' },
      }, [TEAMS_PHONE]),
    ],
  });
  process.env.TEST_DIRECTORY_WRONG_PASSWORD = 'not-the-password';
}, 180_000);

afterAll(async () => {
  await h?.close();
  await closeLdapConnections();
  clearEntraTokenCache();
  await slapd?.close();
  await graph?.stop();
});

async function usersOf(customerName: string) {
  return h.db
    .selectFrom('users')
    .innerJoin('customers', 'customers.id', 'users.customer_id')
    .select(['users.id', 'users.external_id', 'users.status', 'users.attributes', 'users.ldap_entry', 'users.site_id'])
    .where('customers.name', '=', customerName)
    .execute();
}

async function licence(sku: string) {
  return h.db
    .selectFrom('licences')
    .innerJoin('customers', 'customers.id', 'licences.customer_id')
    .select(['licences.enabled', 'licences.consumed'])
    .select((eb) =>
      eb
        .selectFrom('licence_assignments as a')
        .select((a) => a.fn.countAll<string>().as('n'))
        .whereRef('a.customer_id', '=', 'licences.customer_id')
        .whereRef('a.sku_part_number', '=', 'licences.sku_part_number')
        .as('assigned'),
    )
    .where('customers.name', '=', 'cloud')
    .where('licences.sku_part_number', '=', sku)
    .executeTakeFirst()
    .then((row) => row && { enabled: row.enabled, consumed: row.consumed, assigned: Number(row.assigned) });
}

type UserRow = Awaited<ReturnType<typeof usersOf>>[number];

/** The user whose username (LDAP uid) is `name`; fails the test when there is none. */
function byUsername(users: readonly UserRow[], name: string): UserRow {
  const user = users.find((u) => (u.attributes as { username?: string }).username === name);
  if (!user) throw new Error(`no user ${name}`);
  return user;
}

async function watermarkOf(customerName: string) {
  const row = await h.db
    .selectFrom('sync_sources')
    .innerJoin('customers', 'customers.id', 'sync_sources.customer_id')
    .select('sync_sources.watermark')
    .where('customers.name', '=', customerName)
    .executeTakeFirstOrThrow();
  return row.watermark as { fingerprint: string; mark: Record<string, string> } | null;
}

const cli = (...args: string[]) => h.cli(...args);

const expectedEngineers = (n: number, city: (i: number) => string, dept: (i: number) => string) =>
  Array.from({ length: n }, (_, i) => i + 1).filter((i) => dept(i) === 'Engineering' && ['Chicago', 'Dallas'].includes(city(i))).length;

describe('an LDAP directory (slapd)', () => {
  it('syncs every entry past the size limit, keeps the entry copy and a watermark, and provisions engineers once', async () => {
    const report = await h.sync('corp', 'directory', version, { pageSize: 150 });
    const engineers = expectedEngineers(LDAP_USERS, (i) => CITIES[i % 3]!, (i) => DEPARTMENTS[i % 3]!);
    expect(report.counts).toMatchObject({ seen: LDAP_USERS, imported: LDAP_USERS, invalid: 0, failed: 0, provisioned: engineers, emailed: engineers });

    const users = await usersOf('corp');
    expect(users).toHaveLength(LDAP_USERS);
    // entryUUID is the external id, and the local copy of the entry is kept without binary values.
    const first = byUsername(users, 'u0001');
    expect(first.external_id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(first.attributes).toMatchObject({ firstName: 'Zoë', email: 'u0001@corp.example', city: 'Dallas', department: 'Sales' });
    expect(first.ldap_entry).toMatchObject({ dn: `uid=u0001,${PEOPLE}`, uid: 'u0001' });
    const photo = byUsername(users, 'u0100');
    expect(JSON.stringify(photo.ldap_entry)).not.toContain('jpegPhoto');

    const mark = await watermarkOf('corp');
    expect(mark?.mark).toEqual({ attribute: 'modifyTimestamp', value: '20250101001500Z' });
    expect(h.smtp.messages.filter((m) => m.to[0]?.endsWith('@corp.example'))).toHaveLength(engineers);
  });

  it('an update sync reads only what changed since the watermark; a renamed entry stays the same user', async () => {
    const before = await usersOf('corp');
    const u0003 = byUsername(before, 'u0003');
    // modifyTimestamp has a resolution of a second: make the changes land after the watermark's second.
    await new Promise((r) => setTimeout(r, 1100));
    await slapd.ldapmodify(
      [
        `dn: uid=u0003,${PEOPLE}`,
        'changetype: modrdn',
        'newrdn: uid=u0003-renamed',
        'deleteoldrdn: 1',
        '',
        `dn: uid=u0004,${PEOPLE}`,
        'changetype: modify',
        'replace: l',
        'l: Chicago',
        '',
        `dn: uid=u9999,${PEOPLE}`,
        'changetype: add',
        'objectClass: inetOrgPerson',
        'uid: u9999',
        'cn: New Hire',
        'sn: Hire',
        'mail: u9999@corp.example',
        'l: Chicago',
        'departmentNumber: Engineering',
        '',
      ].join('\n'),
    );
    // An add sync first: a full read that takes the new hire but leaves the two placed users'
    // changes to the update sync, so it must not move the watermark past them.
    const mark = await watermarkOf('corp');
    const adds = await h.sync('corp', 'directory', version);
    expect(adds.counts).toMatchObject({ seen: LDAP_USERS + 1, imported: 1, placed: 1 });
    expect(await watermarkOf('corp')).toEqual(mark);
    const report = await h.sync('corp', 'directory', version, { mode: 'add', modes: ['add', 'update'] });
    // The three changed entries, and u0900, the entry of the watermark's own second (read again,
    // as `>=` must: another change could have landed in that second); it is unchanged, so it starts
    // nothing. The other 899 entries are not read.
    expect(report.counts.seen).toBe(4);
    expect(report.counts.imported).toBe(2);
    // u0004 was placed in Dallas; the directory now says Chicago: moved (no profile: a salesperson).
    expect(report.counts).toMatchObject({ moved: 1, placed: 0 });
    const after = await usersOf('corp');
    expect(after).toHaveLength(LDAP_USERS + 1);
    const renamed = after.find((u) => u.id === u0003.id)!;
    expect(renamed.external_id).toBe(u0003.external_id);
    expect(renamed.attributes).toMatchObject({ username: 'u0003-renamed' });
    expect(renamed.ldap_entry).toMatchObject({ dn: `uid=u0003-renamed,${PEOPLE}` });
    const hire = byUsername(after, 'u9999');
    expect(hire.status).toBe('provisioned');
  });

  it('survives slapd going away in the middle of a sync: it resumes and nothing is lost or doubled', async () => {
    const handle = await h.startSync('outage', 'directory', version, { pageSize: 50, window: 20 });
    // Wait for the first users to be imported, then take the directory away for a few seconds.
    for (let i = 0; i < 200; i++) {
      if ((await usersOf('outage')).length > 50) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    // The read is under way: not every entry has been read yet.
    const before = await handle.query(syncProgressQuery);
    await slapd.stop();
    await new Promise((r) => setTimeout(r, 3000));
    await slapd.start();
    const report = await handle.result();
    expect(before.sourceDone).toBe(false);
    expect(before.counts.seen).toBeLessThan(LDAP_USERS + 1);
    // … and the outage fell inside it: a page read failed while slapd was away and was tried again.
    const events = (await handle.fetchHistory()).events ?? [];
    const reads = new Set(events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'readSourcePage').map((e) => String(e.eventId)));
    const retried = events.filter((e) => e.activityTaskStartedEventAttributes && reads.has(String(e.activityTaskStartedEventAttributes.scheduledEventId)) && (e.activityTaskStartedEventAttributes.attempt ?? 1) > 1);
    expect(retried.length).toBeGreaterThan(0);
    expect(report.counts.seen).toBeGreaterThanOrEqual(LDAP_USERS + 1);
    expect(report.counts.failed).toBe(0);
    const users = await usersOf('outage');
    expect(users).toHaveLength(LDAP_USERS + 1);
    expect(new Set(users.map((u) => u.external_id)).size).toBe(LDAP_USERS + 1);
    const numbers = await h.db
      .selectFrom('number_inventory')
      .innerJoin('customers', 'customers.id', 'number_inventory.customer_id')
      .select(['number_inventory.user_id', 'number_inventory.number'])
      .where('customers.name', '=', 'outage')
      .where('number_inventory.user_id', 'is not', null)
      .execute();
    expect(new Set(numbers.map((n) => n.user_id)).size).toBe(numbers.length);
    expect(numbers.length).toBe(users.filter((u) => u.status === 'provisioned').length);
  }, 120_000);

  it('a wrong bind password fails the sync at once with a clear, permanent error', async () => {
    const error = await h.sync('badpass', 'directory', version).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const cause = (error as WorkflowFailedError).cause as Error & { cause?: Error & { type?: string } };
    expect(cause.cause?.type ?? '').toBe('SourceCredentials');
    expect(cause.cause?.message).toMatch(/invalid credentials/);
    expect(cause.cause?.message).not.toContain('not-the-password');
  });
});

describe('an Entra tenant (fake Microsoft Graph)', () => {
  it('syncs every user through delta pages and keeps the deltaLink; an update sync reads only changes', async () => {
    const report = await h.sync('cloud', 'tenant', version, { pageSize: 100 });
    // Signed in with the app's certificate (a client assertion), through the authority's OpenID metadata.
    expect(graph.tokensIssuedForCertificate).toBeGreaterThan(0);
    expect(graph.tokensIssued).toBe(graph.tokensIssuedForCertificate);
    const engineers = expectedEngineers(GRAPH_USERS, (i) => CITIES[i % 3]!, (i) => DEPARTMENTS[i % 3]!);
    expect(report.counts).toMatchObject({ seen: GRAPH_USERS, imported: GRAPH_USERS, failed: 0, provisioned: engineers, emailed: engineers });
    const users = await usersOf('cloud');
    const one = users.find((u) => u.external_id === graphUser(1).id)!;
    expect(one.attributes).toMatchObject({ email: 'cloud1@tenant.example', city: 'Dallas', attributes: { costCentre: 'cost-1' } });
    const mark = await watermarkOf('cloud');
    expect(mark?.mark.deltaLink).toContain('$deltatoken=');
    // The tenant's licences came in with the sync; each engineer took a Teams Phone licence.
    expect(await licence('MCOEV')).toEqual({ enabled: 90, consumed: 5, assigned: engineers });
    expect(await licence('ENTERPRISEPACK')).toEqual({ enabled: 50, consumed: 10, assigned: 0 });

    graph.updateUser(graphUser(2).id, { department: 'Engineering', city: 'Chicago' });
    // A Chicago engineer moves to Dallas: a Dallas number for a Chicago one, the licence kept.
    const chicagoNumber = await h.db.selectFrom('number_inventory').innerJoin('users', 'users.id', 'number_inventory.user_id').select('number_inventory.number').where('users.external_id', '=', graphUser(6).id).executeTakeFirstOrThrow();
    graph.updateUser(graphUser(6).id, { city: 'Dallas' });
    graph.addUser(graphUser(GRAPH_USERS + 1));
    graph.removeUser(graphUser(3).id, 'deleted');
    graph.throttleNext(1, 1);
    const update = await h.sync('cloud', 'tenant', version, { mode: 'add', modes: ['add', 'update'] });
    expect(update.counts.seen).toBe(3);
    expect(update.counts.imported).toBe(3);
    expect(update.counts).toMatchObject({ moved: 1, placed: 1 });
    const movedNumbers = await h.db.selectFrom('number_inventory').innerJoin('users', 'users.id', 'number_inventory.user_id').select('number_inventory.number').where('users.external_id', '=', graphUser(6).id).execute();
    expect(movedNumbers.map((n) => n.number)).toEqual([expect.stringMatching(/^\+1214555/)]);
    expect(chicagoNumber.number).toMatch(/^\+1312555/);
    // Graph said user 3 was removed: any entra sync offboards them (the record is kept, deleted).
    expect(update.counts.removed).toBe(1);
    expect((await usersOf('cloud')).find((u) => u.external_id === graphUser(2).id)?.status).toBe('provisioned');
    expect((await watermarkOf('cloud'))?.mark.deltaLink).not.toBe(mark?.mark.deltaLink);
    const gone = (await usersOf('cloud')).find((u) => u.external_id === graphUser(3).id)!;
    expect(gone.status).toBe('deleted');
    expect(await h.db.selectFrom('number_inventory').select('number').where('user_id', '=', gone.id).execute()).toEqual([]);
    expect(await h.db.selectFrom('user_services').select('service_key').where('user_id', '=', gone.id).where('status', '<>', 'removed').execute()).toEqual([]);
  });

  it('an expired delta token falls back to a full read', async () => {
    graph.expireDeltaTokens();
    const report = await h.sync('cloud', 'tenant', version, { mode: 'update' });
    // Everyone the tenant has now: one added, one removed since the first sync.
    expect(report.counts.seen).toBe(GRAPH_USERS);
    // Unchanged users are recognised and start no pipeline.
    expect(report.counts.imported).toBe(0);
  });

  it('a user who cannot get a licence is blocked with the reason, and provisioned once licences are added', async () => {
    // User 2 took the 84th licence in the update sync, and offboarded user 3 gave theirs back:
    // two are left (90 - 5 consumed - 83).
    expect(await licence('MCOEV')).toEqual({ enabled: 90, consumed: 5, assigned: 83 });
    graph.addUser(graphUser(252)); // Chicago engineers, all three
    graph.addUser(graphUser(255));
    graph.addUser(graphUser(258));
    const report = await h.sync('cloud', 'tenant', version, { mode: 'add', modes: ['add', 'update'] });
    expect(report.counts).toMatchObject({ seen: 3, imported: 3, provisioned: 2, blocked: 1, failed: 0 });
    const users = await usersOf('cloud');
    const blocked = users.find((u) => u.status === 'blocked')!;
    const reason = await h.db.selectFrom('users').select('status_reason').where('id', '=', blocked.id).executeTakeFirstOrThrow();
    expect(reason.status_reason).toBe('no MCOEV licence left (90 enabled, 90 in use): add licences to the tenant, then retry');
    // Blocked holds no services and no number while they wait: the reserved one went back.
    expect(await h.db.selectFrom('user_services').select('service_key').where('user_id', '=', blocked.id).execute()).toEqual([]);
    expect(await h.db.selectFrom('number_inventory').select('number').where('user_id', '=', blocked.id).execute()).toEqual([]);

    // More licences in the tenant; the next sync refreshes them, and a retry provisions the user.
    graph.updateSku('MCOEV', { prepaidUnits: { enabled: 100 } });
    await h.sync('cloud', 'tenant', version, { mode: 'update' });
    const retry = await cli('retry', blocked.external_id, '--customer', 'cloud');
    expect(retry.code).toBe(0);
    for (let i = 0; i < 100; i++) {
      const now = await h.db.selectFrom('users').select('status').where('id', '=', blocked.id).executeTakeFirstOrThrow();
      if (now.status === 'provisioned') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await usersOf('cloud')).find((u) => u.id === blocked.id)?.status).toBe('provisioned');
    expect(await licence('MCOEV')).toEqual({ enabled: 100, consumed: 5, assigned: 86 });
    expect(await h.db.selectFrom('number_inventory').select('number').where('user_id', '=', blocked.id).execute()).toHaveLength(1);
  });

  it('refuses a configuration naming a licence the tenant does not have', async () => {
    const bad = customer('cloud', { name: 'tenant', type: 'entra', userType: 'microsoft', tenantId: 't', clientId: 'c', clientSecretEnv: 'X' }, [
      { kind: 'licence', sku: 'MCOEV_TYPO' },
    ]);
    await expect(h.apply({ version: 1, customers: [bad] })).rejects.toThrow(/unknown licence "MCOEV_TYPO": the tenant of customer "cloud" has ENTERPRISEPACK, MCOEV/);
  });
});

describe('flowthru preview', () => {
  it('reads the whole directory and says what a sync would do and why, changing nothing', async () => {
    const before = await usersOf('corp');
    const u0005 = byUsername(before, 'u0005'); // Boston, Marketing
    const u0006 = byUsername(before, 'u0006'); // Chicago, Engineering
    const u0009 = byUsername(before, 'u0009');
    await slapd.ldapmodify(
      [
        `dn: uid=u0006,${PEOPLE}`,
        'changetype: modify',
        'replace: l',
        'l: Dallas',
        '',
        `dn: uid=u0009,${PEOPLE}`,
        'changetype: delete',
        '',
      ].join('\n'),
    );
    const { code, out } = await cli('preview', 'directory', '--customer', 'corp', '--json');
    expect(code).toBe(0);
    const report = JSON.parse(out) as PreviewReport;
    // One would move: u0006 (just changed). u0004, who moved to Chicago in the directory, was moved
    // by the update sync.
    expect(report.counts).toMatchObject({ seen: LDAP_USERS, new: 0, changed: 1, unchanged: LDAP_USERS - 1, moves: 1, deletions: 1, invalid: 0 });
    expect(report.deletions).toEqual([u0009.external_id]);
    // Printed page by page (two pages of the source here), every user once.
    expect(report.users).toHaveLength(LDAP_USERS);
    expect(new Set(report.users.map((u) => u.externalId)).size).toBe(LDAP_USERS);
    const moved = report.users.find((u) => u.externalId === u0006.external_id)!;
    expect(moved).toMatchObject({ change: 'changed', currentSite: 'chicago', site: 'dallas', move: true, profile: 'engineering', numberPool: 'site' });
    expect(moved.why.site.considered.map((c) => c.site)).toEqual(['chicago', 'dallas']);
    const boston = report.users.find((u) => u.externalId === u0005.external_id)!;
    expect(boston).toMatchObject({ site: null, profile: null, numberPool: null, move: false });

    // Nothing happened: the user is where they were, with the same data, and no workflow ran.
    const after = await usersOf('corp');
    expect(after.find((u) => u.id === u0006.id)).toEqual(before.find((u) => u.id === u0006.id));
    expect(after).toHaveLength(before.length);

    const text = await cli('preview', 'directory', '--customer', 'corp');
    expect(text.out).toMatch(/changed +update +chicago → dallas +engineering +\+1312555\d{4} → \+1214555\d{4} +~phone/);
    expect(text.out).toMatch(/Preview of corp\/directory .*: 900 records seen, 0 new, 1 changed, 899 unchanged/);
    // One header, then a row per user, across both pages.
    expect(text.out.split('\n').filter((line) => line.startsWith('EXTERNALID'))).toHaveLength(1);
    const lines = text.out.split('\n');
    const header = lines.findIndex((line) => line.startsWith('EXTERNALID'));
    expect(lines.slice(header + 1, lines.indexOf('', header))).toHaveLength(LDAP_USERS);
  });

  it('works the same for an Entra source, and says clearly when the source refuses', async () => {
    const cloud = await cli('preview', 'tenant', '--customer', 'cloud', '--json');
    expect(cloud.code).toBe(0);
    const preview = JSON.parse(cloud.out) as PreviewReport;
    // 250, one removed (and offboarded: not a deletion any more), four added.
    expect(preview.counts.seen).toBe(GRAPH_USERS + 3);
    expect(preview.deletions).toEqual([]);
    const refused = await cli('preview', 'directory', '--customer', 'badpass');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/^flowthru: LDAP bind as cn=reader,dc=flowthru,dc=test to ldap:\/\/127\.0\.0\.1:\d+ failed: invalid credentials/);
  });
});
