import { proxyActivities } from '@temporalio/workflow';
import type { TargetActivities, TargetPushPlan } from '../activities/types.js';

/*
 * A push to a target is a regular activity (it talks to the outside world), with the target's own
 * retry policy: its retry interval between tries, its maximum retries (0: for ever; an interval of
 * 0: never retry). Refusals for good (a 4xx, a schema violation) are non-retryable whatever the policy.
 */
export function pushActivity(plan: Pick<TargetPushPlan, 'retryIntervalMs' | 'maxRetries' | 'timeoutMs'>, retries: 'policy' | 'once') {
  const never = retries === 'once' || plan.retryIntervalMs === 0;
  return proxyActivities<TargetActivities>({
    // The target's own timeout bounds each call; several calls (a find, then a write) make one push.
    startToCloseTimeout: Math.max(10_000, plan.timeoutMs * 4),
    retry: {
      initialInterval: Math.max(1, plan.retryIntervalMs),
      backoffCoefficient: 1,
      maximumAttempts: never ? 1 : plan.maxRetries === 0 ? 0 : plan.maxRetries + 1,
    },
  });
}
