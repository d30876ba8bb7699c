import { randomBytes } from 'node:crypto';

/*
 * The payload keys of a test run (flowthru encrypts every payload it hands Temporal; see
 * src/adapters/temporal/codec.ts). Tests make a key of their own, fresh each run. The recorded
 * histories (test/histories/) were sealed with a fixed key kept here, which is a test key and
 * nothing else: it is always listed, so they decode and replay.
 */
export const REPLAY_KEY_ID = 'replay-1';
const REPLAY_KEY = 'h/WsN7mag2jhtHJPYmjCVkspRPGZLz4mQn5vUHFgp4o=';

/**
 * The environment for a test run: a fresh key `test` to seal with, the replay key to read the
 * recorded histories. FLOWTHRU_PAYLOAD_KEY_ID=replay-1 seals with the replay key instead (when
 * recording histories).
 */
export function testPayloadKeyEnv(env: NodeJS.ProcessEnv = process.env): { FLOWTHRU_PAYLOAD_KEYS: string; FLOWTHRU_PAYLOAD_KEY_ID: string } {
  return {
    FLOWTHRU_PAYLOAD_KEYS: `test=${randomBytes(32).toString('base64')},${REPLAY_KEY_ID}=${REPLAY_KEY}`,
    FLOWTHRU_PAYLOAD_KEY_ID: env.FLOWTHRU_PAYLOAD_KEY_ID === REPLAY_KEY_ID ? REPLAY_KEY_ID : 'test',
  };
}
