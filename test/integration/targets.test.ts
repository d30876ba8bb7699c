import { Context } from '@temporalio/activity';
import type { ActivityInboundCallsInterceptor } from '@temporalio/worker';
import { Client as LdapClient } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { onboardWorkflowId, targetJobWorkflowId } from '../../src/workflows/config.js';
import type { TargetJobResult } from '../../src/workflows/messages.js';
import { acmeCsv, PipelineHarness, type Customer } from '../support/pipeline.js';
import { startScimServer, type ScimServer } from '../support/scim-server.js';
import { startSlapd, type Slapd } from '../support/slapd.js';
import { makeWebhookSecret, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

/*
 * Provisioning targets in users' pipelines (SPEC §4, seed 004): a real slapd (entries flowthru
 * manages), a SCIM server on scimmy, a webhook receiver that verifies signatures, on Temporal and
 * PostgreSQL. Every provision, change, move and offboarding reaches each target, in order (reversed
 * to deprovision), by the target's mode.
 */

let h: PipelineHarness;
let slapd: Slapd;
let scim: ScimServer;
let hooks: WebhookReceiver;
let ldap: LdapClient;
const secret = makeWebhookSecret();
const PHONES = 'ou=phones,dc=flowthru,dc=test';
const PEOPLE = 'ou=people,dc=flowthru,dc=test';
const person = (uid: string, givenName: string, sn: string, l: string) => ({
  dn: `uid=${uid},${PEOPLE}`,
  attributes: { objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'], uid, givenName, sn, cn: `${givenName} ${sn}`, mail: `${uid}@acme.example`, l, departmentNumber: 'Engineering' },
});

const ada = { employee_id: 'E1', login: 'ada', mail: 'ada@acme.example', given_name: 'Ada', surname: 'Lovelace', department: 'Engineering', city: 'Chicago', title: 'Engineer' };
const bob = { employee_id: 'E2', login: 'bob', mail: 'bob@acme.example', given_name: 'Bob', surname: 'Builder', department: 'Engineering', city: 'Chicago', title: 'Engineer' };

const ldapTarget = (extra: Record<string, unknown> = {}) => ({
  name: 'phones',
  kind: 'ldap',
  url: slapd.url,
  bindDn: slapd.adminDn,
  passwordEnv: 'TEST_TARGET_LDAP_PASSWORD',
  entry: 'managed',
  baseDn: PHONES,
  retryInterval: '1s',
  ...extra,
});
const scimTarget = (extra: Record<string, unknown> = {}) => ({ name: 'saas', kind: 'scim', url: scim.url, tokenEnv: 'TEST_TARGET_SCIM_TOKEN', retryInterval: '1s', ...extra });
const hookTarget = (extra: Record<string, unknown> = {}) => ({ name: 'events', kind: 'webhook', url: hooks.url, secretEnv: 'TEST_TARGET_WEBHOOK_SECRET', retryInterval: '1s', ...extra });

function customer(name: string, targets: Record<string, unknown>[], edit: (c: Customer) => void = () => undefined): Customer {
  return h.acmeCustomer(name, (c) => {
    c.targets = targets;
    c.settings.notifications = { to: ['noc@acme.example', 'it@acme.example'], from: 'flowthru <flowthru@acme.example>' };
    edit(c);
  });
}

async function ldapEntries(): Promise<Record<string, string | string[]>[]> {
  const { searchEntries } = await ldap.search(PHONES, { scope: 'one', filter: '(objectClass=inetOrgPerson)' });
  return searchEntries.map((e) => Object.fromEntries(Object.entries(e).map(([k, v]) => [k, Array.isArray(v) ? v.map(String) : String(v)])));
}

const eventsFor = (customerName: string, externalId: string) =>
  hooks
    .events()
    .map((d) => d.event)
    .filter((e) => e.data.customer === customerName && e.data.externalId === externalId);

async function targetLog(customerName: string, externalId: string) {
  const user = await h.userRow(customerName, externalId);
  return h.db
    .selectFrom('transaction_log')
    .select(['action', 'status', 'subject', 'id'])
    .where('user_id', '=', user.id)
    .where('action', 'like', 'target %')
    .orderBy('id')
    .execute();
}

async function state(customerName: string, target: string, externalId: string) {
  const user = await h.userRow(customerName, externalId);
  return h.db.selectFrom('target_state').selectAll().where('user_id', '=', user.id).where('target', '=', target).executeTakeFirst();
}

/** The local and regular activities of a user's pipeline in 'chain', in the order of its history. */
async function activities(externalId: string) {
  const events = (await h.client.workflow.getHandle(onboardWorkflowId('chain', 'hr', externalId)).fetchHistory()).events ?? [];
  const local = events.flatMap((e) => {
    const marker = e.markerRecordedEventAttributes;
    const data = marker?.details?.data?.payloads?.[0]?.data;
    if (marker?.markerName !== 'core_local_activity' || data == null) return [];
    return [/"activity_type":"(\w+)"|"activityType":"(\w+)"/.exec(Buffer.from(data).toString())?.slice(1).find(Boolean) ?? '?'];
  });
  const regular = events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType?.name ?? []);
  return { local, regular };
}

async function eventually<T>(read: () => Promise<T>, until: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (until(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

let version: number;
const sync = (name: string, mode: 'add' | 'update' | 'delete' = 'add') => h.sync(name, 'hr', version, { mode });

beforeAll(async () => {
  h = await PipelineHarness.create();
  slapd = await startSlapd({
    entries: [
      { dn: PHONES, attributes: { objectClass: ['top', 'organizationalUnit'], ou: 'phones' } },
      person('grace', 'Grace', 'Hopper', 'Chicago'),
      person('alan', 'Alan', 'Turing', 'Chicago'),
    ],
  });
  scim = await startScimServer({ token: 'scim-token' });
  hooks = await startWebhookReceiver({ secret });
  Object.assign(process.env, { TEST_TARGET_LDAP_READER_PASSWORD: slapd.password, TEST_TARGET_LDAP_PASSWORD: slapd.adminPassword, TEST_TARGET_SCIM_TOKEN: 'scim-token', TEST_TARGET_WEBHOOK_SECRET: secret });
  ldap = new LdapClient({ url: slapd.url });
  await ldap.bind(slapd.adminDn, slapd.adminPassword);
  await h.startWorker();
  version = await h.apply({
    version: 1,
    customers: [
      customer('acme', [ldapTarget(), scimTarget(), hookTarget()]),
      customer('enrol', [hookTarget({ mode: 'enrollment' })]),
      customer('handson', [hookTarget({ mode: 'manual' })]),
      customer('queued', [hookTarget({ mode: 'queue' })]),
      customer('flaky', [hookTarget({ mode: 'queue-on-error' })]),
      customer('off', [hookTarget({ mode: 'disabled' })]),
      customer('refused', [hookTarget()]),
      customer('retried', [hookTarget()]),
      customer('chain', [hookTarget(), scimTarget()]),
      customer('dir', [ldapTarget({ name: 'writeback', entry: 'user', baseDn: PEOPLE, fields: { telephoneNumber: '{{number}}', roomNumber: '{{siteDisplayName}}', preferredLanguage: '{{siteLocale}}' } })], (c) => {
        // The site's locale reaches a target through {{siteLocale}}: Dallas's differs from Chicago's (en-US).
        (c.sites as { name: string; locale?: string }[]).find((site) => site.name === 'dallas')!.locale = 'es-US';
        c.sources = [
          {
            name: 'directory',
            type: 'ldap',
            userType: 'ldap',
            url: slapd.url,
            bindDn: slapd.bindDn,
            passwordEnv: 'TEST_TARGET_LDAP_READER_PASSWORD',
            baseDn: PEOPLE,
            attributeMap: { departmentNumber: 'department' },
          },
        ];
      }),
      customer('grouped', [hookTarget({ group: { attribute: 'title', op: 'equals', value: 'Engineer' } }), hookTarget({ name: 'everyone' })]),
    ],
  });
}, 120_000);

afterAll(async () => {
  await ldap?.unbind().catch(() => undefined);
  await h?.close();
  await Promise.all([slapd?.close(), scim?.close(), hooks?.close()]);
});

describe('automatic targets: LDAP write-back, SCIM and a webhook, in order', () => {
  it('provisions each user into every target before they count as provisioned, one entry each', async () => {
    h.writeFile('acme.csv', acmeCsv([ada, bob]));
    const report = await sync('acme');
    expect(report.counts).toMatchObject({ provisioned: 2, failed: 0 });
    expect(await h.userRow('acme', 'E1')).toMatchObject({ status: 'provisioned', site: 'chicago' });

    const entries = await ldapEntries();
    expect(entries.map((e) => e.uid).sort()).toEqual(['ada', 'bob']);
    const adaEntry = entries.find((e) => e.uid === 'ada')!;
    expect(adaEntry).toMatchObject({ cn: 'Ada Lovelace', sn: 'Lovelace', mail: 'ada@acme.example', l: 'chicago', employeeNumber: 'E1' });
    expect(adaEntry.telephoneNumber).toMatch(/^\+1312555010[01]$/);

    expect(scim.users().map((u) => u.userName).sort()).toEqual(['ada@acme.example', 'bob@acme.example']);
    const adaScim = scim.users().find((u) => u.userName === 'ada@acme.example')!;
    expect(adaScim).toMatchObject({ externalId: 'E1', name: expect.objectContaining({ givenName: 'Ada', familyName: 'Lovelace' }) });
    expect(adaScim.phoneNumbers).toEqual([expect.objectContaining({ value: adaEntry.telephoneNumber, type: 'work' })]);

    const events = eventsFor('acme', 'E1');
    expect(events.map((e) => e.type)).toEqual(['user.provisioned']);
    expect(events[0]!.data.fields).toMatchObject({ username: 'ada', site: 'chicago', number: adaEntry.telephoneNumber, profile: 'engineering' });

    // Each push is in the user's log, in the configured order.
    const log = await targetLog('acme', 'E1');
    expect(log.map((e) => `${e.action}:${e.status}`)).toEqual(['target phones:succeeded', 'target saas:succeeded', 'target events:succeeded']);
    expect(log[0]!.subject).toMatch(/^provisioned: created uid=ada,ou=phones/);
    expect(await state('acme', 'saas', 'E1')).toMatchObject({ status: 'provisioned', remote_id: adaScim.id, last_event: 'provisioned' });
    const shown = JSON.parse((await h.cli('user', 'ada', '--customer', 'acme', '--json')).out);
    expect(shown.targets.map((t: { target: string; status: string }) => `${t.target}:${t.status}`)).toEqual(['events:provisioned', 'phones:provisioned', 'saas:provisioned']);
    expect((await h.cli('user', 'ada', '--customer', 'acme')).out).toMatch(/targets +events: provisioned \(last provisioned /);
  });

  it('a change reaches every target once; a pass with nothing new calls no target', async () => {
    h.writeFile('acme.csv', acmeCsv([{ ...ada, title: 'Principal Engineer' }, bob]));
    expect((await sync('acme', 'update')).counts).toMatchObject({ provisioned: 1 });
    const adaScim = scim.users().find((u) => u.userName === 'ada@acme.example')!;
    expect(adaScim.title).toBe('Principal Engineer');
    expect(eventsFor('acme', 'E1').map((e) => e.type)).toEqual(['user.provisioned', 'user.changed']);
    expect(scim.requests.filter((r) => r.method === 'PATCH')).toHaveLength(1);

    // Retrying the user runs the pass again: every target already holds this, none is called.
    const before = scim.requests.length;
    const logged = (await targetLog('acme', 'E1')).length;
    expect((await h.cli('retry', 'ada', '--customer', 'acme')).code).toBe(0);
    const log = await eventually(() => targetLog('acme', 'E1'), (entries) => entries.length >= logged + 3);
    expect(scim.requests.length).toBe(before);
    expect(eventsFor('acme', 'E1')).toHaveLength(2);
    expect(log.slice(-3).map((e) => e.subject)).toEqual([
      'unchanged: the target holds this already',
      'unchanged: the target holds this already',
      'unchanged: the target holds this already',
    ]);
  });

  it('a move changes the number at every target; the webhook says moved', async () => {
    h.writeFile('acme.csv', acmeCsv([{ ...ada, title: 'Principal Engineer', city: 'Dallas' }, bob]));
    expect((await sync('acme', 'update')).counts).toMatchObject({ moved: 1, provisioned: 1 });
    const entry = (await ldapEntries()).find((e) => e.uid === 'ada')!;
    expect(entry).toMatchObject({ telephoneNumber: '+12145550100', l: 'dallas' });
    expect(scim.users().find((u) => u.userName === 'ada@acme.example')!.phoneNumbers).toEqual([expect.objectContaining({ value: '+12145550100' })]);
    const moved = eventsFor('acme', 'E1').at(-1)!;
    expect(moved).toMatchObject({ type: 'user.moved', data: { fields: expect.objectContaining({ site: 'dallas', number: '+12145550100' }) } });
    expect(await state('acme', 'phones', 'E1')).toMatchObject({ site: 'dallas', last_event: 'moved' });
  });

  it('reprovision all calls every target again and finds nothing to change: no second entry anywhere', async () => {
    const result = await h.cli('target', 'reprovision', 'saas', '--customer', 'acme', '--wait', '--json');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.out)).toMatchObject({ succeeded: 0, unchanged: 2, failed: 0 });
    // Drift at the target is repaired: someone changed Bob's title by hand.
    const bobScim = scim.users().find((u) => u.userName === 'bob@acme.example')!;
    await fetch(`${scim.url}/Users/${bobScim.id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/scim+json', authorization: 'Bearer scim-token' },
      body: JSON.stringify({ schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: [{ op: 'replace', path: 'title', value: 'Hacker' }] }),
    });
    const again = JSON.parse((await h.cli('target', 'reprovision', 'saas', '--customer', 'acme', '--wait', '--json')).out);
    expect(again).toMatchObject({ succeeded: 1, unchanged: 1, failed: 0 });
    expect(scim.users().find((u) => u.userName === 'bob@acme.example')!.title).toBe('Engineer');
    expect(scim.users()).toHaveLength(2);
    expect(await ldapEntries()).toHaveLength(2);
  });

  it('a deleted user is removed from every target, in reverse order', async () => {
    h.writeFile('acme.csv', acmeCsv([bob]));
    expect((await h.sync('acme', 'hr', version, { mode: 'delete', allowDeletes: 1 })).counts).toMatchObject({ removed: 1 });
    expect((await ldapEntries()).map((e) => e.uid)).toEqual(['bob']);
    expect(scim.users().map((u) => u.userName)).toEqual(['bob@acme.example']);
    expect(eventsFor('acme', 'E1').at(-1)).toMatchObject({ type: 'user.deprovisioned' });
    const log = await targetLog('acme', 'E1');
    expect(log.slice(-3).map((e) => e.action)).toEqual(['target events', 'target saas', 'target phones']);
    expect(await state('acme', 'phones', 'E1')).toMatchObject({ status: 'deprovisioned', pushed: null });
  });
});

describe("write-back to the users' own directory entries", () => {
  const entry = async (filter: string) => {
    const { searchEntries } = await ldap.search(PEOPLE, { filter, attributes: ['uid', 'telephoneNumber', 'roomNumber', 'preferredLanguage', 'l'] });
    return searchEntries[0]!;
  };

  it('writes the assigned number and site to the entry the user came from, follows it when renamed, and writes nothing it does not own', async () => {
    const syncDir = (mode: 'add' | 'update') => h.sync('dir', 'directory', version, { mode });
    expect((await syncDir('add')).counts).toMatchObject({ provisioned: 2, failed: 0 });
    const grace = await entry('(uid=grace)');
    expect(grace).toMatchObject({ roomNumber: 'Chicago', preferredLanguage: 'en-US', l: 'Chicago' });
    expect(String(grace.telephoneNumber)).toMatch(/^\+1312555010[01]$/);
    const uuid = String((await ldap.search(PEOPLE, { filter: '(uid=grace)', attributes: ['entryUUID'] })).searchEntries[0]!.entryUUID);
    expect(await h.userRow('dir', uuid)).toMatchObject({ status: 'provisioned', site: 'chicago' });

    // Renamed and moved to Dallas in the directory: the update finds her by entryUUID and writes her new number there.
    await slapd.ldapmodify(`dn: uid=grace,${PEOPLE}\nchangetype: modrdn\nnewrdn: uid=ghopper\ndeleteoldrdn: 1\n\ndn: uid=ghopper,${PEOPLE}\nchangetype: modify\nreplace: l\nl: Dallas\n`);
    // Both entries changed since the add (it wrote their numbers): Alan's pass finds the directory holding what it should, and writes nothing.
    expect((await syncDir('update')).counts).toMatchObject({ imported: 2, moved: 1, provisioned: 2 });
    const alan = String((await ldap.search(PEOPLE, { filter: '(uid=alan)', attributes: ['entryUUID'] })).searchEntries[0]!.entryUUID);
    expect((await targetLog('dir', alan)).map((e) => e.subject)).toEqual([expect.stringMatching(/^provisioned: modified uid=alan,/), 'unchanged: the target holds this already']);
    expect(await entry('(uid=ghopper)')).toMatchObject({ telephoneNumber: '+12145550100', roomNumber: 'Dallas', preferredLanguage: 'es-US', l: 'Dallas' });
    expect((await targetLog('dir', uuid)).at(-1)?.subject).toBe('moved: modified uid=ghopper,ou=people,dc=flowthru,dc=test: roomNumber, telephoneNumber, preferredLanguage');
  });
});

describe('modes', () => {
  it('enrollment: only the first provision', async () => {
    h.writeFile('enrol.csv', acmeCsv([ada]));
    await sync('enrol');
    h.writeFile('enrol.csv', acmeCsv([{ ...ada, title: 'Boss' }]));
    await sync('enrol', 'update');
    expect(eventsFor('enrol', 'E1').map((e) => e.type)).toEqual(['user.provisioned']);
    // It hears when the user leaves: an enrolled account does not outlive its person.
    h.writeFile('enrol.csv', acmeCsv([bob]));
    await h.sync('enrol', 'hr', version, { mode: 'delete', allowDeletes: 1 });
    expect(eventsFor('enrol', 'E1').map((e) => e.type)).toEqual(['user.provisioned', 'user.deprovisioned']);
  });

  it('manual: nothing until an operator provisions the user', async () => {
    h.writeFile('handson.csv', acmeCsv([ada]));
    expect((await sync('handson')).counts).toMatchObject({ provisioned: 1 });
    expect(eventsFor('handson', 'E1')).toEqual([]);
    const pushed = await h.cli('target', 'provision', 'events', 'ada', '--customer', 'handson', '--wait', '--json');
    expect(pushed.code).toBe(0);
    expect(JSON.parse(pushed.out)).toMatchObject({ status: 'succeeded', runs: 1 });
    expect(eventsFor('handson', 'E1').map((e) => e.type)).toEqual(['user.provisioned']);
  });

  it('queue: the pipeline hands the push over and goes on; the job delivers it', async () => {
    h.writeFile('queued.csv', acmeCsv([ada]));
    hooks.hang(3_000);
    expect((await sync('queued')).counts).toMatchObject({ provisioned: 1 });
    expect(await h.userRow('queued', 'E1')).toMatchObject({ status: 'provisioned' });
    const user = await h.userRow('queued', 'E1');
    const result: TargetJobResult = await h.client.workflow.getHandle(targetJobWorkflowId('queued', 'events', user.id)).result();
    expect(result).toMatchObject({ status: 'succeeded', runs: 1 });
    expect(eventsFor('queued', 'E1').map((e) => e.type)).toEqual(['user.provisioned']);
  });

  it('queue-on-error: tried inline; down, the user completes and the queued job delivers once', async () => {
    h.writeFile('flaky.csv', acmeCsv([ada]));
    hooks.respondWith([503, 503]);
    expect((await sync('flaky')).counts).toMatchObject({ provisioned: 1, failed: 0 });
    const user = await h.userRow('flaky', 'E1');
    expect(user.status).toBe('provisioned');
    const result: TargetJobResult = await h.client.workflow.getHandle(targetJobWorkflowId('flaky', 'events', user.id)).result();
    expect(result.status).toBe('succeeded');
    const delivered = eventsFor('flaky', 'E1');
    expect(delivered).toHaveLength(1);
    // The same event each time: the receiver saw its id three times (two refusals, one delivery).
    const id = hooks.events().find((d) => d.event.data.customer === 'flaky')!.id;
    expect(hooks.deliveryCount(id)).toBe(3);
  });

  it('disabled: never called', async () => {
    h.writeFile('off.csv', acmeCsv([ada]));
    expect((await sync('off')).counts).toMatchObject({ provisioned: 1 });
    expect(eventsFor('off', 'E1')).toEqual([]);
    expect(await targetLog('off', 'E1')).toEqual([]);
  });

  it("a push's first try is a local activity; the policy's retries are regular activities, after the target's Retry-After", async () => {
    // Ada's first try is refused with 429 (Retry-After 2 s), her first retry with 503; Bob's first try succeeds.
    h.writeFile('retried.csv', acmeCsv([ada]));
    hooks.respondWith([429], { 'retry-after': '2' });
    hooks.respondWith([503]);
    expect((await sync('retried')).counts).toMatchObject({ provisioned: 1, failed: 0 });
    expect(eventsFor('retried', 'E1')).toHaveLength(1);
    const id = hooks.events().find((d) => d.event.data.customer === 'retried')!.id;
    expect(hooks.deliveryCount(id)).toBe(3);
    expect((await targetLog('retried', 'E1')).map((e) => e.status)).toEqual(['succeeded']);

    const history = async (externalId: string) => (await h.client.workflow.getHandle(onboardWorkflowId('retried', 'hr', externalId)).fetchHistory()).events ?? [];
    const pushes = (events: Awaited<ReturnType<typeof history>>) => ({
      local: events.filter((e) => {
        const marker = e.markerRecordedEventAttributes;
        const data = marker?.details?.data?.payloads?.[0]?.data;
        return marker?.markerName === 'core_local_activity' && data != null && /pushToTarget|pushFirstTries/.test(Buffer.from(data).toString());
      }).length,
      regular: events.filter((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'pushToTarget').map((e) => e.activityTaskScheduledEventAttributes!.retryPolicy!.maximumAttempts),
      timers: events.filter((e) => e.timerStartedEventAttributes).map((e) => Number(e.timerStartedEventAttributes!.startToFireTimeout!.seconds)),
    });
    // Ada: the local try, the Retry-After's 2 s, then the regular activity that was refused once and delivered.
    // maxRetries 3 (the default): three retries after the local try.
    expect(pushes(await history('E1'))).toEqual({ local: 1, regular: [3], timers: [2] });

    // A first try that succeeds is one marker in the history, no trip through the task queue.
    h.writeFile('retried.csv', acmeCsv([ada, bob]));
    expect((await sync('retried')).counts).toMatchObject({ provisioned: 1 });
    expect(pushes(await history('E2'))).toEqual({ local: 1, regular: [], timers: [] });
  });

  it("a pass's first tries are one local activity; one that fails stops it, is retried by its policy, and the next target follows", async () => {
    const carol = { ...ada, employee_id: 'C1', login: 'carol', mail: 'carol@acme.example', given_name: 'Carol' };
    const dave = { ...ada, employee_id: 'C2', login: 'dave', mail: 'dave@acme.example', given_name: 'Dave' };
    // The webhook (first) refuses Carol's first try: the batch stops there, its retry is a regular
    // activity, then SCIM (second) gets its own first try, then the targets step.
    h.writeFile('chain.csv', acmeCsv([carol]));
    hooks.respondWith([503]);
    expect((await sync('chain')).counts).toMatchObject({ provisioned: 1, failed: 0 });
    expect((await targetLog('chain', 'C1')).map((e) => [e.action, e.status])).toEqual([
      ['target events', 'succeeded'],
      ['target saas', 'succeeded'],
    ]);
    const carols = await activities('C1');
    expect(carols.local.filter((a) => /Target|Tries/.test(a))).toEqual(['pushFirstTries', 'pushToTarget', 'finishTargets']);
    expect(carols.regular).toEqual(['pushToTarget']);
    expect(await h.userRow('chain', 'C1')).toMatchObject({ status: 'provisioned' });

    // Every first try succeeds: one local activity pushes both and settles the user.
    h.writeFile('chain.csv', acmeCsv([carol, dave]));
    expect((await sync('chain')).counts).toMatchObject({ provisioned: 1 });
    const daves = await activities('C2');
    expect(daves.local.filter((a) => /Target|Tries/.test(a))).toEqual(['pushFirstTries']);
    expect(daves.regular).toEqual([]);
    expect((await targetLog('chain', 'C2')).map((e) => [e.action, e.status])).toEqual([
      ['target events', 'succeeded'],
      ['target saas', 'succeeded'],
    ]);
    const user = await h.userRow('chain', 'C2');
    expect(user).toMatchObject({ status: 'provisioned' });
    const steps = await h.db.selectFrom('transaction_log').select(['action', 'status']).where('user_id', '=', user.id).where('action', '=', 'targets').execute();
    expect(steps).toEqual([{ action: 'targets', status: 'succeeded' }]);
  });

  it('a batch of first tries that fails as a whole (its answer lost after the pushes) falls back to each push on its own: nothing delivered twice, the user settled', async () => {
    const erin = { ...ada, employee_id: 'C3', login: 'erin', mail: 'erin@acme.example', given_name: 'Erin' };
    // The worker loses pushFirstTries' answer after it ran: both pushes were delivered and their
    // state recorded, the user not yet settled (the database went away as it answered, say).
    let lost = 0;
    const faulty: ActivityInboundCallsInterceptor = {
      async execute(input, next) {
        const result = await next(input);
        if (Context.current().info.activityType !== 'pushFirstTries') return result;
        lost += 1;
        throw new Error('connection terminated (injected after the pushes)');
      },
    };
    await h.stopWorkers();
    await h.startWorker({ interceptors: { activity: [() => ({ inbound: faulty })] } });
    try {
      h.writeFile('chain.csv', acmeCsv([erin]));
      const scimWrites = () => scim.requests.filter((r) => r.method !== 'GET' && r.path.includes('/Users')).length;
      const writesBefore = scimWrites();
      expect((await sync('chain')).counts).toMatchObject({ provisioned: 1, failed: 0 });
      expect(lost).toBe(1);

      const { local } = await activities('C3');
      // The batch failed; each push tried again on its own (found nothing to change), then the targets step.
      expect(local.filter((a) => /Target|Tries/.test(a))).toEqual(['pushFirstTries', 'pushToTarget', 'pushToTarget', 'finishTargets']);
      expect(eventsFor('chain', 'C3')).toHaveLength(1);
      expect(scimWrites() - writesBefore).toBe(1);
      expect(scim.users().filter((u) => u.userName === 'erin@acme.example')).toHaveLength(1);
      // One log entry per push (the second try of a key writes none), and the user provisioned.
      expect((await targetLog('chain', 'C3')).map((e) => [e.action, e.status])).toEqual([
        ['target events', 'succeeded'],
        ['target saas', 'succeeded'],
      ]);
      expect(await h.userRow('chain', 'C3')).toMatchObject({ status: 'provisioned', status_reason: null });
      expect(await state('chain', 'saas', 'C3')).toMatchObject({ status: 'provisioned' });
    } finally {
      await h.stopWorkers();
      await h.startWorker();
    }
  });

  it('a 4xx fails the user for good with the reason; the administrators hear once', async () => {
    h.writeFile('refused.csv', acmeCsv([ada, bob]));
    hooks.respondWith([410, 410], {}, 'gone for good');
    const report = await sync('refused');
    expect(report.counts).toMatchObject({ provisioned: 0, failed: 2 });
    const user = await h.userRow('refused', 'E1');
    expect(user).toMatchObject({ status: 'failed' });
    expect(user.status_reason).toMatch(/^target events: .*410.*gone for good/);
    const jobs = JSON.parse((await h.cli('target', 'jobs', '--customer', 'refused', '--status', 'failed', '--json')).out);
    expect(jobs).toHaveLength(2);
    expect(jobs[0]).toMatchObject({ target: 'events', status: 'failed', error: expect.stringContaining('410') });
    const mails = h.smtp.to('noc@acme.example').filter((m) => m.subject?.includes('target events failed'));
    expect(mails).toHaveLength(2);
    expect(mails[0]!.text).toContain('flowthru target provision events');

    // Retried while the receiver still refuses: failed again, the same episode, no second email.
    hooks.respondWith([410, 410], {}, 'gone for good');
    expect((await h.cli('retry', '--status', 'failed', '--customer', 'refused')).code).toBe(0);
    await eventually(() => targetLog('refused', 'E2'), (log) => log.filter((e) => e.status === 'failed').length >= 2);
    await eventually(() => h.userRow('refused', 'E2'), (u) => u.status === 'failed');
    expect(h.smtp.to('noc@acme.example').filter((m) => m.subject?.includes('target events failed'))).toHaveLength(2);

    // Pushed by hand while it still refuses: the push fails, and the CLI's exit status says so.
    hooks.respondWith([410], {}, 'gone for good');
    const refusedPush = await h.cli('target', 'provision', 'events', 'ada', '--customer', 'refused', '--wait');
    expect(refusedPush.code).toBe(1);
    expect(refusedPush.out).toMatch(/^Target events, ada: failed: /);

    // Fixed at the receiver: pushing Ada to the target is her retry; Bob's pipeline runs again.
    const pushed = JSON.parse((await h.cli('target', 'provision', 'events', 'ada', '--customer', 'refused', '--wait', '--json')).out);
    expect(pushed).toMatchObject({ status: 'succeeded', summary: expect.stringMatching(/^provisioned: POST/) });
    expect(await h.userRow('refused', 'E1')).toMatchObject({ status: 'provisioned', status_reason: null });
    expect((await h.cli('retry', 'bob', '--customer', 'refused')).code).toBe(0);
    expect(await eventually(() => h.userRow('refused', 'E2'), (u) => u.status === 'provisioned')).toMatchObject({ status: 'provisioned' });
    expect(await state('refused', 'events', 'E1')).toMatchObject({ status: 'provisioned', failure_episode: 1, failing_since: null });
  });
});

describe('provisioning group', () => {
  it('a user who leaves the group is deprovisioned from that target only', async () => {
    h.writeFile('grouped.csv', acmeCsv([ada]));
    await sync('grouped');
    expect(await state('grouped', 'events', 'E1')).toMatchObject({ status: 'provisioned' });
    h.writeFile('grouped.csv', acmeCsv([{ ...ada, title: 'Manager' }]));
    expect((await sync('grouped', 'update')).counts).toMatchObject({ provisioned: 1 });
    expect(await state('grouped', 'events', 'E1')).toMatchObject({ status: 'deprovisioned', last_event: 'deprovisioned' });
    expect(await state('grouped', 'everyone', 'E1')).toMatchObject({ status: 'provisioned', last_event: 'changed' });
    // Back and forth: each change is a new event (a new webhook-id), though its content was seen before.
    for (const title of ['Engineer', 'Manager']) {
      h.writeFile('grouped.csv', acmeCsv([{ ...ada, title }]));
      await sync('grouped', 'update');
    }
    const everyone = hooks.events().filter((d) => d.event.data.customer === 'grouped' && d.event.data.target === 'everyone');
    expect(everyone.map((d) => `${d.event.type}:${d.event.data.fields.title}`)).toEqual(['user.provisioned:Engineer', 'user.changed:Manager', 'user.changed:Engineer', 'user.changed:Manager']);
    expect(new Set(everyone.map((d) => d.id)).size).toBe(4);
    // target list: a target without a group applies to everyone, and says so.
    const listed = (await h.cli('target', 'list', '--customer', 'grouped')).out.split('\n');
    expect(listed.find((line) => / events /.test(line))).toMatch(/ its group /);
    expect(listed.find((line) => / everyone +webhook /.test(line))).toMatch(/ automatic +everyone /);
    expect(JSON.parse((await h.cli('target', 'list', '--customer', 'grouped', '--json')).out)).toMatchObject([{ target: 'events', group: true }, { target: 'everyone', group: false }]);
  });
});

describe('queued jobs', () => {
  it('five rapid pushes for one user collapse into one run with the newest data', async () => {
    const user = await h.userRow('handson', 'E1');
    await h.db
      .updateTable('users')
      .set({ attributes: { ...(user.attributes as object), title: 'Fifth' } })
      .where('id', '=', user.id)
      .execute();
    const runs = await Promise.all(Array.from({ length: 5 }, () => h.cli('target', 'provision', 'events', 'ada', '--customer', 'handson')));
    expect(runs.map((r) => r.code)).toEqual([0, 0, 0, 0, 0]);
    const result: TargetJobResult = await h.client.workflow.getHandle(targetJobWorkflowId('handson', 'events', user.id)).result();
    expect(result).toMatchObject({ status: 'succeeded', runs: 1 });
    const events = eventsFor('handson', 'E1');
    expect(events).toHaveLength(2);
    expect(events.at(-1)).toMatchObject({ type: 'user.changed' });
  });

  it('an operator cancels a job that is retrying', async () => {
    hooks.respondWith([503, 503, 503, 503, 503, 503]);
    expect((await h.cli('target', 'provision', 'events', 'ada', '--customer', 'handson')).code).toBe(0);
    const user = await h.userRow('handson', 'E1');
    await eventually(() => state('handson', 'events', 'E1'), (s) => s?.status === 'pending' && s.attempts > 0);
    const cancelled = await h.cli('target', 'cancel', 'events', 'ada', '--customer', 'handson');
    expect(cancelled).toMatchObject({ code: 0, out: expect.stringContaining('Cancelled') });
    const result: TargetJobResult = await h.client.workflow.getHandle(targetJobWorkflowId('handson', 'events', user.id)).result();
    expect(result.status).toBe('cancelled');
    expect(await state('handson', 'events', 'E1')).toMatchObject({ status: 'cancelled' });
    hooks.respondWith([]);
  });
});
