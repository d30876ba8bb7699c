import type { ChildProcess } from 'node:child_process';
import { Client as LdapClient } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reprovisionWorkflowId } from '../../src/workflows/config.js';
import { reprovisionProgressQuery, type ReprovisionCounts } from '../../src/workflows/messages.js';
import { acmeCsv, oneSiteCustomer, PipelineHarness } from '../support/pipeline.js';
import { startScimServer, type ScimServer } from '../support/scim-server.js';
import { startSlapd, type Slapd } from '../support/slapd.js';

/*
 * Crash safety with targets (SPEC §6): a worker killed with SIGKILL while it pushes users into
 * LDAP and SCIM, and while it reprovisions them all, leaves every target with exactly one entry
 * per provisioned user.
 */

const USERS = 1_000;
const PHONES = 'ou=phones,dc=flowthru,dc=test';

let h: PipelineHarness;
let slapd: Slapd;
let scim: ScimServer;
let ldap: LdapClient;
let version: number;

beforeAll(async () => {
  h = await PipelineHarness.create();
  slapd = await startSlapd({ entries: [{ dn: PHONES, attributes: { objectClass: ['top', 'organizationalUnit'], ou: 'phones' } }], sizeLimit: 5_000 });
  scim = await startScimServer({ token: 'crash-token' });
  Object.assign(process.env, { TEST_CRASH_LDAP_PASSWORD: slapd.adminPassword, TEST_CRASH_SCIM_TOKEN: 'crash-token' });
  ldap = new LdapClient({ url: slapd.url });
  await ldap.bind(slapd.adminDn, slapd.adminPassword);
  const customer = oneSiteCustomer('pushed', { csvPath: `${h.dir}/pushed.csv`, smtpPort: h.smtp.port, range: { from: '10000', to: String(10000 + USERS * 2) } });
  version = await h.apply({
    version: 1,
    customers: [
      {
        ...customer,
        settings: { ...customer.settings, welcomeEmail: { enabled: false } },
        targets: [
          { name: 'phones', kind: 'ldap', url: slapd.url, bindDn: slapd.adminDn, passwordEnv: 'TEST_CRASH_LDAP_PASSWORD', entry: 'managed', baseDn: PHONES, retryInterval: '1s', timeoutMs: 2_000 },
          { name: 'saas', kind: 'scim', url: scim.url, tokenEnv: 'TEST_CRASH_SCIM_TOKEN', retryInterval: '1s', timeoutMs: 2_000, fields: { userName: '{{username}}', externalId: '{{externalId}}', phoneNumber: '{{number}}' } },
        ],
      },
    ],
  });
}, 120_000);

afterAll(async () => {
  await ldap?.unbind().catch(() => undefined);
  await h?.close();
  await Promise.all([slapd?.close(), scim?.close()]);
});

async function kill(child: ChildProcess): Promise<void> {
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
}

const count = async (table: 'users' | 'target_state', where: (q: any) => any) => Number((await where(h.db.selectFrom(table as 'users').select((eb) => eb.fn.countAll<string>().as('n'))).executeTakeFirstOrThrow()).n); // eslint-disable-line @typescript-eslint/no-explicit-any
const provisioned = () => count('users', (q) => q.where('status', '=', 'provisioned'));

async function everyTargetHoldsEachUserOnce(): Promise<void> {
  const { searchEntries } = await ldap.search(PHONES, { scope: 'one', filter: '(objectClass=inetOrgPerson)', attributes: ['uid', 'telephoneNumber'], sizeLimit: 0 });
  expect(searchEntries).toHaveLength(USERS);
  expect(new Set(searchEntries.map((e) => String(e.uid))).size).toBe(USERS);
  const users = scim.users();
  expect(users).toHaveLength(USERS);
  expect(new Set(users.map((u) => u.externalId)).size).toBe(USERS);
  // The number each target holds is the user's.
  const numbers = await h.db
    .selectFrom('number_inventory')
    .innerJoin('users', 'users.id', 'number_inventory.user_id')
    .select(['users.username', 'number_inventory.number'])
    .where('number_inventory.status', '=', 'used')
    .execute();
  const byUser = new Map(numbers.map((n) => [n.username, n.number]));
  expect(searchEntries.every((e) => byUser.get(String(e.uid)) === String(e.telephoneNumber))).toBe(true);
  expect(users.every((u) => byUser.get(u.userName) === (u.phoneNumbers as { value: string }[])[0]!.value)).toBe(true);
}

describe('crash safety with targets', () => {
  it(`a worker killed twice during the pushes of a ${USERS}-user sync leaves one entry per user in every target`, async () => {
    h.writeFile('pushed.csv', acmeCsv(Array.from({ length: USERS }, (_, i) => ({ employee_id: `K${i}`, login: `k${i}`, mail: `k${i}@example.com`, given_name: `K${i}` }))));
    let child = await h.workerProcess('error');
    const handle = await h.startSync('pushed', 'hr', version, { window: 100, pageSize: 200 });
    await expect.poll(provisioned, { timeout: 120_000, interval: 100 }).toBeGreaterThanOrEqual(150);
    await kill(child);
    child = await h.workerProcess('error');
    await expect.poll(provisioned, { timeout: 120_000, interval: 100 }).toBeGreaterThanOrEqual(500);
    await kill(child);
    expect(await provisioned()).toBeLessThan(USERS);
    await h.startWorker();
    const report = await handle.result();
    expect(report.counts).toMatchObject({ seen: USERS, provisioned: USERS, failed: 0 });
    await everyTargetHoldsEachUserOnce();
  }, 400_000);

  it(`reprovision all of ${USERS} users survives two worker kills and counts each user once`, async () => {
    await h.stopWorkers();
    let child = await h.workerProcess('error');
    const workflowId = reprovisionWorkflowId('pushed', 'saas');
    expect((await h.cli('target', 'reprovision', 'saas', '--customer', 'pushed', '--window', '20', '--json')).code).toBe(0);
    const handle = h.client.workflow.getHandle(workflowId);
    const done = async () => {
      const progress = await handle.query(reprovisionProgressQuery).catch(() => null);
      return progress ? progress.counts.succeeded + progress.counts.unchanged + progress.counts.failed : 0;
    };
    await expect.poll(done, { timeout: 120_000, interval: 100 }).toBeGreaterThanOrEqual(200);
    await kill(child);
    child = await h.workerProcess('error');
    await expect.poll(done, { timeout: 120_000, interval: 100 }).toBeGreaterThanOrEqual(600);
    await kill(child);
    await h.startWorker();
    const counts: ReprovisionCounts = await handle.result();
    // Every user pushed again; SCIM already held each one as it should: nothing written, nothing doubled.
    expect(counts).toEqual({ succeeded: 0, unchanged: USERS, failed: 0 });
    await everyTargetHoldsEachUserOnce();
  }, 400_000);
});
