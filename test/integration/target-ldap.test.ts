import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, type Entry } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { escapeDnValue, escapeFilterValue, formatObjectGuid, parseObjectGuid } from '../../src/adapters/sources/ldap-escape.js';
import { createLdapTarget } from '../../src/adapters/targets/ldap.js';
import { TargetError, type TargetFields, type TargetMemory, type TargetPlugin, type TargetPush } from '../../src/adapters/targets/types.js';
import { customerParts, type LdapTargetConfig } from '../../src/domain/config/schema.js';
import { rejection } from '../support/assert.js';
import { startSlapd, type SeedEntry, type Slapd } from '../support/slapd.js';

const BASE = 'dc=flowthru,dc=test';
const PEOPLE = `ou=people,${BASE}`;
const STAFF = `ou=staff,${BASE}`;
const MANAGED = `ou=managed,${BASE}`;
const AD = `ou=ad,${BASE}`;
const ENV_NAME = 'TEST_LDAP_TARGET_PASSWORD';
const NASTY_CN = '#1 "Fan" + <Club>; a=b\\c, ';
const STARRY = 'a*(b)\\c';
// Bytes from 0x80 up: sent as filter text they would be re-encoded as UTF-8.
const GUID_BYTES = Buffer.from('f0e1d2c3b4a59687788796a5b4c3d2e1', 'hex');

const person = (uid: string, attributes: SeedEntry['attributes'], parent = PEOPLE): SeedEntry => ({
  dn: `uid=${escapeDnValue(uid)},${parent}`,
  attributes: { objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'], uid, ...attributes },
});

let slapd: Slapd;
let env: NodeJS.ProcessEnv;
let admin: Client;
const plugins: TargetPlugin[] = [];

function config(overrides: Record<string, unknown> = {}): LdapTargetConfig {
  const parsed = customerParts.targets.parse({
    name: 'directory',
    kind: 'ldap',
    url: slapd.url,
    bindDn: slapd.adminDn,
    passwordEnv: ENV_NAME,
    baseDn: PEOPLE,
    timeoutMs: 3_000,
    ...overrides,
  });
  if (parsed.kind !== 'ldap') throw new Error('not an LDAP target');
  return parsed;
}

function plugin(overrides: Record<string, unknown> = {}, environment: NodeJS.ProcessEnv = env): TargetPlugin {
  const created = createLdapTarget(config(overrides), environment);
  plugins.push(created);
  return created;
}

const NO_MEMORY: TargetMemory = { remoteId: null, pushed: null };

function push(externalId: string, fields: TargetFields, memory: TargetMemory = NO_MEMORY, event: TargetPush['event'] = 'changed'): TargetPush {
  return {
    event,
    eventId: randomUUID(),
    target: 'directory',
    subject: { userId: randomUUID(), externalId, customer: 'acme', fields },
    memory,
  };
}

async function read(dn: string, attributes = ['*', 'entryUUID', 'entryCSN', 'modifyTimestamp']): Promise<Entry | null> {
  try {
    const { searchEntries } = await admin.search(dn, { scope: 'base', attributes });
    return searchEntries[0] ?? null;
  } catch {
    return null;
  }
}

async function uuidOf(dn: string): Promise<string> {
  return String((await read(dn, ['entryUUID']))!.entryUUID);
}

async function under(base: string, filter: string): Promise<Entry[]> {
  return (await admin.search(base, { scope: 'sub', filter, attributes: ['*', 'entryUUID'] })).searchEntries;
}

function targetError(error: Error): TargetError {
  expect(error).toBeInstanceOf(TargetError);
  return error as TargetError;
}

let schemaDir: string;
let guidSchema: string;

beforeAll(async () => {
  // Active Directory's objectGUID, matched by its bytes as AD does (OpenLDAP's msuser.schema gives
  // it no equality rule, so no filter could match it there).
  schemaDir = mkdtempSync(join(tmpdir(), 'flowthru-guid-schema-'));
  guidSchema = join(schemaDir, 'objectguid.schema');
  writeFileSync(
    guidSchema,
    "attributetype ( 1.2.840.113556.1.4.2 NAME 'objectGUID' EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )\n",
  );
  slapd = await startSlapd({
    entries: [
      { dn: MANAGED, attributes: { objectClass: 'organizationalUnit', ou: 'managed' } },
      { dn: AD, attributes: { objectClass: 'organizationalUnit', ou: 'ad' } },
      person('ada', { cn: 'Ada Lovelace', sn: 'Lovelace', mail: 'ada@flowthru.test', telephoneNumber: '+1 312 555 0000' }),
      person('grace', { cn: 'Grace Hopper', sn: 'Hopper', l: 'Arlington' }),
      person('linus', { cn: 'Linus T', sn: 'T' }),
      person('moving', { cn: 'Moving Person', sn: 'Person' }),
      person('schema', { cn: 'Schema Person', sn: 'Person' }),
      { dn: `cn=${escapeDnValue(NASTY_CN)},${PEOPLE}`, attributes: { objectClass: 'inetOrgPerson', cn: NASTY_CN, sn: 'Club' } },
      person('starry', { cn: 'Starry', sn: 'Starry', employeeNumber: STARRY }, STAFF),
      person('plain', { cn: 'Plain', sn: 'Plain', employeeNumber: 'abc' }, STAFF),
      {
        dn: `cn=Guid Person,${AD}`,
        attributes: {
          objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson', 'extensibleObject'],
          cn: 'Guid Person',
          sn: 'Person',
          objectGUID: GUID_BYTES,
        },
      },
    ],
    tls: true,
    schemas: [guidSchema],
  });
  env = { [ENV_NAME]: slapd.adminPassword };
  admin = new Client({ url: slapd.url });
  await admin.bind(slapd.adminDn, slapd.adminPassword);
});

afterAll(async () => {
  await Promise.all(plugins.map((p) => p.close()));
  await admin?.unbind();
  await slapd?.close();
  if (schemaDir) rmSync(schemaDir, { recursive: true, force: true });
});

describe('entry: user — write-back to the user’s own entry', () => {
  it('writes only the owned attributes, then changes nothing on an identical push', async () => {
    const dn = `uid=ada,${PEOPLE}`;
    const uuid = await uuidOf(dn);
    const target = plugin();
    const fields = { telephoneNumber: '+1 312 555 0100', l: 'Chicago' };

    const first = await target.provision(push(uuid, fields));
    expect(first).toEqual({ remoteId: uuid, changed: true, summary: `modified ${dn}: telephoneNumber, l` });
    const after = (await read(dn))!;
    expect(after).toMatchObject({ telephoneNumber: '+1 312 555 0100', l: 'Chicago', mail: 'ada@flowthru.test', cn: 'Ada Lovelace' });

    // The second push compares and writes nothing: the entry's change stamp does not move.
    const second = await target.provision(push(uuid, fields, { remoteId: uuid, pushed: fields }));
    expect(second).toEqual({ remoteId: uuid, changed: false, summary: `unchanged ${dn}` });
    const again = (await read(dn))!;
    expect(again.entryCSN).toBe(after.entryCSN);
    expect(again.modifyTimestamp).toBe(after.modifyTimestamp);

    // Only one attribute differs: only that one is written.
    const third = await target.provision(push(uuid, { ...fields, l: 'Boston' }, { remoteId: uuid, pushed: fields }));
    expect(third.summary).toBe(`modified ${dn}: l`);
    expect((await read(dn))!.l).toBe('Boston');
  });

  it('deletes an attribute whose field is null (or empty), and converges', async () => {
    const dn = `uid=grace,${PEOPLE}`;
    const uuid = await uuidOf(dn);
    const target = plugin();
    const first = await target.provision(push(uuid, { l: null, telephoneNumber: '' }));
    expect(first).toEqual({ remoteId: uuid, changed: true, summary: `modified ${dn}: l` });
    expect(await read(dn)).not.toHaveProperty('l');
    expect((await target.provision(push(uuid, { l: null, telephoneNumber: '' }))).changed).toBe(false);
  });

  it('follows an entry renamed and moved (modrdn) between pushes, by its entryUUID', async () => {
    const uuid = await uuidOf(`uid=moving,${PEOPLE}`);
    const target = plugin({ baseDn: BASE });
    await target.provision(push(uuid, { l: 'Chicago' }));
    await slapd.ldapmodify(
      [`dn: uid=moving,${PEOPLE}`, 'changetype: modrdn', 'newrdn: uid=moved', 'deleteoldrdn: 1', `newsuperior: ${STAFF}`, ''].join('\n'),
    );
    const result = await target.provision(push('ignored-when-remembered', { l: 'Dallas' }, { remoteId: uuid, pushed: { l: 'Chicago' } }));
    expect(result).toEqual({ remoteId: uuid, changed: true, summary: `modified uid=moved,${STAFF}: l` });
    expect((await read(`uid=moved,${STAFF}`))!.l).toBe('Dallas');
  });

  it('deprovision removes only what it wrote and the entry still holds', async () => {
    const dn = `uid=linus,${PEOPLE}`;
    const uuid = await uuidOf(dn);
    const target = plugin();
    const pushed = { telephoneNumber: '+1 312 555 0199', l: 'Portland', title: null };
    await target.provision(push(uuid, pushed));
    // Someone else changes l afterwards: their value is not ours to remove.
    await slapd.ldapmodify([`dn: ${dn}`, 'changetype: modify', 'replace: l', 'l: Helsinki', ''].join('\n'));

    const memory = { remoteId: uuid, pushed };
    const removed = await target.deprovision(push(uuid, pushed, memory, 'deprovisioned'));
    expect(removed).toEqual({ remoteId: null, changed: true, summary: `removed telephoneNumber from ${dn}` });
    const after = (await read(dn))!;
    expect(after).not.toHaveProperty('telephoneNumber');
    expect(after).toMatchObject({ l: 'Helsinki', cn: 'Linus T', sn: 'T' });

    expect(await target.deprovision(push(uuid, pushed, memory, 'deprovisioned'))).toEqual({ remoteId: null, changed: false, summary: `nothing to remove from ${dn}` });
    // Nothing ever written: nothing to do.
    expect((await target.deprovision(push(uuid, pushed, NO_MEMORY, 'deprovisioned'))).changed).toBe(false);
  });

  it('an id with no entry: provision fails for good naming it and the base, deprovision has nothing to do', async () => {
    const target = plugin();
    const missing = randomUUID();
    const error = targetError(await rejection(target.provision(push(missing, { l: 'Chicago' }))));
    expect(error).toMatchObject({ retryable: false, kind: 'NoSuchEntry' });
    expect(error.message).toContain(missing);
    expect(error.message).toContain(PEOPLE);
    const gone = await target.deprovision(push(missing, { l: 'Chicago' }, { remoteId: missing, pushed: { l: 'Chicago' } }, 'deprovisioned'));
    expect(gone).toMatchObject({ remoteId: null, changed: false });
  });

  it('escapes filter values (*()\\) and writes to an entry whose DN needs escaping', async () => {
    // The id attribute may be any attribute: its value is compared as text, never widens the filter.
    const byNumber = plugin({ baseDn: STAFF, idAttribute: 'employeeNumber' });
    const found = await byNumber.provision(push(STARRY, { l: 'Star City' }));
    expect(found).toEqual({ remoteId: STARRY.toLowerCase(), changed: true, summary: `modified uid=starry,${STAFF}: l` });
    expect((await read(`uid=plain,${STAFF}`))!).not.toHaveProperty('l');
    for (const widening of ['*', 'a*', '*)(uid=*', 'abc)(|(uid=*']) {
      const error = targetError(await rejection(byNumber.provision(push(widening, { l: 'Nowhere' }))));
      expect(error.kind).toBe('NoSuchEntry');
    }
    expect(escapeFilterValue(STARRY)).toBe('a\\2a\\28b\\29\\5cc');

    const dn = `cn=${escapeDnValue(NASTY_CN)},${PEOPLE}`;
    const uuid = await uuidOf(dn);
    const nasty = await plugin().provision(push(uuid, { description: 'fan, club' }));
    expect(nasty.changed).toBe(true);
    expect(nasty.summary).toMatch(/^modified cn=.*: description$/);
    expect((await read(dn))!.description).toBe('fan, club');
  });

  it('finds an Active Directory entry by its objectGUID (matched as bytes)', async () => {
    const guid = formatObjectGuid(GUID_BYTES);
    expect(parseObjectGuid(guid)).toEqual(GUID_BYTES);
    expect(parseObjectGuid(`{${guid.toUpperCase()}}`)).toEqual(GUID_BYTES);
    expect(parseObjectGuid('not-a-guid')).toBeNull();
    const target = plugin({ baseDn: AD, idAttribute: 'objectGUID' });
    const result = await target.provision(push(guid, { l: 'Redmond' }));
    expect(result).toEqual({ remoteId: guid, changed: true, summary: `modified cn=Guid Person,${AD}: l` });
    expect((await read(`cn=Guid Person,${AD}`))!.l).toBe('Redmond');
    const invalid = targetError(await rejection(target.provision(push('nope', { l: 'Redmond' }))));
    expect(invalid).toMatchObject({ retryable: false, kind: 'InvalidId' });
  });
});

describe('entry: managed — entries of flowthru’s own', () => {
  const managed = (overrides: Record<string, unknown> = {}) => plugin({ entry: 'managed', baseDn: MANAGED, ...overrides });
  const adaFields = { uid: 'm-ada', cn: 'Ada Lovelace', sn: 'Lovelace', mail: 'ada@flowthru.test', telephoneNumber: null };

  it('creates, leaves alone, modifies, renames and deletes an entry', async () => {
    const target = managed();
    const dn = `uid=m-ada,${MANAGED}`;
    const created = await target.provision(push('x', adaFields, NO_MEMORY, 'provisioned'));
    const uuid = await uuidOf(dn);
    expect(created).toEqual({ remoteId: uuid, changed: true, summary: `created ${dn}` });
    expect(await read(dn)).toMatchObject({ objectClass: 'inetOrgPerson', uid: 'm-ada', cn: 'Ada Lovelace', sn: 'Lovelace', mail: 'ada@flowthru.test' });

    const memory = { remoteId: uuid, pushed: adaFields };
    expect(await target.provision(push('x', adaFields, memory))).toEqual({ remoteId: uuid, changed: false, summary: `unchanged ${dn}` });

    const changedFields = { ...adaFields, mail: null, telephoneNumber: '+1 312 555 0100' };
    expect(await target.provision(push('x', changedFields, memory))).toEqual({ remoteId: uuid, changed: true, summary: `modified ${dn}: mail, telephoneNumber` });
    expect(await read(dn)).not.toHaveProperty('mail');

    const renamedFields = { ...changedFields, uid: 'm-ada.king', cn: 'Ada King' };
    const renamedDn = `uid=m-ada.king,${MANAGED}`;
    const renamed = await target.provision(push('x', renamedFields, { remoteId: uuid, pushed: changedFields }, 'moved'));
    expect(renamed).toEqual({ remoteId: uuid, changed: true, summary: `renamed ${dn} to ${renamedDn}; modified cn` });
    expect(await read(dn)).toBeNull();
    expect(await read(renamedDn)).toMatchObject({ uid: 'm-ada.king', cn: 'Ada King', entryUUID: uuid, telephoneNumber: '+1 312 555 0100' });

    const deprovision = push('x', renamedFields, { remoteId: uuid, pushed: renamedFields }, 'deprovisioned');
    expect(await target.deprovision(deprovision)).toEqual({ remoteId: null, changed: true, summary: `deleted ${renamedDn}` });
    expect(await read(renamedDn)).toBeNull();
    expect(await target.deprovision(deprovision)).toMatchObject({ remoteId: null, changed: false });
  });

  it('a re-run after a lost response (or lost memory) adopts the entry: exactly one', async () => {
    const target = managed();
    const fields = { uid: 'm-lost', cn: 'Lost Response', sn: 'Response' };
    const dn = `uid=m-lost,${MANAGED}`;
    const first = await target.provision(push('x', fields, NO_MEMORY, 'provisioned'));
    const rerun = await target.provision(push('x', fields, NO_MEMORY, 'provisioned'));
    expect(rerun).toEqual({ remoteId: first.remoteId, changed: false, summary: `adopted existing ${dn} (unchanged)` });
    const forgotten = await target.provision(push('x', { ...fields, cn: 'Found Again' }, NO_MEMORY));
    expect(forgotten).toEqual({ remoteId: first.remoteId, changed: true, summary: `adopted existing ${dn}; modified cn` });
    expect(await under(MANAGED, '(uid=m-lost)')).toHaveLength(1);

    // Two tries at once (a retry overlapping a slow first try): one adds, the other adopts.
    const racing = { uid: 'm-race', cn: 'Race', sn: 'Race' };
    const [a, b] = await Promise.all([target.provision(push('x', racing)), target.provision(push('x', racing))]);
    expect(a.remoteId).toBe(b.remoteId);
    expect(await under(MANAGED, '(uid=m-race)')).toHaveLength(1);

    // Deprovision without a remote id finds the entry by its DN.
    expect(await target.deprovision(push('x', fields, { remoteId: null, pushed: fields }, 'deprovisioned'))).toEqual({
      remoteId: null,
      changed: true,
      summary: `deleted ${dn}`,
    });
  });

  it('escapes DN values (,+"\\<>;= and a leading # or space) through create, find, rename and delete', async () => {
    const target = managed();
    const nasty = ' #lead,plus+quote"back\\less<more>semi;eq=trail ';
    const fields = { uid: nasty, cn: 'Nasty', sn: 'Value' };
    const dn = `uid=${escapeDnValue(nasty)},${MANAGED}`;
    const created = await target.provision(push('x', fields));
    expect(created.summary).toBe(`created ${dn}`);
    const entries = await under(MANAGED, `(uid=${escapeFilterValue(nasty)})`);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.entryUUID).toBe(created.remoteId);

    // Found again by its entryUUID, its RDN read back from the server's DN: no rename.
    const memory = { remoteId: created.remoteId, pushed: fields };
    expect((await target.provision(push('x', fields, memory))).changed).toBe(false);
    // Without memory: found by its DN and adopted, not added twice.
    expect((await target.provision(push('x', fields))).summary).toMatch(/^adopted existing /);

    // A value ending in a backslash (ldapts's modifyDN would split `\\,` wrongly).
    const other = '#other\\';
    const renamed = await target.provision(push('x', { ...fields, uid: other }, memory));
    expect(renamed.changed).toBe(true);
    const after = await under(MANAGED, `(entryUUID=${created.remoteId})`);
    expect(after.map((e) => e.uid)).toEqual([other]);
    expect(after[0]!.dn).toMatch(/,ou=managed,dc=flowthru,dc=test$/);

    const deleted = await target.deprovision(push('x', { ...fields, uid: other }, { remoteId: created.remoteId, pushed: fields }, 'deprovisioned'));
    expect(deleted.changed).toBe(true);
    expect(await under(MANAGED, `(entryUUID=${created.remoteId})`)).toHaveLength(0);
  });

  it('refuses a user without the naming field, and a base that does not exist', async () => {
    const missing = targetError(await rejection(managed().provision(push('x', { cn: 'No Uid', sn: 'Uid', uid: null }))));
    expect(missing).toMatchObject({ retryable: false, kind: 'MissingField' });
    expect(missing.message).toContain('uid');
    const noBase = targetError(await rejection(managed({ baseDn: `ou=nowhere,${BASE}` }).provision(push('x', { uid: 'nb', cn: 'No Base', sn: 'Base' }))));
    expect(noBase).toMatchObject({ retryable: false, kind: 'NoSuchBase' });
    expect(noBase.message).toContain(`ou=nowhere,${BASE}`);
  });
});

describe('failures', () => {
  it('a schema violation fails for good, naming the target, the DN and the LDAP error', async () => {
    const dn = `uid=schema,${PEOPLE}`;
    const uuid = await uuidOf(dn);
    const target = plugin();
    // uidNumber belongs to posixAccount, which the entry does not have.
    const notAllowed = targetError(await rejection(target.provision(push(uuid, { uidNumber: '1000' }))));
    expect(notAllowed).toMatchObject({ retryable: false, kind: 'SchemaViolation' });
    expect(notAllowed.message).toContain('LDAP target "directory"');
    expect(notAllowed.message).toContain(dn);
    expect(notAllowed.message).toContain('objectClassViolation (65)');

    const unknown = targetError(await rejection(target.provision(push(uuid, { noSuchAttributeType: 'x' }))));
    expect(unknown).toMatchObject({ retryable: false, kind: 'SchemaViolation' });
    expect(unknown.message).toContain('undefinedAttributeType (17)');

    // A managed entry without the attributes its object class requires (sn).
    const incomplete = targetError(await rejection(plugin({ entry: 'managed', baseDn: MANAGED }).provision(push('x', { uid: 'no-sn', cn: 'No Sn' }))));
    expect(incomplete).toMatchObject({ retryable: false, kind: 'SchemaViolation' });
    expect(incomplete.message).toContain(`add of uid=no-sn,${MANAGED}`);
  });

  it('credentials: a wrong password names the bind DN (never the password), a read-only account is refused, a missing one is a MissingSecret', async () => {
    const password = 'wrong-password-123';
    const wrong = targetError(await rejection(plugin({}, { [ENV_NAME]: password }).provision(push(randomUUID(), { l: 'x' }))));
    expect(wrong).toMatchObject({ retryable: false, kind: 'Unauthorized' });
    expect(wrong.message).toContain(slapd.adminDn);
    expect(wrong.message).toContain('invalidCredentials (49)');
    expect(wrong.message).not.toContain(password);

    const uuid = await uuidOf(`uid=schema,${PEOPLE}`);
    const reader = plugin({ bindDn: slapd.bindDn }, { [ENV_NAME]: slapd.password });
    const forbidden = targetError(await rejection(reader.provision(push(uuid, { l: 'Read Only' }))));
    expect(forbidden).toMatchObject({ retryable: false, kind: 'Forbidden' });
    expect(forbidden.message).toContain('insufficientAccessRights (50)');

    for (const environment of [{}, { [ENV_NAME]: '' }]) {
      const secret = targetError(await rejection(plugin({}, environment).provision(push(uuid, { l: 'x' }))));
      expect(secret).toMatchObject({ retryable: false, kind: 'MissingSecret' });
      expect(secret.message).toContain(ENV_NAME);
    }
  });

  it('TLS: StartTLS and ldaps:// with the CA; an untrusted certificate fails for good', async () => {
    const dn = `uid=ada,${PEOPLE}`;
    const uuid = await uuidOf(dn);
    const fields = { title: 'Countess' };
    expect((await plugin({ startTls: true, caFile: slapd.caFile }).provision(push(uuid, fields))).changed).toBe(true);
    expect((await plugin({ url: slapd.ldapsUrl, caFile: slapd.caFile }).provision(push(uuid, fields))).changed).toBe(false);
    const untrusted = targetError(await rejection(plugin({ startTls: true }).provision(push(uuid, fields))));
    expect(untrusted).toMatchObject({ retryable: false, kind: 'Configuration' });
  });

  it('a server that accepts but never answers times out as Unavailable (retryable)', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => void sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      const started = Date.now();
      const error = targetError(await rejection(plugin({ url: `ldap://127.0.0.1:${port}`, timeoutMs: 300 }).provision(push(randomUUID(), { l: 'x' }))));
      expect(error).toMatchObject({ retryable: true, kind: 'Unavailable' });
      expect(error.message).toContain(`ldap://127.0.0.1:${port}`);
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('heartbeats between operations, and stops when the push is cancelled', async () => {
    const uuid = await uuidOf(`uid=ada,${PEOPLE}`);
    const target = plugin();
    let beats = 0;
    await target.provision({ ...push(uuid, { departmentNumber: 'R&D' }), heartbeat: () => void beats++ });
    expect(beats).toBeGreaterThanOrEqual(3);
    const controller = new AbortController();
    controller.abort();
    const cancelled = targetError(await rejection(target.provision({ ...push(uuid, { departmentNumber: 'Sales' }), signal: controller.signal })));
    expect(cancelled).toMatchObject({ retryable: true, kind: 'Cancelled' });
    expect((await read(`uid=ada,${PEOPLE}`))!.departmentNumber).toBe('R&D');
  });

  it('a server that is down is retryable (Unavailable)', async () => {
    const uuid = await uuidOf(`uid=ada,${PEOPLE}`);
    const target = plugin();
    await slapd.stop();
    try {
      const down = targetError(await rejection(target.provision(push(uuid, { l: 'Down' }))));
      expect(down).toMatchObject({ retryable: true, kind: 'Unavailable' });
      expect(down.message).toContain(slapd.url);
    } finally {
      await slapd.start();
    }
    await admin.unbind();
    admin = new Client({ url: slapd.url });
    await admin.bind(slapd.adminDn, slapd.adminPassword);
    // Back up: the same plugin works again (each push has its own connection).
    expect((await target.provision(push(uuid, { l: 'Up' }))).changed).toBe(true);
  });
});
