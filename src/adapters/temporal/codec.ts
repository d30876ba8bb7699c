import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { METADATA_ENCODING_KEY, type Payload, type PayloadCodec } from '@temporalio/common';
import proto from '@temporalio/proto';

/*
 * Personal data out of Temporal's history (SPEC §6): every payload a flowthru client or worker
 * sends (workflow and activity inputs and results, signals, queries, failures' details) is
 * encrypted with AES-256-GCM before it leaves the process. Each payload gets a random 96-bit IV
 * (drawn from the CSPRNG 256 at a time, each taken once);
 * the id of the key that sealed it travels in the payload's metadata, so keys can be rotated: new
 * payloads use the current key, and older histories decode while their key is still listed.
 *
 * Keys come from the environment:
 *   FLOWTHRU_PAYLOAD_KEYS    id=base64 pairs, comma-separated: every key that may still be needed
 *   FLOWTHRU_PAYLOAD_KEY_ID  the id of the key new payloads are sealed with
 * A key is 32 random bytes: `openssl rand -base64 32`.
 */

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The key settings are missing or malformed: one sentence saying which and how to fix it. */
export class PayloadKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadKeyError';
  }
}

export interface PayloadKeys {
  /** The id new payloads are sealed with. */
  readonly current: string;
  readonly keys: ReadonlyMap<string, Buffer>;
}

const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** Reads FLOWTHRU_PAYLOAD_KEYS and FLOWTHRU_PAYLOAD_KEY_ID; throws PayloadKeyError naming what is wrong. */
export function payloadKeysFromEnv(env: NodeJS.ProcessEnv = process.env): PayloadKeys {
  const listed = env.FLOWTHRU_PAYLOAD_KEYS?.trim();
  if (!listed) {
    throw new PayloadKeyError('FLOWTHRU_PAYLOAD_KEYS is not set: set it to id=key pairs (a key is 32 random bytes in base64, e.g. from `openssl rand -base64 32`)');
  }
  const keys = new Map<string, Buffer>();
  for (const [i, pair] of listed.split(',').entries()) {
    const at = pair.indexOf('=');
    const id = pair.slice(0, at).trim();
    const text = pair.slice(at + 1).trim();
    // Never quote an entry: a key pasted without its id would be printed.
    if (at < 1 || text === '' || !KEY_ID.test(id)) throw new PayloadKeyError(`FLOWTHRU_PAYLOAD_KEYS: entry ${i + 1} is not id=key with an id of letters, digits, ".", "_" or "-"`);
    if (keys.has(id)) throw new PayloadKeyError(`FLOWTHRU_PAYLOAD_KEYS: key id "${id}" is listed twice`);
    const key = /^[A-Za-z0-9+/]+={0,2}$/.test(text) ? Buffer.from(text, 'base64') : Buffer.alloc(0);
    if (key.length !== 32) throw new PayloadKeyError(`FLOWTHRU_PAYLOAD_KEYS: key "${id}" is not 32 bytes in base64 (AES-256); make one with \`openssl rand -base64 32\``);
    keys.set(id, key);
  }
  const current = env.FLOWTHRU_PAYLOAD_KEY_ID?.trim();
  if (!current) throw new PayloadKeyError('FLOWTHRU_PAYLOAD_KEY_ID is not set: set it to the id of the key in FLOWTHRU_PAYLOAD_KEYS that new payloads are sealed with');
  if (!keys.has(current)) throw new PayloadKeyError(`FLOWTHRU_PAYLOAD_KEY_ID is "${current}", which FLOWTHRU_PAYLOAD_KEYS does not list (it lists ${[...keys.keys()].join(', ')})`);
  return { current, keys };
}

/**
 * A fresh key as the two environment variables, for runs that keep nothing: the benchmark, and the
 * tests and demo when no key is set. Production keys are made once and kept (see the README).
 */
export function freshPayloadKeyEnv(id = 'local'): { FLOWTHRU_PAYLOAD_KEYS: string; FLOWTHRU_PAYLOAD_KEY_ID: string } {
  return { FLOWTHRU_PAYLOAD_KEYS: `${id}=${randomBytes(32).toString('base64')}`, FLOWTHRU_PAYLOAD_KEY_ID: id };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const utf8 = (text: string) => encoder.encode(text);
const text = (bytes: Uint8Array | null | undefined) => (bytes ? decoder.decode(bytes) : undefined);

/** IVs drawn from the system's CSPRNG 256 at a time (one call where there were 256), each used once. */
const IVS_PER_DRAW = 256;
let ivs = Buffer.alloc(0);
let nextIv = 0;
function freshIv(): Buffer {
  if (nextIv + IV_BYTES > ivs.length) {
    ivs = randomBytes(IV_BYTES * IVS_PER_DRAW);
    nextIv = 0;
  }
  const iv = ivs.subarray(nextIv, nextIv + IV_BYTES);
  nextIv += IV_BYTES;
  return iv;
}

/**
 * AES-256-GCM over each whole payload (its metadata and data, serialized as Temporal's Payload
 * message), so the encoding of the original (json/plain, binary/null, …) is sealed too. Payloads
 * that are not encrypted (histories from before the codec) pass through decode unchanged.
 */
export class AesGcmPayloadCodec implements PayloadCodec {
  constructor(private readonly keys: PayloadKeys) {}

  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.keys.keys.get(this.keys.current)!;
    return payloads.map((payload) => {
      const iv = freshIv();
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const plain = proto.temporal.api.common.v1.Payload.encode(payload).finish();
      const sealed = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: { [METADATA_ENCODING_KEY]: utf8(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: utf8(this.keys.current) },
        data: sealed,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      if (text(payload.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) return payload;
      const id = text(payload.metadata?.[KEY_ID_METADATA]);
      const key = id === undefined ? undefined : this.keys.keys.get(id);
      if (!key) {
        throw new PayloadKeyError(
          `a payload is sealed with key "${id ?? '(none)'}", which FLOWTHRU_PAYLOAD_KEYS does not list: add the old key back to decode histories written with it`,
        );
      }
      const sealed = Buffer.from(payload.data ?? new Uint8Array());
      if (sealed.length < IV_BYTES + TAG_BYTES) throw new PayloadKeyError(`a payload sealed with key "${id}" is too short to be one flowthru wrote`);
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES));
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new PayloadKeyError(`a payload sealed with key "${id}" does not decrypt with the key of that id: the key changed, or the payload was altered`);
      }
      return proto.temporal.api.common.v1.Payload.decode(plain) as Payload;
    });
  }
}
