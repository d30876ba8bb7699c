import { ActivityFailure, proxyActivities } from '@temporalio/workflow';
import type { TargetActivities, TargetPushPlan } from '../activities/types.js';

/*
 * A push to a target is a regular activity (it talks to the outside world), with the target's own
 * retry policy: its retry interval between tries, its maximum retries (0: for ever; an interval of
 * 0: never retry). Refusals for good (a 4xx, a schema violation) are non-retryable whatever the policy.
 */
export function pushActivity(plan: Pick<TargetPushPlan, 'retryIntervalMs' | 'maxRetries' | 'timeoutMs'>, retries: 'policy' | 'once', summary?: string) {
  const never = retries === 'once' || plan.retryIntervalMs === 0;
  return proxyActivities<TargetActivities>({
    ...(summary ? { summary } : {}),
    // The target's own timeout bounds each call; several calls (a find, then a write) make one push.
    startToCloseTimeout: Math.max(10_000, plan.timeoutMs * 4),
    retry: {
      initialInterval: Math.max(1, plan.retryIntervalMs),
      backoffCoefficient: 1,
      maximumAttempts: never ? 1 : plan.maxRetries === 0 ? 0 : plan.maxRetries + 1,
    },
  });
}

/**
 * Hand-overs to a target's queued job and failure records: short, and retried patiently (Temporal
 * or the database may be restarting), but not for ever: a pipeline or a job goes on without them.
 */
export const targetBookkeeping = proxyActivities<TargetActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20 },
});

/** What failed, in one line: an activity's cause, or the error itself. */
export function failureMessage(error: unknown): string {
  const cause = error instanceof ActivityFailure ? error.cause : error;
  return cause instanceof Error ? cause.message : String(cause);
}
