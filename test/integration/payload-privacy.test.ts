import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { AesGcmPayloadCodec, freshPayloadKeyEnv, payloadKeysFromEnv } from '../../src/adapters/temporal/codec.js';
import { serveCodec } from '../../src/client/commands/codec-server.js';
import type { CodecServer } from '../../src/client/codec-server.js';
import { DEFAULT_TEMPORAL_BIN } from '../../src/demo/temporal-dev-server.js';
import { onboardWorkflowId } from '../../src/workflows/config.js';
import { freePort } from '../../src/demo/ports.js';
import { acmeCsv, PipelineHarness } from '../support/pipeline.js';
import { makeWebhookSecret, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.js';

/*
 * Personal data stays out of Temporal's history (SPEC §6): after a sync, every workflow's history,
 * exported the way an operator would (the Temporal CLI's JSON and the SDK's fetchHistory), holds
 * none of the synced people's names, emails, phone numbers or assigned numbers, in plain text or
 * base64 — not in inputs, results, summaries, nor in a failure's message (a target that quotes the
 * user's email). Through the codec server the same history reads decoded.
 */

const run = promisify(execFile);
const bin = process.env.FLOWTHRU_TEMPORAL_BIN ?? DEFAULT_TEMPORAL_BIN;

const people = [
  { employee_id: 'P1', login: 'ozymandias', mail: 'ozzie.quillfeather@acme.example', given_name: 'Ozzie', surname: 'Quillfeather', department: 'Engineering', city: 'Chicago', mobile: '+13125557001' },
  { employee_id: 'P2', login: 'bellatrix', mail: 'bella.thistlewood@acme.example', given_name: 'Bella', surname: 'Thistlewood', department: 'Engineering', city: 'Dallas', mobile: '+12145557002' },
  { employee_id: 'P3', login: 'marmaduke', mail: 'marmaduke.fennimore@acme.example', given_name: 'Marmaduke', surname: 'Fennimore', department: 'Marketing', city: 'Chicago', mobile: '+13125557003' },
];
const rhea = { employee_id: 'R1', login: 'rheaq', mail: 'rhea.wolfsbane@acme.example', given_name: 'Rhea', surname: 'Wolfsbane', department: 'Engineering', city: 'Chicago', mobile: '+13125557004' };

let h: PipelineHarness;
let hooks: WebhookReceiver;
let codec: CodecServer;
let worker: ChildProcess;
let workerLog = '';
const token = 'codec-test-token';
const uiOrigin = 'http://127.0.0.1:18233';
/** What must not be found: every personal value synced, and the numbers flowthru gave them. */
let secrets: string[] = [];

/** Every string in a JSON value, and each one's base64 reading; every byte array as text. */
function texts(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') {
    out.push(value);
    if (value.length >= 8 && /^[A-Za-z0-9+/]+={0,2}$/.test(value)) out.push(Buffer.from(value, 'base64').toString('latin1'));
  } else if (value instanceof Uint8Array) {
    out.push(Buffer.from(value).toString('latin1'));
  } else if (Array.isArray(value)) {
    for (const item of value) texts(item, out);
  } else if (value && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      out.push(key);
      texts(item, out);
    }
  }
  return out;
}

const leaks = (history: unknown) => {
  const all = texts(history).join('\n');
  return secrets.filter((secret) => all.includes(secret));
};

async function cliHistory(workflowId: string, runId?: string, decode = false): Promise<unknown> {
  const args = ['workflow', 'show', '--address', inject('temporalAddress'), '--workflow-id', workflowId, '--output', 'json'];
  if (runId) args.push('--run-id', runId);
  if (decode) args.push('--codec-endpoint', codec.url, '--codec-auth', `Bearer ${token}`);
  const { stdout } = await run(bin, args, { maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout);
}

beforeAll(async () => {
  h = await PipelineHarness.create();
  process.env.PRIVACY_WEBHOOK_SECRET = makeWebhookSecret();
  hooks = await startWebhookReceiver({ secret: process.env.PRIVACY_WEBHOOK_SECRET });
  // The worker in a process of its own, as in production, so its log can be read.
  worker = await h.workerProcess('warn');
  worker.stdout!.on('data', (chunk: Buffer) => (workerLog += chunk.toString()));
  codec = await serveCodec({ host: '127.0.0.1', port: await freePort(), origins: [uiOrigin], env: { ...process.env, FLOWTHRU_CODEC_TOKEN: token } });
});
afterAll(async () => {
  worker?.kill('SIGTERM');
  await codec?.close();
  await hooks?.close();
  await h?.close();
});

describe('personal data in Temporal', () => {
  it('no history of a sync, its pipelines or a failed target push holds a personal value; decoded, they do', async () => {
    const version = await h.apply({
      version: 1,
      customers: [
        h.acmeCustomer('privacy'),
        h.acmeCustomer('privacyhook', (c) => {
          c.targets = [{ name: 'events', kind: 'webhook', url: hooks.url, secretEnv: 'PRIVACY_WEBHOOK_SECRET', retryInterval: '0s' }];
        }),
      ],
    });
    h.writeFile('privacy.csv', acmeCsv(people));
    h.writeFile('privacyhook.csv', acmeCsv([rhea]));
    // The receiver refuses the push and quotes the user's email: a failure message that must be sealed too.
    hooks.respondWith([422], {}, `no mailbox for ${rhea.mail} (${rhea.given_name} ${rhea.surname})`);
    const report = await h.sync('privacy', 'hr', version);
    expect(report.counts).toMatchObject({ seen: 3, provisioned: 2, unplaced: 0 });
    const hooked = await h.sync('privacyhook', 'hr', version);
    expect(hooked.counts).toMatchObject({ seen: 1, failed: 1 });
    expect((await h.userRow('privacyhook', 'R1')).status_reason).toContain(rhea.mail);

    const numbers = (await h.db.selectFrom('number_inventory').select('number').where('user_id', 'is not', null).execute()).map((n) => n.number);
    expect(numbers.length).toBeGreaterThanOrEqual(3);
    secrets = [...people, rhea].flatMap((p) => [p.mail, p.given_name, p.surname, p.mobile, p.login]).concat(numbers);

    const list = async () => {
      const found: { workflowId: string; runId: string }[] = [];
      for (const customer of ['privacy', 'privacyhook']) {
        for await (const wf of h.client.workflow.list({ query: `FlowthruCustomer = '${customer}'` })) found.push({ workflowId: wf.workflowId, runId: wf.runId });
      }
      return found;
    };
    // Both syncs and all four pipelines (Temporal's list is eventually consistent: wait for it).
    await expect.poll(async () => (await list()).length, { timeout: 30_000, interval: 250 }).toBe(6);
    const workflows = await list();
    expect(workflows.filter((w) => w.workflowId.startsWith('sync/'))).toHaveLength(2);
    expect(workflows.filter((w) => w.workflowId.startsWith('onboard/'))).toHaveLength(4);

    for (const { workflowId, runId } of workflows) {
      expect(workflowId, 'a workflow id holds no personal value').not.toMatch(new RegExp(secrets.map((s) => s.replace(/[+.]/g, '\\$&')).join('|')));
      const sdk = await h.client.workflow.getHandle(workflowId, runId).fetchHistory();
      expect(leaks(sdk), `fetchHistory of ${workflowId}`).toEqual([]);
      expect(leaks(await cliHistory(workflowId, runId)), `temporal workflow show of ${workflowId}`).toEqual([]);
    }

    // The scan finds what is there: decoded through the codec server, the pipelines' histories hold
    // the numbers they assigned, and the failed push's history the email its receiver quoted.
    const ozzie = await h.userRow('privacy', 'P1');
    const ozzieNumber = (await h.numbersOf(ozzie.id))[0]!.split(':')[0]!;
    const decoded = texts(await cliHistory(onboardWorkflowId('privacy', 'hr', 'P1'), undefined, true)).join('\n');
    expect(decoded).toContain(ozzieNumber);
    const failed = texts(await cliHistory(onboardWorkflowId('privacyhook', 'hr', 'R1'), undefined, true)).join('\n');
    expect(failed).toContain(rhea.mail);
    // … and the pipeline's summary, decoded, says whose pipeline it is.
    expect(decoded).toContain('pipeline of privacy/hr user P1');

    // The worker's log names the failed push by its ids and kind, not by what the receiver said.
    // (A first try runs with a pass's others in one local activity, which reports its failure as data and logs it itself.)
    const failedPush = workerLog.split('\n').find((line) => /Activity failed|Target push failed/.test(line) && line.includes('pushToTarget'));
    expect(failedPush).toBeDefined();
    expect(JSON.parse(failedPush!)).toMatchObject({ workflowId: onboardWorkflowId('privacyhook', 'hr', 'R1'), error: { name: 'ApplicationFailure', nonRetryable: true } });
    expect(secrets.filter((secret) => workerLog.includes(secret))).toEqual([]);
  });
});

describe('the codec server', () => {
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${codec.url}${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Namespace': 'default', Authorization: `Bearer ${token}`, ...headers }, body: JSON.stringify(body) });
  const json = (payload: { metadata?: Record<string, Uint8Array> | null; data?: Uint8Array | null }) => ({
    metadata: Object.fromEntries(Object.entries(payload.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(payload.data ?? new Uint8Array()).toString('base64'),
  });

  it('encodes and decodes what Temporal UI sends it, in the remote codec protocol', async () => {
    const plain = json(defaultPayloadConverter.toPayload({ firstName: 'Ozzie' }));
    const encoded = (await (await post('/encode', { payloads: [plain] })).json()) as { payloads: unknown[] };
    expect(JSON.stringify(encoded)).not.toContain(Buffer.from('Ozzie').toString('base64').slice(0, 6));
    const decoded = await post('/decode', encoded);
    expect(decoded.status).toBe(200);
    expect(await decoded.json()).toEqual({ payloads: [plain] });
  });

  it("answers the UI's preflight for its origin only", async () => {
    const preflight = await fetch(`${codec.url}/decode`, { method: 'OPTIONS', headers: { Origin: uiOrigin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(uiOrigin);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/X-Namespace/i);
    const foreign = await post('/decode', { payloads: [] }, { Origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
    expect(await foreign.json()).toEqual({ error: expect.stringContaining('origin https://evil.example is not allowed') });
  });

  it('refuses a wrong or missing token, another namespace, and a body that is not the protocol', async () => {
    expect((await post('/decode', { payloads: [] }, { Authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await post('/decode', { payloads: [] }, { Authorization: '' })).status).toBe(401);
    expect((await post('/decode', { payloads: [] }, { 'X-Namespace': 'other' })).status).toBe(403);
    const bad = await post('/decode', { nothing: true });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: 'the body has no "payloads" array' });
    // A payload sealed with a key this server does not hold: a 400 naming the key id, not a crash.
    const foreign = new AesGcmPayloadCodec(payloadKeysFromEnv(freshPayloadKeyEnv('elsewhere')));
    const [sealed] = await foreign.encode([defaultPayloadConverter.toPayload('x')]);
    const unknown = await post('/decode', { payloads: [json(sealed!)] });
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { error: string }).error).toMatch(/key "elsewhere", which FLOWTHRU_PAYLOAD_KEYS does not list/);
  });

  it('will not listen beyond loopback without a token', async () => {
    await expect(serveCodec({ host: '0.0.0.0', port: 0, origins: [uiOrigin], env: { ...process.env, FLOWTHRU_CODEC_TOKEN: '' } })).rejects.toThrow(/needs FLOWTHRU_CODEC_TOKEN/);
  });
});

describe('the worker and the CLI without a usable key', () => {
  const withEnv = async (env: Record<string, string | undefined>, ...args: string[]) => {
    const saved = { ...process.env };
    for (const [k, v] of Object.entries(env)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    try {
      return await h.cli(...args);
    } finally {
      process.env = saved;
    }
  };

  it('the worker stops at start with one sentence naming the setting', async () => {
    const missing = await withEnv({ FLOWTHRU_PAYLOAD_KEYS: undefined }, 'worker');
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/^flowthru: FLOWTHRU_PAYLOAD_KEYS is not set: set it to id=key pairs/);
    const short = await withEnv({ FLOWTHRU_PAYLOAD_KEYS: 'k1=c2hvcnQ=', FLOWTHRU_PAYLOAD_KEY_ID: 'k1' }, 'worker');
    expect(short.code).toBe(1);
    expect(short.err).toMatch(/^flowthru: FLOWTHRU_PAYLOAD_KEYS: key "k1" is not 32 bytes in base64/);
    expect(short.err).not.toContain('c2hvcnQ=');
    const unknownId = await withEnv({ FLOWTHRU_PAYLOAD_KEY_ID: 'nope' }, 'worker');
    expect(unknownId.err).toMatch(/^flowthru: FLOWTHRU_PAYLOAD_KEY_ID is "nope", which FLOWTHRU_PAYLOAD_KEYS does not list/);
  });

  it('a Temporal command of the CLI says the same', async () => {
    const result = await withEnv({ FLOWTHRU_PAYLOAD_KEYS: undefined }, 'sync', 'hr', '--customer', 'privacy', '--mode', 'add');
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/^flowthru: FLOWTHRU_PAYLOAD_KEYS is not set/);
  });
});
