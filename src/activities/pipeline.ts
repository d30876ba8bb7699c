import { ApplicationFailure } from '@temporalio/common';
import type { Kysely, Transaction } from 'kysely';
import { LINE_FAILED } from '../workflows/config.js';
import { asActivityFailure } from './failures.js';
import { explainFtpRule, explainSite } from '../domain/matching.js';
import { noNumberLeft } from '../domain/numbers.js';
import { licencesOf, servicesOnLine, type ServiceSpec } from '../domain/services.js';
import { releaseLicences, takeLicences } from '../adapters/db/licences.js';
import type { CanonicalUser } from '../domain/user.js';
import { PermanentError } from '../adapters/errors.js';
import { allocateLine, holdOnly, releaseReservation, reserveNumber } from '../adapters/db/numbers.js';
import { enqueueEmail, markSentWithEntry, recordSendFailure } from '../adapters/db/outbox.js';
import { outcomeRows, recordOutcomes } from '../adapters/db/outcomes.js';
import { classifyDatabaseError } from '../adapters/db/errors.js';
import type { Database } from '../adapters/db/schema.js';
import type { CustomerSnapshot, ConfigSnapshots } from '../adapters/db/snapshots.js';
import { runStep, runSteps, stepEntry, StepNotRecorded, type Step, type StepContext, type StepRecord } from '../adapters/db/steps.js';
import { applyServices, describeChanges, removeServices } from '../adapters/db/user-services.js';
import { lockUser, markDeleted, readUserWithLine, placeAtSite, restoreUser, setProfile, setReason, setStatus, type UserRow } from '../adapters/db/user-state.js';
import type { Mailer } from '../adapters/mail/smtp.js';
import { renderMoved, renderWelcome } from '../adapters/mail/welcome.js';
import { planTargetPushes } from './targets.js';
import type { OutcomeReport, PipelineActivities, StepInput, TargetPushPlan } from './types.js';

export interface PipelineDeps {
  readonly db: Kysely<Database>;
  readonly snapshots: ConfigSnapshots;
  readonly mailer: Mailer;
}

type Tx = Transaction<Database>;
type Result<K extends keyof PipelineActivities> = Awaited<ReturnType<PipelineActivities[K]>>;

/**
 * How long a sent email's record is retried while the database is away: within the email
 * activities' 20 s start-to-close, longer than a PostgreSQL restart takes.
 */
const RECORD_SENT_PATIENCE_MS = 15_000;

/** Targets whose push the user waits for (the pipeline hands them over before the user counts as provisioned). */
const INLINE_MODES: ReadonlySet<TargetPushPlan['mode']> = new Set(['automatic', 'enrollment', 'queue-on-error']);

/**
 * The targets the user is handed to after provisioning, and the status provisioning leaves them
 * in: while an inline target has not got them, the user is `provisioning`, not provisioned until
 * the target has it (finishTargets settles it).
 */
function targetsAfterProvisioning(snap: CustomerSnapshot): { targets: TargetPushPlan[]; waiting: string | null } {
  const targets = planTargetPushes(snap, 'provision');
  const inline = targets.filter((t) => INLINE_MODES.has(t.mode));
  return { targets, waiting: inline.length > 0 ? `waiting for target ${inline.map((t) => t.target).join(', ')}` : null };
}

/** What each service needs from the user or the line before it can be provisioned. */
function serviceProblem(service: ServiceSpec, user: CanonicalUser, number: string | null): string | null {
  if (service.kind === 'singleNumberReach') {
    const destination = service.settings.destination === 'phone' ? 'phone' : 'mobile';
    if (!user[destination]) return `single number reach needs the user's ${destination} number, and the user has none`;
  }
  if (service.kind === 'voicemail' && number === null) return 'voicemail needs a line: the profile gives the user no number';
  return null;
}

const siteName = (snap: CustomerSnapshot, siteId: number | null) => (siteId === null ? null : (snap.siteNames.get(siteId) ?? String(siteId)));
const released = (numbers: readonly string[]) => (numbers.length > 0 ? `; ${numbers.join(', ')} released` : '');

/**
 * Gives the user their profile with `number` as its line, in the caller's transaction: licences
 * taken (all or none), services brought to the profile's (the difference only), the number in use
 * and every other number they held given back. Returns the licence shortage that blocks the user
 * instead, with nothing changed but the reserved number given back.
 */
async function provisionProfileInTx(
  tx: Tx,
  snap: CustomerSnapshot,
  ctx: StepContext,
  user: UserRow,
  number: string | null,
): Promise<{ blocked: string; summary: string } | { summary: string; targets: TargetPushPlan[] }> {
  const profileName = user.profile_id === null ? undefined : snap.profileNames.get(user.profile_id);
  const profile = profileName ? snap.profiles.get(profileName) : undefined;
  if (!profile) throw new PermanentError('NoProfile', `user ${user.external_id} has no profile to provision`);
  const attributes = user.attributes as CanonicalUser;
  const problems = profile.services.map((s) => serviceProblem(s, attributes, number)).filter((p) => p !== null);
  if (problems.length > 0) throw new PermanentError('ServiceRequirement', problems.join('; '));

  // The tenant licences the services need (one short, and the user waits, blocked). Only customers
  // with an Entra source have licence counts.
  const tenant = snap.config.sources.some((source) => source.type === 'entra');
  const skus = profile.services.flatMap(licencesOf);
  const shortage = tenant ? await takeLicences(tx, ctx.customerId, user.id, skus) : null;
  if (shortage) {
    // A reserved number goes back while the user waits: a pool must not drain into blocked users.
    if (number) await releaseReservation(tx, ctx.customerId, user.id, number);
    await setStatus(tx, user.id, 'blocked', shortage);
    return { blocked: shortage, summary: shortage };
  }
  if (tenant) await releaseLicences(tx, ctx.customerId, user.id, skus);
  const changes = await applyServices(tx, ctx.customerId, user.id, servicesOnLine(profile.services, number));
  // The number in use, and those of an earlier profile or site given back: a user never holds a
  // number their profile does not give them (cooling first when the customer rests released numbers).
  const gone = await holdOnly(tx, ctx.customerId, user.id, number, snap.config.settings.numberCooling);
  const { targets, waiting } = targetsAfterProvisioning(snap);
  await setStatus(tx, user.id, waiting ? 'provisioning' : 'provisioned', waiting);
  return { summary: `provisioned ${profile.name}${number ? ` with ${number}` : ''}: ${describeChanges(changes)}${released(gone)}`, targets };
}

/** Step 2: the user as imported, restored when an add sees them again after offboarding; whether the pass goes on. */
function createWork(snap: CustomerSnapshot, ctx: StepContext, input: StepInput): (tx: Tx) => Promise<StepRecord<Result<'createLocalUser'>>> {
  return async (tx) => {
    const user = await lockUser(tx, ctx.customerId, ctx.userId);
    const { flowThrough, welcomeEmail, smtp } = snap.config.settings;
    // An offboarded user seen again by an add is restored: the same user, placed and provisioned anew.
    const restored = user.status === 'deleted' && input.mode === 'add';
    if (restored) await restoreUser(tx, user.id);
    // An operator's retry runs whatever addSync and updateSync say about syncs; flow-through off stops it too.
    const enabled = flowThrough.enabled && (input.retry === true || (input.mode === 'update' ? flowThrough.updateSync : flowThrough.addSync));
    const reason = enabled
      ? undefined
      : input.mode === 'update'
        ? `flow-through update sync is off for customer ${input.customer}: the record is updated, nobody moves`
        : `flow-through ${input.mode} sync is off for customer ${input.customer}`;
    const result = {
      flowThrough: enabled,
      welcomeEmail: welcomeEmail.enabled && smtp !== undefined && Boolean(user.email),
      ...(snap.config.settings.movedEmail.enabled && smtp !== undefined && user.email ? { movedEmail: true } : {}),
      ...(reason ? { reason, status: user.status } : {}),
      ...(restored ? { restored: true } : {}),
    };
    // The import inserted or updated the row; say which, so a rerun for a placed user does not
    // read as if they had been recreated at customer level.
    const isNew = user.created_at.getTime() === user.updated_at.getTime();
    const where = user.site_id === null ? 'at customer level' : `at site ${siteName(snap, user.site_id)}`;
    const summary = restored ? 'offboarded user back in the source: restored at customer level' : isNew ? `local user created ${where}` : `local user exists ${where} (${user.status})`;
    return { status: 'succeeded', result, summary: reason ? `${summary}; ${reason}` : summary };
  };
}

/** Step 4: an add places a user at the first site whose move criteria match; an update moves a placed user (or keeps them). */
function moveWork(snap: CustomerSnapshot, ctx: StepContext, input: StepInput): (tx: Tx) => Promise<StepRecord<Result<'moveUser'>>> {
  return async (tx) => {
    const user = await lockUser(tx, ctx.customerId, ctx.userId);
    const current = user.site_id !== null && snap.siteNames.has(user.site_id) ? snap.siteNames.get(user.site_id)! : null;
    if (input.mode === 'update') {
      // An update moves users already at a site; placing users is the add sync's job.
      if (current === null) {
        const reason = 'not at a site: the add sync places users';
        return { status: 'skipped', result: { site: null, moved: false, reason }, summary: reason };
      }
    } else if (current !== null) {
      // An add places users; moving a placed user to another site is the update sync's job.
      return { status: 'skipped', result: { site: current, moved: false }, summary: `already at ${current}` };
    }
    const resolution = explainSite(user.attributes as CanonicalUser, user.user_type, snap.sites);
    if (resolution.site === null) {
      const reason = `no site's ${user.user_type} move criteria match`;
      if (current !== null) {
        // A placed user who matches no site any more stays where they are, with the reason.
        const kept = `kept at ${current}: ${reason} any more`;
        await setReason(tx, user.id, kept);
        const targets = planTargetPushes(snap, 'provision');
        return {
          status: 'skipped',
          result: { site: current, moved: false, kept: true, reason: kept, ...(targets.length > 0 ? { targets } : {}) },
          summary: kept,
          details: resolution,
        };
      }
      await setStatus(tx, user.id, 'unplaced', reason);
      return { status: 'succeeded', result: { site: null, moved: false, reason }, summary: reason, details: resolution };
    }
    if (resolution.site === current) {
      return { status: 'succeeded', result: { site: current, moved: false }, summary: `still at ${current}`, details: resolution };
    }
    const siteConfig = snap.config.sites.find((s) => s.name === resolution.site)!;
    await placeAtSite(tx, user.id, snap.siteIds.get(resolution.site)!, siteConfig.defaultRole ?? null);
    const summary = current === null ? `moved to ${resolution.site}` : `moved from ${current} to ${resolution.site}`;
    return { status: 'succeeded', result: { site: resolution.site, moved: true, ...(current ? { from: current } : {}) }, summary, details: resolution };
  };
}

/** Step 5: the profile (and role) the first matching FTP rule chooses, or updateSyncProfile after an update's move. */
function profileWork(snap: CustomerSnapshot, ctx: StepContext, input: StepInput & { moved?: boolean }): (tx: Tx) => Promise<StepRecord<Result<'matchProfile'>>> {
  return async (tx) => {
    const user = await lockUser(tx, ctx.customerId, ctx.userId);
    const site = snap.config.sites.find((s) => snap.siteIds.get(s.name) === user.site_id);
    // After a move, an update applies the configured profile; otherwise the FTP rules choose.
    const afterMove = input.mode === 'update' && input.moved === true ? snap.config.settings.updateSyncProfile : undefined;
    if (afterMove !== undefined) {
      const profile = snap.profiles.get(afterMove)!;
      const role = profile.role ?? site?.defaultRole ?? null;
      await setProfile(tx, user.id, profile.id, role, 'provisioning');
      return {
        status: 'succeeded',
        result: { profile: profile.name, numberFrom: profile.line?.numberFrom ?? null },
        summary: `profile ${profile.name} (updateSyncProfile, after a move), role ${role ?? 'none'}`,
      };
    }
    const resolution = explainFtpRule(user.attributes as CanonicalUser, snap.ftpRules);
    if (!resolution.rule) {
      const reason = snap.ftpRules.length === 0 ? 'no FTP criteria are in force' : 'no FTP rule matches';
      await setProfile(tx, user.id, null, null, 'unmatched', reason);
      // A user provisioned before (their department changed) keeps nothing of a profile they lost.
      const gone = await holdOnly(tx, ctx.customerId, user.id, null, snap.config.settings.numberCooling);
      await removeServices(tx, user.id);
      await releaseLicences(tx, ctx.customerId, user.id, []);
      // Provisioned before, the targets let them go (an add's new user was never pushed: nothing to plan).
      const targets = input.mode === 'update' ? planTargetPushes(snap, 'deprovision') : [];
      return {
        status: 'succeeded',
        result: { profile: null, numberFrom: null, reason, ...(targets.length > 0 ? { targets } : {}) },
        summary: `${reason}${released(gone)}`,
        details: resolution,
      };
    }
    const profile = snap.profiles.get(resolution.rule.profile)!;
    const role = resolution.rule.role ?? profile.role ?? site?.defaultRole ?? null;
    await setProfile(tx, user.id, profile.id, role, 'provisioning');
    return {
      status: 'succeeded',
      result: { profile: profile.name, numberFrom: profile.line?.numberFrom ?? null },
      summary: `profile ${profile.name} (rule ${(resolution.index ?? 0) + 1}), role ${role ?? 'none'}`,
      details: resolution,
    };
  };
}

/** Step 6a: the lowest available number of the pool; blocked, with the reason, when there is none. */
function numberWork(snap: CustomerSnapshot, ctx: StepContext, input: StepInput & { pool: 'site' | 'customer' }): (tx: Tx) => Promise<StepRecord<Result<'reserveNumber'>>> {
  return async (tx) => {
    const user = await lockUser(tx, ctx.customerId, ctx.userId);
    const siteId = input.pool === 'site' ? user.site_id : null;
    const poolName = input.pool === 'site' ? `site ${siteName(snap, user.site_id) ?? '?'}` : `customer ${input.customer}`;
    const number = await reserveNumber(tx, { customerId: ctx.customerId, siteId }, user.id, `${ctx.workflowId}/${ctx.runId}`);
    if (number === null) {
      const reason = noNumberLeft(poolName);
      await setStatus(tx, user.id, 'blocked', reason);
      return { status: 'blocked', result: { number: null, reason }, summary: reason };
    }
    return { status: 'succeeded', result: { number }, summary: `${number} from the ${poolName} pool` };
  };
}

/** Step 6b: the profile's services on the reserved number (or none); blocked when a licence is short. */
function provisionWork(snap: CustomerSnapshot, ctx: StepContext, input: StepInput & { number: string | null }): (tx: Tx) => Promise<StepRecord<Result<'provisionServices'>>> {
  return async (tx) => {
    const user = await lockUser(tx, ctx.customerId, ctx.userId);
    const done = await provisionProfileInTx(tx, snap, ctx, user, input.number);
    if ('blocked' in done) {
      return { status: 'blocked', result: { blocked: done.blocked }, summary: input.number ? `${done.summary}; ${input.number} released` : done.summary };
    }
    return { status: 'succeeded', result: done.targets.length > 0 ? { targets: done.targets } : {}, summary: done.summary };
  };
}

/**
 * A line step's error in placeUser: one that fails for good says so (LINE_FAILED in its details),
 * so the pipeline places the user alone and meets the failure again in the line's own step; a
 * transient one is retried as it is.
 */
function lineFailure(error: unknown): unknown {
  const failure = asActivityFailure(error);
  if (!(failure instanceof ApplicationFailure) || !failure.nonRetryable) return error;
  return ApplicationFailure.create({ message: failure.message, type: failure.type ?? undefined, nonRetryable: true, details: [LINE_FAILED] });
}

/** Steps 6a and 6b of an add (provisionLine), in the caller's steps: a number from the pool (none when `pool` is null), then the profile on it. */
async function lineSteps(snap: CustomerSnapshot, ctx: StepContext, input: StepInput & { pool: 'site' | 'customer' | null }, step: Step): Promise<Result<'provisionLine'>> {
  let number: string | null = null;
  if (input.pool !== null) {
    const reservation = await step('number', numberWork(snap, ctx, { ...input, pool: input.pool }));
    if (reservation.number === null) return { number: null, blocked: reservation.reason ?? 'no available number' };
    number = reservation.number;
  }
  const provisioned = await step('provision', provisionWork(snap, ctx, { ...input, number }));
  if (provisioned?.blocked) return { number: null, blocked: provisioned.blocked };
  return { number, ...(provisioned?.targets ? { targets: provisioned.targets } : {}) };
}

/** An update's step 6 (provisionProfile): the line kept or taken from the new pool, and the services, together. */
function profileLineWork(snap: CustomerSnapshot, ctx: StepContext, input: StepInput & { numberFrom: 'site' | 'customer' | null }): (tx: Tx) => Promise<StepRecord<Result<'provisionProfile'>>> {
  return async (tx) => {
    const user = await lockUser(tx, ctx.customerId, ctx.userId);
    // The line and the services change in one transaction: there is no moment at which the user
    // holds two numbers, or none, by accident.
    const keepExisting = snap.config.settings.numberAssignmentOnMove === 'keep-existing';
    const line = await allocateLine(tx, {
      customerId: ctx.customerId,
      userId: user.id,
      siteId: user.site_id,
      pool: input.numberFrom,
      keepExisting,
      reservedBy: `${ctx.workflowId}/${ctx.runId}`,
    });
    if (line.exhausted) {
      // The user keeps what they hold until a number can be given: blocked, not left without a line.
      const pool = input.numberFrom === 'site' ? `site ${siteName(snap, user.site_id) ?? '?'}` : `customer ${input.customer}`;
      const reason = noNumberLeft(pool);
      await setStatus(tx, user.id, 'blocked', reason);
      return { status: 'blocked', result: { number: null, blocked: reason }, summary: reason };
    }
    const done = await provisionProfileInTx(tx, snap, ctx, user, line.number);
    if ('blocked' in done) return { status: 'blocked', result: { number: null, blocked: done.blocked }, summary: done.summary };
    return { status: 'succeeded', result: { number: line.number, ...(done.targets.length > 0 ? { targets: done.targets } : {}) }, summary: done.summary };
  };
}

export function createPipelineActivities({ db, snapshots, mailer }: PipelineDeps): PipelineActivities {
  async function context(input: StepInput): Promise<{ snap: CustomerSnapshot; ctx: StepContext }> {
    const snap = await snapshots.customer(input.configVersion, input.customer);
    return {
      snap,
      ctx: { customerId: snap.customerId, userId: input.userId, workflowId: input.workflowId, runId: input.runId, attempt: input.attempt },
    };
  }

  /**
   * Messages this worker handed to the mail server and has not yet recorded as sent, by outbox id:
   * the send, pending or accepted. An attempt of the email step that timed out keeps running (a
   * slow mail server, a database restarting under the record), and its retry runs in this same
   * process, as local activities' retries always do: the retry waits for that send and records it
   * instead of sending the message a second time. An entry goes when the send is recorded or fails.
   */
  const handedOver = new Map<string, Promise<void>>();

  /**
   * Sends the user an email through the outbox: written once (with a stable Message-ID) before it
   * is sent, so a rerun finds it and never sends a second one. The welcome is one per user; a moved
   * email one per move (the pass that moved them).
   */
  async function sendEmail(input: StepInput, kind: 'welcome' | 'moved', previousSite = '', report?: OutcomeReport): Promise<{ sent: boolean; skipped?: string; reported?: boolean }> {
    const { snap, ctx } = await context(input);
    // The pass's outcome, as the send went: in the send's own record when there is one, else alone.
    const outcomes = (emailed: boolean) => (report ? outcomeRows(ctx.userId, report.syncIds, { ...report.outcome, emailed }) : []);
    const reported = async <R extends { sent: boolean; skipped?: string }>(result: R): Promise<R & { reported?: boolean }> => {
      if (!report) return result;
      await recordOutcomes(db, outcomes(result.sent));
      return { ...result, reported: true };
    };
    const { welcomeEmail, movedEmail, smtp } = snap.config.settings;
    const settings = kind === 'welcome' ? welcomeEmail : movedEmail;
    const from = kind === 'welcome' ? welcomeEmail.from : (movedEmail.from ?? welcomeEmail.from);
    const step = kind === 'welcome' ? 'email' : 'moved-email';
    // Written from one read of the user and their line, without a transaction or a lock: the
    // outbox's unique (user, event) keeps it to one message however often the step runs.
    const message = await (async () => {
      if (!settings.enabled || !smtp || !from) return null;
      const user = await readUserWithLine(db, ctx.customerId, ctx.userId);
      if (!user.email) return null;
      const attributes = user.attributes as CanonicalUser;
      const site = snap.config.sites.find((s) => snap.siteIds.get(s.name) === user.site_id);
      const previous = snap.config.sites.find((s) => s.name === previousSite);
      const vars = {
        customer: snap.config.displayName ?? snap.config.name,
        firstName: attributes.firstName ?? attributes.displayName ?? user.username ?? '',
        lastName: attributes.lastName ?? '',
        displayName: attributes.displayName ?? '',
        email: user.email,
        username: user.username ?? '',
        department: attributes.department ?? '',
        title: attributes.title ?? '',
        site: site?.displayName ?? site?.name ?? '',
        siteLocale: site?.locale ?? '',
        siteTimeZone: site?.timeZone ?? '',
        number: user.line,
        profile: user.profile_id === null ? '' : (snap.profileNames.get(user.profile_id) ?? ''),
        previousSite: previous?.displayName ?? previousSite,
      };
      const rendered = kind === 'welcome' ? renderWelcome(snap.welcomeTemplate, welcomeEmail.subject, vars) : renderMoved(snap.movedTemplate, movedEmail.subject, vars);
      const domain = /@([^>\s]+)>?\s*$/.exec(from)?.[1] ?? 'flowthru.invalid';
      // One welcome per user; one moved email per move, named by the pass that moved them.
      const event = kind === 'welcome' ? 'welcome' : `moved/${ctx.runId}/${ctx.attempt}`;
      const id = kind === 'welcome' ? `welcome.${user.id}` : `moved.${user.id}.${ctx.runId}.${ctx.attempt}`;
      return enqueueEmail(db, { customer_id: ctx.customerId, user_id: user.id, event, message_id: `<${id}.${snap.config.name}@${domain}>`, to_address: user.email, ...rendered });
    })();
    if (!message) return reported({ sent: false, skipped: `${kind} email off, no SMTP server or no email address` });
    if (message.status === 'sent') {
      // Sent by this very pass (the activity is being retried after the send was recorded), or
      // earlier (an earlier sync welcomed the user): only the first counts as emailed now.
      const mine = await db.selectFrom('transaction_log').select('id').where('idempotency_key', '=', `${ctx.runId}/${ctx.attempt}/${step}`).executeTakeFirst();
      return reported(mine ? { sent: true } : { sent: false, skipped: `${kind} email already sent (${message.message_id})` });
    }
    if (message.status === 'failed') return reported({ sent: false, skipped: message.last_error ?? 'refused earlier' });
    // An earlier attempt's send of this message, still pending or accepted and not yet recorded, is
    // this attempt's send too.
    let sending = handedOver.get(message.id);
    if (!sending) {
      sending = mailer
        .send(smtp!, { from: from!, to: message.to_address, subject: message.subject, html: message.html, text: message.text, messageId: message.message_id })
        .catch(async (error: unknown) => {
          handedOver.delete(message.id);
          await recordSendFailure(db, message.id, (error as Error).message, error instanceof PermanentError);
          throw error;
        });
      handedOver.set(message.id, sending);
    }
    try {
      await sending;
    } catch (error) {
      if (error instanceof PermanentError) return reported({ sent: false, skipped: error.message });
      throw error;
    }
    // Recorded in one statement the moment the server accepts: the window in which a dying worker
    // would send this message again (same Message-ID) is one round trip wide. The step's log entry
    // commits with it, so a retry of this pass knows the message was its own. The server has the
    // message now: a database restarting in this moment is waited out here (retrying the record,
    // not the send); one away for longer fails the attempt, and its retry finds the send in
    // handedOver and records it.
    const startedAt = new Date();
    const record = () => markSentWithEntry(db, message.id, stepEntry(ctx, step, { status: 'succeeded', result: null, summary: `${kind} email sent (${message.message_id})` }, startedAt), outcomes(true));
    const deadline = Date.now() + RECORD_SENT_PATIENCE_MS;
    for (let wait = 100; ; wait = Math.min(wait * 2, 2_000)) {
      try {
        await record();
        handedOver.delete(message.id);
        break;
      } catch (error) {
        if (classifyDatabaseError(error) !== 'transient' || Date.now() + wait > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
    return report ? { sent: true, reported: true } : { sent: true };
  }

  return {
    async createLocalUser(input) {
      const { snap, ctx } = await context(input);
      return runStep(db, ctx, 'create', createWork(snap, ctx, input));
    },

    async moveUser(input) {
      const { snap, ctx } = await context(input);
      return runStep(db, ctx, 'move', moveWork(snap, ctx, input));
    },

    async matchProfile(input) {
      const { snap, ctx } = await context(input);
      return runStep(db, ctx, 'profile', profileWork(snap, ctx, input));
    },

    async placeUser(input) {
      const { snap, ctx } = await context(input);
      return runSteps(db, ctx, async (step) => {
        const local = await step('create', createWork(snap, ctx, input));
        if (!local.flowThrough) return { local };
        const placed = await step('move', moveWork(snap, ctx, input));
        if (!placed.site || placed.kept) return { local, placed };
        const matched = await step('profile', profileWork(snap, ctx, input.mode === 'update' ? { ...input, moved: placed.moved } : input));
        if (!input.line || !matched.profile) return { local, placed, matched };
        try {
          const line = input.mode === 'update' ? await step('provision', profileLineWork(snap, ctx, { ...input, numberFrom: matched.numberFrom })) : await lineSteps(snap, ctx, { ...input, pool: matched.numberFrom }, step);
          return { local, placed, matched, line };
        } catch (error) {
          // Placed without the line by an attempt that committed (code before the line went with
          // the placement, or the fallback after it failed): the line's own step provisions it.
          if (error instanceof StepNotRecorded) return { local, placed, matched };
          throw lineFailure(error);
        }
      });
    },

    async reserveNumber(input) {
      const { snap, ctx } = await context(input);
      return runStep(db, ctx, 'number', numberWork(snap, ctx, input));
    },

    async provisionServices(input) {
      const { snap, ctx } = await context(input);
      return runStep(db, ctx, 'provision', provisionWork(snap, ctx, input));
    },

    async provisionLine(input) {
      const { snap, ctx } = await context(input);
      return runSteps(db, ctx, (step) => lineSteps(snap, ctx, input, step));
    },

    async provisionProfile(input) {
      const { snap, ctx } = await context(input);
      return runStep(db, ctx, 'provision', profileLineWork(snap, ctx, input));
    },

    async finishTargets(input) {
      const { ctx } = await context(input);
      if (!input.failed) {
        // The usual case in one statement, no transaction: the user provisioned if they are still
        // this pass's `provisioning` (an operator's change meanwhile has its own pass), and the
        // step's entry. Harmless when run again: the update finds nothing to change, the entry is kept.
        const startedAt = new Date();
        await db
          .with('settled', (q) =>
            q.updateTable('users').set({ status: 'provisioned', status_reason: null, updated_at: startedAt }).where('id', '=', ctx.userId).where('customer_id', '=', ctx.customerId).where('status', '=', 'provisioning'),
          )
          .insertInto('transaction_log')
          .values(stepEntry(ctx, 'targets', { status: 'succeeded', result: null, summary: 'the targets have the user' }, startedAt))
          .onConflict((oc) => oc.column('idempotency_key').doNothing())
          .execute();
        return;
      }
      const reason = input.failed.reason;
      await runStep(db, ctx, 'targets', async (tx) => {
        const user = await lockUser(tx, ctx.customerId, ctx.userId);
        await setStatus(tx, user.id, 'failed', reason);
        return { status: 'failed', result: null, error: reason, summary: reason };
      });
    },

    async abandonProvisioning(input) {
      const { ctx } = await context(input);
      await runStep(db, ctx, 'compensate', async (tx) => {
        const user = await lockUser(tx, ctx.customerId, ctx.userId);
        if (input.number) await releaseReservation(tx, ctx.customerId, user.id, input.number);
        await setStatus(tx, user.id, 'failed', input.reason);
        return {
          status: 'failed',
          result: null,
          error: input.reason,
          summary: input.number ? `provisioning failed; ${input.number} released` : 'provisioning failed',
        };
      });
    },

    async offboardUser(input) {
      const { snap, ctx } = await context(input);
      return runStep<Result<'offboardUser'>>(db, ctx, 'offboard', async (tx) => {
        const user = await lockUser(tx, ctx.customerId, ctx.userId);
        if (user.status === 'deleted') return { status: 'skipped', result: { reason: user.status_reason ?? 'offboarded earlier' }, summary: 'already offboarded' };
        const reason = input.reason ?? 'gone from the source';
        const services = await removeServices(tx, user.id);
        await releaseLicences(tx, ctx.customerId, user.id, []);
        const numbers = await holdOnly(tx, ctx.customerId, user.id, null, snap.config.settings.numberCooling);
        await markDeleted(tx, user.id, reason);
        const cooling = snap.config.settings.numberCooling.enabled ? ` (cooling ${snap.config.settings.numberCooling.days} days)` : '';
        const targets = planTargetPushes(snap, 'deprovision');
        return {
          status: 'succeeded',
          result: { reason, ...(targets.length > 0 ? { targets } : {}) },
          summary: `offboarded: ${reason}; ${services.length > 0 ? `removed ${services.join(', ')}` : 'no services'}${numbers.length > 0 ? `; ${numbers.join(', ')} released${cooling}` : ''}`,
        };
      });
    },

    async recordOutcome({ userId, syncIds, outcome }) {
      await recordOutcomes(db, outcomeRows(userId, syncIds, outcome));
    },

    sendWelcomeEmail(input) {
      return sendEmail(input, 'welcome', '', input.report);
    },

    sendMovedEmail(input) {
      return sendEmail(input, 'moved', input.from);
    },
  };
}
