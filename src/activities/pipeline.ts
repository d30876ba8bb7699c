import type { Kysely, Transaction } from 'kysely';
import { explainFtpRule, explainSite } from '../domain/matching.js';
import { licencesOf, serviceKey, type ServiceSpec } from '../domain/services.js';
import { releaseLicences, takeLicences } from '../adapters/db/licences.js';
import type { CanonicalUser } from '../domain/user.js';
import { PermanentError } from '../adapters/errors.js';
import { releaseNumbersExcept, releaseReservation, reserveNumber, useNumber } from '../adapters/db/numbers.js';
import type { Database } from '../adapters/db/schema.js';
import type { CustomerSnapshot, ConfigSnapshots } from '../adapters/db/snapshots.js';
import { runStep, type StepContext } from '../adapters/db/steps.js';
import type { Mailer } from '../adapters/mail/smtp.js';
import { renderWelcome } from '../adapters/mail/welcome.js';
import type { PipelineActivities, StepInput } from './types.js';

export interface PipelineDeps {
  readonly db: Kysely<Database>;
  readonly snapshots: ConfigSnapshots;
  readonly mailer: Mailer;
}

type Tx = Transaction<Database>;
type Result<K extends keyof PipelineActivities> = Awaited<ReturnType<PipelineActivities[K]>>;

async function loadUser(tx: Tx, ctx: StepContext) {
  const user = await tx
    .selectFrom('users')
    .selectAll()
    .where('id', '=', ctx.userId)
    .where('customer_id', '=', ctx.customerId)
    .forUpdate()
    .executeTakeFirst();
  if (!user) throw new PermanentError('UnknownUser', `user ${ctx.userId} does not exist for this customer`);
  return user;
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

export function createPipelineActivities({ db, snapshots, mailer }: PipelineDeps): PipelineActivities {
  async function context(input: StepInput): Promise<{ snap: CustomerSnapshot; ctx: StepContext }> {
    const snap = await snapshots.customer(input.configVersion, input.customer);
    return {
      snap,
      ctx: { customerId: snap.customerId, userId: input.userId, workflowId: input.workflowId, runId: input.runId, attempt: input.attempt },
    };
  }

  return {
    async createLocalUser(input) {
      const { snap, ctx } = await context(input);
      return runStep<Result<'createLocalUser'>>(db, ctx, 'create', async (tx) => {
        const user = await loadUser(tx, ctx);
        const { flowThrough, welcomeEmail, smtp } = snap.config.settings;
        const enabled = flowThrough.enabled && (input.mode === 'update' ? flowThrough.updateSync : flowThrough.addSync);
        const reason = enabled ? undefined : `flow-through ${input.mode} sync is off for customer ${input.customer}`;
        const result = {
          flowThrough: enabled,
          welcomeEmail: welcomeEmail.enabled && smtp !== undefined && Boolean(user.email),
          ...(reason ? { reason } : {}),
        };
        // The import inserted or updated the row; say which, so a rerun for a placed user does not
        // read as if they had been recreated at customer level.
        const isNew = user.created_at.getTime() === user.updated_at.getTime();
        const where = user.site_id === null ? 'at customer level' : `at site ${snap.siteNames.get(user.site_id) ?? user.site_id}`;
        const summary = isNew ? `local user created ${where}` : `local user exists ${where} (${user.status})`;
        return { status: 'succeeded', result, summary: reason ? `${summary}; ${reason}` : summary };
      });
    },

    async moveUser(input) {
      const { snap, ctx } = await context(input);
      return runStep<Result<'moveUser'>>(db, ctx, 'move', async (tx) => {
        const user = await loadUser(tx, ctx);
        // An add sync places users; moving a placed user to another site is the update sync's job.
        if (user.site_id !== null && snap.siteNames.has(user.site_id)) {
          const site = snap.siteNames.get(user.site_id)!;
          return { status: 'skipped', result: { site, moved: false }, summary: `already at ${site}` };
        }
        const resolution = explainSite(user.attributes as CanonicalUser, user.user_type, snap.sites);
        if (resolution.site === null) {
          const reason = `no site's ${user.user_type} move criteria match`;
          await tx.updateTable('users').set({ status: 'unplaced', status_reason: reason, updated_at: new Date() }).where('id', '=', user.id).execute();
          return { status: 'succeeded', result: { site: null, moved: false, reason }, summary: reason, details: resolution };
        }
        const siteConfig = snap.config.sites.find((s) => s.name === resolution.site)!;
        await tx
          .updateTable('users')
          .set({
            site_id: snap.siteIds.get(resolution.site)!,
            role: siteConfig.defaultRole ?? null,
            status: 'moved',
            status_reason: null,
            updated_at: new Date(),
          })
          .where('id', '=', user.id)
          .execute();
        return { status: 'succeeded', result: { site: resolution.site, moved: true }, summary: `moved to ${resolution.site}`, details: resolution };
      });
    },

    async matchProfile(input) {
      const { snap, ctx } = await context(input);
      return runStep<Result<'matchProfile'>>(db, ctx, 'profile', async (tx) => {
        const user = await loadUser(tx, ctx);
        const resolution = explainFtpRule(user.attributes as CanonicalUser, snap.ftpRules);
        if (!resolution.rule) {
          const reason = snap.ftpRules.length === 0 ? 'no FTP criteria are in force' : 'no FTP rule matches';
          await tx.updateTable('users').set({ status: 'unmatched', status_reason: reason, profile_id: null, updated_at: new Date() }).where('id', '=', user.id).execute();
          // A user provisioned before (their department changed) keeps nothing of a profile they lost.
          const released = await releaseNumbersExcept(tx, ctx.customerId, user.id, null, snap.config.settings.numberCooling);
          await tx.updateTable('user_services').set({ status: 'removed', updated_at: new Date() }).where('user_id', '=', user.id).where('status', '=', 'active').execute();
          await releaseLicences(tx, ctx.customerId, user.id, []);
          const summary = released.length > 0 ? `${reason}; ${released.join(', ')} released` : reason;
          return { status: 'succeeded', result: { profile: null, numberFrom: null, reason }, summary, details: resolution };
        }
        const profile = snap.profiles.get(resolution.rule.profile)!;
        const site = snap.config.sites.find((s) => snap.siteIds.get(s.name) === user.site_id);
        const role = resolution.rule.role ?? profile.role ?? site?.defaultRole ?? null;
        await tx
          .updateTable('users')
          .set({ profile_id: profile.id, role, status: 'provisioning', status_reason: null, updated_at: new Date() })
          .where('id', '=', user.id)
          .execute();
        return {
          status: 'succeeded',
          result: { profile: profile.name, numberFrom: profile.line?.numberFrom ?? null },
          summary: `profile ${profile.name} (rule ${(resolution.index ?? 0) + 1}), role ${role ?? 'none'}`,
          details: resolution,
        };
      });
    },

    async reserveNumber(input) {
      const { snap, ctx } = await context(input);
      return runStep<Result<'reserveNumber'>>(db, ctx, 'number', async (tx) => {
        const user = await loadUser(tx, ctx);
        const siteId = input.pool === 'site' ? user.site_id : null;
        const poolName = input.pool === 'site' ? `site ${snap.siteNames.get(user.site_id ?? -1) ?? '?'}` : `customer ${input.customer}`;
        const number = await reserveNumber(tx, { customerId: ctx.customerId, siteId }, user.id, `${ctx.workflowId}/${ctx.runId}`);
        if (number === null) {
          const reason = `no available number in the ${poolName} pool: add numbers, then retry`;
          await tx.updateTable('users').set({ status: 'blocked', status_reason: reason, updated_at: new Date() }).where('id', '=', user.id).execute();
          return { status: 'blocked', result: { number: null, reason }, summary: reason };
        }
        return { status: 'succeeded', result: { number }, summary: `${number} from the ${poolName} pool` };
      });
    },

    async provisionServices(input) {
      const { snap, ctx } = await context(input);
      return runStep<Result<'provisionServices'>>(db, ctx, 'provision', async (tx) => {
        const user = await loadUser(tx, ctx);
        const profileName = user.profile_id === null ? undefined : snap.profileNames.get(user.profile_id);
        const profile = profileName ? snap.profiles.get(profileName) : undefined;
        if (!profile) throw new PermanentError('NoProfile', `user ${user.external_id} has no profile to provision`);
        const attributes = user.attributes as CanonicalUser;
        const problems = profile.services.map((s) => serviceProblem(s, attributes, input.number)).filter((p) => p !== null);
        if (problems.length > 0) throw new PermanentError('ServiceRequirement', problems.join('; '));

        // Numbers of an earlier profile (another pool, or no line at all now) go back: a user never
        // holds a number their current profile does not give them.
        const released = await releaseNumbersExcept(tx, ctx.customerId, user.id, input.number, snap.config.settings.numberCooling);
        const releasedNote = released.length > 0 ? `; ${released.join(', ')} released` : '';
        const keys = profile.services.map(serviceKey);
        // The tenant licences the services need (one short, and the user waits, blocked). Only
        // customers with an Entra source have licence counts.
        const tenant = snap.config.sources.some((source) => source.type === 'entra');
        const skus = profile.services.flatMap(licencesOf);
        const shortage = tenant ? await takeLicences(tx, ctx.customerId, user.id, skus) : null;
        if (shortage) {
          // The number goes back while the user waits: a pool must not drain into blocked users.
          if (input.number) await releaseReservation(tx, ctx.customerId, user.id, input.number);
          await tx.updateTable('users').set({ status: 'blocked', status_reason: shortage, updated_at: new Date() }).where('id', '=', user.id).execute();
          return { status: 'blocked', result: { blocked: shortage }, summary: `${shortage}${input.number ? `; ${input.number} released` : ''}${releasedNote}` };
        }
        if (tenant) await releaseLicences(tx, ctx.customerId, user.id, skus);
        for (const [i, service] of profile.services.entries()) {
          const settings = JSON.stringify({ ...service.settings, ...(service.kind === 'phone' && input.number ? { line: input.number } : {}) });
          await tx
            .insertInto('user_services')
            .values({ customer_id: ctx.customerId, user_id: user.id, service_key: keys[i]!, kind: service.kind, settings: settings as never })
            .onConflict((oc) => oc.columns(['user_id', 'service_key']).doUpdateSet({ settings: settings as never, status: 'active', updated_at: new Date() }))
            .execute();
        }
        let removed = tx.updateTable('user_services').set({ status: 'removed', updated_at: new Date() }).where('user_id', '=', user.id).where('status', '=', 'active');
        if (keys.length > 0) removed = removed.where('service_key', 'not in', keys);
        await removed.execute();
        if (input.number) await useNumber(tx, ctx.customerId, user.id, input.number);
        await tx.updateTable('users').set({ status: 'provisioned', status_reason: null, updated_at: new Date() }).where('id', '=', user.id).execute();
        return { status: 'succeeded', result: {}, summary: `provisioned ${profile.name}: ${keys.join(', ') || 'no services'}${releasedNote}` };
      });
    },

    async abandonProvisioning(input) {
      const { ctx } = await context(input);
      await runStep(db, ctx, 'compensate', async (tx) => {
        const user = await loadUser(tx, ctx);
        if (input.number) await releaseReservation(tx, ctx.customerId, user.id, input.number);
        await tx.updateTable('users').set({ status: 'failed', status_reason: input.reason, updated_at: new Date() }).where('id', '=', user.id).execute();
        return {
          status: 'failed',
          result: null,
          error: input.reason,
          summary: input.number ? `provisioning failed; ${input.number} released` : 'provisioning failed',
        };
      });
    },

    async recordOutcome({ userId, syncIds, outcome }) {
      if (syncIds.length === 0) return;
      const row = {
        user_id: userId,
        external_id: outcome.externalId,
        status: outcome.status,
        moved: outcome.moved,
        emailed: outcome.emailed,
        site: outcome.site,
        profile: outcome.profile,
        number: outcome.number,
        reason: outcome.reason ?? null,
      };
      // A later outcome for the same sync (provisioned after blocked) is not counted twice: the
      // sync takes the first it sees, and this keeps the first.
      await db
        .insertInto('pipeline_outcomes')
        .values(syncIds.map((syncId) => ({ ...row, sync_id: syncId })))
        .onConflict((oc) => oc.columns(['sync_id', 'external_id']).doNothing())
        .execute();
    },

    async sendWelcomeEmail(input) {
      const { snap, ctx } = await context(input);
      const { welcomeEmail, smtp } = snap.config.settings;
      // The outbox row is written (once) before sending: a rerun finds it and never sends twice.
      const message = await db.transaction().execute(async (tx) => {
        const user = await loadUser(tx, ctx);
        if (!welcomeEmail.enabled || !smtp || !user.email) return null;
        const attributes = user.attributes as CanonicalUser;
        const numbers = await tx.selectFrom('number_inventory').select('number').where('user_id', '=', user.id).where('status', '=', 'used').orderBy('number').execute();
        const site = snap.config.sites.find((s) => snap.siteIds.get(s.name) === user.site_id);
        const rendered = renderWelcome(snap.welcomeTemplate, welcomeEmail.subject, {
          customer: snap.config.displayName ?? snap.config.name,
          firstName: attributes.firstName ?? attributes.displayName ?? user.username ?? '',
          lastName: attributes.lastName ?? '',
          displayName: attributes.displayName ?? '',
          email: user.email,
          username: user.username ?? '',
          site: site?.displayName ?? site?.name ?? '',
          number: numbers[0]?.number ?? null,
          profile: user.profile_id === null ? '' : (snap.profileNames.get(user.profile_id) ?? ''),
        });
        const domain = /@([^>\s]+)>?\s*$/.exec(welcomeEmail.from ?? '')?.[1] ?? 'flowthru.invalid';
        await tx
          .insertInto('email_outbox')
          .values({
            customer_id: ctx.customerId,
            user_id: user.id,
            event: 'welcome',
            message_id: `<welcome.${user.id}.${snap.config.name}@${domain}>`,
            to_address: user.email,
            ...rendered,
          })
          .onConflict((oc) => oc.columns(['user_id', 'event']).doNothing())
          .execute();
        return tx.selectFrom('email_outbox').selectAll().where('user_id', '=', user.id).where('event', '=', 'welcome').executeTakeFirstOrThrow();
      });
      if (!message) return { sent: false, skipped: 'welcome email off, no SMTP server or no email address' };
      if (message.status === 'sent') {
        // Sent by this very pass (the activity is being retried after the send was recorded), or
        // earlier (an earlier sync welcomed the user): only the first counts as emailed now.
        const mine = await db.selectFrom('transaction_log').select('id').where('idempotency_key', '=', `${ctx.runId}/${ctx.attempt}/email`).executeTakeFirst();
        return mine ? { sent: true } : { sent: false, skipped: `welcome email already sent (${message.message_id})` };
      }
      if (message.status === 'failed') return { sent: false, skipped: message.last_error ?? 'refused earlier' };
      try {
        await mailer.send(smtp!, {
          from: welcomeEmail.from!,
          to: message.to_address,
          subject: message.subject,
          html: message.html,
          text: message.text,
          messageId: message.message_id,
        });
      } catch (error) {
        const permanent = error instanceof PermanentError;
        await db
          .updateTable('email_outbox')
          .set((eb) => ({ attempts: eb('attempts', '+', 1), last_error: (error as Error).message, ...(permanent ? { status: 'failed' as const } : {}) }))
          .where('id', '=', message.id)
          .execute();
        if (permanent) return { sent: false, skipped: (error as Error).message };
        throw error;
      }
      // Recorded in one transaction the moment the server accepts: the window in which a dying
      // worker would send this message again (same Message-ID) is one round trip wide. The step's
      // log entry commits with it, so a retry of this pass knows the message was its own.
      await runStep(db, ctx, 'email', async (tx) => {
        await tx
          .updateTable('email_outbox')
          .set((eb) => ({ status: 'sent', sent_at: new Date(), attempts: eb('attempts', '+', 1), last_error: null }))
          .where('id', '=', message.id)
          .execute();
        return { status: 'succeeded', result: null, summary: `welcome email sent (${message.message_id})` };
      });
      return { sent: true };
    },
  };
}
