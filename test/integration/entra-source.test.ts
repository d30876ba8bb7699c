import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { PermanentError } from '../../src/adapters/errors.js';
import {
  clearEntraTokenCache,
  ENTRA_USER_ATTRIBUTES,
  entraDefaultAttributeMap,
  GraphUnavailableError,
  readEntraPage,
  readSubscribedSkus,
  type EntraCursor,
  type EntraPage,
  type EntraReadOptions,
  type EntraSourceConfig,
  type EntraWatermark,
} from '../../src/adapters/sources/entra.js';
import { MAX_FAULT_RETRIES, MAX_THROTTLE_RETRIES } from '../../src/adapters/sources/graph-client.js';
import { mapRecords } from '../../src/adapters/sources/index.js';
import { toSourceUser } from '../../src/adapters/sources/records.js';
import { makeClientCertificate, startFakeGraph, trustingFetch, type FakeGraph, type GraphUser } from '../support/fake-graph.js';
import { rejection } from '../support/assert.js';

const SECRET_ENV = 'ENTRA_TEST_CLIENT_SECRET';

function person(i: number, extra: Partial<GraphUser> = {}): GraphUser {
  return {
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    displayName: `Person ${i}`,
    givenName: `Given${i}`,
    surname: `Surname${i}`,
    mail: `person${i}@contoso.com`,
    userPrincipalName: `person${i}@contoso.onmicrosoft.com`,
    city: i % 2 === 0 ? 'Chicago' : 'Dallas',
    country: 'US',
    department: i % 3 === 0 ? 'Sales' : 'Engineering',
    jobTitle: 'Engineer',
    businessPhones: [`+1 312 555 ${String(1000 + i)}`],
    mobilePhone: i === 1 ? null : `+1 312 555 ${String(2000 + i)}`,
    employeeId: `E${i}`,
    usageLocation: 'US',
    accountEnabled: true,
    employeeType: i === 1 ? 'Contractor' : 'Employee',
    onPremisesExtensionAttributes: { extensionAttribute3: `CC-${i}`, extensionAttribute15: i === 2 ? 'vip' : null },
    ...extra,
  };
}

const USERS = Array.from({ length: 7 }, (_, i) => person(i + 1));

let fake: FakeGraph;
let sleeps: number[];
let heartbeats: number;

function source(overrides: Partial<EntraSourceConfig> = {}): EntraSourceConfig {
  return {
    name: 'contoso-entra',
    type: 'entra',
    userType: 'microsoft',
    includeDisabled: false,
    attributeMap: { employeeType: 'attributes.employeeType', extensionAttribute3: 'attributes.costCentre' },
    tenantId: fake.tenantId,
    clientId: fake.clientId,
    clientSecretEnv: SECRET_ENV,
    authorityUrl: fake.url,
    graphUrl: fake.url,
    caFile: fake.caFile,
    ...overrides,
  };
}

function options(extra: Partial<EntraReadOptions> = {}): EntraReadOptions {
  return {
    env: { [SECRET_ENV]: fake.clientSecret },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    heartbeat: () => heartbeats++,
    // The identity library's own retries of a failed token request, without their 1 s waits.
    tokenRetryDelayMs: 5,
    ...extra,
  };
}

/** Every page of one delta round. */
async function readRound(src: EntraSourceConfig, pageSize: number, watermark: EntraWatermark | null = null, opts: Partial<EntraReadOptions> = {}) {
  const pages: EntraPage[] = [];
  let cursor: EntraCursor | null = null;
  do {
    const page = await readEntraPage(src, cursor, pageSize, options({ watermark, ...opts }));
    pages.push(page);
    cursor = page.next;
  } while (cursor);
  const last = pages.at(-1)!;
  return {
    pages,
    records: pages.flatMap((p) => p.records),
    removed: pages.flatMap((p) => p.removed),
    problems: pages.flatMap((p) => p.problems),
    watermark: last.watermark,
  };
}


beforeAll(async () => {
  fake = await startFakeGraph({ users: USERS, skus: [] });
});
afterAll(async () => fake?.stop());
beforeEach(() => {
  clearEntraTokenCache();
  sleeps = [];
  heartbeats = 0;
});

describe('the Entra ID source: delta reads', () => {
  let watermark: EntraWatermark;

  it('reads every user once across several pages, with mapped and extension attributes', async () => {
    const before = fake.requests.length;
    const round = await readRound(source(), 3);
    expect(round.pages.map((p) => p.records.length)).toEqual([3, 3, 1]);
    expect(round.records.map((r) => r.attributes.externalId)).toEqual(USERS.map((u) => u.id));
    expect(round.removed).toEqual([]);
    expect(round.problems).toEqual([]);
    expect(round.pages.every((p) => !p.restartedFull)).toBe(true);
    expect(round.pages.slice(0, -1).every((p) => p.watermark === null)).toBe(true);
    expect(round.watermark?.deltaLink).toMatch(/\/v1\.0\/users\/delta\?\$deltatoken=/);
    watermark = round.watermark!;

    const first = round.records[0]!;
    expect(first.at).toBe(`user ${USERS[0]!.id}`);
    expect(first.attributes).toEqual({
      externalId: USERS[0]!.id,
      id: USERS[0]!.id,
      displayName: 'Person 1',
      givenName: 'Given1',
      surname: 'Surname1',
      mail: 'person1@contoso.com',
      userPrincipalName: 'person1@contoso.onmicrosoft.com',
      city: 'Dallas',
      country: 'US',
      department: 'Engineering',
      jobTitle: 'Engineer',
      businessPhones: ['+1 312 555 1001'],
      employeeId: 'E1',
      usageLocation: 'US',
      accountEnabled: 'true',
      employeeType: 'Contractor',
      extensionAttribute3: 'CC-1',
    });
    expect(round.records[1]!.attributes.extensionAttribute15).toBe('vip');

    // What the sync does with it: the default map under the configured one.
    const map = { ...entraDefaultAttributeMap(), ...source().attributeMap };
    const user = toSourceUser(first, map, 'externalId');
    expect(user.externalId).toBe(USERS[0]!.id);
    expect(user.user).toMatchObject({
      username: 'person1@contoso.onmicrosoft.com',
      email: 'person1@contoso.com',
      firstName: 'Given1',
      lastName: 'Surname1',
      displayName: 'Person 1',
      department: 'Engineering',
      city: 'Dallas',
      country: 'US',
      title: 'Engineer',
      employeeId: 'E1',
      phone: '+1 312 555 1001',
      usageLocation: 'US',
    });
    expect(user.user.mobile).toBeUndefined();
    expect(user.user.attributes).toMatchObject({ costCentre: 'CC-1', employeeType: 'Contractor' });

    // $select: the base list plus the attribute map's Graph properties, not flattened names.
    const graph = fake.requests.slice(before).filter((r) => r.path.startsWith('/v1.0/'));
    expect(graph).toHaveLength(3);
    const select = new URL(graph[0]!.path, fake.url).searchParams.get('$select')!.split(',');
    expect(select).toEqual([...ENTRA_USER_ATTRIBUTES, 'employeeType']);
    expect(graph.every((r) => r.prefer === 'odata.maxpagesize=3' && r.status === 200)).toBe(true);
    expect(graph.slice(1).every((r) => r.path.includes('$skiptoken='))).toBe(true);
    // The authority and Graph of the configuration, not Microsoft's.
    const authority = fake.requests.slice(before).filter((r) => r.path.startsWith(`/${fake.tenantId}/`));
    expect(authority.map((r) => `${r.method} ${r.path.split('?')[0]}`)).toEqual([
      `GET /${fake.tenantId}/v2.0/.well-known/openid-configuration`,
      `POST /${fake.tenantId}/oauth2/v2.0/token`,
    ]);
  });

  it('caps the page size at Graph\'s 999', async () => {
    const before = fake.requests.length;
    const page = await readEntraPage(source(), null, 5000, options());
    expect(page.records).toHaveLength(7);
    expect(page.next).toBeNull();
    expect(fake.requests.slice(before).find((r) => r.path.startsWith('/v1.0/'))?.prefer).toBe('odata.maxpagesize=999');
  });

  it('from the deltaLink watermark returns only the changed users (complete) and the removed ids', async () => {
    const [u1, u2, u3] = USERS.map((u) => u.id);
    fake.updateUser(u1!, { city: 'Austin' });
    fake.removeUser(u2!);
    fake.addUser(person(8));
    fake.updateUser(u3!, { department: null });
    const round = await readRound(source(), 2, watermark);
    expect(round.records.map((r) => r.attributes.externalId).sort()).toEqual([u1, u3, person(8).id].sort());
    expect(round.removed).toEqual([u2]);
    expect(round.pages.every((p) => !p.restartedFull)).toBe(true);
    const changed = round.records.find((r) => r.attributes.externalId === u1)!;
    // Every selected property, not only the changed one.
    expect(changed.attributes).toMatchObject({ city: 'Austin', mail: 'person1@contoso.com', extensionAttribute3: 'CC-1' });
    expect(round.records.find((r) => r.attributes.externalId === u3)!.attributes.department).toBeUndefined();
    expect(fake.graphRequests().at(-round.pages.length)!.path).toContain('$deltatoken=');

    // Nothing changed since: an empty round with a new watermark.
    const quiet = await readRound(source(), 2, round.watermark);
    expect(quiet.records).toEqual([]);
    expect(quiet.removed).toEqual([]);
    expect(quiet.watermark).not.toBeNull();
    watermark = quiet.watermark!;
    fake.addUser(person(2));
  });

  it('restarts as a full read when the delta token is stale (syncStateNotFound)', async () => {
    fake.expireDeltaTokens();
    const round = await readRound(source(), 3, watermark);
    expect(round.pages.length).toBeGreaterThan(1);
    expect(round.pages.every((p) => p.restartedFull)).toBe(true);
    expect(round.pages.slice(0, -1).every((p) => p.next?.full === true)).toBe(true);
    expect(round.records).toHaveLength(8);
    expect(round.removed).toEqual([]);
    const graph = fake.graphRequests().slice(-(round.pages.length + 1));
    expect(graph[0]).toMatchObject({ status: 400 });
    expect(graph[0]!.path).toContain('$deltatoken=');
    expect(graph[1]!.path).toContain('$select=');

    // The new watermark works again.
    const next = await readRound(source(), 3, round.watermark);
    expect(next.pages.every((p) => !p.restartedFull)).toBe(true);
    expect(next.records).toEqual([]);
    watermark = next.watermark!;
  });

  it('restarts as a full read when Graph answers 410 Gone for an expired delta link', async () => {
    fake.expireDeltaTokens('gone');
    const round = await readRound(source(), 3, watermark);
    expect(round.pages.every((p) => p.restartedFull)).toBe(true);
    expect(round.records).toHaveLength(8);
    expect(round.removed).toEqual([]);
    const graph = fake.graphRequests().slice(-(round.pages.length + 1));
    expect(graph[0]).toMatchObject({ status: 410 });
    expect(graph[0]!.path).toContain('$deltatoken=');
    expect(graph[1]!.path).toContain('$select=');
    // The new watermark works again.
    const next = await readRound(source(), 3, round.watermark);
    expect(next.pages.every((p) => !p.restartedFull)).toBe(true);
    expect(next.records).toEqual([]);
    watermark = next.watermark!;
  });

  it('restarts as a full read when a skip token goes stale in the middle of a round', async () => {
    const first = await readEntraPage(source(), null, 3, options());
    expect(first.next?.full).toBe(false);
    fake.expireDeltaTokens();
    const second = await readEntraPage(source(), first.next, 3, options());
    expect(second.restartedFull).toBe(true);
    expect(second.records.map((r) => r.attributes.externalId)).toEqual(first.records.map((r) => r.attributes.externalId));
    expect(second.next?.full).toBe(true);
  });

  it('starts a full read when the attribute map names other Graph properties than the watermark\'s round', async () => {
    const round = await readRound(source(), 10);
    const changedMap = source({ attributeMap: { officeLocation: 'attributes.office', companyName: 'attributes.company', employeeHireDate: 'attributes.hired' } });
    const page = await readEntraPage(changedMap, null, 10, options({ watermark: round.watermark }));
    expect(page.restartedFull).toBe(true);
    expect(page.records).toHaveLength(8);
    expect(fake.graphRequests().at(-1)!.path).toContain('employeeHireDate');
    // The same map resumes normally.
    const same = await readEntraPage(source(), null, 10, options({ watermark: round.watermark }));
    expect(same.restartedFull).toBe(false);
    expect(same.records).toEqual([]);
  });

  it('reports a user without an id as a problem', async () => {
    const trusting = trustingFetch(fake.caFile);
    const tampering: typeof fetch = async (input, init) => {
      const response = await trusting(input, init);
      if (!String(input).includes('/users/delta')) return response;
      const body = (await response.json()) as { value: unknown[] };
      body.value.splice(1, 0, { displayName: 'No Id' }, null);
      return new Response(JSON.stringify(body), { status: response.status, headers: response.headers });
    };
    const page = await readEntraPage(source(), null, 999, options({ fetch: tampering }));
    expect(page.records).toHaveLength(8);
    expect(page.problems).toEqual([
      { at: 'users/delta page item 2', message: 'a user without an id, skipped' },
      { at: 'users/delta page item 3', message: 'a user without an id, skipped' },
    ]);
  });

  it('refuses to send the token to a link outside the configured Graph', async () => {
    const error = await rejection(readEntraPage(source(), { nextLink: 'https://evil.example.com/v1.0/users/delta?$skiptoken=x', full: false }, 10, options()));
    expect(error).toBeInstanceOf(PermanentError);
    expect(error.message).toMatch(/refusing to follow a link to https:\/\/evil\.example\.com/);
  });
});

describe('the Entra ID source: disabled accounts and unstorable text', () => {
  let tenant: FakeGraph;
  // 9 of 25 disabled, as in the report that found it; one more whose accountEnabled Graph leaves unset.
  const DISABLED = new Set([2, 3, 5, 8, 11, 13, 17, 21, 24]);
  const users = Array.from({ length: 25 }, (_, i) =>
    person(i + 1, { accountEnabled: DISABLED.has(i + 1) ? false : i + 1 === 25 ? null : true }),
  );
  beforeAll(async () => {
    // A lone surrogate: JSON allows the escape "\ud800", PostgreSQL's jsonb does not.
    tenant = await startFakeGraph({ users: [...users, person(26, { displayName: 'Broken \ud800 Name' })], skus: [] });
  });
  afterAll(async () => tenant?.stop());
  const tenantSource = (overrides: Partial<EntraSourceConfig> = {}) =>
    source({ tenantId: tenant.tenantId, clientId: tenant.clientId, authorityUrl: tenant.url, graphUrl: tenant.url, caFile: tenant.caFile, ...overrides });
  const tenantOptions = () => ({ env: { [SECRET_ENV]: tenant.clientSecret } });

  it('marks users with accountEnabled false as disabled, and skips them unless includeDisabled', async () => {
    const records = [];
    let cursor: EntraCursor | null = null;
    do {
      const page: EntraPage = await readEntraPage(tenantSource(), cursor, 10, options(tenantOptions()));
      records.push(...page.records);
      cursor = page.next;
    } while (cursor);
    // accountEnabled is selected, and the fake (as Graph) returns it.
    expect(tenant.graphRequests()[0]!.path).toMatch(/\$select=[^&]*accountEnabled/);
    expect(records.find((r) => r.attributes.externalId === person(2).id)!.attributes.accountEnabled).toBe('false');
    expect(records.filter((r) => r.disabled !== undefined).map((r) => r.attributes.externalId)).toEqual([...DISABLED].map((i) => person(i).id));
    expect(new Set(records.map((r) => r.disabled))).toEqual(new Set([undefined, 'accountEnabled is false']));

    const mapped = mapRecords(tenantSource(), records);
    expect(mapped.disabled.map((d) => d.externalId)).toEqual([...DISABLED].map((i) => person(i).id));
    // 16 enabled, and the one whose accountEnabled is unknown (null) is not taken for disabled.
    expect(mapped.users.map((u) => u.externalId)).toContain(person(25).id);
    expect(mapped.users).toHaveLength(25 - DISABLED.size);
    expect(mapRecords(tenantSource({ includeDisabled: true }), records).users).toHaveLength(25);

    // A lone surrogate would fail the page's import in PostgreSQL: the record is refused by name.
    expect(mapped.problems).toEqual([{ at: `user ${person(26).id}`, message: 'displayName contains a lone UTF-16 surrogate (not valid Unicode)' }]);
    expect(mapped.unusableIds).toEqual([person(26).id]);
    expect(mapped.unidentified).toBe(0);
  });
});

describe('the Entra ID source: throttling and faults', () => {
  it('honours Retry-After on 429 and completes the read', async () => {
    fake.throttleNext(2, 3);
    const page = await readEntraPage(source(), null, 999, options());
    expect(page.records).toHaveLength(8);
    expect(sleeps).toEqual([3000, 3000]);
    expect(fake.graphRequests().slice(-3).map((r) => r.status)).toEqual([429, 429, 200]);
    expect(heartbeats).toBeGreaterThanOrEqual(4);
  });

  it('heartbeats while waiting out a long Retry-After', async () => {
    fake.throttleNext(1, 12);
    await readEntraPage(source(), null, 999, options());
    expect(sleeps.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(12_000);
    expect(Math.max(...sleeps)).toBeLessThanOrEqual(5_000);
    expect(heartbeats).toBeGreaterThanOrEqual(3);
  });

  it('really waits for Retry-After with the default sleep', async () => {
    fake.throttleNext(1, 1);
    const started = Date.now();
    const page = await readEntraPage(source(), null, 999, options({ sleep: undefined }));
    expect(page.records).toHaveLength(8);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it('honours Retry-After on 503', async () => {
    fake.throttleNext(1, 4, 503);
    const page = await readEntraPage(source(), null, 999, options());
    expect(page.records).toHaveLength(8);
    expect(sleeps).toEqual([4000]);
  });

  it('gives up on persistent throttling with a transient error carrying Retry-After', async () => {
    fake.throttleNext(MAX_THROTTLE_RETRIES + 1, 2);
    const error = await rejection(readEntraPage(source(), null, 999, options()));
    expect(error).toBeInstanceOf(GraphUnavailableError);
    expect(error).not.toBeInstanceOf(PermanentError);
    expect((error as GraphUnavailableError).retryAfterMs).toBe(2000);
    expect(error.message).toMatch(/throttling source "contoso-entra".*429/);
    expect(sleeps).toHaveLength(MAX_THROTTLE_RETRIES);
  });

  it('does not wait out a Retry-After longer than the activity can: the activity retry takes over', async () => {
    fake.throttleNext(1, 600);
    const error = await rejection(readEntraPage(source(), null, 999, options()));
    expect(error).toBeInstanceOf(GraphUnavailableError);
    expect((error as GraphUnavailableError).retryAfterMs).toBe(600_000);
    expect(error.message).toMatch(/Retry-After 600 s/);
    expect(sleeps).toEqual([]);
  });

  it('retries a 500 with backoff, then succeeds', async () => {
    fake.failNext(2, 500);
    const page = await readEntraPage(source(), null, 999, options());
    expect(page.records).toHaveLength(8);
    expect(sleeps).toHaveLength(2);
    expect(sleeps[1]!).toBeGreaterThan(sleeps[0]!);
  });

  it('a persistent 500 is a transient error after a bounded number of attempts', async () => {
    fake.failNext(MAX_FAULT_RETRIES + 1, 500);
    const before = fake.graphRequests().length;
    const error = await rejection(readEntraPage(source(), null, 999, options()));
    expect(error).not.toBeInstanceOf(PermanentError);
    expect(error).toBeInstanceOf(GraphUnavailableError);
    expect(error.message).toMatch(/failed GET \/v1\.0\/users\/delta.*500 generalException/);
    expect(fake.graphRequests().length - before).toBe(MAX_FAULT_RETRIES + 1);
  });

  it('a request without an answer times out and is retried', async () => {
    fake.stallNext(1);
    const before = fake.graphRequests().length;
    const page = await readEntraPage(source(), null, 999, options({ requestTimeoutMs: 500 }));
    expect(page.records).toHaveLength(8);
    expect(sleeps.length).toBeGreaterThanOrEqual(1);
    expect(fake.graphRequests()[before]!.status).toBe(0);
  });

  it('an unreachable Graph is a transient error', async () => {
    const closed = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    // Graph requests go to a closed port (the token still comes from the fake).
    const refused: typeof fetch = (input, init) =>
      fetch(String(input).startsWith(`${fake.url}/v1.0/`) ? String(input).replace(fake.url, `http://127.0.0.1:${closed}`) : input, init);
    const error = await rejection(readEntraPage(source(), null, 10, options({ fetch: refused })));
    expect(error).toBeInstanceOf(GraphUnavailableError);
    expect(error.message).toMatch(/failed GET \/v1\.0\/users\/delta .* 5 times; last: ECONNREFUSED/);
    // Backing off 1, 2, 4, 8 s (±20 %).
    expect(sleeps.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(0.8 * 15_000);

    // So is an unreachable authority.
    const noToken = await rejection(readEntraPage(source({ authorityUrl: `https://127.0.0.1:${closed}` }), null, 10, options()));
    expect(noToken).toBeInstanceOf(GraphUnavailableError);
    expect(noToken.message).toMatch(/identity platform at https:\/\/127\.0\.0\.1:\d+ \(tenant .*, source "contoso-entra"\) is unreachable: ECONNREFUSED/);
  });

  it('404 and other 400s are permanent, with Graph\'s message', async () => {
    fake.failNext(1, 404);
    const notFound = await rejection(readEntraPage(source(), null, 10, options()));
    expect(notFound).toBeInstanceOf(PermanentError);
    expect((notFound as PermanentError).kind).toBe('SourceNotFound');
    const bad = await rejection(readEntraPage(source({ attributeMap: { favouriteColour: 'attributes.colour' } }), null, 10, options()));
    expect(bad).toBeInstanceOf(PermanentError);
    expect(bad.message).toMatch(/400: BadRequest: Could not find a property named 'favouriteColour'/);
  });
});

describe('the Entra ID source: credentials and permissions', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('caches the token across calls', async () => {
    const before = fake.tokensIssued;
    await readEntraPage(source(), null, 999, options());
    await readEntraPage(source(), null, 999, options());
    await readSubscribedSkus(source(), options());
    expect(fake.tokensIssued - before).toBe(1);
  });

  it('asks for a new token shortly before the cached one expires', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const before = fake.tokensIssued;
    await readEntraPage(source(), null, 999, options());
    vi.setSystemTime(Date.now() + 50 * 60_000);
    await readEntraPage(source(), null, 999, options());
    expect(fake.tokensIssued - before).toBe(1);
    // The fake's tokens live 3599 s; flowthru renews 5 minutes before.
    vi.setSystemTime(Date.now() + 6 * 60_000);
    await readEntraPage(source(), null, 999, options());
    expect(fake.tokensIssued - before).toBe(2);
  });

  it('on a 401 drops the token, gets a new one and retries once', async () => {
    await readEntraPage(source(), null, 999, options());
    const before = fake.tokensIssued;
    fake.expireTokensNow();
    const page = await readEntraPage(source(), null, 999, options());
    expect(page.records).toHaveLength(8);
    expect(fake.tokensIssued - before).toBe(1);
    const [refused, retried] = fake.graphRequests().slice(-2);
    expect(refused!.status).toBe(401);
    expect(retried!.status).toBe(200);
    expect(retried!.auth).not.toBe(refused!.auth);
  });

  it('a 401 with a fresh token too is permanent', async () => {
    fake.failNext(2, 401);
    const error = await rejection(readEntraPage(source(), null, 999, options()));
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).kind).toBe('SourceCredentials');
    expect(error.message).toMatch(/InvalidAuthenticationToken/);
  });

  it('a wrong secret is a permanent error naming the AADSTS error, without the secret', async () => {
    const wrong = 'wrong~secret-value-123';
    const error = await rejection(readEntraPage(source(), null, 10, options({ env: { [SECRET_ENV]: wrong } })));
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).kind).toBe('SourceCredentials');
    expect(error.message).toMatch(/source "contoso-entra".*invalid_client: AADSTS7000215: Invalid client secret provided/);
    expect(error.message).toMatch(/trace ID [0-9a-f-]{36}/);
    expect(error.message).not.toContain(wrong);
    expect(error.message).not.toContain(fake.clientSecret);
    expect(sleeps).toEqual([]);
  });

  it('an unknown client id or tenant is permanent too', async () => {
    const client = await rejection(readEntraPage(source({ clientId: 'not-registered' }), null, 10, options()));
    expect(client).toBeInstanceOf(PermanentError);
    expect(client.message).toMatch(/unauthorized_client: AADSTS700016/);
    const tenant = await rejection(readEntraPage(source({ tenantId: 'other.onmicrosoft.com' }), null, 10, options()));
    expect(tenant).toBeInstanceOf(PermanentError);
    expect(tenant.message).toMatch(/Entra ID does not know tenant other\.onmicrosoft\.com of source "contoso-entra" at https:.*: invalid_tenant: AADSTS90002: Tenant 'other\.onmicrosoft\.com' not found/);
  });

  it('a failing token endpoint is retried, then transient', async () => {
    fake.failNext(1, 500, 'token');
    expect((await readEntraPage(source(), null, 999, options())).records).toHaveLength(8);
    clearEntraTokenCache();
    fake.failNext(MAX_FAULT_RETRIES + 1, 500, 'token');
    const error = await rejection(readEntraPage(source(), null, 999, options()));
    expect(error).toBeInstanceOf(GraphUnavailableError);
    expect(error.message).toMatch(/identity platform at .* answered 500 \(temporarily_unavailable: AADSTS50196/);
  });

  it('a missing secret variable is a permanent error naming it and the source', async () => {
    const before = fake.requests.length;
    const error = await rejection(readEntraPage(source(), null, 10, options({ env: {} })));
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).kind).toBe('SourceCredentials');
    expect(error.message).toBe(`the environment variable ${SECRET_ENV} (the client secret of Entra ID source "contoso-entra") is not set`);
    expect(fake.requests.length).toBe(before);
  });

  it('never sends the secret or the token in a URL', () => {
    for (const request of fake.requests) {
      expect(request.path).not.toContain(fake.clientSecret);
      if (request.auth) expect(request.path).not.toContain(request.auth.slice('Bearer '.length));
    }
  });
});

describe('the Entra ID source: licences and permissions', () => {
  let skuFake: FakeGraph;
  beforeAll(async () => {
    skuFake = await startFakeGraph({
      users: [person(1)],
      skus: [
        { skuId: 'c7df2760-2c81-4ef7-b578-5b5392b571df', skuPartNumber: 'ENTERPRISEPREMIUM', consumedUnits: 180, prepaidUnits: { enabled: 200, suspended: 0, warning: 0 } },
        { skuId: '4b585984-651b-448a-9e53-3b10f069cf7f', skuPartNumber: 'DESKLESSPACK', capabilityStatus: 'Warning', consumedUnits: 12, prepaidUnits: { enabled: 0, warning: 25 } },
      ],
    });
  });
  afterAll(async () => skuFake?.stop());

  const skuSource = (): EntraSourceConfig => ({
    name: 'licences',
    type: 'entra',
    includeDisabled: false,
    userType: 'microsoft',
    attributeMap: {},
    tenantId: skuFake.tenantId,
    clientId: skuFake.clientId,
    clientSecretEnv: SECRET_ENV,
    // Trailing slashes are tolerated.
    authorityUrl: `${skuFake.url}/`,
    graphUrl: `${skuFake.url}/`,
    caFile: skuFake.caFile,
  });
  const skuOptions = () => options({ env: { [SECRET_ENV]: skuFake.clientSecret } });

  it('maps subscribedSkus', async () => {
    expect(await readSubscribedSkus(skuSource(), skuOptions())).toEqual([
      { skuId: 'c7df2760-2c81-4ef7-b578-5b5392b571df', skuPartNumber: 'ENTERPRISEPREMIUM', enabled: 200, consumed: 180, capabilityStatus: 'Enabled' },
      { skuId: '4b585984-651b-448a-9e53-3b10f069cf7f', skuPartNumber: 'DESKLESSPACK', enabled: 0, consumed: 12, capabilityStatus: 'Warning' },
    ]);
    expect(skuFake.graphRequests().at(-1)).toMatchObject({ method: 'GET', path: '/v1.0/subscribedSkus', status: 200 });
  });

  it('403 on subscribedSkus names Organization.Read.All', async () => {
    skuFake.forbid('/v1.0/subscribedSkus');
    const error = await rejection(readSubscribedSkus(skuSource(), skuOptions()));
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).kind).toBe('SourcePermission');
    expect(error.message).toMatch(
      /^Microsoft Graph refused GET \/v1\.0\/subscribedSkus \(source "licences"\): the app registration needs the application permission Organization\.Read\.All, granted with admin consent/,
    );
    // Users are still readable.
    expect((await readEntraPage(skuSource(), null, 10, skuOptions())).records).toHaveLength(1);
  });

  it('403 on users names User.Read.All', async () => {
    skuFake.forbid('/v1.0/users');
    const error = await rejection(readEntraPage(skuSource(), null, 10, skuOptions()));
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).kind).toBe('SourcePermission');
    expect(error.message).toMatch(/refused GET \/v1\.0\/users\/delta \(source "licences"\): the app registration needs the application permission User\.Read\.All/);
    expect(error.message).toMatch(/Authorization_RequestDenied/);
  });
});

describe('the Entra ID source: client certificates and TLS', () => {
  const CERT_PASSPHRASE_ENV = 'ENTRA_TEST_CERT_PASSPHRASE';
  let dir: string;
  let tenant: FakeGraph;
  let app: ReturnType<typeof makeClientCertificate>;
  let rotated: ReturnType<typeof makeClientCertificate>;
  let sealed: ReturnType<typeof makeClientCertificate>;
  let stranger: ReturnType<typeof makeClientCertificate>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'flowthru-entra-cert-'));
    app = makeClientCertificate(dir, 'app');
    rotated = makeClientCertificate(dir, 'rotated');
    sealed = makeClientCertificate(dir, 'sealed', 'correct horse battery');
    stranger = makeClientCertificate(dir, 'stranger');
    // The app registration has three certificates; the stranger's is not one of them.
    tenant = await startFakeGraph({ users: USERS, skus: [], certificates: [app.certificate, rotated.certificate, sealed.certificate] });
  });
  afterAll(async () => {
    await tenant?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function certificateSource(overrides: Partial<EntraSourceConfig> = {}): EntraSourceConfig {
    const { clientSecretEnv: _secret, ...base } = source();
    return { ...base, tenantId: tenant.tenantId, clientId: tenant.clientId, authorityUrl: tenant.url, graphUrl: tenant.url, caFile: tenant.caFile, clientCertificateFile: app.file, ...overrides };
  }

  it('reads users with a client certificate (a signed client assertion), no secret set', async () => {
    const before = tenant.tokensIssuedForCertificate;
    const { records } = await readRound(certificateSource(), 999, null, { env: {} });
    expect(records).toHaveLength(USERS.length);
    expect(tenant.tokensIssuedForCertificate - before).toBe(1);
    const header = tenant.assertionHeaders.at(-1)!;
    expect(header.alg).toBe('PS256');
    expect(header['x5t#S256']).toEqual(expect.any(String));
    expect(header.x5c).toBeUndefined();
    // The token request carried an assertion, never the key: nothing from the PEM file travels.
    const keyBody = app.key.split('\n').slice(1, -2).join('');
    for (const request of tenant.requests) expect(request.path).not.toContain(keyBody.slice(0, 40));
  });

  it('sends the certificate chain when sendCertificateChain is set (subject name and issuer authentication)', async () => {
    await readRound(certificateSource({ sendCertificateChain: true }), 999, null, { env: {} });
    expect(tenant.assertionHeaders.at(-1)!.x5c).toEqual([expect.any(String)]);
  });

  it('opens an encrypted key with the passphrase from clientCertificatePasswordEnv', async () => {
    const src = certificateSource({ clientCertificateFile: sealed.file, clientCertificatePasswordEnv: CERT_PASSPHRASE_ENV });
    const { records } = await readRound(src, 999, null, { env: { [CERT_PASSPHRASE_ENV]: 'correct horse battery' } });
    expect(records).toHaveLength(USERS.length);

    clearEntraTokenCache();
    const wrong = await rejection(readEntraPage(src, null, 10, options({ env: { [CERT_PASSPHRASE_ENV]: 'wrong' } })));
    expect(wrong).toBeInstanceOf(PermanentError);
    expect(wrong.message).toBe(`clientCertificateFile ${sealed.file} of Entra ID source "contoso-entra" holds a private key its passphrase does not open`);
    const unset = await rejection(readEntraPage(src, null, 10, options({ env: {} })));
    expect(unset.message).toBe(`the environment variable ${CERT_PASSPHRASE_ENV} (the client certificate's passphrase of Entra ID source "contoso-entra") is not set`);
  });

  it('a replaced certificate file takes effect at the next token, without a restart', async () => {
    const file = join(dir, 'live.pem');
    copyFileSync(app.file, file);
    await readEntraPage(certificateSource({ clientCertificateFile: file }), null, 999, options({ env: {} }));
    const used = tenant.assertionHeaders.at(-1)!['x5t#S256'];
    copyFileSync(rotated.file, file);
    await readEntraPage(certificateSource({ clientCertificateFile: file }), null, 999, options({ env: {} }));
    expect(tenant.assertionHeaders.at(-1)!['x5t#S256']).not.toBe(used);
  });

  it('a certificate the app does not have is a permanent error naming the file and AADSTS700027', async () => {
    const before = tenant.requests.length;
    const error = await rejection(readEntraPage(certificateSource({ clientCertificateFile: stranger.file }), null, 10, options({ env: {} })));
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).kind).toBe('SourceCredentials');
    expect(error.message).toMatch(
      new RegExp(`Entra ID refused the client credentials of source "contoso-entra" \\(tenant ${tenant.tenantId}, client ${tenant.clientId}, certificate ${stranger.file}\\): invalid_client: AADSTS700027: The certificate with identifier used to sign the client assertion is not registered`),
    );
    expect(error.message).toMatch(/trace ID [0-9a-f-]{36}/);
    // Refused for good: asked once (after the metadata), not retried.
    expect(tenant.requests.slice(before).filter((r) => r.path.includes('/oauth2/v2.0/token'))).toHaveLength(1);
    expect(sleeps).toEqual([]);
  });

  it('a file that cannot serve is a permanent error naming it, before anything is sent', async () => {
    const before = tenant.requests.length;
    const expectRefused = async (file: string, why: string) => {
      const error = await rejection(readEntraPage(certificateSource({ clientCertificateFile: file }), null, 10, options({ env: {} })));
      expect(error).toBeInstanceOf(PermanentError);
      expect(error.message).toBe(`${file.startsWith('/nonexistent') ? 'cannot read' : 'clientCertificateFile'} ${why}`);
    };
    await expectRefused('/nonexistent/app.pem', 'clientCertificateFile /nonexistent/app.pem (the client certificate of Entra ID source "contoso-entra"): ENOENT');
    const keyOnly = join(dir, 'key-only.pem');
    writeFileSync(keyOnly, app.key);
    await expectRefused(keyOnly, `${keyOnly} of Entra ID source "contoso-entra" holds no certificate (-----BEGIN CERTIFICATE-----): put the key and the certificate in one PEM file`);
    const mismatched = join(dir, 'mismatched.pem');
    writeFileSync(mismatched, app.key + rotated.certificate);
    await expectRefused(mismatched, `${mismatched} of Entra ID source "contoso-entra" holds a private key that does not belong to its certificate`);
    expect(tenant.requests.length).toBe(before);
  });

  it('an authority whose certificate is not trusted is a permanent error that says to set caFile', async () => {
    const { caFile: _ca, ...untrusted } = certificateSource();
    const error = await rejection(readEntraPage(untrusted, null, 10, options({ env: {} })));
    expect(error).toBeInstanceOf(PermanentError);
    expect((error as PermanentError).kind).toBe('SourceCertificate');
    expect(error.message).toMatch(/identity platform at https:\/\/127\.0\.0\.1:\d+ .* presented a certificate that is not trusted \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\): set caFile/);

    const missingCa = await rejection(readEntraPage(certificateSource({ caFile: '/nonexistent/ca.pem' }), null, 10, options({ env: {} })));
    expect(missingCa.message).toBe('cannot read caFile /nonexistent/ca.pem (the CA certificates of Entra ID source "contoso-entra"): ENOENT');
  });

  it('Graph with a certificate that is not trusted is a permanent error that says to set caFile', async () => {
    // The token comes from the fake (trusted); Graph requests go to a second fake signed by another CA.
    const other = await startFakeGraph({ users: [] });
    try {
      // Trusting the first fake's CA only, as caFile makes the client do.
      const trusting = trustingFetch(tenant.caFile);
      const elsewhere: typeof fetch = (input, init) => trusting(String(input).replace(tenant.url, other.url), init);
      const error = await rejection(readEntraPage(certificateSource(), null, 10, options({ env: {}, fetch: elsewhere })));
      expect(error).toBeInstanceOf(PermanentError);
      expect((error as PermanentError).kind).toBe('SourceCertificate');
      expect(error.message).toMatch(/Microsoft Graph \(https:\/\/127\.0\.0\.1:\d+\) presented a certificate that is not trusted \(.+\) to source "contoso-entra": set caFile/);
    } finally {
      await other.stop();
    }
  });
});
