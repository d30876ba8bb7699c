import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter, METADATA_ENCODING_KEY } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { AesGcmPayloadCodec, PayloadKeyError, payloadKeysFromEnv } from '../../src/adapters/temporal/codec.js';

/* The payload codec (issue 12, first part): AES-256-GCM, a key id per payload, rotation. */

const key = () => randomBytes(32).toString('base64');
const env = (keys: Record<string, string>, current: string) => ({
  FLOWTHRU_PAYLOAD_KEYS: Object.entries(keys)
    .map(([id, k]) => `${id}=${k}`)
    .join(','),
  FLOWTHRU_PAYLOAD_KEY_ID: current,
});
const ada = { firstName: 'Ada', lastName: 'Lovelace', email: 'ada@acme.example', number: '+13125550142' };

describe('the payload codec', () => {
  it('seals a payload so that nothing of it is readable, with the key id beside it, and opens it again', async () => {
    const codec = new AesGcmPayloadCodec(payloadKeysFromEnv(env({ k1: key() }, 'k1')));
    const payload = defaultPayloadConverter.toPayload(ada);
    const [sealed] = await codec.encode([payload]);
    const raw = Buffer.from(sealed!.data!).toString('latin1');
    for (const value of Object.values(ada)) expect(raw).not.toContain(value);
    expect(new TextDecoder().decode(sealed!.metadata![METADATA_ENCODING_KEY])).toBe('binary/encrypted');
    expect(new TextDecoder().decode(sealed!.metadata!['encryption-key-id'])).toBe('k1');
    const [opened] = await codec.decode([sealed!]);
    expect(defaultPayloadConverter.fromPayload(opened!)).toEqual(ada);
    // A random IV per payload: the same value seals differently each time.
    const [again] = await codec.encode([payload]);
    expect(Buffer.from(again!.data!).equals(Buffer.from(sealed!.data!))).toBe(false);
  });

  it('gives every payload an IV of its own, across the draws it takes them from in bulk', async () => {
    const codec = new AesGcmPayloadCodec(payloadKeysFromEnv(env({ k1: key() }, 'k1')));
    const payloads = Array.from({ length: 1000 }, (_, i) => defaultPayloadConverter.toPayload({ ...ada, i }));
    const sealed = [...(await codec.encode(payloads.slice(0, 600))), ...(await codec.encode(payloads.slice(600)))];
    expect(new Set(sealed.map((p) => Buffer.from(p.data!).subarray(0, 12).toString('hex'))).size).toBe(1000);
    expect((await codec.decode(sealed)).map((p) => defaultPayloadConverter.fromPayload<{ i: number }>(p).i)).toEqual(payloads.map((_, i) => i));
  });

  it('decodes old payloads after a rotation while their key is listed; plaintext payloads pass through', async () => {
    const [k1, k2] = [key(), key()];
    const before = new AesGcmPayloadCodec(payloadKeysFromEnv(env({ k1 }, 'k1')));
    const after = new AesGcmPayloadCodec(payloadKeysFromEnv(env({ k1, k2 }, 'k2')));
    const [old] = await before.encode([defaultPayloadConverter.toPayload(ada)]);
    const [fresh] = await after.encode([defaultPayloadConverter.toPayload('new')]);
    expect(new TextDecoder().decode(fresh!.metadata!['encryption-key-id'])).toBe('k2');
    const plain = defaultPayloadConverter.toPayload('from before the codec');
    const decoded = await after.decode([old!, fresh!, plain]);
    expect(decoded.map((p) => defaultPayloadConverter.fromPayload(p))).toEqual([ada, 'new', 'from before the codec']);
    // Once the old key is dropped, its payloads say which key they need.
    const dropped = new AesGcmPayloadCodec(payloadKeysFromEnv(env({ k2 }, 'k2')));
    await expect(dropped.decode([old!])).rejects.toThrow('a payload is sealed with key "k1", which FLOWTHRU_PAYLOAD_KEYS does not list');
  });

  it('refuses an altered payload, or one sealed with another key of the same id', async () => {
    const codec = new AesGcmPayloadCodec(payloadKeysFromEnv(env({ k1: key() }, 'k1')));
    const [sealed] = await codec.encode([defaultPayloadConverter.toPayload(ada)]);
    const altered = Buffer.from(sealed!.data!);
    altered[20] = altered[20]! ^ 1;
    await expect(codec.decode([{ ...sealed!, data: altered }])).rejects.toThrow(/does not decrypt with the key of that id/);
    const other = new AesGcmPayloadCodec(payloadKeysFromEnv(env({ k1: key() }, 'k1')));
    await expect(other.decode([sealed!])).rejects.toThrow(PayloadKeyError);
  });

  it('says in one sentence what is wrong with the key settings', () => {
    const problem = (e: Record<string, string | undefined>) => {
      try {
        payloadKeysFromEnv(e);
        return null;
      } catch (error) {
        expect(error).toBeInstanceOf(PayloadKeyError);
        return (error as Error).message;
      }
    };
    expect(problem({})).toMatch(/^FLOWTHRU_PAYLOAD_KEYS is not set/);
    expect(problem({ FLOWTHRU_PAYLOAD_KEYS: `k1=${key()}` })).toMatch(/^FLOWTHRU_PAYLOAD_KEY_ID is not set/);
    expect(problem(env({ k1: key() }, 'k2'))).toBe('FLOWTHRU_PAYLOAD_KEY_ID is "k2", which FLOWTHRU_PAYLOAD_KEYS does not list (it lists k1)');
    expect(problem(env({ k1: randomBytes(16).toString('base64') }, 'k1'))).toMatch(/key "k1" is not 32 bytes in base64/);
    expect(problem(env({ k1: 'not base64!' }, 'k1'))).toMatch(/key "k1" is not 32 bytes in base64/);
    // A key pasted without its id is not quoted back.
    const bare = key();
    expect(problem({ FLOWTHRU_PAYLOAD_KEYS: bare, FLOWTHRU_PAYLOAD_KEY_ID: 'k1' })).toMatch(/entry 1 is not id=key/);
    expect(problem({ FLOWTHRU_PAYLOAD_KEYS: bare, FLOWTHRU_PAYLOAD_KEY_ID: 'k1' })).not.toContain(bare.slice(0, 10));
    expect(problem({ FLOWTHRU_PAYLOAD_KEYS: `k1=${key()},k1=${key()}`, FLOWTHRU_PAYLOAD_KEY_ID: 'k1' })).toMatch(/"k1" is listed twice/);
    expect(problem(env({ a: key(), b: key() }, 'b'))).toBeNull();
  });
});
