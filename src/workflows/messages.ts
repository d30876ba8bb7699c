import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { SyncMode } from './config.js';

/*
 * The public contract of flowthru's workflows: inputs, signals, queries and results. Running
 * workflows and recorded histories depend on these shapes: add optional fields, never repurpose.
 */

/** Where a source read stopped; opaque to workflows, meaningful to the source adapter. */
export type SourceCursor = Readonly<Record<string, unknown>>;

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
});

export interface SourceProblem {
  /** Where in the source: `line 12` for a file, a DN or an id for a directory. */
  readonly at: string;
  readonly message: string;
}

/** A source's watermark (opaque to workflows) with the fingerprint of the settings it was read with. */
export interface SourceWatermarkRecord {
  readonly fingerprint: string;
  readonly mark: Readonly<Record<string, unknown>>;
}

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
}

export interface SyncSourceInput {
  readonly customer: string;
  readonly source: string;
  readonly mode: SyncMode;
  /** The configuration snapshot every user of this sync is processed with. */
  readonly configVersion: number;
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
  readonly customer: string;
  readonly source: string;
  readonly configVersion: number;
  readonly counts: SyncCounts;
  /** The first problems the source reported (all of them are in the transaction log). */
  readonly problems: readonly SourceProblem[];
}

export interface PipelineTarget {
  readonly userId: string;
  readonly externalId: string;
}

export type UserStatus = 'unplaced' | 'unmatched' | 'provisioned' | 'blocked' | 'failed' | 'imported';

export interface UserOutcome {
  readonly externalId: string;
  readonly status: UserStatus;
  readonly moved: boolean;
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
}

/** A reason to (re)run a user's pipeline: a sync saw the user new or changed. */
export interface UserChange {
  readonly configVersion: number;
  readonly mode: SyncMode;
  /** The sync waiting for the outcome, if any (`<sync workflow id>/<its first run id>`). */
  readonly reportTo?: string;
}

export interface OnboardState {
  readonly step: string;
  readonly status: UserStatus | 'running';
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
