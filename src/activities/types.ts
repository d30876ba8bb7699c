import type { UserStatus } from '../domain/user.js';
import type { SyncMode } from '../workflows/config.js';
import type { SourceCursor, SourceProblem, SourceWatermarkRecord } from '../domain/source.js';
import type { FailureData } from './failures.js';
import type { PipelineTarget, SyncReport, TargetPushPlan, UserOutcome } from '../workflows/messages.js';

export type { SourceWatermarkRecord };

/** Identifies one step of one user's pipeline run. */
export interface StepInput {
  readonly userId: string;
  readonly customer: string;
  readonly configVersion: number;
  readonly mode: SyncMode;
  readonly workflowId: string;
  readonly runId: string;
  /** Which pass of the pipeline in this run (each change and each retry is a new pass). */
  readonly attempt: number;
  /** The pass is an operator's retry, not a sync's change. */
  readonly retry?: boolean;
}

export interface PipelineActivities {
  /** Step 2: the local user at customer level; says which later steps the settings allow. */
  createLocalUser(
    input: StepInput,
  ): Promise<{ flowThrough: boolean; welcomeEmail: boolean; reason?: string; restored?: boolean; /** With flowThrough off: the user's status, unchanged. */ status?: UserStatus; movedEmail?: boolean }>;
  /**
   * Steps 3 and 4: the first site whose move criteria match, and the site's role. An add places
   * users not at a site (`moved`: placed); an update moves placed users site to site (`moved`,
   * `from`), or keeps one matching no site where they are (`kept`, with the reason).
   */
  moveUser(input: StepInput): Promise<{ site: string | null; moved: boolean; reason?: string; kept?: boolean; from?: string; /** Kept: the targets that hear of their change. */ targets?: TargetPushPlan[] }>;
  /**
   * Step 5: the first FTP rule whose criteria match chooses the profile (and maybe the role); after
   * an update's move (`moved`), the customer's updateSyncProfile when set.
   */
  matchProfile(
    input: StepInput & { moved?: boolean },
  ): Promise<{ profile: string | null; numberFrom: 'site' | 'customer' | null; reason?: string; /** A user who lost their profile: the targets that must let them go. */ targets?: TargetPushPlan[] }>;
  /**
   * Steps 2, 4 and 5 in one transaction (one activity, one round of locks): create, move, profile,
   * each still its own entry in the transaction log. A step that ends the pass leaves the later
   * ones out: `placed` is absent when flow-through is off, `matched` when no site takes the user
   * or they are kept where they are.
   *
   * With `line`, a user who matched a profile gets their line in the same transaction too (step 6:
   * an add's provisionLine, an update's provisionProfile, each step its own entry): `line` is its
   * result. A step of the line that fails for good rolls the whole transaction back, the placement
   * with it: the activity fails, and the pipeline places the user without the line and provisions
   * it on its own, as runs recorded before `line` did (their placeUser results have no `line`).
   */
  placeUser(input: StepInput & { line?: boolean }): Promise<{
    local: Awaited<ReturnType<PipelineActivities['createLocalUser']>>;
    placed?: Awaited<ReturnType<PipelineActivities['moveUser']>>;
    matched?: Awaited<ReturnType<PipelineActivities['matchProfile']>>;
    line?: Awaited<ReturnType<PipelineActivities['provisionLine']>>;
  }>;
  /**
   * Steps 6a and 6b of an add in one transaction (one activity): reserve a number from the pool
   * (none when `pool` is null) and provision the profile on it, each its own entry in the
   * transaction log. Blocked (no number, a short licence): nothing is held. A failure writes
   * nothing, so there is no reservation to give back.
   */
  provisionLine(input: StepInput & { pool: 'site' | 'customer' | null }): Promise<{ number: string | null; blocked?: string; targets?: TargetPushPlan[] }>;
  /** Step 6a: the lowest available number of the pool, or null (blocked) with the reason. */
  reserveNumber(input: StepInput & { pool: 'site' | 'customer' }): Promise<{ number: string | null; reason?: string }>;
  /**
   * Step 6b: the profile's services, the number in use, the user provisioned; or, when a tenant
   * licence the services need is short, nothing, and the reason the user is blocked.
   * (Runs recorded before licences returned nothing: read the result as optional.)
   */
  provisionServices(input: StepInput & { number: string | null }): Promise<{ blocked?: string; targets?: TargetPushPlan[] } | undefined>;
  /**
   * An update's step 6, whole: the line (kept, or the lowest of the new pool; the old one released,
   * cooling) and the difference in services and licences, in one transaction. Blocked: the reason.
   */
  provisionProfile(input: StepInput & { numberFrom: 'site' | 'customer' | null }): Promise<{ number: string | null; blocked?: string; targets?: TargetPushPlan[] }>;
  /** Offboards the user: services removed, licences given back, numbers released (cooling), status deleted. */
  offboardUser(input: StepInput & { reason?: string }): Promise<{ reason: string; targets?: TargetPushPlan[] }>;
  /**
   * After the targets the user waited for (automatic, enrollment, queue-on-error tried inline):
   * provisioned, or failed with the target's reason.
   */
  finishTargets(input: StepInput & { failed?: { target: string; reason: string } }): Promise<void>;
  /** Compensation for a provisioning that failed for good: the reserved number goes back. */
  abandonProvisioning(input: StepInput & { number: string | null; reason: string }): Promise<void>;
  /**
   * Step 7: the welcome email, at most once per user (outbox, stable Message-ID). With `report`,
   * the pass's outcome too, for the syncs waiting for it (`emailed` as the send went), in the
   * statement that records the send: `reported` says it was, and recordOutcome is not needed.
   * A send that fails for now throws before anything is reported.
   */
  sendWelcomeEmail(input: StepInput & { report?: OutcomeReport }): Promise<{ sent: boolean; skipped?: string; reported?: boolean }>;
  /** After a move (settings.movedEmail): the user's new site and number, once per move (outbox). */
  sendMovedEmail(input: StepInput & { from: string }): Promise<{ sent: boolean; skipped?: string }>;
  /** Tells the syncs waiting for this user how the pipeline ended (they collect it in batches). */
  recordOutcome(input: { userId: string } & OutcomeReport): Promise<void>;
}

/** A pass's outcome, and the syncs (`<sync workflow id>/<its first run id>`) waiting for it. */
export interface OutcomeReport {
  readonly syncIds: readonly string[];
  readonly outcome: UserOutcome;
}

export interface ReadPageInput {
  readonly customer: string;
  readonly source: string;
  readonly configVersion: number;
  readonly cursor: SourceCursor | null;
  readonly pageSize: number;
  readonly syncId: string;
  /** An update sync reads incrementally from the source's watermark (when it has one). */
  readonly mode?: SyncMode;
  /** Every mode of the run (default: `mode`): which records it takes, and whether it marks who it saw. */
  readonly modes?: readonly SyncMode[];
}

export interface SourcePage {
  readonly seen: number;
  readonly imported: number;
  /** Users on record that the source reported removed (Graph's `@removed`): marked to be offboarded. */
  readonly removed?: number;
  /** Disabled or locked accounts read and skipped (not imported, no pipeline). */
  readonly disabled?: number;
  /** Changed records this sync's modes do not take (left for another mode): the watermark must not pass them. */
  readonly deferred?: number;
  /** Records whose external id could not be read: the read is incomplete (SyncCounts.unidentified). */
  readonly unidentified?: number;
  readonly targets: PipelineTarget[];
  readonly problems: SourceProblem[];
  readonly next: SourceCursor | null;
  /** On the last page of an incremental source: persisted when the sync succeeds. */
  readonly watermark?: SourceWatermarkRecord;
}

export interface SyncRunRecord {
  readonly workflowId: string;
  readonly runId: string;
  readonly customer: string;
  readonly source: string;
  readonly mode: SyncMode;
  readonly configVersion: number;
  readonly status: 'started' | 'succeeded' | 'failed' | 'held' | 'skipped';
  readonly report?: SyncReport;
  readonly error?: string;
  /** With `succeeded`: the source's new watermark. */
  readonly watermark?: SourceWatermarkRecord;
}

export interface BeginSyncInput {
  readonly workflowId: string;
  /** The first run's id: with the workflow id, names the sync across continue-as-new. */
  readonly runId: string;
  readonly customer: string;
  readonly source: string;
  readonly mode: SyncMode;
  readonly modes: readonly SyncMode[];
  readonly configVersion?: number;
}

export interface DeletionsInput {
  readonly syncId: string;
  readonly customer: string;
  readonly source: string;
  readonly configVersion: number;
  /** A delete sync read the whole source: users it did not see are gone. */
  readonly fullRead: boolean;
  readonly seen: number;
  readonly unidentified: number;
  readonly allowDeletes?: number;
}

export interface SyncActivities {
  /**
   * Starts a sync: resolves the configuration version (the newest when none was given), claims the
   * source (one sync of a source at a time) and logs the start. `busy` names the sync holding it.
   */
  beginSync(input: BeginSyncInput): Promise<{ configVersion: number; busy?: string }>;
  /**
   * After the read: counts who the sync would offboard and checks the deletion threshold. Held, it
   * offboards nobody; otherwise the users are marked for this sync and taken in batches.
   */
  planDeletions(input: DeletionsInput): Promise<{ deletions: number; held?: { deletions: number; threshold: number; sourceUsers: number; reason: string } }>;
  /** The next users marked for offboarding by this sync, after `after` in id order. */
  takeDeletions(input: { syncId: string; customer: string; source: string; configVersion: number; after: string | null; limit: number }): Promise<PipelineTarget[]>;
  /** Reads one page of a source and imports it (step 1); returns the users whose pipeline must run. */
  readSourcePage(input: ReadPageInput): Promise<SourcePage>;
  /** Hands each user to their pipeline workflow (signal-with-start: one pipeline per user). */
  startUserPipelines(input: {
    customer: string;
    source: string;
    mode: SyncMode;
    configVersion: number;
    reportTo: string;
    targets: readonly PipelineTarget[];
  }): Promise<void>;
  recordSyncRun(input: SyncRunRecord): Promise<void>;
  /**
   * Waits (heartbeating) until pipelines of the given users have recorded outcomes for this sync,
   * and returns those found: a batch once enough are in, or whatever is there after a while.
   */
  collectOutcomes(input: {
    syncId: string;
    customer: string;
    source: string;
    externalIds: readonly string[];
    batch: number;
  }): Promise<UserOutcome[]>;
}

export interface TargetPushInput {
  readonly customer: string;
  /** The pipeline pass's configuration version; jobs and reprovision use the newest. */
  readonly configVersion?: number;
  readonly target: string;
  readonly userId: string;
  readonly workflowId: string;
  readonly runId: string;
  /** The push's key in the transaction log (one entry per push, whatever the retries). */
  readonly key: string;
  /** An operator's push: runs in manual mode too, and calls the target even when nothing changed. */
  readonly force?: boolean;
  /**
   * Read the user again after the push and push again if they changed meanwhile: for pushes that
   * may overlap others of the same user (queued jobs, reprovision). A pipeline's own push reads the
   * user after the pass wrote them, and nothing else writes them during the pass: it needs none.
   */
  readonly recheck?: boolean;
}

/** What pushFirstTries did: each push tried, in order (the last one failed when `failure` is set). */
export interface FirstTries {
  readonly tries: readonly { target: string; outcome?: 'pushed' | 'unchanged' | 'skipped'; summary?: string; failure?: FailureData }[];
  /** The user was settled (finishTargets) in the same activity. */
  readonly finished: boolean;
}

export interface TargetActivities {
  /**
   * Brings one target to what it should hold for one user (their fields, or nothing), comparing
   * before it writes. A regular activity: it talks to the outside world. Failures refused for good
   * are non-retryable; a throttled target's Retry-After becomes the next retry's delay.
   */
  pushToTarget(input: TargetPushInput): Promise<{ outcome: 'pushed' | 'unchanged' | 'skipped'; event?: string; summary: string }>;
  /**
   * A pipeline pass's first tries of several pushes, in their order, in one activity (a local one):
   * the user and their targets' state read once, each push logged on its own. Stops at the first
   * push that fails and reports it as data (the workflow retries it by the target's policy and goes
   * on with the rest). `finish`: when every push succeeded, the pass's targets step (finishTargets)
   * in the same activity.
   */
  pushFirstTries(input: StepInput & { pushes: readonly { target: string; key: string }[]; finish: boolean }): Promise<FirstTries>;
  /** Hands the push to the (target, user) job workflow: started, or told again (signal-with-start). */
  enqueueTargetJob(input: { customer: string; configVersion?: number; target: string; userId: string; force?: boolean }): Promise<{ workflowId: string }>;
  /** A push failed for good: the state says so with the reason, and the administrators hear once per episode. */
  recordTargetFailure(input: { customer: string; configVersion?: number; target: string; userId: string; reason: string; workflowId: string; runId: string }): Promise<{ notified: boolean }>;
  /** "Reprovision all": the next users after `after`, in id order. */
  listTargetSubjects(input: { customer: string; configVersion?: number; target: string; after: string | null; limit: number }): Promise<string[]>;
  /** An operator ended the job. */
  markTargetCancelled(input: { customer: string; target: string; userId: string; reason: string }): Promise<void>;
}

export type { TargetPushPlan };

export type Activities = PipelineActivities & SyncActivities & TargetActivities;
