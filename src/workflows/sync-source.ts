import {
  ActivityFailure,
  ContinueAsNew,
  continueAsNew,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type { SyncActivities } from '../activities/types.js';
import { syncModes } from './config.js';
import {
  emptyCounts,
  syncProgressQuery,
  type DeletionProgress,
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
  if (outcome.placed) counts.placed++;
  if (outcome.restored) counts.restored++;
  if (outcome.emailed) counts.emailed++;
  switch (outcome.status) {
    case 'provisioned':
    case 'unplaced':
    case 'unmatched':
    case 'blocked':
    case 'failed':
    case 'kept':
      counts[outcome.status]++;
      break;
    case 'deleted':
      counts.removed++;
      break;
    default:
      break;
  }
}

/**
 * Syncs one source: reads it page by page, imports each page, and runs the pipeline of every new
 * or changed user, at most `window` at a time; with `delete` among its modes (or when the source
 * reported users removed), offboards the users who are gone, unless the deletion threshold holds
 * them. Continues as new before its history grows large.
 */
export async function syncSource(input: SyncSourceInput): Promise<SyncReport> {
  const { customer, source: sourceName, mode } = input;
  const modes = syncModes(input);
  let configVersion = input.configVersion ?? 0;
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
  let deletions: DeletionProgress = progress?.deletions ?? { state: 'none' };
  /** Began with beginSync (update and delete syncs exist): false only for runs started by older code. */
  let lifecycle = progress?.lifecycle ?? false;
  let deferred = progress?.deferred ?? 0;
  const inFlight = new Set<string>();
  const modesField = modes.length > 1 ? { modes } : {};

  // One id for this sync across continue-as-new, distinct from earlier syncs of the same source.
  const syncId = `${info.workflowId}/${info.firstExecutionRunId}`;
  setHandler(syncProgressQuery, () => ({ counts, inFlight: inFlight.size, queued: queue.length, sourceDone }));
  const syncRun = () => ({ workflowId: info.workflowId, runId: info.firstExecutionRunId, customer, source: sourceName, mode, configVersion });

  if (!progress) {
    lifecycle = patched('begin-sync');
    if (lifecycle) {
      // Resolve the configuration (the newest, when none was given) and claim the source.
      const begun = await log.beginSync({ workflowId: info.workflowId, runId: info.firstExecutionRunId, customer, source: sourceName, mode, modes, ...(input.configVersion === undefined ? {} : { configVersion: input.configVersion }) });
      configVersion = begun.configVersion;
      if (begun.busy) {
        const reason = `another sync of ${customer}/${sourceName} is running (${begun.busy}); this one did nothing`;
        return { workflowId: info.workflowId, mode, ...modesField, customer, source: sourceName, configVersion, counts, problems, status: 'skipped', reason };
      }
    } else {
      await log.recordSyncRun({ ...syncRun(), status: 'started' });
    }
  }
  try {
    return await run();
  } catch (error) {
    if (isCancellation(error) || error instanceof ContinueAsNew) throw error;
    await log.recordSyncRun({ ...syncRun(), status: 'failed', error: error instanceof ActivityFailure && error.cause ? error.cause.message : String(error) });
    throw error;
  }

  async function run(): Promise<SyncReport> {
    const deletionsSettled = () => deletions.state === 'done' || deletions.state === 'held' || (deletions.state === 'none' && !needsDeletions());
    const needsDeletions = () => lifecycle && (modes.includes('delete') || (deletions.noticed ?? 0) > 0);
    const finished = () => sourceDone && deletionsSettled() && queue.length === 0 && inFlight.size === 0;
    /** Tallies the outcomes pipelines have recorded; a quarter of the window at a time. */
    async function collect(): Promise<void> {
      const found = await outcomes.collectOutcomes({ syncId, customer, source: sourceName, externalIds: [...inFlight], batch: Math.ceil(window / 4) });
      for (const outcome of found) {
        if (inFlight.delete(outcome.externalId)) tally(counts, outcome);
      }
    }

    for (;;) {
      if (!sourceDone && queue.length < window) {
        const page = await source.readSourcePage.executeWithOptions({ summary: `read ${pageSize} records of ${customer}/${sourceName}` }, [{ customer, source: sourceName, configVersion, cursor, pageSize, syncId, mode, ...modesField }]);
        pages++;
        counts.seen += page.seen;
        counts.imported += page.imported;
        counts.invalid += page.problems.length;
        counts.disabled += page.disabled ?? 0;
        counts.unidentified += page.unidentified ?? 0;
        deferred += page.deferred ?? 0;
        // Users the source reported removed: offboarded by this sync (a run of older code only counted them).
        if (page.removed && lifecycle) deletions = { ...deletions, noticed: (deletions.noticed ?? 0) + page.removed };
        else if (page.removed) counts.removed += page.removed;
        problems.push(...page.problems.slice(0, MAX_PROBLEMS_KEPT - problems.length));
        queue.push(...page.targets);
        cursor = page.next;
        if (page.watermark) watermark = page.watermark;
        sourceDone = page.next === null;
        continue;
      }
      if (sourceDone && deletions.state === 'none' && needsDeletions()) {
        // The read is over: who is gone is known. The threshold decides before anyone is offboarded.
        const plan = await source.planDeletions({
          syncId,
          customer,
          source: sourceName,
          configVersion,
          fullRead: modes.includes('delete'),
          seen: counts.seen,
          unidentified: counts.unidentified,
          ...(input.allowDeletes === undefined ? {} : { allowDeletes: input.allowDeletes }),
        });
        deletions = plan.held ? { ...deletions, state: 'held', held: plan.held } : { ...deletions, state: plan.deletions > 0 ? 'taking' : 'done', after: null };
        continue;
      }
      if (deletions.state === 'taking' && queue.length < window) {
        const batch = await source.takeDeletions({ syncId, customer, source: sourceName, configVersion, after: deletions.after ?? null, limit: window });
        deletions = batch.length === 0 ? { ...deletions, state: 'done' } : { ...deletions, after: batch[batch.length - 1]!.userId };
        queue.push(...batch);
        continue;
      }
      if (queue.length > 0 && inFlight.size < window) {
        const batch = queue.splice(0, window - inFlight.size);
        for (const target of batch) inFlight.add(target.externalId);
        await launcher.startUserPipelines.executeWithOptions({ summary: `hand ${batch.length} ${mode} changes to their pipelines` }, [{ customer, source: sourceName, mode, configVersion, reportTo: syncId, targets: batch }]);
        continue;
      }
      if (finished()) break;
      if (workflowInfo().historyLength > maxHistoryEvents || workflowInfo().continueAsNewSuggested) {
        // The users in flight would be unknown to the next run: let the window drain first.
        while (inFlight.size > 0) await collect();
        await continueAsNew<typeof syncSource>({
          ...input,
          configVersion,
          progress: {
            cursor,
            sourceDone,
            queued: queue,
            counts,
            problems,
            pages,
            ...(watermark ? { watermark } : {}),
            ...(deletions.state === 'none' && !deletions.noticed ? {} : { deletions }),
            ...(lifecycle ? { lifecycle } : {}),
            ...(deferred > 0 ? { deferred } : {}),
          },
        });
      }
      if (inFlight.size > 0) await collect();
    }

    const held = deletions.state === 'held' ? deletions.held : undefined;
    const report: SyncReport = {
      workflowId: info.workflowId,
      mode,
      ...modesField,
      customer,
      source: sourceName,
      configVersion,
      counts,
      problems,
      ...(held
        ? { status: 'held' as const, reason: held.reason, held: { deletions: held.deletions, threshold: held.threshold, sourceUsers: held.sourceUsers } }
        : { status: 'succeeded' as const }),
    };
    // The watermark marks what the syncs have taken: a run that left changed records to another mode
    // (an add leaves placed users' changes to the update sync) must not move the mark past them.
    const keepMark = watermark && deferred === 0;
    await log.recordSyncRun({ ...syncRun(), status: held ? 'held' : 'succeeded', report, ...(keepMark ? { watermark } : {}) });
    return report;
  }
}
