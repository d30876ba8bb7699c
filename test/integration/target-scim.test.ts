import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createScimTarget, SCIM_FIELDS } from '../../src/adapters/targets/scim.js';
import { TargetError, type TargetEvent, type TargetFields, type TargetMemory, type TargetPush } from '../../src/adapters/targets/types.js';
import { customerParts, type ScimTargetConfig } from '../../src/domain/config/schema.js';
import { rejection } from '../support/assert.js';
import { startScimServer, type ScimRequest, type ScimServer } from '../support/scim-server.js';

const TOKEN_ENV = 'SCIM_TEST_TOKEN';
const TOKEN = 'scim-test-token-5f1c0e9a';
const ENV = { [TOKEN_ENV]: TOKEN };
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const PATCH_OP = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

const FIELDS: TargetFields = {
  userName: 'ada@example.com',
  externalId: 'ext-ada',
  displayName: 'Ada Lovelace',
  givenName: 'Ada',
  familyName: 'Lovelace',
  email: 'ada@example.com',
  phoneNumber: '+13125550100',
  mobile: '+13125550199',
  title: 'Analyst',
  preferredLanguage: 'en-GB',
  locale: 'en-GB',
  timezone: 'Europe/London',
  department: 'Engines',
  employeeNumber: '1815',
  active: 'true',
};

let server: ScimServer;

beforeEach(async () => {
  server = await startScimServer({ token: TOKEN });
});

afterEach(async () => {
  await server.close();
});

/** A SCIM target as config validation leaves it (defaults filled in). */
function config(url: string, overrides: Record<string, unknown> = {}): ScimTargetConfig {
  const parsed = customerParts.targets.parse({ name: 'acme-scim', kind: 'scim', url, tokenEnv: TOKEN_ENV, timeoutMs: 2_000, ...overrides });
  if (parsed.kind !== 'scim') throw new Error('expected a scim target');
  return parsed;
}

function plugin(overrides: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = ENV, on: ScimServer = server) {
  return createScimTarget(config(on.url, overrides), env);
}

function push(fields: TargetFields = FIELDS, memory: TargetMemory = { remoteId: null, pushed: null }, event: TargetEvent = 'provisioned'): TargetPush {
  return {
    event,
    eventId: randomUUID(),
    target: 'acme-scim',
    subject: { userId: 'u-1', externalId: 'ext-ada', customer: 'contoso', fields },
    memory,
  };
}

async function targetError(promise: Promise<unknown>): Promise<TargetError> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(TargetError);
  return error as TargetError;
}

/** The requests after `from`, as `METHOD path` with the filter decoded. */
function calls(from = 0): string[] {
  return server.requests.slice(from).map((r) => `${r.method} ${decodeURIComponent(r.path.replace('/scim/v2', ''))}`);
}

function writes(from = 0): ScimRequest[] {
  return server.requests.slice(from).filter((r) => r.method !== 'GET');
}

/** The one stored user, after checking there is exactly one. */
function onlyUser() {
  const users = server.users();
  expect(users).toHaveLength(1);
  return users[0]!;
}

describe('SCIM target: provision', () => {
  it('creates one resource holding every mapped field', async () => {
    const result = await plugin().provision(push());

    const user = onlyUser();
    expect(result).toEqual({ remoteId: user.id, changed: true, summary: `created /Users/${user.id}` });
    expect(user).toMatchObject({
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User', ENTERPRISE],
      userName: 'ada@example.com',
      externalId: 'ext-ada',
      displayName: 'Ada Lovelace',
      name: { givenName: 'Ada', familyName: 'Lovelace', formatted: 'Ada Lovelace' },
      emails: [{ value: 'ada@example.com', type: 'work', primary: true }],
      phoneNumbers: expect.arrayContaining([
        { value: '+13125550100', type: 'work' },
        { value: '+13125550199', type: 'mobile' },
      ]),
      title: 'Analyst',
      preferredLanguage: 'en-GB',
      locale: 'en-GB',
      timezone: 'Europe/London',
      active: true,
      [ENTERPRISE]: { department: 'Engines', employeeNumber: '1815' },
    });
    expect(user.phoneNumbers).toHaveLength(2);
    // Not found by externalId nor userName (JSON string literals, RFC 7644 §3.4.2.2), then created.
    expect(calls()).toEqual([
      'GET /ServiceProviderConfig',
      'GET /Users?filter=externalId eq "ext-ada"',
      'GET /Users?filter=userName eq "ada@example.com"',
      'POST /Users',
    ]);
    for (const request of server.requests) {
      expect(request.headers.authorization).toBe(`Bearer ${TOKEN}`);
      expect(request.headers.accept).toBe('application/scim+json');
    }
    expect(writes()[0]!.headers['content-type']).toBe('application/scim+json');
    // The summary goes to the transaction log: no personal values.
    for (const value of Object.values(FIELDS)) if (value && value !== 'true') expect(result.summary).not.toContain(value);
    expect(SCIM_FIELDS).toEqual(Object.keys(FIELDS));
  });

  it('changes nothing when the resource already holds the fields, reading ServiceProviderConfig once', async () => {
    const target = plugin();
    const first = await target.provision(push());
    const before = server.requests.length;
    const again = await target.provision(push(FIELDS, { remoteId: first.remoteId, pushed: FIELDS }));

    expect(again).toEqual({ remoteId: first.remoteId, changed: false, summary: `unchanged /Users/${first.remoteId}` });
    expect(calls(before)).toEqual([`GET /Users/${first.remoteId}`]);
    expect(onlyUser().meta.version).toBe('W/"1"');
    expect(server.requests.filter((r) => r.path.endsWith('/ServiceProviderConfig'))).toHaveLength(1);
  });

  it('PATCHes only what changed, with If-Match, and removes what became empty', async () => {
    const target = plugin();
    const { remoteId } = await target.provision(push());
    const before = server.requests.length;
    const changed = { ...FIELDS, displayName: 'Augusta Ada King', phoneNumber: '+13125550111', title: null, department: '' };
    const result = await target.provision(push(changed, { remoteId, pushed: FIELDS }, 'changed'));

    expect(result).toEqual({ remoteId, changed: true, summary: `PATCH /Users/${remoteId} (displayName, phoneNumber, title, department)` });
    const [patch, ...more] = writes(before);
    expect(more).toEqual([]);
    expect(patch!.method).toBe('PATCH');
    expect(patch!.headers['if-match']).toBe('W/"1"');
    expect(patch!.body).toEqual({
      schemas: [PATCH_OP],
      Operations: [
        { op: 'replace', path: 'displayName', value: 'Augusta Ada King' },
        { op: 'replace', path: 'phoneNumbers', value: [{ value: '+13125550111', type: 'work' }, { value: '+13125550199', type: 'mobile' }] },
        { op: 'remove', path: 'title' },
        { op: 'remove', path: `${ENTERPRISE}:department` },
      ],
    });
    const user = onlyUser();
    expect(user).toMatchObject({ displayName: 'Augusta Ada King', [ENTERPRISE]: { employeeNumber: '1815' }, meta: { version: 'W/"2"' } });
    expect(user.title).toBeUndefined();
    expect((user[ENTERPRISE] as Record<string, unknown>).department).toBeUndefined();

    // Converged: the same push again writes nothing.
    const again = await target.provision(push(changed, { remoteId, pushed: changed }, 'changed'));
    expect(again.changed).toBe(false);
  });

  it('adopts the resource a POST created when its answer was lost, instead of creating another', async () => {
    const target = plugin();
    server.onNext('POST', () => server.loseNextResponse());
    const lost = await targetError(target.provision(push()));
    expect(lost).toMatchObject({ retryable: true, kind: 'Unavailable' });
    expect(lost.message).toContain('POST /Users');
    const created = onlyUser();

    // The retry still remembers nothing; the filter finds what the lost POST made.
    const retry = await target.provision(push());
    expect(retry).toEqual({
      remoteId: created.id,
      changed: false,
      summary: `adopted existing /Users/${created.id} (found by externalId); unchanged /Users/${created.id}`,
    });
    expect(onlyUser().id).toBe(created.id);
  });

  it('adopts a resource made before flowthru with the same userName, and brings it to the fields', async () => {
    const existing = await server.create({
      userName: 'ada@example.com',
      displayName: 'A. Lovelace',
      emails: [{ value: 'ada@home.example', type: 'home', primary: true }],
      phoneNumbers: [{ value: '+441234567890', type: 'home' }],
    });
    const before = server.requests.length;
    const result = await plugin().provision(push());

    expect(result.remoteId).toBe(existing.id);
    expect(result.changed).toBe(true);
    expect(result.summary).toMatch(new RegExp(`^adopted existing /Users/${existing.id} \\(found by userName\\); PATCH /Users/${existing.id} \\(externalId, displayName, `));
    expect(writes(before).map((r) => r.method)).toEqual(['PATCH']);
    const user = onlyUser();
    expect(user).toMatchObject({ externalId: 'ext-ada', displayName: 'Ada Lovelace' });
    // Entries of types flowthru does not write stay; ours is the primary email now.
    expect(user.emails).toEqual([
      { value: 'ada@example.com', type: 'work', primary: true },
      { value: 'ada@home.example', type: 'home', primary: false },
    ]);
    expect(user.phoneNumbers).toEqual([
      { value: '+13125550100', type: 'work' },
      { value: '+13125550199', type: 'mobile' },
      { value: '+441234567890', type: 'home' },
    ]);
  });

  it('adopts the resource a concurrent writer made between its search and its POST (409 uniqueness)', async () => {
    server.onNext('POST', async () => {
      await server.create({ userName: 'ada@example.com', externalId: 'ext-ada', displayName: 'Ada' });
    });
    const result = await plugin().provision(push());

    const user = onlyUser();
    expect(result.remoteId).toBe(user.id);
    expect(result.summary).toBe(
      `adopted existing /Users/${user.id} (409 uniqueness); PATCH /Users/${user.id} ` +
        '(displayName, givenName, familyName, email, phoneNumber, mobile, title, preferredLanguage, locale, timezone, department, employeeNumber)',
    );
    expect(server.requests.filter((r) => r.method === 'POST').map((r) => r.status)).toEqual([409]);
    expect(user).toMatchObject({ displayName: 'Ada Lovelace', title: 'Analyst' });
  });

  it('refuses to take over a userName held by another externalId', async () => {
    const other = await server.create({ userName: 'ada@example.com', externalId: 'someone-else' });
    const before = server.requests.length;
    const error = await targetError(plugin().provision(push()));

    expect(error).toMatchObject({ retryable: false, kind: 'Conflict' });
    expect(error.message).toContain(`/Users/${other.id} with externalId someone-else`);
    expect(writes(before)).toEqual([]);
  });

  it('recreates a remembered resource that is gone', async () => {
    const result = await plugin().provision(push(FIELDS, { remoteId: 'deleted-long-ago', pushed: FIELDS }));
    const user = onlyUser();
    expect(result).toEqual({ remoteId: user.id, changed: true, summary: `created /Users/${user.id} (the remembered /Users/deleted-long-ago is gone)` });
  });

  it('reactivates an inactive resource', async () => {
    const target = plugin();
    const { remoteId } = await target.provision(push({ ...FIELDS, active: 'false' }));
    expect(onlyUser().active).toBe(false);
    const result = await target.provision(push({ ...FIELDS, active: null }, { remoteId, pushed: FIELDS }));
    expect(result.summary).toBe(`PATCH /Users/${remoteId} (active)`);
    expect(onlyUser().active).toBe(true);
  });

  it('PUTs the whole resource when the service provider does not do PATCH', async () => {
    const noPatch = await startScimServer({ token: TOKEN, patch: false });
    try {
      const target = plugin({}, ENV, noPatch);
      const { remoteId } = await target.provision(push());
      const result = await target.provision(push({ ...FIELDS, title: 'Countess', mobile: null }, { remoteId, pushed: FIELDS }));

      expect(result.summary).toBe(`PUT /Users/${remoteId} (mobile, title)`);
      const put = noPatch.requests.find((r) => r.method === 'PUT')!;
      expect(put.headers['if-match']).toBe('W/"1"');
      const [user] = noPatch.users();
      expect(user).toMatchObject({ title: 'Countess', displayName: 'Ada Lovelace', [ENTERPRISE]: { department: 'Engines' } });
      expect(user!.phoneNumbers).toEqual([{ value: '+13125550100', type: 'work' }]);
      expect(noPatch.requests.some((r) => r.method === 'PATCH')).toBe(false);
    } finally {
      await noPatch.close();
    }
  });
});

describe('SCIM target: ETags', () => {
  it('re-reads and writes again when the version changed behind its back (412)', async () => {
    const target = plugin();
    const { remoteId } = await target.provision(push());
    const before = server.requests.length;
    server.onNext('PATCH', () => server.touch(remoteId!));
    const result = await target.provision(push({ ...FIELDS, title: 'Countess' }, { remoteId, pushed: FIELDS }));

    expect(result).toEqual({ remoteId, changed: true, summary: `PATCH /Users/${remoteId} (title)` });
    expect(server.requests.slice(before).map((r) => `${r.method} ${r.status} ${r.headers['if-match'] ?? ''}`)).toEqual([
      'GET 200 ',
      'PATCH 412 W/"1"',
      'GET 200 ',
      'PATCH 200 W/"2"',
    ]);
    expect(onlyUser()).toMatchObject({ title: 'Countess', meta: { version: 'W/"3"' } });
  });

  it('gives up for now (retryable) when every write meets a newer version', async () => {
    const target = plugin();
    const { remoteId } = await target.provision(push());
    for (let i = 0; i < 3; i++) server.onNext('PATCH', () => server.touch(remoteId!));
    const error = await targetError(target.provision(push({ ...FIELDS, title: 'Countess' }, { remoteId, pushed: FIELDS })));

    expect(error).toMatchObject({ retryable: true, kind: 'PreconditionFailed' });
    expect(server.requests.filter((r) => r.method === 'PATCH').map((r) => r.status)).toEqual([412, 412, 412]);
  });

  it('sends no If-Match when the service provider does not support ETags', async () => {
    const noEtags = await startScimServer({ token: TOKEN, etags: false });
    try {
      const target = plugin({}, ENV, noEtags);
      const { remoteId } = await target.provision(push());
      await target.provision(push({ ...FIELDS, title: 'Countess' }, { remoteId, pushed: FIELDS }));
      const patch = noEtags.requests.find((r) => r.method === 'PATCH')!;
      expect(patch.status).toBe(200);
      expect(patch.headers['if-match']).toBeUndefined();
    } finally {
      await noEtags.close();
    }
  });
});

describe('SCIM target: deprovision', () => {
  it('deletes the resource, with If-Match; a second deprovision finds it gone', async () => {
    const target = plugin();
    const { remoteId } = await target.provision(push());
    const memory = { remoteId, pushed: FIELDS };
    const before = server.requests.length;

    const result = await target.deprovision(push({}, memory, 'deprovisioned'));
    expect(result).toEqual({ remoteId: null, changed: true, summary: `deleted /Users/${remoteId}` });
    const [del] = writes(before);
    expect(del).toMatchObject({ method: 'DELETE', status: 204, headers: { 'if-match': 'W/"1"' } });
    expect(server.users()).toEqual([]);

    const again = await target.deprovision(push({}, memory, 'deprovisioned'));
    expect(again).toEqual({ remoteId: null, changed: false, summary: 'already absent' });
  });

  it('deletes after re-reading when the version changed behind its back', async () => {
    const target = plugin();
    const { remoteId } = await target.provision(push());
    const before = server.requests.length;
    server.onNext('DELETE', () => server.touch(remoteId!));
    const result = await target.deprovision(push({}, { remoteId, pushed: FIELDS }, 'deprovisioned'));

    expect(result).toEqual({ remoteId: null, changed: true, summary: `deleted /Users/${remoteId}` });
    expect(server.requests.slice(before).map((r) => `${r.method} ${r.status} ${r.headers['if-match'] ?? ''}`)).toEqual([
      'GET 200 ',
      'DELETE 412 W/"1"',
      'GET 200 ',
      'DELETE 204 W/"2"',
    ]);
    expect(server.users()).toEqual([]);
  });

  it('finds what to delete by filter when nothing is remembered', async () => {
    const existing = await server.create({ userName: 'ada@example.com', externalId: 'ext-ada' });
    const result = await plugin().deprovision(push({}, { remoteId: null, pushed: FIELDS }, 'deprovisioned'));
    expect(result).toEqual({ remoteId: null, changed: true, summary: `deleted /Users/${existing.id}` });
    expect(server.users()).toEqual([]);
  });

  it('deactivates instead when configured to, once', async () => {
    const target = plugin({ deprovision: 'deactivate' });
    const { remoteId } = await target.provision(push());
    const memory = { remoteId, pushed: FIELDS };
    const before = server.requests.length;

    const result = await target.deprovision(push({}, memory, 'deprovisioned'));
    expect(result).toEqual({ remoteId, changed: true, summary: `deactivated /Users/${remoteId}` });
    const [patch] = writes(before);
    expect(patch).toMatchObject({ method: 'PATCH', headers: { 'if-match': 'W/"1"' }, body: { Operations: [{ op: 'replace', path: 'active', value: false }] } });
    expect(onlyUser()).toMatchObject({ active: false, userName: 'ada@example.com' });

    const again = await target.deprovision(push({}, memory, 'deprovisioned'));
    expect(again).toEqual({ remoteId, changed: false, summary: `already inactive /Users/${remoteId}` });
  });
});

describe('SCIM target: errors', () => {
  it('429 with Retry-After is retryable after that long', async () => {
    server.failNext(1, 429, { 'retry-after': '7' });
    const error = await targetError(plugin().provision(push()));
    expect(error).toMatchObject({ retryable: true, kind: 'Throttled', retryAfterMs: 7000 });
    expect(error.message).toContain('acme-scim');
    expect(error.message).toContain('429');
  });

  it('503 and other 5xx are retryable', async () => {
    server.failNext(1, 503);
    expect(await targetError(plugin().provision(push()))).toMatchObject({ retryable: true, kind: 'Unavailable', retryAfterMs: undefined });
    server.failNext(1, 503, { 'retry-after': '30' });
    expect(await targetError(plugin().provision(push()))).toMatchObject({ retryable: true, retryAfterMs: 30_000 });
    server.failNext(1, 500);
    expect(await targetError(plugin().provision(push()))).toMatchObject({ retryable: true, kind: 'Unavailable' });
    expect(server.users()).toEqual([]);
  });

  it('a 400 is not retryable and shows the SCIM error', async () => {
    server.onNext('POST', () =>
      server.failNext(1, 400, {}, {
        schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'],
        status: '400',
        scimType: 'invalidValue',
        detail: 'phoneNumbers.value must be in RFC 3966 format',
      }),
    );
    const error = await targetError(plugin().provision(push()));
    expect(error).toMatchObject({ retryable: false, kind: 'BadRequest' });
    expect(error.message).toBe('SCIM target "acme-scim": POST /Users answered 400 (invalidValue: phoneNumbers.value must be in RFC 3966 format)');
  });

  it('escapes filter values as JSON strings (scimmy cannot parse escaped quotes and answers 400)', async () => {
    const error = await targetError(plugin().provision(push({ ...FIELDS, externalId: 'ext "ada" \\ 1' })));
    expect(calls().at(-1)).toBe('GET /Users?filter=externalId eq "ext \\"ada\\" \\\\ 1"');
    expect(error).toMatchObject({ retryable: false, kind: 'BadRequest' });
    expect(error.message).toContain('answered 400 (invalidFilter: ');
  });

  it('a wrong token is not retryable, and the message does not carry it', async () => {
    const error = await targetError(plugin({}, { [TOKEN_ENV]: 'not-the-token-3b7e' }).provision(push()));
    expect(error).toMatchObject({ retryable: false, kind: 'Unauthorized' });
    expect(error.message).toContain('401');
    expect(error.message).toContain(TOKEN_ENV);
    expect(error.message).not.toContain('not-the-token-3b7e');
    expect(error.message).not.toContain(TOKEN);
  });

  it('a missing token variable fails before anything is sent', async () => {
    for (const env of [{}, { [TOKEN_ENV]: '' }]) {
      const error = await targetError(plugin({}, env).provision(push()));
      expect(error).toMatchObject({ retryable: false, kind: 'MissingSecret' });
      expect(error.message).toContain(TOKEN_ENV);
    }
    expect(server.requests).toEqual([]);
  });

  it('a user without userName is refused before anything is sent', async () => {
    const error = await targetError(plugin().provision(push({ ...FIELDS, userName: null })));
    expect(error).toMatchObject({ retryable: false, kind: 'MissingField' });
    expect(server.requests).toEqual([]);
  });

  it('an active field that is neither true nor false is refused before anything is sent', async () => {
    const error = await targetError(plugin().provision(push({ ...FIELDS, active: 'yes' })));
    expect(error).toMatchObject({ retryable: false, kind: 'InvalidValue' });
    expect(server.requests).toEqual([]);
  });

  it('a redirect is not followed (it would carry the token elsewhere)', async () => {
    server.failNext(1, 308, { location: 'https://elsewhere.example/scim/v2/ServiceProviderConfig' }, '');
    const error = await targetError(plugin().provision(push()));
    expect(error).toMatchObject({ retryable: false, kind: 'Redirected' });
    expect(error.message).toContain('https://elsewhere.example/scim/v2/ServiceProviderConfig');
    expect(server.requests).toHaveLength(1);
  });

  it('a slow answer times out, retryably', async () => {
    server.onNext('GET', () => new Promise((resolve) => setTimeout(resolve, 500)));
    const error = await targetError(plugin({ timeoutMs: 100 }).provision(push()));
    expect(error).toMatchObject({ retryable: true, kind: 'Unavailable' });
    expect(error.message).toContain('no answer within 100 ms');
  });

  it('an unreachable service provider is retryable', async () => {
    const gone = await startScimServer({ token: TOKEN });
    await gone.close();
    const error = await targetError(plugin({}, ENV, gone).provision(push()));
    expect(error).toMatchObject({ retryable: true, kind: 'Unavailable' });
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('a cancelled push ends with the cancellation', async () => {
    const controller = new AbortController();
    server.onNext('GET', () => {
      controller.abort(new Error('activity cancelled'));
      return new Promise((resolve) => setTimeout(resolve, 200));
    });
    const error = await rejection(plugin().provision({ ...push(), signal: controller.signal }));
    expect(error.message).toBe('activity cancelled');
  });
});
