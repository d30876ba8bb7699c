import { Client, ResultCodeError } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PermanentError } from '../../src/adapters/errors.js';
import { escapeDnValue, escapeFilterValue } from '../../src/adapters/sources/ldap-escape.js';
import {
  closeLdapConnections,
  liveLdapSearches,
  presetAttributeMap,
  readLdapPage,
  RESTARTED_SEARCH,
  type LdapCursor,
  type LdapPage,
  type LdapSourceConfig,
  type LdapWatermark,
} from '../../src/adapters/sources/ldap.js';
import { mapRecords } from '../../src/adapters/sources/index.js';
import { toSourceUser, type RawRecord } from '../../src/adapters/sources/records.js';
import { isAttributePath, isCanonicalAttribute } from '../../src/domain/user.js';
import { startSlapd, type SeedEntry, type Slapd } from '../support/slapd.js';
import { rejection } from '../support/assert.js';

const BASE = 'dc=flowthru,dc=test';
const PEOPLE = `ou=people,${BASE}`;
const GENERATED = 3000;
const GIVEN = ['Ann', 'Bob', 'Cy', 'Di', 'Ed', 'Fay', 'Gus', 'Hal', 'Ivy', 'Jo', 'Kim'];
const SURNAMES = ['Smith', 'Jones', 'Brown', 'Lee', 'Garcia', 'Miller', 'Davis', 'Wilson', 'Moore'];
const CITIES = ['Chicago', 'Dallas', 'Boston', 'Austin'];
const DEPARTMENTS = ['Engineering', 'Sales', 'Marketing', 'Support'];

const uidOf = (i: number) => `user${String(i).padStart(4, '0')}`;
const person = (uid: string, attributes: SeedEntry['attributes'], parent = PEOPLE): SeedEntry => ({
  dn: `uid=${escapeDnValue(uid)},${parent}`,
  attributes: { objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'], uid, ...attributes },
});

function generated(i: number): SeedEntry {
  const given = GIVEN[i % GIVEN.length]!;
  const sn = SURNAMES[i % SURNAMES.length]!;
  return person(uidOf(i), {
    cn: `${given} ${sn} ${i}`,
    givenName: given,
    sn,
    ...(i % 10 === 0 ? {} : { mail: `${uidOf(i)}@flowthru.test` }),
    ...(i % 7 === 0 ? {} : { l: CITIES[i % CITIES.length]! }),
    departmentNumber: DEPARTMENTS[i % DEPARTMENTS.length]!,
    title: 'Engineer',
    telephoneNumber: `+1 312 555 ${String(i).padStart(4, '0')}`,
    // Binary and secret attributes: a JPEG header (not UTF-8) and, for some, a password hash.
    ...(i % 50 === 0 ? { jpegPhoto: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, i % 256, 0xfe]) } : {}),
    ...(i % 100 === 0 ? { userPassword: '{SSHA}c2VjcmV0c2VjcmV0c2VjcmV0' } : {}),
  });
}

const FAN_CN = '#1 "Fan" + <Club>; a=b\\c';
const specials: SeedEntry[] = [
  person('zoe', { cn: 'Zoë Ångström', givenName: 'Zoë', sn: 'Ångström', l: 'Zürich', mail: 'zoe@flowthru.test' }),
  // Decomposed (NFD) input: it must arrive composed (NFC).
  person('jose', { cn: 'José Núñez'.normalize('NFD'), givenName: 'José'.normalize('NFD'), sn: 'Núñez'.normalize('NFD') }),
  person('watanabe', { cn: '渡辺 健', givenName: '健', sn: '渡辺', l: '東京' }),
  person("o'brien, jr.", { cn: "Pat O'Brien, Jr.", sn: "O'Brien" }),
  {
    dn: `cn=${escapeDnValue(FAN_CN)},${PEOPLE}`,
    attributes: { objectClass: 'inetOrgPerson', uid: 'fanclub', cn: FAN_CN, sn: 'Club', jpegPhoto: Buffer.from('GIF89a plain ASCII bytes') },
  },
  person('paren(s)*', { cn: 'Paren Thesis', sn: 'Thesis' }),
  // The reader may not see this entry's entryUUID (ACL below): it has no stable id.
  person('noid', { cn: 'No Id', sn: 'Id' }),
];
const TOTAL = GENERATED + specials.length;

let slapd: Slapd;
const ENV_NAME = 'TEST_LDAP_BIND_PASSWORD';
let env: NodeJS.ProcessEnv;

function source(overrides: Partial<LdapSourceConfig> = {}): LdapSourceConfig {
  return {
    name: 'corp-ldap',
    type: 'ldap',
    userType: 'ldap',
    includeDisabled: false,
    attributeMap: {},
    url: slapd.url,
    bindDn: slapd.bindDn,
    passwordEnv: ENV_NAME,
    baseDn: slapd.baseDn,
    scope: 'sub',
    filter: '(objectClass=inetOrgPerson)',
    preset: 'openldap',
    pageSize: 200,
    startTls: false,
    timeoutMs: 5_000,
    ...overrides,
  };
}

interface ReadAll {
  records: RawRecord[];
  problems: LdapPage['problems'];
  pages: number;
  largestPage: number;
  mostBuffered: number;
  watermark: LdapWatermark | null;
}

async function readAll(
  src: LdapSourceConfig,
  pageSize: number,
  options: { watermark?: LdapWatermark | null; cursor?: LdapCursor | null; env?: NodeJS.ProcessEnv; watermarkMarginMs?: number } = {},
): Promise<ReadAll> {
  const out: ReadAll = { records: [], problems: [], pages: 0, largestPage: 0, mostBuffered: 0, watermark: null };
  let cursor = options.cursor ?? null;
  do {
    // No clock margin unless a test asks for one: these entries all changed seconds ago.
    const page = await readLdapPage(src, cursor, pageSize, { env: options.env ?? env, watermark: options.watermark, watermarkMarginMs: options.watermarkMarginMs ?? 0 });
    out.records.push(...page.records);
    out.problems.push(...page.problems);
    out.pages++;
    out.largestPage = Math.max(out.largestPage, page.records.length + page.problems.length);
    for (const live of liveLdapSearches()) out.mostBuffered = Math.max(out.mostBuffered, live.buffered);
    if (page.next) expect(page.watermark).toBeNull();
    out.watermark = page.watermark;
    cursor = page.next;
  } while (cursor);
  return out;
}

const ids = (records: readonly RawRecord[]) => records.map((r) => r.attributes.externalId as string);
const byUid = (records: readonly RawRecord[], uid: string) => records.find((r) => r.attributes.uid === uid);
const byDn = (records: readonly RawRecord[], dn: string) => records.find((r) => r.at === dn)!;


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  slapd = await startSlapd({
    entries: [...Array.from({ length: GENERATED }, (_, i) => generated(i + 1)), ...specials],
    sizeLimit: 500,
    tls: true,
    acl: [`access to dn.exact="uid=noid,${PEOPLE}" attrs=entryUUID`, '  by * none'],
  });
  env = { [ENV_NAME]: slapd.password };
});

afterAll(async () => {
  await closeLdapConnections();
  await slapd?.close();
});

describe('the LDAP source against OpenLDAP slapd', () => {
  it('pages past the server size limit: every entry exactly once, one server page in memory at a time', async () => {
    // The size limit is real: an ordinary (unpaged) search by the same account stops at 500.
    const client = new Client({ url: slapd.url });
    await client.bind(slapd.bindDn, slapd.password);
    const unpaged = await rejection(client.search(BASE, { scope: 'sub', filter: '(objectClass=inetOrgPerson)', attributes: ['uid'] }));
    await client.unbind();
    expect(unpaged).toBeInstanceOf(ResultCodeError);
    expect((unpaged as ResultCodeError).code).toBe(4);

    const read = await readAll(source({ pageSize: 200 }), 250);
    expect(read.records.length + read.problems.length).toBe(TOTAL);
    expect(new Set(ids(read.records)).size).toBe(read.records.length);
    expect(new Set(read.records.map((r) => r.at)).size).toBe(read.records.length);
    expect(read.largestPage).toBeLessThanOrEqual(250);
    expect(read.mostBuffered).toBeLessThanOrEqual(200);
    expect(read.pages).toBe(Math.ceil(TOTAL / 250));
    expect(liveLdapSearches()).toEqual([]);
    // The entry whose id cannot be read is a problem, not a crash.
    expect(read.problems).toEqual([{ at: `uid=noid,${PEOPLE}`, message: expect.stringMatching(/no entryUUID/) }]);
    for (const id of ids(read.records)) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    // The first full read already establishes a watermark.
    expect(read.watermark).toEqual({ attribute: 'modifyTimestamp', value: expect.stringMatching(/^\d{14}Z$/) });

    // Other page sizes, a server page as large as the size limit included, give the same entries.
    const other = await readAll(source({ pageSize: 500 }), 1000);
    expect(new Set(ids(other.records))).toEqual(new Set(ids(read.records)));
  });

  it('delivers mapped attributes, Unicode in NFC, the entry copy, and nothing binary or secret', async () => {
    // Mapping binary and secret attributes must not bring them in either.
    const src = source({ attributeMap: { jpegPhoto: 'attributes.jpegPhoto', userPassword: 'attributes.userPassword', description: 'attributes.note' } });
    const { records } = await readAll(src, 1000);

    const zoe = byUid(records, 'zoe')!;
    expect(zoe.attributes).toEqual({
      uid: 'zoe',
      mail: 'zoe@flowthru.test',
      givenName: 'Zoë',
      sn: 'Ångström',
      cn: 'Zoë Ångström',
      l: 'Zürich',
      externalId: expect.any(String),
    });
    expect(zoe.entry).toEqual({
      dn: `uid=zoe,${PEOPLE}`,
      ...Object.fromEntries(Object.entries(zoe.attributes).filter(([k]) => k !== 'externalId')),
      entryUUID: zoe.attributes.externalId,
      modifyTimestamp: expect.stringMatching(/^\d{14}Z$/),
    });
    const user = toSourceUser(zoe, { ...presetAttributeMap('openldap'), ...src.attributeMap }, 'externalId').user;
    expect(user).toMatchObject({ username: 'zoe', email: 'zoe@flowthru.test', firstName: 'Zoë', lastName: 'Ångström', city: 'Zürich' });

    const jose = byUid(records, 'jose')!;
    expect(jose.attributes.cn).toBe('José Núñez'.normalize('NFC'));
    expect(jose.attributes.sn).toBe('Núñez'.normalize('NFC'));
    expect((jose.attributes.cn as string).normalize('NFC')).toBe(jose.attributes.cn);
    expect(byUid(records, 'watanabe')!.attributes).toMatchObject({ cn: '渡辺 健', sn: '渡辺', givenName: '健', l: '東京' });
    expect(byUid(records, "o'brien, jr.")!.attributes.cn).toBe("Pat O'Brien, Jr.");
    expect(byUid(records, 'fanclub')!.attributes.cn).toBe(FAN_CN);

    // Entries without the optional attributes simply lack them, and still map.
    const plain = byUid(records, uidOf(70))!;
    expect(plain.attributes).not.toHaveProperty('mail');
    expect(plain.attributes).not.toHaveProperty('l');
    expect(plain.entry).not.toHaveProperty('mail');
    const plainUser = toSourceUser(plain, presetAttributeMap('openldap'), 'externalId').user;
    expect(plainUser.email).toBeUndefined();
    expect(plainUser.department).toBe(DEPARTMENTS[70 % DEPARTMENTS.length]);
    expect(plainUser.phone).toBe('+1 312 555 0070');

    // No binary or secret value anywhere, although entries 50, 100, ... and fanclub have them.
    for (const record of records) {
      const names = [...Object.keys(record.attributes), ...Object.keys(record.entry ?? {})].map((n) => n.toLowerCase());
      expect(names).not.toContain('jpegphoto');
      expect(names).not.toContain('userpassword');
      for (const value of [...Object.values(record.attributes), ...Object.values(record.entry ?? {})]) {
        for (const v of Array.isArray(value) ? value : [value]) expect(typeof v).toBe('string');
      }
    }
  });

  it('keeps the external id across a rename and a move', async () => {
    const src = source({ filter: `(|(uid=${escapeFilterValue(uidOf(5))})(uid=${escapeFilterValue(uidOf(6))})(uid=renamed0005))` });
    const before = (await readAll(src, 10)).records;
    expect(before).toHaveLength(2);
    await slapd.ldapmodify(
      [
        `dn: uid=${uidOf(5)},${PEOPLE}`,
        'changetype: modrdn',
        'newrdn: uid=renamed0005',
        'deleteoldrdn: 1',
        '',
        `dn: uid=renamed0005,${PEOPLE}`,
        'changetype: modify',
        'replace: cn',
        'cn: Renamed Person',
        '',
        `dn: uid=${uidOf(6)},${PEOPLE}`,
        'changetype: modrdn',
        `newrdn: uid=${uidOf(6)}`,
        'deleteoldrdn: 1',
        `newsuperior: ou=staff,${BASE}`,
        '',
      ].join('\n'),
    );
    const after = (await readAll(src, 10)).records;
    expect(after).toHaveLength(2);
    const renamed = byUid(after, 'renamed0005')!;
    expect(renamed.at).toBe(`uid=renamed0005,${PEOPLE}`);
    expect(renamed.attributes.cn).toBe('Renamed Person');
    expect(renamed.attributes.externalId).toBe(byUid(before, uidOf(5))!.attributes.externalId);
    const moved = byUid(after, uidOf(6))!;
    expect(moved.at).toBe(`uid=${uidOf(6)},ou=staff,${BASE}`);
    expect(moved.attributes.externalId).toBe(byUid(before, uidOf(6))!.attributes.externalId);
  });

  it('escapes values in filters: `*)(uid=*` cannot widen a search', async () => {
    const injected = await readLdapPage(source({ filter: `(&(objectClass=inetOrgPerson)(uid=${escapeFilterValue('*)(uid=*')}))` }), null, 100, { env });
    expect(injected.records).toEqual([]);
    expect(injected.next).toBeNull();
    const star = await readLdapPage(source({ filter: `(uid=${escapeFilterValue('user000*')})` }), null, 100, { env });
    expect(star.records).toEqual([]);
    // The same escaping finds the entry whose uid really is that odd.
    const exact = await readLdapPage(source({ filter: `(uid=${escapeFilterValue('paren(s)*')})` }), null, 100, { env });
    expect(exact.records.map((r) => r.attributes.uid)).toEqual(['paren(s)*']);
  });

  it('resumes a search this worker no longer holds: every entry still exactly once', async () => {
    const src = source({ pageSize: 150 });
    const first = await readLdapPage(src, null, 400, { env });
    const second = await readLdapPage(src, first.next, 400, { env });
    expect(liveLdapSearches()).toHaveLength(1);
    // As if the next call ran on another worker, or after a restart.
    await closeLdapConnections();
    const rest = await readAll(src, 400, { cursor: second.next });
    const all = [...first.records, ...second.records, ...rest.records];
    // The restart says so, once: such a read is incomplete, and a delete sync offboards nobody on it.
    const restarts = rest.problems.filter((p) => p.message === RESTARTED_SEARCH);
    expect(restarts).toEqual([{ at: `search of ${src.baseDn}`, message: RESTARTED_SEARCH }]);
    expect(all.length + first.problems.length + second.problems.length + rest.problems.length - restarts.length).toBe(TOTAL);
    expect(new Set(ids(all)).size).toBe(all.length);
  });

  it('turns bad credentials and configuration into permanent errors that name the source', async () => {
    const badPassword = await rejection(readLdapPage(source(), null, 10, { env: { [ENV_NAME]: 'not-the-password' } }));
    expect(badPassword).toBeInstanceOf(PermanentError);
    expect(badPassword).toMatchObject({ kind: 'SourceCredentials' });
    expect(badPassword.message).toBe(`LDAP bind as ${slapd.bindDn} to ${slapd.url} failed: invalid credentials (source "corp-ldap")`);

    const missing = await rejection(readLdapPage(source(), null, 10, { env: {} }));
    expect(missing).toBeInstanceOf(PermanentError);
    expect(missing).toMatchObject({ kind: 'SourceCredentials' });
    expect(missing.message).toMatch(new RegExp(`${ENV_NAME}.*"corp-ldap".*not set`));
    const empty = await rejection(readLdapPage(source(), null, 10, { env: { [ENV_NAME]: '' } }));
    expect(empty).toMatchObject({ kind: 'SourceCredentials', message: expect.stringMatching(/is empty/) });

    const noBase = await rejection(readLdapPage(source({ baseDn: `ou=nowhere,${BASE}` }), null, 10, { env }));
    expect(noBase).toBeInstanceOf(PermanentError);
    expect(noBase).toMatchObject({ kind: 'SourceConfiguration', message: expect.stringMatching(/ou=nowhere.*does not exist.*"corp-ldap"/) });

    const badFilter = await rejection(readLdapPage(source({ filter: '(&(uid=a)' }), null, 10, { env }));
    expect(badFilter).toMatchObject({ kind: 'SourceConfiguration', message: expect.stringMatching(/invalid LDAP filter/) });

    // Without an exemption from the size limit, OpenLDAP cuts even a paged search: say so, do not truncate.
    const limited = await rejection(readAll(source({ bindDn: slapd.limitedBindDn }), 1000, { env: { [ENV_NAME]: slapd.limitedPassword } }));
    expect(limited).toMatchObject({ kind: 'SourceConfiguration', message: expect.stringMatching(/size limit.*size\.prtotal=unlimited/) });
    expect(liveLdapSearches()).toEqual([]);
  });

  it('reports an unreachable server as a retryable error naming the URL and source', async () => {
    const url = 'ldap://127.0.0.1:1';
    const refused = await rejection(readLdapPage(source({ url }), null, 10, { env }));
    expect(refused).not.toBeInstanceOf(PermanentError);
    expect(refused.message).toMatch(/ldap:\/\/127\.0\.0\.1:1 .*"corp-ldap".*ECONNREFUSED/);
    expect(refused.message).not.toContain(slapd.password);
  });

  it('speaks StartTLS and ldaps:// with a caFile, and refuses an untrusted certificate clearly', async () => {
    const startTls = await readLdapPage(source({ startTls: true, caFile: slapd.caFile! }), null, 5, { env });
    expect(startTls.records).toHaveLength(5);
    const ldaps = await readLdapPage(source({ url: slapd.ldapsUrl!, caFile: slapd.caFile! }), null, 5, { env });
    expect(ldaps.records).toHaveLength(5);
    await closeLdapConnections();

    const untrusted = await rejection(readLdapPage(source({ startTls: true }), null, 5, { env }));
    expect(untrusted).toBeInstanceOf(PermanentError);
    expect(untrusted.message).toMatch(/certificate is not trusted.*caFile.*"corp-ldap"/);
    const missingCa = await rejection(readLdapPage(source({ startTls: true, caFile: `${slapd.dir}/nope.pem` }), null, 5, { env }));
    expect(missingCa).toMatchObject({ kind: 'SourceConfiguration', message: expect.stringMatching(/cannot read caFile .*nope\.pem.*ENOENT/) });
  });

  it('fails retryably when the server goes away mid-read, and the same cursor completes after it is back', async () => {
    const src = source({ pageSize: 100 });
    const first = await readLdapPage(src, null, 150, { env });
    expect(first.next).not.toBeNull();
    await slapd.stop();
    try {
      const failure = await rejection(readLdapPage(src, first.next, 150, { env }));
      expect(failure).not.toBeInstanceOf(PermanentError);
      expect(failure.message).toContain(slapd.url);
      expect(failure.message).toContain('"corp-ldap"');
      expect(liveLdapSearches()).toEqual([]);
    } finally {
      await slapd.start();
    }
    const rest = await readAll(src, 150, { cursor: first.next });
    const all = [...first.records, ...rest.records];
    // The restarted search says so (once), beside the entries it could not identify.
    const restarts = rest.problems.filter((p) => p.message === RESTARTED_SEARCH).length;
    expect(restarts).toBe(1);
    expect(all.length + first.problems.length + rest.problems.length - restarts).toBe(TOTAL);
    expect(new Set(ids(all)).size).toBe(all.length);
  });

  it('reads incrementally from a watermark: just what changed since (>=, so the newest of last time again)', async () => {
    const src = source({ pageSize: 500 });
    // A marker changed after everything so far, in a second of its own: the full read's watermark.
    await sleep(1_100);
    await slapd.ldapmodify([`dn: uid=${uidOf(100)},${PEOPLE}`, 'changetype: modify', 'replace: title', 'title: Marker', ''].join('\n'));
    const full = await readAll(src, 1000);
    expect(full.records.length + full.problems.length).toBe(TOTAL);
    const watermark = full.watermark!;
    expect(watermark.attribute).toBe('modifyTimestamp');
    expect(byUid(full.records, uidOf(100))!.entry!.modifyTimestamp).toBe(watermark.value);

    await sleep(1_100);
    const changed = [uidOf(200), uidOf(300), 'zoe'];
    await slapd.ldapmodify(
      changed.map((uid) => [`dn: uid=${uid},${PEOPLE}`, 'changetype: modify', 'replace: l', 'l: Dallas', ''].join('\n')).join('\n'),
    );

    const incremental = await readAll(src, 1000, { watermark });
    expect(incremental.records.map((r) => r.attributes.uid).sort()).toEqual([...changed, uidOf(100)].sort());
    expect(incremental.problems).toEqual([]);
    for (const uid of changed) expect(byUid(incremental.records, uid)!.attributes.l).toBe('Dallas');
    const next = incremental.watermark!;
    expect(next.attribute).toBe('modifyTimestamp');
    expect(next.value > watermark.value).toBe(true);

    // With the default 5-minute clock margin, a read of entries changed just now does not move the
    // watermark past the read's start less 5 minutes (here: not at all, as it started later than
    // that), so a change made during the read is not skipped next time.
    const margined = await readAll(src, 1000, { watermark, watermarkMarginMs: 5 * 60_000 });
    expect(margined.records).toHaveLength(incremental.records.length);
    expect(margined.watermark).toEqual(watermark);
    // A full read (no watermark) of entries changed just now stops at the start less the margin.
    const fullMargined = await readAll(src, 5000, { watermarkMarginMs: 5 * 60_000 });
    const ceiling = new Date(Date.now() - 5 * 60_000).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
    expect(fullMargined.watermark!.value <= ceiling).toBe(true);

    // Nothing changed since: nothing read, and the watermark stays.
    const future: LdapWatermark = { attribute: 'modifyTimestamp', value: '20991231235959Z' };
    const none = await readAll(src, 1000, { watermark: future });
    expect(none.records).toEqual([]);
    expect(none.watermark).toEqual(future);
    // A watermark of another kind (AD's) is not applied to OpenLDAP: a full read.
    const foreign = await readAll(src, 5000, { watermark: { attribute: 'uSNChanged', value: '12345' } });
    expect(foreign.records.length + foreign.problems.length).toBe(TOTAL);
  });
});

describe('disabled and locked accounts', () => {
  // A second server with OpenLDAP's password policy overlay (its schema is built in from 2.5 on)
  // and Active Directory's user schema as OpenLDAP ships it, so AD entries are real entries too.
  let policy: Slapd;
  const STAFF = `ou=staff,${BASE}`;
  const adUser = (n: number, name: string, userAccountControl: string): SeedEntry => ({
    dn: `cn=${name},${STAFF}`,
    attributes: {
      // msuser.schema defines sAMAccountName but no class that allows it (AD's securityPrincipal).
      objectClass: ['top', 'person', 'organizationalPerson', 'user', 'extensibleObject'],
      cn: name,
      sn: name,
      sAMAccountName: name.toLowerCase(),
      objectGUID: Buffer.from(`00112233445566778899aabbccddee${n.toString(16).padStart(2, '0')}`, 'hex'),
      instanceType: '4',
      nTSecurityDescriptor: Buffer.from([1, 0, 4, 0x80]),
      objectCategory: `CN=Person,CN=Schema,CN=Configuration,${BASE}`,
      userAccountControl,
    },
  });

  beforeAll(async () => {
    policy = await startSlapd({
      entries: [
        person('active', { cn: 'Active One', sn: 'One' }),
        // 000001010000Z: locked by an administrator until one unlocks it.
        person('locked', { cn: 'Locked One', sn: 'One', pwdAccountLockedTime: '000001010000Z' }),
        person('later', { cn: 'Later One', sn: 'One' }),
        adUser(1, 'Enabled', '512'),
        adUser(2, 'Disabled', '514'),
        // NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD, with and without ACCOUNTDISABLE.
        adUser(3, 'NoExpiryDisabled', '66050'),
        adUser(4, 'NoExpiry', '66048'),
      ],
      schemas: ['/etc/ldap/schema/msuser.schema'],
      overlays: ['ppolicy'],
    });
  });
  afterAll(async () => {
    await closeLdapConnections();
    await policy?.close();
  });

  const openldap = (overrides: Partial<LdapSourceConfig> = {}) =>
    source({ url: policy.url, bindDn: policy.bindDn, baseDn: PEOPLE, filter: '(objectClass=inetOrgPerson)', ...overrides });
  const policyEnv = () => ({ env: { [ENV_NAME]: policy.password } });

  it('OpenLDAP: an entry ppolicy locked (pwdAccountLockedTime, asked for by name) is marked and skipped', async () => {
    // An administrator (or ppolicy itself, after too many failed binds) locks another account.
    await policy.ldapmodify([`dn: uid=later,${PEOPLE}`, 'changetype: modify', 'replace: pwdAccountLockedTime', 'pwdAccountLockedTime: 20250101000000Z', ''].join('\n'));
    const { records } = await readAll(openldap(), 100, policyEnv());
    expect(Object.fromEntries(records.map((r) => [r.attributes.uid, r.disabled ?? null]))).toEqual({
      active: null,
      locked: 'locked: pwdAccountLockedTime 000001010000Z',
      later: 'locked: pwdAccountLockedTime 20250101000000Z',
    });
    // The lock is not user data: it does not go into the user's attributes.
    expect(byUid(records, 'locked')!.attributes).not.toHaveProperty('pwdAccountLockedTime');

    const mapped = mapRecords(openldap(), records);
    expect(mapped.users.map((u) => u.user.username)).toEqual(['active']);
    expect(mapped.disabled.map((d) => [d.at, d.why])).toEqual([
      [`uid=locked,${PEOPLE}`, 'locked: pwdAccountLockedTime 000001010000Z'],
      [`uid=later,${PEOPLE}`, 'locked: pwdAccountLockedTime 20250101000000Z'],
    ]);
    expect(mapRecords(openldap({ includeDisabled: true }), records).users.map((u) => u.user.username)).toEqual(['active', 'locked', 'later']);

    // Unlocked again: read as an ordinary account.
    await policy.ldapmodify([`dn: uid=later,${PEOPLE}`, 'changetype: modify', 'delete: pwdAccountLockedTime', ''].join('\n'));
    expect(byUid((await readAll(openldap(), 100, policyEnv())).records, 'later')!.disabled).toBeUndefined();
  });

  it('OpenLDAP without ppolicy: asking for pwdAccountLockedTime is no error, and nobody is locked', async () => {
    const read = await readAll(source(), 5000);
    expect(read.records.length + read.problems.length).toBe(TOTAL);
    expect(read.records.filter((r) => r.disabled !== undefined)).toEqual([]);
  });

  it('Active Directory: userAccountControl with ACCOUNTDISABLE (0x2) is marked and skipped', async () => {
    const ad = source({ url: policy.url, bindDn: policy.bindDn, baseDn: STAFF, preset: 'activeDirectory', filter: '(objectClass=user)' });
    const { records, problems } = await readAll(ad, 100, policyEnv());
    expect(problems).toEqual([]);
    expect(Object.fromEntries(records.map((r) => [r.attributes.sAMAccountName, r.disabled ?? null]))).toEqual({
      enabled: null,
      disabled: 'disabled: userAccountControl 514 has ACCOUNTDISABLE (0x2)',
      noexpirydisabled: 'disabled: userAccountControl 66050 has ACCOUNTDISABLE (0x2)',
      noexpiry: null,
    });
    // The stable id is the objectGUID, as a GUID string.
    expect(byDn(records, `cn=Disabled,${STAFF}`).attributes.externalId).toBe('33221100-5544-7766-8899-aabbccddee02');

    const mapped = mapRecords(ad, records);
    expect(mapped.users.map((u) => u.user.username)).toEqual(['enabled', 'noexpiry']);
    expect(mapped.disabled.map((d) => d.externalId)).toEqual(['33221100-5544-7766-8899-aabbccddee02', '33221100-5544-7766-8899-aabbccddee03']);
    expect(mapRecords({ ...ad, includeDisabled: true }, records).users).toHaveLength(4);
  });
});

describe('attribute presets', () => {
  it('map onto canonical attributes or attributes.<name> only', () => {
    for (const preset of ['openldap', 'activeDirectory'] as const) {
      for (const [name, target] of Object.entries(presetAttributeMap(preset))) {
        expect(isAttributePath(target), `${preset}.${name} → ${target}`).toBe(true);
        if (!target.startsWith('attributes.')) expect(isCanonicalAttribute(target)).toBe(true);
      }
    }
    const ad = presetAttributeMap('activeDirectory');
    expect(ad).toMatchObject({ sAMAccountName: 'username', givenName: 'firstName', sn: 'lastName', mail: 'email', department: 'department' });
    for (let n = 1; n <= 15; n++) expect(ad[`extensionAttribute${n}`]).toBe(`attributes.extensionAttribute${n}`);
    expect(presetAttributeMap('openldap')).toMatchObject({ uid: 'username', l: 'city', departmentNumber: 'department', telephoneNumber: 'phone' });
  });
});
