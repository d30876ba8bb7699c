import {
  CancellationScope,
  condition,
  continueAsNew,
  isCancellation,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { failureMessage, pushActivity, targetBookkeeping } from './target-push.js';
import { targetJobStateQuery, targetPushSignal, type TargetJobInput, type TargetJobResult, type TargetPushRequest } from './messages.js';

/** Pushes asked for within this window of each other collapse into one (the newest data wins). */
const COLLAPSE_WINDOW = '2 seconds';
const MAX_COLLAPSE_MS = 30_000;
/** A job that keeps being asked to push continues as new after this many pushes: its history stays small. */
const RUNS_PER_HISTORY = 50;

/**
 * A queued push of one user to one target (modes queue and queue-on-error, and an operator's
 * `flowthru target provision`). One workflow per (target, user), its id deterministic: requests
 * that arrive while it waits or pushes collapse into one more push, so five rapid changes make one
 * push (or two, when one arrives mid-push) with the newest data, never five. The push reads the
 * user when it runs, so it always carries the latest state. It retries by the target's policy
 * (retry interval, maximum retries); exhausted or refused for good, the job fails visibly with the
 * reason and the administrators hear once. `flowthru target cancel` ends it.
 */
export async function targetJob(input: TargetJobInput, carried?: TargetPushRequest): Promise<TargetJobResult> {
  // A request carried over continue-as-new, else the first signal's.
  let pending: TargetPushRequest | null = carried ?? null;
  let status: 'waiting' | 'pushing' | 'done' = 'waiting';
  let runs = 0;
  let lastError: string | null = null;
  setHandler(targetPushSignal, (request) => {
    // The newest request's policy wins; force sticks until a push has run.
    pending = { ...request, ...(pending?.force ? { force: true } : {}) };
  });
  setHandler(targetJobStateQuery, () => ({ status, runs, lastError }));

  const { workflowId, runId } = workflowInfo();
  try {
    let last: TargetJobResult = { status: 'succeeded', runs: 0, summary: 'nothing to push' };
    for (;;) {
      // Started by signal-with-start: the request arrives as the first signal.
      if (pending === null && !(await condition(() => pending !== null, '1 minute'))) break;
      // Collapse requests that keep coming, for a while: a push waits at most MAX_COLLAPSE.
      const collapseUntil = Date.now() + MAX_COLLAPSE_MS;
      for (let seen = pending; Date.now() < collapseUntil && (await condition(() => pending !== seen, COLLAPSE_WINDOW)); seen = pending);
      const request: TargetPushRequest = pending!;
      pending = null;
      status = 'pushing';
      runs++;
      try {
        const done = await pushActivity(request, 'policy').pushToTarget({
          customer: input.customer,
          target: input.target,
          userId: input.userId,
          workflowId,
          runId,
          key: `${runId}/${runs}/target:${input.target}`,
          recheck: true,
          ...(request.force ? { force: true } : {}),
        });
        lastError = null;
        last = { status: 'succeeded', runs, summary: done.summary };
      } catch (error) {
        if (isCancellation(error)) throw error;
        lastError = failureMessage(error);
        await targetBookkeeping.recordTargetFailure({ customer: input.customer, target: input.target, userId: input.userId, reason: lastError, workflowId, runId });
        last = { status: 'failed', runs, summary: lastError };
      }
      status = 'waiting';
      if (pending === null) break;
      if (runs >= RUNS_PER_HISTORY) await continueAsNew<typeof targetJob>(input, pending);
    }
    status = 'done';
    return last;
  } catch (error) {
    if (!isCancellation(error)) throw error;
    // An operator ended the job: say so where `target jobs` looks, whatever the cancellation.
    await CancellationScope.nonCancellable(() =>
      targetBookkeeping.markTargetCancelled({ customer: input.customer, target: input.target, userId: input.userId, reason: 'cancelled by an operator' }),
    );
    status = 'done';
    return { status: 'cancelled', runs, summary: 'cancelled by an operator' };
  }
}
