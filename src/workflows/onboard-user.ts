import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { FirstTries, PipelineActivities, StepInput, TargetPushPlan } from '../activities/types.js';
import { LINE_FAILED, searchAttributes } from './config.js';
import { failureMessage, failureOf, pushActivity, quickPushActivity, quickPushesActivity, refusedForGood, retriedByPolicy, retryDelayAfter, targetBookkeeping } from './target-push.js';
import {
  onboardStateQuery,
  retrySignal,
  userChangedSignal,
  type OnboardState,
  type OnboardUserInput,
  type UserChange,
  type UserOutcome,
  type OutcomeStatus,
} from './messages.js';

/*
 * Steps that only touch PostgreSQL are local activities: they are short, and local activities cost
 * a fraction of a regular one in history and latency. They retry without limit on transient errors
 * (a database restart delays users, never fails them); permanent errors are non-retryable failures.
 */
const db = proxyLocalActivities<PipelineActivities>({
  startToCloseTimeout: '30 seconds',
  localRetryThreshold: '10 seconds',
  retry: { initialInterval: '200 milliseconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Create, move and profile in one local activity (placeUser) instead of three. */
const PLACE_IN_ONE_STEP = 'place-in-one-step';
/** An add's number and provision in one local activity (provisionLine) instead of two. */
const LINE_IN_ONE_STEP = 'line-in-one-step';
/** A push's first try as a local activity, its retries as regular activities. */
const PUSH_LOCAL_FIRST = 'push-local-first';
/** The first tries of a pass's pushes (and the targets step after them) in one local activity. */
const TARGETS_IN_ONE_STEP = 'targets-in-one-step';
/** A welcome's quick try records the pass's outcome with the send (no recordOutcome after it). */
const OUTCOME_WITH_EMAIL = 'outcome-with-email';

/** placeUser failed in a step of the line it was asked for, for good (see PipelineActivities.placeUser). */
function failedInLine(error: unknown): boolean {
  // A local activity's failure reaches the workflow as the activity's own ApplicationFailure; a
  // regular activity's as an ActivityFailure caused by it.
  const failure = error instanceof ActivityFailure ? error.cause : error;
  return failure instanceof ApplicationFailure && failure.details?.[0] === LINE_FAILED;
}

/**
 * The welcome email: a quick first try as a local activity (no extra round trip to the server),
 * then, if SMTP is down, patient retries as a regular activity that may take hours.
 */
const quickMail = proxyLocalActivities<PipelineActivities>({
  startToCloseTimeout: '20 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 3 },
});
const patientMail = proxyActivities<PipelineActivities>({
  startToCloseTimeout: '20 seconds',
  retry: { initialInterval: '10 seconds', backoffCoefficient: 2, maximumInterval: '10 minutes' },
});

/**
 * One user's pipeline (SPEC §2 steps 2-7; step 1, the import, happened in the sync's page read).
 * Each change runs one pass, by its mode:
 * - add: create the local user, place them at a site, set their role, match a profile, reserve a
 *   number and provision, and welcome them;
 * - update: move a placed user to the site their record now matches (or keep them where they are),
 *   re-match the profile, and apply the difference in line and services in one step; no email;
 * - delete: offboard (services, licences and numbers given back; the record kept, status deleted).
 * Changes that arrive meanwhile are collapsed and processed afterwards, one pass at a time.
 */
export async function onboardUser(input: OnboardUserInput): Promise<UserOutcome> {
  const { userId, externalId } = input;
  // A run that started with shape 1 takes the patched paths outright (no marker, no
  // TemporalChangeVersion upsert); one without a shape asks patched() in the order it always did.
  // In a rolling upgrade a run started by new code may be run first by a worker of the old, which
  // asks and records the markers: replayed here, patched() takes each marker the history holds
  // (core refuses a marker nobody asks for), and asks nothing where the history has none.
  const shaped = (input.shape ?? 0) >= 1;
  const since = (patch: string): boolean => {
    if (!shaped) return patched(patch);
    if (workflowInfo().unsafe.isReplaying) patched(patch);
    return true;
  };
  let next: UserChange | null = input.change ?? null;
  // Syncs waiting to hear about the next run; each run tells those that were waiting when it began.
  let waiting = new Set<string>(input.change?.reportTo ? [input.change.reportTo] : []);
  let retryRequested = false;
  /** The status Temporal UI shows for the last pass, when it is not the outcome's. */
  let shownStatus: OutcomeStatus | null = null;
  let attempt = 0;
  let state: OnboardState = {
    step: 'start',
    status: 'running',
    site: null,
    profile: null,
    number: null,
    reason: null,
    configVersion: input.change?.configVersion ?? 0,
  };

  setHandler(userChangedSignal, (change) => {
    next = change;
    if (change.reportTo) waiting.add(change.reportTo);
  });
  setHandler(retrySignal, () => {
    retryRequested = true;
  });
  setHandler(onboardStateQuery, () => state);

  const setState = (patch: Partial<OnboardState>) => {
    state = { ...state, ...patch };
  };

  /** Records the outcome for the syncs waiting for it; they collect outcomes in batches. */
  async function report(audience: Set<string>, outcome: UserOutcome): Promise<void> {
    const syncIds = [...audience];
    audience.clear();
    if (syncIds.length > 0) await db.recordOutcome({ userId, syncIds, outcome });
  }

  const outcome = (status: OutcomeStatus, extra: Partial<UserOutcome> = {}): UserOutcome => ({
    externalId,
    status,
    moved: false,
    emailed: false,
    site: state.site,
    profile: state.profile,
    number: state.number,
    ...extra,
  });

  /**
   * Hands the user to the targets a step planned, in its order (reversed for a deprovision).
   * automatic and enrollment: pushed here, retried by the target's policy; the first that fails for
   * good stops the provisioning pushes (a later target may rely on an earlier one) and is returned.
   * queue: handed to the target's job. queue-on-error: tried once here, handed to the job on a
   * transient failure. A deprovision goes on past a failure: every target lets the user go.
   */
  async function pushToTargets(
    ids: StepInput,
    plan: readonly TargetPushPlan[],
    direction: 'provision' | 'deprovision',
    settle = false,
  ): Promise<{ failed?: { target: string; reason: string }; finished: boolean }> {
    let failed: { target: string; reason: string } | undefined;
    const keyOf = (push: TargetPushPlan) => `${ids.runId}/${ids.attempt}/target:${push.target}`;
    // The first tries of the pushes before any queued one, in one local activity: the user read
    // once, one marker in the history. It stops at the first push that fails; that one and the
    // rest go on below as they would have (its retries by the target's policy, the others tried
    // one by one). `settle` (every push is in it): the targets step too, when all succeeded.
    const tried = new Map<string, FirstTries['tries'][number]>();
    let finished = false;
    const queued = plan.findIndex((push) => push.mode === 'queue');
    const lead = queued < 0 ? plan : plan.slice(0, queued);
    if (lead.length > 0 && since(PUSH_LOCAL_FIRST) && since(TARGETS_IN_ONE_STEP)) {
      setState({ step: `target ${lead[0]!.target}` });
      const finish = settle && lead.length === plan.length;
      try {
        const first = await quickPushesActivity(lead, finish, `${direction} in targets ${lead.map((p) => p.target).join(', ')}`).pushFirstTries({
          ...ids,
          pushes: lead.map((push) => ({ target: push.target, key: keyOf(push) })),
          finish,
        });
        for (const one of first.tries) tried.set(one.target, one);
        finished = first.finished;
      } catch (error) {
        if (isCancellation(error)) throw error;
        // Nothing known (the worker or the database went away): each push is tried on its own below.
      }
    }
    for (const push of plan) {
      const before = tried.get(push.target);
      if (before?.outcome) continue;
      setState({ step: `target ${push.target}` });
      const input = { customer: ids.customer, configVersion: ids.configVersion, target: push.target, userId, workflowId: ids.workflowId, runId: ids.runId };
      // Bookkeeping that cannot be done (Temporal or the database away for long) must not fail the
      // user's pipeline: the push is then failed for this pass, with the reason, and the next pass
      // or an operator's retry tries again.
      const bookkeeping = async (work: () => Promise<unknown>): Promise<string | null> => {
        try {
          await work();
          return null;
        } catch (error) {
          return failureMessage(error);
        }
      };
      if (push.mode === 'queue') {
        const problem = await bookkeeping(() => targetBookkeeping.enqueueTargetJob(input));
        if (problem) failed ??= { target: push.target, reason: `target ${push.target}: could not queue the push: ${problem}` };
        continue;
      }
      const summary = `${direction} in target ${push.target}`;
      const args = { ...input, key: keyOf(push) };
      try {
        if (!since(PUSH_LOCAL_FIRST)) {
          await pushActivity(push, push.mode === 'queue-on-error' ? 'once' : 'policy', summary).pushToTarget(args);
        } else {
          // The first try as a local activity; the retries the target's policy allows (after its
          // interval, or the target's Retry-After) as regular activities, as before.
          try {
            if (before?.failure) throw failureOf(before.failure);
            await quickPushActivity(push, summary).pushToTarget(args);
          } catch (error) {
            if (push.mode === 'queue-on-error' || !retriedByPolicy(push, error)) throw error;
            await sleep(retryDelayAfter(push, error));
            await pushActivity(push, 'policy', summary, 1).pushToTarget(args);
          }
        }
      } catch (error) {
        const transient = !refusedForGood(error);
        if (push.mode === 'queue-on-error' && transient) {
          const problem = await bookkeeping(() => targetBookkeeping.enqueueTargetJob(input));
          if (problem) failed ??= { target: push.target, reason: `target ${push.target}: could not queue the push: ${problem}` };
          continue;
        }
        const reason = failureMessage(error);
        await bookkeeping(() => targetBookkeeping.recordTargetFailure({ ...input, reason }));
        if (push.mode === 'queue-on-error') continue;
        failed ??= { target: push.target, reason };
        if (direction === 'provision') break;
      }
    }
    return { ...(failed ? { failed } : {}), finished };
  }

  /** Runs the pipeline for one change; null when a newer change interrupted a blocked wait. */
  async function pipeline(change: UserChange, audience: Set<string>): Promise<UserOutcome | null> {
    const ids = {
      userId,
      customer: input.customer,
      configVersion: change.configVersion,
      mode: change.mode,
      workflowId: workflowInfo().workflowId,
      runId: workflowInfo().runId,
      attempt: ++attempt,
      ...(change.retry ? { retry: true } : {}),
    };
    setState({ step: 'create', status: 'running', configVersion: change.configVersion, reason: null });

    if (change.mode === 'delete') {
      // Offboarding: services removed, licences given back, numbers released; the record stays.
      setState({ step: 'offboard' });
      const gone = await db.offboardUser.executeWithOptions({ summary: 'offboard: give back services, licences and numbers' }, [ids]);
      setState({ site: null, profile: null, number: null });
      // Offboarded whatever a target says: a target that could not let the user go is failed, with the reason, on its own.
      if (gone.targets) await pushToTargets(ids, gone.targets, 'deprovision');
      return outcome('deleted', { reason: gone.reason });
    }

    const update = change.mode === 'update';
    // Create, move and profile, and the line: one local activity (one transaction, each step still
    // logged on its own) since the patch; three before it, as histories recorded then replay.
    let place: Awaited<ReturnType<typeof db.placeUser>>;
    if (since(PLACE_IN_ONE_STEP)) {
      // The line too, in the same transaction, for a user who matches a profile (runs recorded
      // before it was asked for replay with placeUser results that have no line: the line's own
      // step below provisions it, as it did then).
      const summary = (line: string) => `${change.mode}: record, ${update ? 'move' : 'place'}${line} (source ${input.source})`;
      try {
        place = await db.placeUser.executeWithOptions({ summary: summary(', match a profile and provision the line') }, [{ ...ids, line: true }]);
      } catch (error) {
        if (!failedInLine(error)) throw error;
        // A step of the line failed for good and rolled the placement back with it: the user is
        // placed alone, and the line's own step below meets the failure again and records it.
        place = await db.placeUser.executeWithOptions({ summary: summary(' and match a profile') }, [ids]);
      }
    } else {
      const created = await db.createLocalUser.executeWithOptions({ summary: `${change.mode}: record the user from source ${input.source}` }, [ids]);
      place = { local: created };
      if (created.flowThrough) {
        setState({ step: 'move' });
        const moved = await db.moveUser.executeWithOptions({ summary: update ? 'move to the site the record now matches' : 'place at the site the record matches' }, [ids]);
        place = { local: created, placed: moved };
        if (moved.site && !moved.kept) {
          setState({ step: 'profile', site: moved.site });
          place = { local: created, placed: moved, matched: await db.matchProfile.executeWithOptions({ summary: `match a profile at ${moved.site}` }, [update ? { ...ids, moved: moved.moved } : ids]) };
        }
      }
    }
    const { local } = place;
    const restored = local.restored ? { restored: true } : {};
    if (!local.flowThrough || !place.placed) {
      // The record is updated, nothing else: the user keeps the status they had (Temporal UI shows it).
      if (local.status) shownStatus = local.status;
      return outcome('imported', { reason: local.reason, ...restored });
    }

    const placed = place.placed;
    setState({ site: placed.site });
    // An add places users at a site; an update moves them from one site to another.
    const how = update ? { moved: placed.moved } : { moved: false, placed: placed.moved, ...restored };
    if (!placed.site) return outcome('unplaced', { reason: placed.reason, ...restored });
    if (placed.kept) {
      // Kept where they are: their record changed all the same, and the targets hear of it.
      if (placed.targets) await pushToTargets(ids, placed.targets, 'provision');
      return outcome('kept', { reason: placed.reason });
    }

    const matched = place.matched!;
    setState({ step: 'profile', profile: matched.profile });
    if (!matched.profile) {
      if (matched.targets) await pushToTargets(ids, matched.targets, 'deprovision');
      return outcome('unmatched', { ...how, reason: matched.reason, ...(update ? { number: null } : {}) });
    }
    let targets: readonly TargetPushPlan[];

    /**
     * An exhausted inventory or a short licence is not a retry loop: the user waits, blocked, for an
     * operator's `retry` (true: try again) or a newer change (false: this pass is over).
     */
    const waitWhileBlocked = async (reason: string): Promise<boolean> => {
      setState({ status: 'blocked', reason });
      upsertSearchAttributes([
        { key: searchAttributes.site, value: state.site! },
        { key: searchAttributes.status, value: 'blocked' },
      ]);
      await report(audience, outcome('blocked', { ...how, reason }));
      await condition(() => retryRequested || next !== null);
      if (!retryRequested) return false;
      retryRequested = false;
      attempt++;
      setState({ status: 'running', reason: null });
      return true;
    };

    // update || patched(): an update never asks for the patch, as before it (nor a pass whose
    // placeUser provisioned the line).
    let provisioned = place.line;
    if (provisioned || update || since(LINE_IN_ONE_STEP)) {
      // The line and the services in one step (one transaction): an update's move never leaves two
      // numbers or none; an add's failure leaves no reservation to give back.
      for (;;) {
        setState({ step: !update && matched.numberFrom ? 'number' : 'provision' });
        const pool = matched.numberFrom === 'site' ? `a number from the ${placed.site} pool, ` : matched.numberFrom === 'customer' ? "a number from the customer's pool, " : '';
        let line: { number: string | null; blocked?: string; targets?: TargetPushPlan[] };
        try {
          // The first pass's line came with the placement; a retry after a block provisions it here.
          line = provisioned
            ? provisioned
            : update
            ? await db.provisionProfile.executeWithOptions({ summary: `provision profile ${matched.profile} at ${placed.site}: line and services` }, [{ ...ids, attempt, numberFrom: matched.numberFrom }])
            : await db.provisionLine.executeWithOptions({ summary: `${pool}provision profile ${matched.profile} at ${placed.site}` }, [{ ...ids, attempt, pool: matched.numberFrom }]);
        } catch (error) {
          // Nothing of the step was written: the user keeps what they held (an add: nothing), failed, with the reason.
          const reason = failureMessage(error);
          await CancellationScope.nonCancellable(() => db.abandonProvisioning({ ...ids, attempt, number: null, reason }));
          setState(update ? { reason } : { number: null, reason });
          return outcome('failed', { ...how, reason });
        }
        provisioned = undefined;
        if (line.blocked) {
          if (!(await waitWhileBlocked(line.blocked))) return null;
          continue;
        }
        setState({ number: line.number });
        targets = line.targets ?? [];
        break;
      }
    } else {
      for (;;) {
        setState({ step: 'number' });
        let number: string | null = null;
        if (matched.numberFrom) {
          const pool = matched.numberFrom === 'site' ? `the ${placed.site} pool` : "the customer's pool";
          const reservation = await db.reserveNumber.executeWithOptions({ summary: `reserve a number from ${pool}` }, [{ ...ids, attempt, pool: matched.numberFrom }]);
          if (reservation.number === null) {
            if (!(await waitWhileBlocked(reservation.reason ?? 'no available number'))) return null;
            continue;
          }
          number = reservation.number;
          setState({ number });
        }
        setState({ step: 'provision' });
        let provisioned: { blocked?: string; targets?: TargetPushPlan[] } | undefined;
        try {
          provisioned = await db.provisionServices.executeWithOptions({ summary: `provision profile ${matched.profile} at ${placed.site}` }, [{ ...ids, attempt, number }]);
        } catch (error) {
          const reason = failureMessage(error);
          // Compensate what this run did, even if the workflow is being cancelled.
          await CancellationScope.nonCancellable(() => db.abandonProvisioning({ ...ids, attempt, number, reason }));
          setState({ number: null, reason });
          return outcome('failed', { ...how, reason });
        }
        // A licence is short: the step gave the reserved number back; a retry reserves one again.
        if (provisioned?.blocked) {
          setState({ number: null });
          if (!(await waitWhileBlocked(provisioned.blocked))) return null;
          continue;
        }
        targets = provisioned?.targets ?? [];
        break;
      }
    }

    // The targets have the user before the user counts as provisioned (or fails, with the target's reason).
    if (targets.length > 0) {
      const { failed, finished } = await pushToTargets(ids, targets, 'provision', true);
      if (!finished && targets.some((t) => t.mode !== 'queue')) {
        setState({ step: 'targets' });
        await db.finishTargets({ ...ids, attempt, ...(failed ? { failed } : {}) });
      }
      if (failed) return outcome('failed', { ...how, reason: failed.reason });
    }

    // The welcome, once per user: an add's, or an update's that provisioned a user for the first
    // time (blocked or failed when placed); the outbox sends nobody a second one. A user an update
    // moved, and welcomed before, is told their new site and number when the customer asks for it.
    const moved = update && placed.moved && placed.from !== undefined && local.movedEmail === true ? placed.from : null;
    if (!local.welcomeEmail && moved === null) return outcome('provisioned', how);
    setState({ step: 'email' });
    const send = async (mail: typeof quickMail): Promise<boolean> => {
      const welcomed = local.welcomeEmail ? (await mail.sendWelcomeEmail(ids)).sent : false;
      if (welcomed || moved === null) return welcomed;
      return (await mail.sendMovedEmail({ ...ids, from: moved })).sent;
    };
    try {
      // The welcome alone (no moved email after it), with syncs waiting: its send's record tells
      // them, and the pass reports nothing after it. (A try that fails for now reports nothing.)
      if (moved === null && audience.size > 0 && since(OUTCOME_WITH_EMAIL)) {
        const welcome = await quickMail.sendWelcomeEmail({ ...ids, report: { syncIds: [...audience], outcome: outcome('provisioned', how) } });
        if (welcome.reported) audience.clear();
        return outcome('provisioned', { ...how, emailed: welcome.sent });
      }
      return outcome('provisioned', { ...how, emailed: await send(quickMail) });
    } catch {
      // SMTP is down: report the user as provisioned now, and keep trying the email after.
      await report(audience, outcome('provisioned', { ...how, emailed: false }));
      await send(patientMail);
      return outcome('provisioned', { ...how, emailed: true });
    }
  }

  // Started by signal-with-start, the first change arrives as the signal rather than as input.
  if (next === null) await condition(() => next !== null, '1 minute');

  let last: UserOutcome | null = null;
  while (next !== null) {
    const change: UserChange = next;
    const audience = waiting;
    next = null;
    waiting = new Set();
    let result: UserOutcome | null;
    try {
      result = await pipeline(change, audience);
    } catch (error) {
      // Only a bug or a broken invariant gets here; tell the sync instead of leaving it waiting.
      const failed = outcome('failed', { reason: failureMessage(error) });
      if (state.step.startsWith('target')) {
        // A user left `provisioning` while their targets were pushed ends failed, with the reason.
        const settle = { userId, customer: input.customer, configVersion: change.configVersion, mode: change.mode, workflowId: workflowInfo().workflowId, runId: workflowInfo().runId, attempt };
        await CancellationScope.nonCancellable(() => db.finishTargets({ ...settle, failed: { target: state.step.slice('target '.length), reason: failed.reason! } })).catch(() => undefined);
      }
      await report(audience, failed);
      throw ApplicationFailure.nonRetryable(`pipeline of ${externalId} failed: ${failed.reason}`, 'PipelineFailed');
    }
    if (result === null) continue;
    last = result;
    const shown = shownStatus ?? last.status;
    shownStatus = null;
    setState({ step: 'done', status: shown, reason: last.reason ?? null });
    upsertSearchAttributes([
      ...(last.site ? [{ key: searchAttributes.site, value: last.site }] : []),
      { key: searchAttributes.status, value: shown },
    ]);
    await report(audience, last);
  }
  return last ?? outcome('imported', { reason: 'no change was handed to this pipeline' });
}
