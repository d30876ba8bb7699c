import { ApplicationFailure } from '@temporalio/common';
import { describeDatabaseError, isPermanentDatabaseError } from '../adapters/db/errors.js';
import { PermanentError } from '../adapters/errors.js';
import { GraphUnavailableError } from '../adapters/sources/graph-client.js';

/**
 * What an activity's error becomes for Temporal: permanent errors (and statements the database
 * refuses for their data) non-retryable failures with their kind; a throttled source a failure
 * that says when to come back; anything else as it is (retried).
 */
export function asActivityFailure(error: unknown): unknown {
  if (error instanceof PermanentError) return ApplicationFailure.nonRetryable(error.message, error.kind);
  // The database refused the statement for what it carries: retrying fails the same way.
  if (isPermanentDatabaseError(error)) return ApplicationFailure.nonRetryable(describeDatabaseError(error), 'DatabaseRejected');
  // A throttled source says when to come back: the next attempt waits that long, not less.
  if (error instanceof GraphUnavailableError && error.retryAfterMs !== undefined) {
    return ApplicationFailure.create({ message: error.message, type: 'SourceThrottled', nextRetryDelay: error.retryAfterMs });
  }
  return error;
}

/** A failure as data, for an activity that reports several outcomes (see TargetActivities.pushFirstTries). */
export interface FailureData {
  readonly message: string;
  readonly type: string;
  readonly nonRetryable: boolean;
  /** The target's Retry-After, when it gave one. */
  readonly retryAfterMs?: number;
}

export function failureData(error: unknown): FailureData {
  const failure = asActivityFailure(error);
  if (failure instanceof ApplicationFailure) {
    const asked = (failure.details?.[0] as { retryAfterMs?: unknown } | undefined)?.retryAfterMs;
    return {
      message: failure.message,
      type: failure.type ?? 'Error',
      nonRetryable: failure.nonRetryable === true,
      ...(typeof asked === 'number' ? { retryAfterMs: asked } : {}),
    };
  }
  return { message: failure instanceof Error ? failure.message : String(failure), type: failure instanceof Error ? failure.name : 'Error', nonRetryable: false };
}
