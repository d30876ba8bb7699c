import { asActivityFailure } from './failures.js';
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
          throw asActivityFailure(error);
        }
      },
    ]),
  ) as T;
}

/** Every activity, closed over its dependencies (no globals): the worker registers these. */
export function createActivities(deps: ActivityDeps): Activities {
  const pipeline = createPipelineActivities(deps);
  return withErrorKinds({ ...pipeline, ...createSyncActivities(deps), ...createTargetActivities({ ...deps, finishTargets: (input) => pipeline.finishTargets(input) }) });
}
