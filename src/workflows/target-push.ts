import { ActivityFailure, ApplicationFailure, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { FailureData } from '../activities/failures.js';
import type { TargetActivities, TargetPushPlan } from '../activities/types.js';

/*
 * A push to a target is a regular activity (it talks to the outside world), with the target's own
 * retry policy: its retry interval between tries, its maximum retries (0: for ever; an interval of
 * 0: never retry). Refusals for good (a 4xx, a schema violation) are non-retryable whatever the policy.
 */
export function pushActivity(plan: Pick<TargetPushPlan, 'retryIntervalMs' | 'maxRetries' | 'timeoutMs'>, retries: 'policy' | 'once', summary?: string, triedBefore: 0 | 1 = 0) {
  const never = retries === 'once' || plan.retryIntervalMs === 0;
  // maxRetries retries after the first try; a first try made elsewhere (a local activity) counts.
  const attempts = plan.maxRetries === 0 ? 0 : plan.maxRetries + 1 - triedBefore;
  return proxyActivities<TargetActivities>({
    ...(summary ? { summary } : {}),
    // The target's own timeout bounds each call; several calls (a find, then a write) make one push.
    startToCloseTimeout: Math.max(10_000, plan.timeoutMs * 4),
    retry: {
      initialInterval: Math.max(1, plan.retryIntervalMs),
      backoffCoefficient: 1,
      maximumAttempts: never ? 1 : attempts,
    },
  });
}

/**
 * The first try of a pipeline's push, as a local activity: no trip through the server's task queue
 * and one marker in the history where a regular activity takes three events and a workflow task.
 * The target's timeout bounds it as it bounds a regular try; it is never retried here (its
 * retries, if the target's policy has any, are regular activities: `pushActivity(..., 1)`).
 */
export function quickPushActivity(plan: Pick<TargetPushPlan, 'timeoutMs'>, summary?: string) {
  return proxyLocalActivities<TargetActivities>({
    ...(summary ? { summary } : {}),
    startToCloseTimeout: Math.max(10_000, plan.timeoutMs * 4),
    retry: { maximumAttempts: 1 },
  });
}

/**
 * The first tries of several pushes as one local activity (pushFirstTries): each target's timeout
 * bounds its own push, so the activity's is their sum (and the targets step's, when it settles the
 * user too). Never retried here, as a single first try is not.
 */
export function quickPushesActivity(plans: readonly Pick<TargetPushPlan, 'timeoutMs'>[], finish: boolean, summary?: string) {
  const pushes = plans.reduce((sum, plan) => sum + Math.max(10_000, plan.timeoutMs * 4), 0);
  return proxyLocalActivities<TargetActivities>({
    ...(summary ? { summary } : {}),
    startToCloseTimeout: pushes + (finish ? 30_000 : 0),
    retry: { maximumAttempts: 1 },
  });
}

/** A first try's failure that pushFirstTries reported as data, as the failure its own activity would have thrown. */
export function failureOf(failure: FailureData): ApplicationFailure {
  return ApplicationFailure.create({
    message: failure.message,
    type: failure.type,
    nonRetryable: failure.nonRetryable,
    ...(failure.retryAfterMs === undefined ? {} : { details: [{ retryAfterMs: failure.retryAfterMs }] }),
  });
}

/** What an activity's failure carries (the error itself when it is not an activity's). */
function causeOf(error: unknown): unknown {
  return error instanceof ActivityFailure ? error.cause : error;
}

/** A refusal for good (a 4xx, a schema violation): no policy retries it, no queue takes it. */
export function refusedForGood(error: unknown): boolean {
  const cause = causeOf(error);
  return cause instanceof ApplicationFailure && cause.nonRetryable === true;
}

/** Whether the target's policy retries a push that failed this way (a refusal for good never is). */
export function retriedByPolicy(plan: Pick<TargetPushPlan, 'retryIntervalMs'>, error: unknown): boolean {
  return plan.retryIntervalMs !== 0 && !refusedForGood(error);
}

/**
 * How long to wait before the next try: the target's Retry-After when it gave one (in the
 * failure's details: the SDK does not hand a workflow the failure's nextRetryDelay), else its
 * retry interval.
 */
export function retryDelayAfter(plan: Pick<TargetPushPlan, 'retryIntervalMs'>, error: unknown): number {
  const cause = causeOf(error);
  const details = cause instanceof ApplicationFailure ? (cause.details?.[0] as { retryAfterMs?: unknown } | undefined) : undefined;
  const asked = typeof details?.retryAfterMs === 'number' && details.retryAfterMs > 0 ? details.retryAfterMs : undefined;
  return asked ?? Math.max(1, plan.retryIntervalMs);
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
  const cause = causeOf(error);
  return cause instanceof Error ? cause.message : String(cause);
}
