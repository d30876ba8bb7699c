import { continueAsNew, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { TargetActivities } from '../activities/types.js';
import { reprovisionProgressQuery, type ReprovisionCounts, type ReprovisionInput } from './messages.js';
import { failureMessage, pushActivity } from './target-push.js';

const bookkeeping = proxyActivities<TargetActivities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Users read per page; a run continues as new after this many, so its history stays small. */
const PAGE = 100;
const PER_RUN = 1_000;

/** A push in "reprovision all": a few quick retries, then counted failed (the job log has the reason). */
const reprovisionPush = pushActivity({ retryIntervalMs: 5_000, maxRetries: 2, timeoutMs: 10_000 }, 'policy');

/**
 * "Reprovision all": every user the target holds or should hold is pushed again, the target called
 * even where flowthru thinks nothing changed (the target may have drifted), through the same push
 * as the pipeline. A sliding window keeps `window` pushes in flight; progress is a query. It walks
 * users in id order and carries its place over continue-as-new, so a worker restart or a long run
 * resumes where it was. Ends with the counts: succeeded (written), unchanged, failed.
 */
export async function reprovisionTarget(input: ReprovisionInput): Promise<ReprovisionCounts> {
  const window = Math.max(1, Math.min(input.window ?? 10, 50));
  const counts: ReprovisionCounts = input.counts ?? { succeeded: 0, unchanged: 0, failed: 0 };
  let after = input.after ?? null;
  let inFlight = 0;
  let done = false;
  setHandler(reprovisionProgressQuery, () => ({ counts: { ...counts }, inFlight, after, done }));
  const { workflowId, runId } = workflowInfo();

  const pushOne = async (userId: string): Promise<void> => {
    inFlight++;
    try {
      const result = await reprovisionPush.pushToTarget({ customer: input.customer, target: input.target, userId, workflowId, runId, key: `${runId}/reprovision/${userId}`, force: true, recheck: true });
      if (result.outcome === 'pushed') counts.succeeded++;
      else counts.unchanged++;
    } catch (error) {
      counts.failed++;
      await bookkeeping.recordTargetFailure({ customer: input.customer, target: input.target, userId, reason: failureMessage(error), workflowId, runId });
    } finally {
      inFlight--;
    }
  };

  let handled = 0;
  for (;;) {
    const page = await bookkeeping.listTargetSubjects({ customer: input.customer, target: input.target, after, limit: PAGE });
    if (page.length === 0) break;
    const running = new Set<Promise<void>>();
    for (const userId of page) {
      if (running.size >= window) await Promise.race(running);
      const p: Promise<void> = pushOne(userId).finally(() => running.delete(p));
      running.add(p);
    }
    await Promise.all(running);
    after = page[page.length - 1]!;
    handled += page.length;
    if (page.length < PAGE) break;
    if (handled >= PER_RUN) await continueAsNew<typeof reprovisionTarget>({ ...input, after, counts });
  }
  done = true;
  return counts;
}
