import { fileURLToPath } from 'node:url';
import type { DataConverter } from '@temporalio/common';
import { AesGcmPayloadCodec, payloadKeysFromEnv, type PayloadKeys } from './codec.js';

/** The failure converter's file (see failure-converter.cjs); `npm run build` copies it into dist/. */
export const FAILURE_CONVERTER_PATH = fileURLToPath(new URL('./failure-converter.cjs', import.meta.url));

/**
 * The one data converter every flowthru client and worker uses (the CLI, the worker, the demo, the
 * benchmark, the tests, replay): payloads sealed with AES-256-GCM, failures' messages and stack
 * traces encoded into a payload so they are sealed too.
 */
export function flowthruDataConverter(keys: PayloadKeys): DataConverter {
  return { payloadCodecs: [new AesGcmPayloadCodec(keys)], failureConverterPath: FAILURE_CONVERTER_PATH };
}

/** The data converter with the keys of the environment; throws PayloadKeyError when they are missing or malformed. */
export function dataConverterFromEnv(env: NodeJS.ProcessEnv = process.env): DataConverter {
  return flowthruDataConverter(payloadKeysFromEnv(env));
}
