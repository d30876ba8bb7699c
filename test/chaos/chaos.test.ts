import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import { Attribute, Change, Client as LdapClient } from 'ldapts';
import type { StartSyncOptions } from '../../src/client/sync.js';
import type { SyncReport } from '../../src/workflows/messages.js';
import type { syncSource } from '../../src/workflows/sync-source.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../../src/adapters/db/connection.js';
import { migrateToLatest } from '../../src/adapters/db/migrate.js';
import { freePort } from '../../src/demo/ports.js';
import { startTemporalDevServer } from '../../src/demo/temporal-dev-server.js';
import { escapeDnValue } from '../../src/adapters/sources/ldap-escape.js';
import { WORKER_TUNING } from '../../src/worker/index.js';
import { startFakeGraph, type FakeGraph } from '../support/fake-graph.js';
import { acmeCsv, PipelineHarness } from '../support/pipeline.js';
import { startSlapd, type Slapd } from '../support/slapd.js';
import { PrivatePostgres } from '../support/private-postgres.js';

/*
 * The chaos suite (SPEC §6): syncs under faults — workers killed with SIGKILL, a worker lost for
 * good, SMTP refusing connections, slapd gone in the middle of a read, Graph throttling every fifth
 * request and expiring tokens, and kills during an update sync that moves users and a delete sync
 * — each ending with the same invariant check over `users --json`, `numbers --json` and the
 * captured mail. `npm run chaos` runs it at full size (2,000 users, 5 kills, a 60 s SMTP outage);
 * `./dev.sh test` runs it small. It prints a table and writes test-artifacts/chaos.md.
 */

const FULL = process.env.FLOWTHRU_CHAOS === 'full';
const N = Number(process.env.FLOWTHRU_CHAOS_USERS ?? (FULL ? 2_000 : 150));
const KILLS = FULL ? 5 : 2;
const SMTP_OUTAGE_MS = FULL ? 60_000 : 8_000;
const TIMEOUT = FULL ? 1_800_000 : 300_000;
const FINAL_STATUSES = ['provisioned', 'unplaced', 'unmatched', 'blocked', 'failed'] as const;
const FINAL = new Set<string>(FINAL_STATUSES);

interface Row {
  scenario: string;
  users: number;
  seconds: number;
  faults: string;
  passed: number;
  failed: string[];
  /** Messages sent again with their Message-ID after a kill. */
  resends: number;
}
const rows: Row[] = [];

let h: PipelineHarness;
let slapd: Slapd;
let graph: FakeGraph;
let version: number;
const workers = new Set<ChildProcess>();

/** A person of the directory: most are engineers in North or South; some match no site, no profile, or have no address. */
function person(customer: string, i: number, flipped = false) {
  const north = i % 2 === 1 !== flipped;
  return {
    employee_id: `P${String(i).padStart(5, '0')}`,
    login: `${customer}${i}`,
    mail: i % 20 === 0 ? '' : `p${i}@${customer}.example`,
    given_name: `P${i}`,
    department: i % 10 === 0 ? 'Marketing' : 'Engineering',
    city: i % 15 === 0 ? 'Nowhere' : north ? 'North' : 'South',
  };
}

function customer(name: string, source: Record<string, unknown>, smtpPort = h.smtp.port) {
  // Each site has numbers for most, not all, of its engineers: some users end blocked.
  const perSite = Math.floor(N * 0.4);
  const base = 100_000; // number ranges are per customer
  return {
    name,
    settings: {
      flowThrough: { enabled: true, addSync: true, updateSync: true, criteria: 'ftp' },
      welcomeEmail: { enabled: true, from: 'IT <it@chaos.example>', subject: 'Welcome {{firstName}}' },
      smtp: { host: '127.0.0.1', port: smtpPort, security: 'none' },
      deleteThreshold: N,
    },
    criteria: [
      { name: 'north', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'North' } },
      { name: 'south', usage: 'move', when: { attribute: 'city', op: 'equals', value: 'South' } },
      { name: 'eng', usage: 'ftp', when: { attribute: 'department', op: 'equals', value: 'Engineering' } },
    ],
    profiles: [{ name: 'line', line: { numberFrom: 'site' }, services: [{ kind: 'phone', model: '8865' }] }],
    ftpCriteria: [{ name: 'ftp', rules: [{ criteria: 'eng', profile: 'line' }] }],
    sources: [{ name: 'hr', ...source }],
    sites: [
      { name: 'north', moveCriteria: { csv: 'north', ldap: 'north', microsoft: 'north' }, numberRanges: [{ from: String(base), to: String(base + perSite - 1) }] },
      { name: 'south', moveCriteria: { csv: 'south', ldap: 'south', microsoft: 'south' }, numberRanges: [{ from: String(base + 50_000), to: String(base + 50_000 + perSite - 1) }] },
    ],
  };
}

const csvSource = (name: string, dir = h.dir) => ({
  type: 'csv',
  userType: 'csv',
  path: join(dir, `${name}.csv`),
  externalId: 'employee_id',
  attributeMap: { employee_id: 'employeeId', login: 'username', mail: 'email', given_name: 'firstName', department: 'department', city: 'city' },
});

async function startWorker(x: PipelineHarness = h): Promise<ChildProcess> {
  const child = await x.workerProcess('error');
  workers.add(child);
  child.once('exit', () => workers.delete(child));
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
}

async function userCount(name: string, x: PipelineHarness = h): Promise<number> {
  const row = await x.db
    .selectFrom('users')
    .innerJoin('customers', 'customers.id', 'users.customer_id')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('customers.name', '=', name)
    .where('users.status', 'in', [...FINAL_STATUSES, 'deleted'])
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Waits until `name` has at least `n` users in a final status (or the sync is over). */
async function untilUsers(name: string, n: number, done: () => boolean, x: PipelineHarness = h): Promise<void> {
  while (!done() && (await userCount(name, x).catch(() => 0)) < n) await new Promise((r) => setTimeout(r, 100));
}

/** Waits until every pipeline of the customer has settled: no user mid-pipeline, no email waiting. */
async function quiet(name: string, x: PipelineHarness = h): Promise<void> {
  const deadline = Date.now() + (FULL ? 600_000 : 120_000);
  let calm = 0;
  for (;;) {
    const busy = await x.db
      .selectFrom('users')
      .innerJoin('customers', 'customers.id', 'users.customer_id')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('customers.name', '=', name)
      .where('users.status', 'not in', [...FINAL_STATUSES, 'deleted', 'imported'])
      .executeTakeFirstOrThrow();
    const pending = await x.db
      .selectFrom('email_outbox')
      .innerJoin('customers', 'customers.id', 'email_outbox.customer_id')
      .select((eb) => eb.fn.countAll<string>().as('n'))
      .where('customers.name', '=', name)
      .where('email_outbox.status', 'not in', ['sent', 'failed'])
      .executeTakeFirstOrThrow();
    // Pipelines may still be at work after the sync reported: a hand-over retried after a kill
    // gives a pipeline the same change twice, and it runs a second (idempotent) pass. Quiet means
    // no pipeline running but the blocked ones, and no user mid-pass, twice in a row.
    const running = await x.client.workflow.count(`FlowthruCustomer = '${name}' AND WorkflowType = 'onboardUser' AND ExecutionStatus = 'Running' AND FlowthruStatus != 'blocked'`);
    if (Number(busy.n) === 0 && Number(pending.n) === 0 && running.count === 0) {
      if (++calm >= 2) return;
    } else calm = 0;
    if (Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

interface Expected {
  /** The source's users: each must be on record in a final status. */
  readonly active: Set<string>;
  /** Users gone from the source: each must be offboarded. */
  readonly deleted?: Set<string>;
  /** How many resends of a message (its Message-ID again) the scenario's kills may cause. */
  readonly resendsAllowed: number;
}

interface UserJson {
  externalId: string;
  username: string | null;
  email: string | null;
  site: string | null;
  status: string;
  numbers: string[];
}
interface NumberJson {
  number: string;
  status: string;
  user: string | null;
}

/**
 * The invariants, the same after every scenario: one user per key; no number held twice; the
 * inventory agrees with the holders; one welcome email per provisioned user with an address and no
 * Message-ID twice; every user of the source accounted for. Returns [checked, failures].
 */
async function invariants(name: string, expected: Expected, x: PipelineHarness = h): Promise<[number, string[], number]> {
  const failures: string[] = [];
  let checked = 0;
  const check = (ok: boolean, what: string) => {
    checked++;
    if (!ok) failures.push(what);
  };
  const usersOut = await x.cli('users', '--customer', name, '--json');
  const numbersOut = await x.cli('numbers', '--customer', name, '--json');
  const users = JSON.parse(usersOut.out) as UserJson[];
  const numbers = JSON.parse(numbersOut.out) as NumberJson[];

  const ids = users.map((u) => u.externalId);
  check(new Set(ids).size === ids.length, 'one user per key');
  const active = users.filter((u) => u.status !== 'deleted');
  const unaccounted = [...expected.active].filter((id) => !active.some((u) => u.externalId === id));
  check(unaccounted.length === 0, `every user of the source accounted for (missing: ${unaccounted.slice(0, 5).join(', ')})`);
  const odd = active.filter((u) => !FINAL.has(u.status));
  check(odd.length === 0, `every user in a final status (${odd.slice(0, 5).map((u) => `${u.externalId}:${u.status}`).join(', ')})`);
  if (expected.deleted) {
    const notDeleted = [...expected.deleted].filter((id) => users.find((u) => u.externalId === id)?.status !== 'deleted');
    check(notDeleted.length === 0, `every user gone from the source offboarded (${notDeleted.slice(0, 5).join(', ')})`);
  }
  check(users.length === expected.active.size + (expected.deleted?.size ?? 0), `no user the source does not have (${users.length} on record)`);

  const held = numbers.filter((n) => n.status === 'used' || n.status === 'reserved');
  check(new Set(held.map((n) => n.number)).size === held.length, 'no number held twice');
  check(held.every((n) => n.status === 'used'), 'no reservation left behind');
  const holders = new Map<string, string[]>();
  for (const n of held) holders.set(n.user ?? '', [...(holders.get(n.user ?? '') ?? []), n.number]);
  const disagree = users.filter((u) => JSON.stringify([...u.numbers].sort()) !== JSON.stringify([...(holders.get(u.username ?? u.externalId) ?? [])].sort()));
  check(disagree.length === 0, `inventory agrees with holders (${disagree.slice(0, 5).map((u) => u.externalId).join(', ')})`);
  // A provisioned user has one line; a user an update moved keeps their old line while blocked for a
  // new one (a move never leaves a user with none); everyone else holds none.
  const lines = (u: UserJson) => (u.status === 'provisioned' ? [1] : u.status === 'blocked' ? [0, 1] : [0]);
  const wrongLines = users.filter((u) => !lines(u).includes(u.numbers.length));
  check(wrongLines.length === 0, `one line per provisioned user, at most one for a blocked one, none for the others (${wrongLines.slice(0, 5).map((u) => `${u.externalId}:${u.status}:${u.numbers.length}`).join(', ')})`);

  // One welcome per user: one Message-ID per recipient, never one Message-ID for two. SMTP has no
  // idempotency: a worker killed between the server's "250 OK" and the outbox's commit resends
  // that message, with the same Message-ID (mail clients drop such duplicates), so a scenario with
  // kills may count resends, at most the emails in flight at each kill.
  const mail = x.smtp.messages.filter((m) => m.to.some((to) => to.endsWith(`@${name}.example`)));
  const idsByRecipient = new Map<string, Set<string | undefined>>();
  const recipientsById = new Map<string | undefined, Set<string>>();
  for (const m of mail) {
    for (const to of m.to) {
      idsByRecipient.set(to, (idsByRecipient.get(to) ?? new Set()).add(m.messageId));
      recipientsById.set(m.messageId, (recipientsById.get(m.messageId) ?? new Set()).add(to));
    }
  }
  const twice = [...idsByRecipient].filter(([, ids]) => ids.size > 1);
  check(twice.length === 0, `no one welcomed twice: one Message-ID per recipient (${twice.slice(0, 5).map(([to]) => to).join(', ')})`);
  check([...recipientsById.values()].every((to) => to.size === 1), 'no Message-ID for two recipients');
  const resends = mail.length - recipientsById.size;
  check(resends <= expected.resendsAllowed, `resends of one message (same Message-ID) only after a kill: ${resends}, at most ${expected.resendsAllowed}`);
  const unwelcomed = active.filter((u) => u.status === 'provisioned' && u.email && !idsByRecipient.has(u.email));
  check(unwelcomed.length === 0, `every provisioned user with an address welcomed (${unwelcomed.slice(0, 5).map((u) => u.externalId).join(', ')})`);
  return [checked, failures, resends];
}

async function scenario(name: string, faults: () => string, run: () => Promise<Expected>, customerName: string, users: number, x: PipelineHarness = h): Promise<void> {
  const started = performance.now();
  const expected = await run();
  await quiet(customerName, x);
  const seconds = (performance.now() - started) / 1000;
  const [checked, failed, resends] = await invariants(customerName, expected, x);
  rows.push({ scenario: name, users, seconds, faults: faults(), passed: checked - failed.length, failed, resends });
  expect(failed).toEqual([]);
}

/** Emails one kill may leave sent but not recorded: the worker's concurrent local activities. */
const IN_FLIGHT = WORKER_TUNING.maxConcurrentLocalActivityExecutions;

const graphId = (i: number) => `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`;
const graphUser = (p: ReturnType<typeof person>, i: number) => ({
  id: graphId(i),
  userPrincipalName: `${p.login}@cloud.example`,
  ...(p.mail ? { mail: p.mail } : {}),
  givenName: p.given_name,
  department: p.department,
  city: p.city,
});

const idsOf = (people: { employee_id: string }[]) => new Set(people.map((p) => p.employee_id));

/**
 * The second act of a scenario: the source changes — a third of the people move to the other site,
 * a tenth leave, a twentieth are new — and one sync of every mode (add, update, delete) runs under
 * the same fault.
 */
function changesOf(name: string) {
  const all = Array.from({ length: N }, (_, i) => person(name, i + 1, (i + 1) % 3 === 0));
  return {
    stay: all.filter((_, i) => (i + 1) % 10 !== 1),
    gone: all.filter((_, i) => (i + 1) % 10 === 1),
    added: Array.from({ length: Math.floor(N / 20) }, (_, i) => person(name, N + i + 1)),
  };
}

/** A sync's result, asked again while the Temporal server is away. */
async function outcome(x: PipelineHarness, workflowId: string): Promise<SyncReport> {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    try {
      return await x.client.workflow.getHandle<typeof syncSource>(workflowId).result();
    } catch (error) {
      if (error instanceof WorkflowFailedError || Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  }
}

/**
 * The CSV customer `name` changes (changesOf: a tenth leave, a twentieth join, a third change
 * city), then changeScenario runs it under `fault`: everyone who stays or joins active, the
 * leavers offboarded, no message sent twice.
 */
async function csvChangeScenario(label: string, name: string, v: number, fault: (done: () => boolean) => Promise<string>, x: PipelineHarness = h): Promise<void> {
  const { stay, gone, added } = changesOf(name);
  x.writeFile(`${name}.csv`, acmeCsv([...stay, ...added]));
  await changeScenario(label, name, v, fault, async () => ({ active: idsOf([...stay, ...added]), deleted: idsOf(gone), resendsAllowed: 0 }), x);
}

/**
 * Runs the add + update + delete sync of `name` with `fault` injected while it runs (`fault`
 * returns what it did, for the table), then the invariants against `expected`.
 */
async function changeScenario(
  label: string,
  name: string,
  v: number,
  fault: (done: () => boolean) => Promise<string>,
  expected: () => Promise<Expected>,
  x: PipelineHarness = h,
  extra: Partial<StartSyncOptions> = {},
  users = N + Math.floor(N / 20),
): Promise<void> {
  let did = '';
  await scenario(
    `add + update + delete sync, ${label}`,
    () => did,
    async () => {
      const handle = await x.startSync(name, 'hr', v, { mode: 'add', modes: ['add', 'update', 'delete'], ...extra });
      let done = false;
      const result = outcome(x, handle.workflowId).finally(() => (done = true));
      did = await fault(() => done);
      let report = await result;
      if (report.counts.removed === 0 && report.problems.some((p) => p.message.includes('cannot tell who left'))) {
        // A directory search restarted part-way cannot tell who left: by design that sync
        // offboards nobody, and the next one, reading whole, does.
        report = await outcome(x, (await x.startSync(name, 'hr', v, { mode: 'add', modes: ['add', 'update', 'delete'], ...extra })).workflowId);
        did += '; the restarted search could not tell who left (nobody offboarded, by design): the next sync did';
      }
      expect(report.counts.removed).toBeGreaterThan(0);
      return expected();
    },
    name,
    users,
    x,
  );
}

/** Users of a customer by username: an LDAP source's external ids are entryUUIDs. */
async function idsByUsername(name: string): Promise<Map<string, string>> {
  const rows = await h.db.selectFrom('users').innerJoin('customers', 'customers.id', 'users.customer_id').select(['users.username', 'users.external_id']).where('customers.name', '=', name).execute();
  return new Map(rows.map((r) => [r.username ?? '', r.external_id]));
}

beforeAll(async () => {
  h = await PipelineHarness.create();
  const people = Array.from({ length: N }, (_, i) => person('dir', i + 1));
  slapd = await startSlapd({
    entries: people.map((p) => ({
      dn: `uid=${escapeDnValue(p.login)},ou=people,dc=flowthru,dc=test`,
      attributes: { objectClass: ['top', 'person', 'organizationalPerson', 'inetOrgPerson'], uid: p.login, cn: p.given_name, sn: 'Chaos', givenName: p.given_name, ...(p.mail ? { mail: p.mail } : {}), ou: p.department, l: p.city },
    })),
    sizeLimit: N + 10,
  });
  graph = await startFakeGraph({ users: Array.from({ length: N }, (_, i) => graphUser(person('cloud', i + 1), i + 1)) });
  Object.assign(process.env, { CHAOS_LDAP_PASSWORD: slapd.password, CHAOS_GRAPH_SECRET: graph.clientSecret });
  version = await h.apply({
    version: 1,
    customers: [
      customer('kills', csvSource('kills')),
      customer('lost', csvSource('lost')),
      customer('smtp', csvSource('smtp')),
      customer('dir', { type: 'ldap', userType: 'ldap', url: slapd.url, bindDn: slapd.bindDn, passwordEnv: 'CHAOS_LDAP_PASSWORD', baseDn: 'ou=people,dc=flowthru,dc=test', attributeMap: { ou: 'department', l: 'city' }, pageSize: Math.max(10, Math.floor(N / 10)) }),
      customer('cloud', { type: 'entra', userType: 'microsoft', tenantId: graph.tenantId, clientId: graph.clientId, clientSecretEnv: 'CHAOS_GRAPH_SECRET', authorityUrl: graph.url, graphUrl: graph.url, caFile: graph.caFile }),
    ],
  });
  await startWorker();
}, 120_000);

afterAll(async () => {
  for (const child of [...workers]) await kill(child);
  const header = '| scenario | users | wall time | faults injected | invariants passed | failed | resent after a kill |\n|---|---:|---:|---|---:|---|---:|';
  const lines = rows.map((r) => `| ${r.scenario} | ${r.users} | ${r.seconds.toFixed(1)} s | ${r.faults} | ${r.passed} | ${r.failed.length === 0 ? 0 : r.failed.join('; ')} | ${r.resends} |`);
  const table = [`Chaos suite, ${FULL ? 'full' : 'small'} run, ${new Date().toISOString().slice(0, 10)}`, '', header, ...lines].join('\n');
  console.log(`\n${table}\n`);
  mkdirSync('test-artifacts', { recursive: true });
  writeFileSync(join('test-artifacts', `chaos-${FULL ? 'full' : 'small'}.md`), `${table}\n`);
  await graph?.stop();
  await slapd?.close();
  await h?.close();
});

describe(`chaos (${FULL ? 'full' : 'small'}: ${N} users)`, () => {
  it(`a worker SIGKILLed ${KILLS} times during an add sync, restarted each time`, async () => {
    const people = Array.from({ length: N }, (_, i) => person('kills', i + 1));
    h.writeFile('kills.csv', acmeCsv(people));
    let kills = 0;
    await scenario(
      'add sync, worker SIGKILLed',
      () => `${kills} × SIGKILL`,
      async () => {
        const handle = await h.startSync('kills', 'hr', version);
        let done = false;
        const result = handle.result().finally(() => (done = true));
        for (let k = 1; k <= KILLS; k++) {
          await untilUsers('kills', Math.floor((k * N) / (KILLS + 1)), () => done);
          if (done) break;
          await kill([...workers][0]!);
          kills++;
          await startWorker();
        }
        await result;
        return { active: idsOf(people), resendsAllowed: kills * IN_FLIGHT };
      },
      'kills',
      N,
    );
  }, TIMEOUT);

  it('two workers, one killed for good: the other finishes the work', async () => {
    const people = Array.from({ length: N }, (_, i) => person('lost', i + 1));
    h.writeFile('lost.csv', acmeCsv(people));
    const second = await startWorker();
    let killed = 0;
    await scenario(
      'two workers, one lost',
      () => `${killed} of 2 workers SIGKILLed, not restarted`,
      async () => {
        const handle = await h.startSync('lost', 'hr', version);
        let done = false;
        const result = handle.result().finally(() => (done = true));
        await untilUsers('lost', Math.floor(N / 3), () => done);
        if (!done) {
          await kill([...workers].find((w) => w !== second)!);
          killed++;
        }
        await result;
        return { active: idsOf(people), resendsAllowed: killed * IN_FLIGHT };
      },
      'lost',
      N,
    );
  }, TIMEOUT);

  it(`SMTP refusing connections for ${SMTP_OUTAGE_MS / 1000} s during a sync: every email delivered once after`, async () => {
    const people = Array.from({ length: N }, (_, i) => person('smtp', i + 1));
    h.writeFile('smtp.csv', acmeCsv(people));
    let outage = 0;
    await scenario(
      'add sync, SMTP down',
      () => `SMTP refused connections for ${outage / 1000} s`,
      async () => {
        const handle = await h.startSync('smtp', 'hr', version);
        let done = false;
        const result = handle.result().finally(() => (done = true));
        await untilUsers('smtp', Math.floor(N / 4), () => done);
        const port = h.smtp.port;
        await h.smtp.stop();
        const began = Date.now();
        await new Promise((r) => setTimeout(r, SMTP_OUTAGE_MS));
        await h.smtp.start(port);
        outage = Date.now() - began;
        await result;
        return { active: idsOf(people), resendsAllowed: 0 };
      },
      'smtp',
      N,
    );

    await csvChangeScenario('SMTP down', 'smtp', version, async () => {
      const port = h.smtp.port;
      await h.smtp.stop();
      const began = Date.now();
      await new Promise((r) => setTimeout(r, SMTP_OUTAGE_MS));
      await h.smtp.start(port);
      return `SMTP refused connections for ${(Date.now() - began) / 1000} s`;
    });
  }, TIMEOUT);

  it('slapd stopped and restarted during an LDAP read', async () => {
    const people = Array.from({ length: N }, (_, i) => person('dir', i + 1));
    let stops = 0;
    await scenario(
      'LDAP sync, slapd restarted',
      () => `slapd stopped ${stops} × for 3 s mid-read`,
      async () => {
        const handle = await h.startSync('dir', 'hr', version);
        let done = false;
        const result = handle.result().finally(() => (done = true));
        await untilUsers('dir', Math.floor(N / 4), () => done);
        if (!done) {
          await slapd.stop();
          stops++;
          await new Promise((r) => setTimeout(r, 3_000));
          await slapd.start();
        }
        await result;
        // The LDAP source's external id is the entry's entryUUID: account for users by username.
        return { resendsAllowed: 0, active: new Set((await h.db.selectFrom('users').innerJoin('customers', 'customers.id', 'users.customer_id').select('users.external_id').where('customers.name', '=', 'dir').execute()).map((u) => u.external_id)) };
      },
      'dir',
      N,
    );
    const usernames = await h.db.selectFrom('users').innerJoin('customers', 'customers.id', 'users.customer_id').select('users.username').where('customers.name', '=', 'dir').execute();
    expect(new Set(usernames.map((u) => u.username))).toEqual(new Set(people.map((p) => p.login)));

    // The directory changes: a third move (their l), a tenth are deleted.
    const { stay, gone } = changesOf('dir');
    const ldap = new LdapClient({ url: slapd.url });
    await ldap.bind(slapd.adminDn, slapd.adminPassword);
    try {
      for (const p of stay.filter((_, i) => i % 3 === 0)) {
        const dn = `uid=${escapeDnValue(p.login)},ou=people,dc=flowthru,dc=test`;
        await ldap.modify(dn, new Change({ operation: 'replace', modification: new Attribute({ type: 'l', values: [p.city] }) }));
      }
      for (const p of gone) await ldap.del(`uid=${escapeDnValue(p.login)},ou=people,dc=flowthru,dc=test`);
    } finally {
      await ldap.unbind();
    }
    const ids = await idsByUsername('dir');
    await changeScenario(
      'slapd restarted',
      'dir',
      version,
      async (done) => {
        await new Promise((r) => setTimeout(r, 200));
        if (done()) return 'slapd stopped 0 × (the sync was over)';
        await slapd.stop();
        await new Promise((r) => setTimeout(r, 3_000));
        await slapd.start();
        return 'slapd stopped 1 × for 3 s mid-sync';
      },
      async () => ({ active: new Set(stay.map((p) => ids.get(p.login)!)), deleted: new Set(gone.map((p) => ids.get(p.login)!)), resendsAllowed: 0 }),
      h,
      {},
      N,
    );
  }, TIMEOUT);

  it('Graph throttling every fifth request and expiring tokens during an Entra sync', async () => {
    let expired = 0;
    await scenario(
      'Entra sync, throttled, tokens expired',
      () => `every 5th Graph request 429 (Retry-After 1 s); tokens expired ${expired} ×`,
      async () => {
        graph.throttleEvery(5, 1);
        const handle = await h.startSync('cloud', 'hr', version, { pageSize: Math.max(10, Math.floor(N / 10)) });
        let done = false;
        const result = handle.result().finally(() => (done = true));
        await untilUsers('cloud', Math.floor(N / 3), () => done);
        graph.expireTokensNow();
        expired++;
        await result.finally(() => graph.throttleEvery(0));
        return { resendsAllowed: 0, active: new Set(Array.from({ length: N }, (_, i) => graphId(i + 1))) };
      },
      'cloud',
      N,
    );

    // The tenant changes: a third move, a tenth are deleted, a twentieth are new.
    const { stay, gone, added } = changesOf('cloud');
    const index = (p: { employee_id: string }) => Number(p.employee_id.slice(1));
    for (const p of stay.filter((_, i) => i % 3 === 0)) graph.updateUser(graphId(index(p)), { city: p.city });
    for (const p of gone) graph.removeUser(graphId(index(p)), 'deleted');
    for (const p of added) graph.addUser(graphUser(p, index(p)));
    await changeScenario(
      'Graph throttled, tokens expired',
      'cloud',
      version,
      async () => {
        graph.throttleEvery(5, 1);
        await new Promise((r) => setTimeout(r, 300));
        graph.expireTokensNow();
        return 'every 5th Graph request 429 (Retry-After 1 s); tokens expired 1 ×';
      },
      async () => {
        graph.throttleEvery(0);
        return { active: new Set([...stay, ...added].map((p) => graphId(index(p)))), deleted: new Set(gone.map((p) => graphId(index(p)))), resendsAllowed: 0 };
      },
      h,
      { pageSize: Math.max(10, Math.floor(N / 10)) },
    );
  }, TIMEOUT);

  it('workers SIGKILLed during an update sync that moves users, and during a delete sync', async () => {
    // A third of the add scenario's people move to the other site.
    const moved = Array.from({ length: N }, (_, i) => person('kills', i + 1, (i + 1) % 3 === 0));
    h.writeFile('kills.csv', acmeCsv(moved));
    let kills = 0;
    await scenario(
      'update sync (moves), worker SIGKILLed',
      () => `${kills} × SIGKILL`,
      async () => {
        const handle = await h.startSync('kills', 'hr', version, { mode: 'update' });
        let done = false;
        const result = handle.result().finally(() => (done = true));
        for (let k = 1; k <= KILLS && !done; k++) {
          await new Promise((r) => setTimeout(r, 300));
          if (done) break;
          await kill([...workers][0]!);
          kills++;
          await startWorker();
        }
        const report = await result;
        expect(report.counts.moved + report.counts.kept).toBeGreaterThan(0);
        return { active: idsOf(moved), resendsAllowed: (kills + KILLS) * IN_FLIGHT };
      },
      'kills',
      N,
    );

    const stay = moved.filter((_, i) => (i + 1) % 10 !== 1);
    const gone = moved.filter((_, i) => (i + 1) % 10 === 1);
    h.writeFile('kills.csv', acmeCsv(stay));
    let deleteKills = 0;
    await scenario(
      'delete sync, worker SIGKILLed',
      () => `${deleteKills} × SIGKILL`,
      async () => {
        const handle = await h.startSync('kills', 'hr', version, { mode: 'delete' });
        let done = false;
        const result = handle.result().finally(() => (done = true));
        for (let k = 1; k <= Math.min(2, KILLS) && !done; k++) {
          await new Promise((r) => setTimeout(r, 300));
          if (done) break;
          await kill([...workers][0]!);
          deleteKills++;
          await startWorker();
        }
        const report = await result;
        expect(report.counts.removed).toBe(gone.length);
        return { active: idsOf(stay), deleted: idsOf(gone), resendsAllowed: (deleteKills + 2 * KILLS) * IN_FLIGHT };
      },
      'kills',
      stay.length + gone.length,
    );
  }, TIMEOUT);

  it('PostgreSQL restarted during a sync', async () => {
    // A PostgreSQL of the scenario's own, so restarting it touches no other test.
    const server = await PrivatePostgres.start();
    const admin = new pg.Client({ connectionString: server.url() });
    await admin.connect();
    await admin.query('create database chaos');
    await admin.end();
    const db = createDatabase(server.url('chaos'));
    await migrateToLatest(db);
    const x = await PipelineHarness.create({ database: { url: server.url('chaos'), db, drop: () => db.destroy() } });
    const mine: ChildProcess[] = [];
    try {
      const v = await x.apply({ version: 1, customers: [customer('pgr', csvSource('pgr', x.dir), x.smtp.port)] });
      const people = Array.from({ length: N }, (_, i) => person('pgr', i + 1));
      x.writeFile('pgr.csv', acmeCsv(people));
      mine.push(await startWorker(x));
      let restarts = 0;
      await scenario(
        'add sync, PostgreSQL restarted',
        () => `${restarts} × PostgreSQL fast restart (every session ended)`,
        async () => {
          const handle = await x.startSync('pgr', 'hr', v);
          let done = false;
          const result = handle.result().finally(() => (done = true));
          await untilUsers('pgr', Math.floor(N / 4), () => done, x);
          if (!done) {
            await server.restart();
            restarts++;
          }
          await result;
          // A message the server took while the database was away is recorded once it is back (the
          // email activity waits for it): no resend expected.
          return { active: idsOf(people), resendsAllowed: 0 };
        },
        'pgr',
        N,
        x,
      );
      await csvChangeScenario(
        'PostgreSQL restarted',
        'pgr',
        v,
        async (done) => {
          await new Promise((r) => setTimeout(r, 300));
          if (done()) return 'PostgreSQL restarted 0 × (the sync was over)';
          await server.restart();
          return '1 × PostgreSQL fast restart (every session ended)';
        },
        x,
      );
    } finally {
      for (const child of mine) await kill(child);
      await x.close();
      await server.stop();
    }
  }, TIMEOUT);

  it('the Temporal server killed and restarted on its file-backed store during a sync', async () => {
    const port = await freePort();
    const dbFile = join(mkdtempSync(join(tmpdir(), 'flowthru-chaos-temporal-')), 'temporal.db');
    const start = () => startTemporalDevServer({ port, uiPort: 0, headless: true, dbFile });
    let server = await start();
    const x = await PipelineHarness.create({ temporalAddress: server.address });
    const mine: ChildProcess[] = [];
    try {
      const v = await x.apply({ version: 1, customers: [customer('tmp', csvSource('tmp', x.dir), x.smtp.port)] });
      const people = Array.from({ length: N }, (_, i) => person('tmp', i + 1));
      x.writeFile('tmp.csv', acmeCsv(people));
      mine.push(await startWorker(x));
      let kills = 0;
      await scenario(
        'add sync, Temporal server SIGKILLed',
        () => `Temporal dev server SIGKILLed ${kills} ×, restarted on its SQLite file after 2 s`,
        async () => {
          const handle = await x.startSync('tmp', 'hr', v);
          await untilUsers('tmp', Math.floor(N / 4), () => false, x);
          await server.kill();
          kills++;
          await new Promise((r) => setTimeout(r, 2_000));
          server = await start();
          // The client's long poll fails while the server is away: ask again until it answers.
          await outcome(x, handle.workflowId);
          return { active: idsOf(people), resendsAllowed: 0 };
        },
        'tmp',
        N,
        x,
      );
      await csvChangeScenario(
        'Temporal server SIGKILLed',
        'tmp',
        v,
        async (done) => {
          await new Promise((r) => setTimeout(r, 300));
          if (done()) return 'Temporal killed 0 × (the sync was over)';
          await server.kill();
          await new Promise((r) => setTimeout(r, 2_000));
          server = await start();
          return 'Temporal dev server SIGKILLed 1 ×, restarted on its SQLite file after 2 s';
        },
        x,
      );
    } finally {
      for (const child of mine) await kill(child);
      await x.close();
      await server.stop();
    }
  }, TIMEOUT);
});
