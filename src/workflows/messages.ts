import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { SourceCursor, SourceProblem, SourceWatermarkRecord } from '../domain/source.js';
import type { UserStatus } from '../domain/user.js';
import type { SyncMode } from './config.js';

/*
 * The public contract of flowthru's workflows: inputs, signals, queries and results. Running
 * workflows and recorded histories depend on these shapes: add optional fields, never repurpose.
 */


export interface SyncCounts {
  seen: number;
  imported: number;
  moved: number;
  provisioned: number;
  unplaced: number;
  unmatched: number;
  blocked: number;
  failed: number;
  emailed: number;
  removed: number;
  /** Records the source could not turn into users (malformed rows), reported by line. */
  invalid: number;
  /** Placed at a site from customer level (an add); `moved` counts moves from site to site. */
  placed: number;
  /** Offboarded users who came back, provisioned again as the same user. */
  restored: number;
  /** Placed users whose change matched no site: left where they are, with the reason. */
  kept: number;
  /** Disabled or locked accounts, skipped (the source's includeDisabled is off). */
  disabled: number;
  /**
   * Records whose external id could not be read (a malformed row, lines lost to an unterminated
   * quote). Above zero, the read was incomplete: a user it did not see may still be in the source,
   * so such a read must never take anyone for gone.
   */
  unidentified: number;
}

export const emptyCounts = (): SyncCounts => ({
  seen: 0,
  imported: 0,
  moved: 0,
  provisioned: 0,
  unplaced: 0,
  unmatched: 0,
  blocked: 0,
  failed: 0,
  emailed: 0,
  removed: 0,
  invalid: 0,
  disabled: 0,
  unidentified: 0,
  placed: 0,
  restored: 0,
  kept: 0,
});



/** Carried across continue-as-new so a long sync keeps its place and its tallies. */
export interface SyncProgress {
  readonly cursor: SourceCursor | null;
  readonly sourceDone: boolean;
  /** Users read and imported but whose pipeline has not been started yet. */
  readonly queued: readonly PipelineTarget[];
  readonly counts: SyncCounts;
  readonly problems: readonly SourceProblem[];
  readonly pages: number;
  /** The source's watermark from its last page, persisted when the sync succeeds. */
  readonly watermark?: SourceWatermarkRecord;
  /** The offboarding phase: planned or not, held, and where taking the marked users stopped. */
  readonly deletions?: DeletionProgress;
  /** The run began with beginSync (claimed the source; offboards @removed users): runs of older code did not. */
  readonly lifecycle?: boolean;
  /** Changed records left for another mode so far: with any, the watermark is not stored. */
  readonly deferred?: number;
}

export interface DeletionProgress {
  readonly state: 'none' | 'taking' | 'done' | 'held';
  /** The last user id handed to a pipeline (users are taken in id order). */
  readonly after?: string | null;
  /** Users the source reported gone during the read (Graph's @removed). */
  readonly noticed?: number;
  readonly held?: { readonly deletions: number; readonly threshold: number; readonly sourceUsers: number; readonly reason: string };
}

export interface SyncSourceInput {
  readonly customer: string;
  readonly source: string;
  /** The sync's mode; with `modes`, the first of them (runs started before `modes` have only this). */
  readonly mode: SyncMode;
  /**
   * Every mode this run does, in one read of the source (a schedule's `modes`): new users are
   * added, changed placed users updated, and users the read did not see offboarded.
   */
  readonly modes?: readonly SyncMode[];
  /**
   * The configuration snapshot every user of this sync is processed with. Absent: the newest
   * version when the sync starts (a schedule must not pin an old configuration).
   */
  readonly configVersion?: number;
  /** Lets a delete sync through a held deletion: at most this many users are offboarded. */
  readonly allowDeletes?: number;
  /** Who started it: `cli`, `schedule` (a schedule's run skips when another sync of the source runs). */
  readonly trigger?: 'cli' | 'schedule' | 'console';
  readonly pageSize?: number;
  /** How many user pipelines may be in flight at once. */
  readonly window?: number;
  /** Continue as new once the history holds this many events (default 10,000). */
  readonly maxHistoryEvents?: number;
  readonly progress?: SyncProgress;
}

export interface SyncReport {
  readonly workflowId: string;
  readonly mode: SyncMode;
  /** Every mode the run did (absent in reports of runs that did one). */
  readonly modes?: readonly SyncMode[];
  readonly customer: string;
  readonly source: string;
  readonly configVersion: number;
  readonly counts: SyncCounts;
  /** The first problems the source reported (all of them are in the transaction log). */
  readonly problems: readonly SourceProblem[];
  /**
   * `succeeded` (absent in older reports), `held` (deletions over the threshold, or an incomplete
   * read: nothing was offboarded), `skipped` (another sync of the source was running).
   */
  readonly status?: 'succeeded' | 'held' | 'skipped';
  /** Why a run was held or skipped, in a sentence. */
  readonly reason?: string;
  /** With `held`: how many users the source no longer has, and the threshold they exceeded. */
  readonly held?: { readonly deletions: number; readonly threshold: number; readonly sourceUsers: number };
}

export interface PipelineTarget {
  readonly userId: string;
  readonly externalId: string;
  /** The pass this user's pipeline runs (default: the sync's mode): add, update or delete. */
  readonly mode?: SyncMode;
}

export type { SourceCursor, SourceProblem, SourceWatermarkRecord, UserStatus };

/**
 * How one pass of a user's pipeline ended: the status it left the user in, or `kept` (an update
 * found the placed user matching no site: left where they are, with the reason).
 */
export type OutcomeStatus = UserStatus | 'kept';

export interface UserOutcome {
  readonly externalId: string;
  readonly status: OutcomeStatus;
  /** Moved from one site to another (an update sync). Before `placed` existed it also meant placed. */
  readonly moved: boolean;
  /** Placed at a site from customer level (an add). */
  readonly placed?: boolean;
  /** A user offboarded earlier who came back: the same user, provisioned again. */
  readonly restored?: boolean;
  readonly emailed: boolean;
  readonly site: string | null;
  readonly profile: string | null;
  readonly number: string | null;
  readonly reason?: string;
}

export interface OnboardUserInput {
  readonly customer: string;
  readonly source: string;
  readonly externalId: string;
  readonly userId: string;
  /** Absent when started by signal-with-start: the change then arrives as the userChanged signal. */
  readonly change?: UserChange;
  /**
   * The pipeline's shape when the run started (PIPELINE_SHAPE in workflows/config.ts). A run that
   * carries it takes the paths its shape includes without asking `patched()`; a run without it
   * (started by older code) asks, as it did then.
   */
  readonly shape?: number;
}

/** A reason to (re)run a user's pipeline: a sync saw the user new or changed. */
export interface UserChange {
  readonly configVersion: number;
  readonly mode: SyncMode;
  /** The sync waiting for the outcome, if any (`<sync workflow id>/<its first run id>`). */
  readonly reportTo?: string;
  /** An operator's `flowthru retry`: runs whatever the sync settings (addSync, updateSync) allow syncs. */
  readonly retry?: boolean;
}

export interface OnboardState {
  readonly step: string;
  readonly status: OutcomeStatus | 'running';
  readonly site: string | null;
  readonly profile: string | null;
  readonly number: string | null;
  readonly reason: string | null;
  readonly configVersion: number;
}

/** A sync hands a new change to a user's running pipeline (sent with signal-with-start). */
export const userChangedSignal = defineSignal<[UserChange]>('userChanged');
/** An operator asks a blocked user to try again (numbers were added, a licence freed). */
export const retrySignal = defineSignal('retry');
/** A user's pipeline tells its sync how the user ended up. */
export const userOutcomeSignal = defineSignal<[UserOutcome]>('userOutcome');

export const onboardStateQuery = defineQuery<OnboardState>('state');
export const syncProgressQuery = defineQuery<{ counts: SyncCounts; inFlight: number; queued: number; sourceDone: boolean }>(
  'progress',
);

/** A planned push of one user to one target, as the pipeline's steps hand it to the workflow. */
export interface TargetPushPlan {
  readonly target: string;
  readonly mode: 'automatic' | 'enrollment' | 'queue' | 'queue-on-error';
  readonly retryIntervalMs: number;
  readonly maxRetries: number;
  readonly timeoutMs: number;
}

/** A queued target job: one workflow per (customer, target, user); pushes for it collapse into the newest. */
export interface TargetJobInput {
  readonly customer: string;
  readonly target: string;
  readonly userId: string;
}

/** Asks the job to push (again): the newest signal's settings win; `force` pushes even an unchanged user. */
export interface TargetPushRequest {
  readonly retryIntervalMs: number;
  readonly maxRetries: number;
  readonly timeoutMs: number;
  readonly force?: boolean;
}

export interface TargetJobResult {
  readonly status: 'succeeded' | 'failed' | 'cancelled';
  /** Pushes run (collapsed requests count once). */
  readonly runs: number;
  readonly summary: string;
}

export const targetPushSignal = defineSignal<[TargetPushRequest]>('targetPush');
export const targetJobStateQuery = defineQuery<{ status: 'waiting' | 'pushing' | 'done'; runs: number; lastError: string | null }>('targetJobState');

export interface ReprovisionInput {
  readonly customer: string;
  readonly target: string;
  /** Pushes in flight at once (a sliding window). */
  readonly window?: number;
  /** Carried over continue-as-new: where the walk over users stands, and the counts so far. */
  readonly after?: string | null;
  readonly counts?: ReprovisionCounts;
}

export interface ReprovisionCounts {
  succeeded: number;
  unchanged: number;
  failed: number;
}

export interface ReprovisionProgress {
  readonly counts: ReprovisionCounts;
  readonly inFlight: number;
  readonly after: string | null;
  readonly done: boolean;
}

export const reprovisionProgressQuery = defineQuery<ReprovisionProgress>('reprovisionProgress');
