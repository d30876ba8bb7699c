import {
  ActivityFailure,
  ContinueAsNew,
  continueAsNew,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { SyncActivities } from '../activities/types.js';
import {
  emptyCounts,
  syncProgressQuery,
  type PipelineTarget,
  type SourceProblem,
  type SyncCounts,
  type SyncReport,
  type SyncSourceInput,
  type UserOutcome,
} from './messages.js';

/** Reading a page talks to the source system: a regular activity that heartbeats. */
const source = proxyActivities<SyncActivities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '20 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});
/** Starting pipelines talks to Temporal itself. */
const launcher = proxyActivities<SyncActivities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});
/** Waits for pipelines' outcomes in the database: heartbeats while it polls. */
const outcomes = proxyActivities<SyncActivities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});
const log = proxyLocalActivities<SyncActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '200 milliseconds', maximumInterval: '30 seconds' },
});

export const DEFAULT_PAGE_SIZE = 500;
export const DEFAULT_WINDOW = 200;
/** Hand over to a fresh run well before Temporal's history limits (50k events, 50 MB). */
export const MAX_HISTORY_EVENTS = 10_000;
const MAX_PROBLEMS_KEPT = 100;

function tally(counts: SyncCounts, outcome: UserOutcome): void {
  if (outcome.moved) counts.moved++;
  if (outcome.emailed) counts.emailed++;
  switch (outcome.status) {
    case 'provisioned':
    case 'unplaced':
    case 'unmatched':
    case 'blocked':
    case 'failed':
      counts[outcome.status]++;
      break;
    case 'imported':
      break;
  }
}

/**
 * Syncs one source: reads it page by page, imports each page, and runs the pipeline of every new
 * or changed user, at most `window` at a time. Continues as new before its history grows large.
 */
export async function syncSource(input: SyncSourceInput): Promise<SyncReport> {
  const { customer, source: sourceName, mode, configVersion } = input;
  const pageSize = input.pageSize ?? DEFAULT_PAGE_SIZE;
  const window = input.window ?? DEFAULT_WINDOW;
  const maxHistoryEvents = input.maxHistoryEvents ?? MAX_HISTORY_EVENTS;
  const info = workflowInfo();
  const progress = input.progress;
  let cursor = progress?.cursor ?? null;
  let sourceDone = progress?.sourceDone ?? false;
  const queue: PipelineTarget[] = [...(progress?.queued ?? [])];
  const counts: SyncCounts = { ...emptyCounts(), ...progress?.counts };
  const problems: SourceProblem[] = [...(progress?.problems ?? [])];
  let pages = progress?.pages ?? 0;
  let watermark = progress?.watermark;
  const inFlight = new Set<string>();
  const syncRun = { workflowId: info.workflowId, runId: info.firstExecutionRunId, customer, source: sourceName, mode, configVersion };

  // One id for this sync across continue-as-new, distinct from earlier syncs of the same source.
  const syncId = `${info.workflowId}/${info.firstExecutionRunId}`;
  setHandler(syncProgressQuery, () => ({ counts, inFlight: inFlight.size, queued: queue.length, sourceDone }));

  if (!progress) await log.recordSyncRun({ ...syncRun, status: 'started' });
  try {
    return await run();
  } catch (error) {
    if (isCancellation(error) || error instanceof ContinueAsNew) throw error;
    await log.recordSyncRun({ ...syncRun, status: 'failed', error: error instanceof ActivityFailure && error.cause ? error.cause.message : String(error) });
    throw error;
  }

  async function run(): Promise<SyncReport> {
    const finished = () => sourceDone && queue.length === 0 && inFlight.size === 0;
    /** Tallies the outcomes pipelines have recorded; a quarter of the window at a time. */
    async function collect(): Promise<void> {
      const found = await outcomes.collectOutcomes({ syncId, customer, source: sourceName, externalIds: [...inFlight], batch: Math.ceil(window / 4) });
      for (const outcome of found) {
        if (inFlight.delete(outcome.externalId)) tally(counts, outcome);
      }
    }

    for (;;) {
      if (!sourceDone && queue.length < window) {
        const page = await source.readSourcePage({ customer, source: sourceName, configVersion, cursor, pageSize, syncId, mode });
        pages++;
        counts.seen += page.seen;
        counts.imported += page.imported;
        counts.removed += page.removed ?? 0;
        counts.invalid += page.problems.length;
        counts.disabled += page.disabled ?? 0;
        counts.unidentified += page.unidentified ?? 0;
        problems.push(...page.problems.slice(0, MAX_PROBLEMS_KEPT - problems.length));
        queue.push(...page.targets);
        cursor = page.next;
        if (page.watermark) watermark = page.watermark;
        sourceDone = page.next === null;
        continue;
      }
      if (queue.length > 0 && inFlight.size < window) {
        const batch = queue.splice(0, window - inFlight.size);
        for (const target of batch) inFlight.add(target.externalId);
        await launcher.startUserPipelines({ customer, source: sourceName, mode, configVersion, reportTo: syncId, targets: batch });
        continue;
      }
      if (finished()) break;
      if (workflowInfo().historyLength > maxHistoryEvents || workflowInfo().continueAsNewSuggested) {
        // The users in flight would be unknown to the next run: let the window drain first.
        while (inFlight.size > 0) await collect();
        await continueAsNew<typeof syncSource>({
          ...input,
          progress: { cursor, sourceDone, queued: queue, counts, problems, pages, ...(watermark ? { watermark } : {}) },
        });
      }
      if (inFlight.size > 0) await collect();
    }

    const report: SyncReport = { workflowId: info.workflowId, mode, customer, source: sourceName, configVersion, counts, problems };
    await log.recordSyncRun({ ...syncRun, status: 'succeeded', report, ...(watermark ? { watermark } : {}) });
    return report;
  }
}
