import type { LogMetadata } from '@temporalio/common';

/*
 * What the worker's log may say (SPEC §6): ids and kinds, never a person's name, email or number,
 * never a secret. Temporal's worker logs each failed activity with its error, and an error's
 * message can quote a record (a target answering "no mailbox for ada@…"): below LOG_LEVEL=debug an
 * error is logged by its kind only. The message is in the user's status and reason, in the
 * transaction log, and (encrypted) in Temporal's history.
 */

const ERROR_KEYS = new Set(['error', 'err', 'failure', 'cause']);

interface Kind {
  name: string;
  type?: string;
  nonRetryable?: boolean;
  kind?: string;
}

function kindOf(error: unknown): Kind | string {
  if (!(error instanceof Error)) return typeof error;
  const { type, nonRetryable, kind } = error as { type?: unknown; nonRetryable?: unknown; kind?: unknown };
  return {
    name: error.name,
    ...(typeof type === 'string' ? { type } : {}),
    ...(typeof nonRetryable === 'boolean' ? { nonRetryable } : {}),
    ...(typeof kind === 'string' ? { kind } : {}),
  };
}

/** The metadata of a log entry with every error reduced to its kind, unless `debug`. */
export function withoutPersonalData(meta: LogMetadata | undefined, debug: boolean): LogMetadata {
  if (!meta || debug) return meta ?? {};
  const safe: LogMetadata = {};
  for (const [key, value] of Object.entries(meta)) safe[key] = ERROR_KEYS.has(key) || value instanceof Error ? kindOf(value) : value;
  return safe;
}
