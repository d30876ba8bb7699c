import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TargetError, type TargetEvent, type TargetFields, type TargetPush } from '../../src/adapters/targets/types.js';
import { createWebhookTarget } from '../../src/adapters/targets/webhook.js';
import { customerParts, type WebhookTargetConfig } from '../../src/domain/config/schema.js';
import { rejection } from '../support/assert.js';
import { makeWebhookSecret, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

const SECRET_ENV = 'WEBHOOK_TEST_SECRET';
const FIELDS: TargetFields = { displayName: 'Ada Lovelace', email: 'ada@example.com', number: '+13125550100', site: null };

let secret: string;
let receiver: WebhookReceiver;

beforeEach(async () => {
  secret = makeWebhookSecret();
  receiver = await startWebhookReceiver({ secret });
});

afterEach(async () => {
  await receiver.close();
});

/** A webhook target as config validation leaves it (defaults filled in). */
function config(url: string, overrides: Record<string, unknown> = {}): WebhookTargetConfig {
  const parsed = customerParts.targets.parse({ name: 'hr-hook', kind: 'webhook', url, secretEnv: SECRET_ENV, timeoutMs: 2_000, ...overrides });
  if (parsed.kind !== 'webhook') throw new Error('expected a webhook target');
  return parsed;
}

function plugin(overrides: Record<string, unknown> = {}, env: NodeJS.ProcessEnv = { [SECRET_ENV]: secret }) {
  return createWebhookTarget(config(receiver.url, overrides), env);
}

function push(event: TargetEvent = 'provisioned', extra: Partial<TargetPush> = {}): TargetPush {
  return {
    event,
    eventId: randomUUID(),
    target: 'hr-hook',
    subject: { userId: 'u-1', externalId: 'ext-ada', customer: 'contoso', fields: FIELDS },
    memory: { remoteId: null, pushed: null },
    ...extra,
  };
}

async function targetError(promise: Promise<unknown>): Promise<TargetError> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(TargetError);
  return error as TargetError;
}

describe('webhook target', () => {
  it('sends a provision as one signed event the receiver verifies', async () => {
    const p = push('provisioned');
    const result = await plugin().provision(p);

    expect(result).toEqual({ remoteId: null, changed: true, summary: `POST ${receiver.url} → 204 (user.provisioned)` });
    expect(receiver.rejected()).toEqual([]);
    const [delivery, ...more] = receiver.deliveries();
    expect(more).toEqual([]);
    expect(delivery!.id).toBe(p.eventId);
    expect(delivery!.event).toEqual({
      type: 'user.provisioned',
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      data: { target: 'hr-hook', customer: 'contoso', externalId: 'ext-ada', userId: 'u-1', fields: FIELDS },
    });
    expect(delivery!.headers['content-type']).toBe('application/json');
    expect(delivery!.headers['user-agent']).toBe('flowthru');
    expect(delivery!.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(Math.abs(Number(delivery!.timestamp) - Date.now() / 1000)).toBeLessThan(5);
    // The summary goes to the transaction log: no personal values.
    for (const value of Object.values(FIELDS)) if (value) expect(result.summary).not.toContain(value);
  });

  it('names the event in type: changed and moved', async () => {
    const target = plugin();
    await target.provision(push('changed'));
    const moved = await target.provision(push('moved'));
    expect(receiver.events().map((d) => d.event.type)).toEqual(['user.changed', 'user.moved']);
    expect(moved.summary).toBe(`POST ${receiver.url} → 204 (user.moved)`);
  });

  it('sends a repeated push with the same webhook-id, so the receiver keeps it once', async () => {
    const target = plugin();
    const first = push('provisioned');
    await target.provision(first);
    await target.provision(first);
    const other = push('changed');
    await target.provision(other);

    expect(receiver.deliveryCount(first.eventId)).toBe(2);
    expect(receiver.deliveries().map((d) => d.id)).toEqual([first.eventId, first.eventId, other.eventId]);
    expect(other.eventId).not.toBe(first.eventId);
    expect(receiver.events().map((d) => d.id)).toEqual([first.eventId, other.eventId]);
    // Each attempt is signed afresh (its own timestamp), and every one verified.
    expect(receiver.rejected()).toEqual([]);
  });

  it('a retry after a refused attempt carries the same id, and the receiver then keeps the event', async () => {
    receiver.respondWith([503]);
    const target = plugin();
    const p = push('provisioned');
    expect((await targetError(target.provision(p))).retryable).toBe(true);
    await target.provision(p);
    expect(receiver.deliveries().map((d) => [d.id, d.status])).toEqual([
      [p.eventId, 503],
      [p.eventId, 204],
    ]);
    expect(receiver.events()).toHaveLength(1);
  });

  it('signs with the webhook-timestamp of `now`', async () => {
    const at = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    await createWebhookTarget(config(receiver.url), { [SECRET_ENV]: secret }, { now: () => at }).provision(push());
    const [delivery] = receiver.events();
    expect(delivery!.timestamp).toBe(String(at.getTime() / 1000));
    expect(delivery!.event.timestamp).toBe(at.toISOString());
  });

  it('is refused by a receiver with another secret: 401, not retried, secret not in the message', async () => {
    const error = await targetError(plugin({}, { [SECRET_ENV]: makeWebhookSecret() }).provision(push()));
    expect(error.retryable).toBe(false);
    expect(error.kind).toBe('Unauthorized');
    expect(error.message).toContain('401');
    expect(error.message).toContain('hr-hook');
    expect(error.message).toContain(SECRET_ENV);
    expect(error.message).not.toContain(secret.slice('whsec_'.length));
    expect(receiver.rejected()).toEqual([expect.objectContaining({ reason: 'No matching signature found' })]);
    expect(receiver.deliveries()).toEqual([]);
  });

  it('retries a 5xx', async () => {
    receiver.respondWith([500], {}, 'database down');
    const error = await targetError(plugin().provision(push()));
    expect(error).toMatchObject({ retryable: true, kind: 'Unavailable', retryAfterMs: undefined });
    expect(error.message).toContain('500');
    expect(error.message).toContain('database down');
  });

  it('retries a 429 after its Retry-After, and a 408', async () => {
    receiver.respondWith([429], { 'retry-after': '3' });
    receiver.respondWith([408]);
    const target = plugin();
    const throttled = await targetError(target.provision(push()));
    expect(throttled).toMatchObject({ retryable: true, kind: 'Throttled', retryAfterMs: 3000 });
    const timedOut = await targetError(target.provision(push()));
    expect(timedOut).toMatchObject({ retryable: true, retryAfterMs: undefined });
  });

  it('fails for good on another 4xx, with the status and the start of the answer', async () => {
    const answer = `{"error":"gone","detail":"${'x'.repeat(400)}"}`;
    receiver.respondWith([410], { 'content-type': 'application/json' }, answer);
    const error = await targetError(plugin().provision(push()));
    expect(error).toMatchObject({ retryable: false, kind: 'Rejected' });
    expect(error.message).toContain('webhook target "hr-hook"');
    expect(error.message).toContain('410');
    expect(error.message).toContain(answer.slice(0, 200));
    expect(error.message).not.toContain(answer.slice(0, 201));
  });

  it('does not follow a redirect, and says where it points', async () => {
    receiver.respondWith([308], { location: '/webhooks/v2?token=abc' });
    const error = await targetError(plugin().provision(push()));
    expect(error).toMatchObject({ retryable: false, kind: 'Redirected' });
    expect(error.message).toContain(`${new URL(receiver.url).origin}/webhooks/v2`);
    expect(error.message).not.toContain('token=abc');
    expect(receiver.deliveries()).toHaveLength(1);
  });

  it('retries when the receiver does not answer within timeoutMs', async () => {
    receiver.hang(5_000);
    const started = Date.now();
    const error = await targetError(plugin({ timeoutMs: 300 }).provision(push()));
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(error).toMatchObject({ retryable: true, kind: 'Unavailable' });
    expect(error.message).toContain('no answer within 300 ms');
  });

  it('retries when nothing listens', async () => {
    const url = receiver.url;
    await receiver.close();
    receiver = await startWebhookReceiver({ secret }); // for afterEach
    const error = await targetError(createWebhookTarget(config(url), { [SECRET_ENV]: secret }).provision(push()));
    expect(error).toMatchObject({ retryable: true, kind: 'Unavailable' });
    expect(error.message).toContain('ECONNREFUSED');
  });

  it('lets a cancelled push end with the cancellation', async () => {
    receiver.hang(5_000);
    const controller = new AbortController();
    const reason = new Error('activity cancelled');
    setTimeout(() => controller.abort(reason), 100);
    const error = await rejection(plugin().provision(push('provisioned', { signal: controller.signal })));
    expect(error).toBe(reason);
  });

  it('needs its secret: missing or malformed fail for good, before anything is sent', async () => {
    const missing = await targetError(plugin({}, {}).provision(push()));
    expect(missing).toMatchObject({ retryable: false, kind: 'MissingSecret' });
    expect(missing.message).toContain(SECRET_ENV);
    const empty = await targetError(plugin({}, { [SECRET_ENV]: '' }).provision(push()));
    expect(empty.kind).toBe('MissingSecret');
    for (const bad of ['hunter2', 'whsec_', 'whsec_not base64!', secret.slice('whsec_'.length)]) {
      const error = await targetError(plugin({}, { [SECRET_ENV]: bad }).provision(push()));
      expect(error).toMatchObject({ retryable: false, kind: 'BadSecret' });
      expect(error.message).toContain(SECRET_ENV);
      if (bad !== 'whsec_') expect(error.message).not.toContain(bad);
    }
    expect(receiver.deliveries()).toEqual([]);
    expect(receiver.rejected()).toEqual([]);
  });

  it('refuses a url with credentials in it, without quoting them', async () => {
    const url = new URL(receiver.url);
    url.username = 'hook';
    url.password = 'pa55word';
    const error = await targetError(createWebhookTarget(config(url.toString()), { [SECRET_ENV]: secret }).provision(push()));
    expect(error).toMatchObject({ retryable: false, kind: 'BadUrl' });
    expect(error.message).not.toContain('pa55word');
    expect(receiver.deliveries()).toEqual([]);
  });

  it('sends user.deprovisioned with the fields last sent', async () => {
    const pushed: TargetFields = { ...FIELDS, email: 'ada.old@example.com' };
    const target = plugin();
    const gone = push('deprovisioned', { memory: { remoteId: null, pushed } });
    const result = await target.deprovision(gone);
    expect(result).toEqual({ remoteId: null, changed: true, summary: `POST ${receiver.url} → 204 (user.deprovisioned)` });
    // Never pushed before: the subject's fields stand in.
    await target.deprovision(push('deprovisioned'));
    expect(receiver.events().map((d) => [d.event.type, d.event.data.fields])).toEqual([
      ['user.deprovisioned', pushed],
      ['user.deprovisioned', FIELDS],
    ]);
    expect(receiver.events()[0]!.id).toBe(gone.eventId);
  });
});
