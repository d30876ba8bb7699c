import { ApplicationFailure } from '@temporalio/common';
import { describeDatabaseError, isPermanentDatabaseError } from '../adapters/db/errors.js';
import { PermanentError } from '../adapters/errors.js';
import { GraphUnavailableError } from '../adapters/sources/graph-client.js';
import { createPipelineActivities, type PipelineDeps } from './pipeline.js';
import { createSyncActivities, type SyncDeps } from './sync.js';
import { createTargetActivities, type TargetDeps } from './targets.js';
import type { Activities } from './types.js';

export type ActivityDeps = PipelineDeps & SyncDeps & Pick<TargetDeps, 'plugins'>;

/**
 * Permanent errors (and statements the database refuses for their data) become non-retryable
 * failures with their kind; anything else is retried.
 */
export function withErrorKinds<T extends object>(activities: T): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, fn]) => [
      name,
      async (...args: unknown[]) => {
        try {
          return await (fn as (...a: unknown[]) => Promise<unknown>)(...args);
        } catch (error) {
          if (error instanceof PermanentError) throw ApplicationFailure.nonRetryable(error.message, error.kind);
          // The database refused the statement for what it carries: retrying fails the same way.
          if (isPermanentDatabaseError(error)) throw ApplicationFailure.nonRetryable(describeDatabaseError(error), 'DatabaseRejected');
          // A throttled source says when to come back: the next attempt waits that long, not less.
          if (error instanceof GraphUnavailableError && error.retryAfterMs !== undefined) {
            throw ApplicationFailure.create({ message: error.message, type: 'SourceThrottled', nextRetryDelay: error.retryAfterMs });
          }
          throw error;
        }
      },
    ]),
  ) as T;
}

/** Every activity, closed over its dependencies (no globals): the worker registers these. */
export function createActivities(deps: ActivityDeps): Activities {
  return withErrorKinds({ ...createPipelineActivities(deps), ...createSyncActivities(deps), ...createTargetActivities(deps) });
}
