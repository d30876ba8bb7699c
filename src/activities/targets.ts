import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { sql, type InsertObject, type Kysely } from 'kysely';
import type { TargetConfig } from '../domain/config/schema.js';
import { parseDuration } from '../domain/schedule.js';
import { desiredAction, fieldsKey, planPushes, targetEvent, targetFields, type PlannedPush, type TargetUserView } from '../domain/targets.js';
import { PermanentError } from '../adapters/errors.js';
import { enqueueEmail, markSent, recordSendFailure } from '../adapters/db/outbox.js';
import type { Database } from '../adapters/db/schema.js';
import type { ConfigSnapshots, CustomerSnapshot } from '../adapters/db/snapshots.js';
import {
  loadTargetView,
  readTargetState,
  readTargetStates,
  type TargetStateRow,
  recordTargetAttempt,
  recordTargetFailed,
  targetSubjects,
  writeTargetState,
} from '../adapters/db/targets.js';
import type { Mailer } from '../adapters/mail/smtp.js';
import { TargetError, TargetPlugins, type TargetPush } from '../adapters/targets/index.js';
import { targetJobWorkflowId } from '../workflows/config.js';
import { handToTargetJob } from '../adapters/temporal/target-jobs.js';
import { asActivityFailure, failureData } from './failures.js';
import type { FirstTries, StepInput, TargetActivities, TargetPushInput } from './types.js';

export interface TargetDeps {
  readonly db: Kysely<Database>;
  readonly snapshots: ConfigSnapshots;
  readonly mailer: Mailer;
  readonly client: Client;
  readonly taskQueue: string;
  readonly plugins?: TargetPlugins;
  /** The pipeline's targets step, for pushFirstTries to settle the user in the same activity. */
  readonly finishTargets?: (input: StepInput) => Promise<void>;
}

/** A push's retry policy from the target's settings: interval in ms ("0s": never retry). */
export const retryIntervalMs = (target: TargetConfig): number => parseDuration(target.retryInterval) ?? 900_000;

/** The targets a pass hands the user to, in order (reversed to deprovision). */
export function planTargetPushes(snap: CustomerSnapshot, direction: 'provision' | 'deprovision'): PlannedPush[] {
  return planPushes(snap.config.targets, direction, retryIntervalMs);
}

/** Heartbeats when running as an activity; a no-op when called directly. */
function currentContext(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/** Stable per event: the same push of the same content to the same target has the same id (webhook-id). */
function eventIdOf(parts: readonly string[]): string {
  return `evt_${createHash('sha256').update(parts.join('\u0000')).digest('base64url').slice(0, 27)}`;
}

export function createTargetActivities(deps: TargetDeps): TargetActivities {
  const { db, snapshots, mailer, client, taskQueue } = deps;
  const plugins = deps.plugins ?? new TargetPlugins();

  async function snapshotOf(customer: string, configVersion: number | undefined): Promise<CustomerSnapshot> {
    return snapshots.customer(configVersion ?? (await snapshots.latestVersion()), customer);
  }

  function targetOf(snap: CustomerSnapshot, name: string): TargetConfig {
    const target = snap.config.targets.find((t) => t.name === name);
    if (!target) throw new PermanentError('UnknownTarget', `customer ${snap.config.name} has no target "${name}" in configuration version ${snap.version}`);
    return target;
  }

  type LogEntry = Parameters<typeof logRow>[0];

  /** A push's entry in the transaction log (one per key: a retry writes none). */
  function logRow(entry: {
    customerId: number;
    userId: string;
    target: string;
    status: 'succeeded' | 'failed' | 'skipped';
    summary: string;
    error?: string;
    workflowId: string;
    runId: string;
    key: string | null;
    details?: object;
  }): InsertObject<Database, 'transaction_log'> {
    return {
      customer_id: entry.customerId,
      user_id: entry.userId,
      kind: 'step',
      action: `target ${entry.target}`,
      subject: entry.summary,
      status: entry.status,
      ended_at: sql<Date>`now()`,
      error: entry.error ?? null,
      details: entry.details ? (JSON.stringify(entry.details) as never) : null,
      workflow_id: entry.workflowId,
      run_id: entry.runId,
      idempotency_key: entry.key,
    };
  }

  async function log(entry: LogEntry): Promise<void> {
    await db
      .insertInto('transaction_log')
      .values(logRow(entry))
      .onConflict((oc) => oc.column('idempotency_key').doNothing())
      .execute();
  }

  /** A pending state with no push behind it any more goes back to what the target holds. */
  async function settlePending(key: { customerId: number; target: string; userId: string }, known?: TargetStateRow): Promise<void> {
    const state = known ?? (await readTargetState(db, key.customerId, key.target, key.userId));
    if (state?.status === 'pending') await writeTargetState(db, key, { status: state.pushed != null ? 'provisioned' : 'deprovisioned' });
  }

  type PushOutcome = Awaited<ReturnType<TargetActivities['pushToTarget']>>;
  /** The user and their targets' state, read once for several pushes. */
  type Known = { view: TargetUserView; states: ReadonlyMap<string, TargetStateRow> };

  /**
   * One push: what the target should hold for the user now (their fields, or nothing), compared
   * with what it was last given; the plugin is called when they differ (or when an operator
   * forces it). `quiet`: a re-check after a push, logged only when it pushes.
   */
  async function pushOnce(snap: CustomerSnapshot, target: TargetConfig, input: TargetPushInput, logKey: string, quiet: boolean, known?: Known): Promise<PushOutcome> {
    const key = { customerId: snap.customerId, target: target.name, userId: input.userId };
    const logged = { customerId: snap.customerId, userId: input.userId, target: target.name, workflowId: input.workflowId, runId: input.runId, key: logKey };
    // Side by side: the user as the target sees them, and what the target was last given.
    const [view, state] = known
      ? [known.view, known.states.get(target.name)]
      : await Promise.all([loadTargetView(db, { id: snap.customerId, name: snap.config.name }, input.userId), readTargetState(db, snap.customerId, target.name, input.userId)]);
    if (!view) throw new PermanentError('UnknownUser', `user ${input.userId} does not exist for customer ${snap.config.name}`);
    // What the target holds: the fields of the last successful push (a later failed try keeps them).
    const pushed = (state?.pushed as Record<string, string | null> | null | undefined) ?? null;
    const held = pushed !== null;
    // A user failed by a target is pushed when an operator asks (`target provision`, reprovision): that is their retry.
    const failedByTarget = view.status === 'failed' && input.force === true && (view.reason ?? '').startsWith('target ');
    const action = failedByTarget ? 'provision' : desiredAction(target, view);
    const quietly = async (summary: string): Promise<PushOutcome> => {
      if (!quiet) await log({ ...logged, status: 'skipped', summary });
      return { outcome: 'unchanged', summary };
    };
    if (action === 'none') {
      await settlePending(key, state);
      return quietly(`left as it is: the user is ${view.status}`);
    }
    // An enrollment target hears the first provision, and the deprovision; nothing in between.
    if (target.mode === 'enrollment' && action === 'provision' && state?.pushed_at != null && !input.force) {
      await settlePending(key, state);
      return quietly('unchanged: an enrollment target hears only the first provision');
    }
    const fields = action === 'provision' ? targetFields(target, view) : (pushed ?? {});
    const same =
      action === 'provision'
        ? state?.status === 'provisioned' && fieldsKey(pushed) === fieldsKey(fields) && state.site === view.site
        : !held;
    // Nothing new for the target: no call at all, unless an operator asks for one (reprovision,
    // provision); a deprovision of a user the target never held is never a call.
    if (same && (!input.force || action === 'deprovision')) {
      if (state && state.status !== 'provisioned' && state.status !== 'deprovisioned') {
        await writeTargetState(db, key, { status: action === 'provision' ? 'provisioned' : 'deprovisioned', last_error: null, attempts: 0, failing_since: null });
      }
      return quietly(action === 'provision' ? 'unchanged: the target holds this already' : 'unchanged: the target holds nothing of the user');
    }
    const event = targetEvent(action, { site: state?.site ?? null, held }, view.site);
    const count = state?.push_count ?? 0;
    const push: TargetPush = {
      event,
      // The same for every try of this push (the count moves only when a push succeeds), new for the next.
      eventId: eventIdOf([snap.config.name, target.name, input.userId, String(count), event, fieldsKey(fields), view.site ?? '']),
      target: target.name,
      subject: { userId: input.userId, externalId: view.externalId, customer: snap.config.name, fields },
      memory: { remoteId: state?.remote_id ?? null, pushed },
      signal: currentContext()?.cancellationSignal,
      // A local activity (a pipeline's first try) cannot heartbeat: its timeout bounds it instead.
      heartbeat: () => {
        const context = currentContext();
        if (context && !context.info.isLocal) context.heartbeat();
      },
    };
    const plugin = plugins.get(snap.version, snap.config.name, target);
    let result;
    try {
      result = action === 'provision' ? await plugin.provision(push) : await plugin.deprovision(push);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const reason = `target ${target.name}: ${message}`;
      if (error instanceof TargetError && !error.retryable) {
        throw ApplicationFailure.create({ message: reason, type: `Target${error.kind}`, nonRetryable: true });
      }
      // A try that will be retried: visible in `flowthru target jobs` while it is.
      await recordTargetAttempt(db, key, reason).catch(() => undefined);
      if (error instanceof TargetError) {
        // The delay goes in the details too: a workflow sees them (it does not see nextRetryDelay)
        // and waits as long before retrying a first try made as a local activity.
        throw ApplicationFailure.create({
          message: reason,
          type: `Target${error.kind}`,
          ...(error.retryAfterMs === undefined ? {} : { nextRetryDelay: error.retryAfterMs, details: [{ retryAfterMs: error.retryAfterMs }] }),
        });
      }
      throw ApplicationFailure.create({ message: reason, type: 'TargetUnavailable' });
    }
    const summary = `${event}: ${result.summary}`;
    // What the target now holds and the push's log entry, in one statement.
    await writeTargetState(
      db,
      key,
      {
        status: action === 'provision' ? 'provisioned' : 'deprovisioned',
        remote_id: result.remoteId,
        pushed: action === 'provision' ? fields : null,
        site: action === 'provision' ? view.site : null,
        last_event: event,
        last_error: null,
        attempts: 0,
        failing_since: null,
        push_count: count + 1,
        pushed_at: new Date(),
      },
      logRow({ ...logged, status: 'succeeded', summary, details: { event, eventId: push.eventId, changed: result.changed, fields: Object.keys(fields) } }),
    );
    // The user was failed by this target: provisioned again now that it has them.
    if (failedByTarget && (view.reason ?? '').startsWith(`target ${target.name}:`)) {
      await db
        .updateTable('users')
        .set({ status: 'provisioned', status_reason: null, updated_at: new Date() })
        .where('id', '=', input.userId)
        .where('status', '=', 'failed')
        .execute();
    }
    return { outcome: result.changed ? 'pushed' : 'unchanged', event, summary };
  }

  async function pushTarget(snap: CustomerSnapshot, input: TargetPushInput, known?: Known): Promise<PushOutcome> {
    const target = targetOf(snap, input.target);
    if ((target.mode === 'manual' || target.mode === 'disabled') && !input.force) {
      await settlePending({ customerId: snap.customerId, target: target.name, userId: input.userId }, known?.states.get(target.name));
      return { outcome: 'skipped', summary: `target ${target.name} is ${target.mode}` };
    }
    if (target.mode === 'disabled') return { outcome: 'skipped', summary: `target ${target.name} is disabled` };
    return pushOnce(snap, target, input, input.key, false, known);
  }

  return {
    async pushToTarget(input) {
      const snap = await snapshotOf(input.customer, input.configVersion);
      const first = await pushTarget(snap, input);
      if (first.outcome !== 'pushed' || input.recheck !== true) return first;
      const target = targetOf(snap, input.target);
      // A pipeline's push may have run meanwhile with newer data and finished before this one (a
      // queued job, a reprovision) did: a push that may overlap reads the user again when done and
      // pushes what is current, so the target ends holding the newest data whatever the order.
      for (let round = 1; round <= 2; round++) {
        const again = await pushOnce(snap, target, { ...input, force: false }, `${input.key}/${round}`, true);
        if (again.outcome !== 'pushed') break;
      }
      return first;
    },

    async pushFirstTries(input) {
      const snap = await snapshotOf(input.customer, input.configVersion);
      const names = input.pushes.map((p) => p.target);
      // The user and what each target was last given, read once for every push: a pipeline's push
      // changes neither the user nor another target's state (only an operator's forced push does).
      const [view, states] = await Promise.all([
        loadTargetView(db, { id: snap.customerId, name: snap.config.name }, input.userId),
        readTargetStates(db, snap.customerId, names, input.userId),
      ]);
      if (!view) throw new PermanentError('UnknownUser', `user ${input.userId} does not exist for customer ${snap.config.name}`);
      const tries: Array<FirstTries['tries'][number]> = [];
      for (const push of input.pushes) {
        const one: TargetPushInput = { customer: input.customer, configVersion: input.configVersion, target: push.target, userId: input.userId, workflowId: input.workflowId, runId: input.runId, key: push.key };
        try {
          const done = await pushTarget(snap, one, { view, states });
          tries.push({ target: push.target, outcome: done.outcome, summary: done.summary });
        } catch (error) {
          // Returned as data, so the SDK does not log it as a failed activity: the worker's log says it
          // here, by its ids and kind (the log keeps no error message: a target may quote the user).
          currentContext()?.log.warn('Target push failed (first try, pushToTarget)', { target: push.target, error: asActivityFailure(error) });
          tries.push({ target: push.target, failure: failureData(error) });
          return { tries, finished: false };
        }
      }
      if (!input.finish || !deps.finishTargets) return { tries, finished: false };
      await deps.finishTargets(input);
      return { tries, finished: true };
    },

    async enqueueTargetJob(input) {
      const snap = await snapshotOf(input.customer, input.configVersion);
      const target = targetOf(snap, input.target);
      await handToTargetJob(
        client,
        taskQueue,
        { customer: snap.config.name, target: target.name, userId: input.userId },
        { retryIntervalMs: retryIntervalMs(target), maxRetries: target.maxRetries, timeoutMs: target.timeoutMs, ...(input.force ? { force: true } : {}) },
      );
      const workflowId = targetJobWorkflowId(snap.config.name, target.name, input.userId);
      await writeTargetState(db, { customerId: snap.customerId, target: target.name, userId: input.userId }, { status: 'pending', job_workflow_id: workflowId });
      return { workflowId };
    },

    async recordTargetFailure(input) {
      const snap = await snapshotOf(input.customer, input.configVersion);
      const key = { customerId: snap.customerId, target: input.target, userId: input.userId };
      const episode = await recordTargetFailed(db, key, input.reason);
      await log({
        customerId: snap.customerId,
        userId: input.userId,
        target: input.target,
        status: 'failed',
        summary: `failed for good (failure ${episode}): ${input.reason}`,
        error: input.reason,
        workflowId: input.workflowId,
        runId: input.runId,
        key: `${input.runId}/target-failed/${input.target}/${episode}`,
      });
      const { notifications, smtp } = snap.config.settings;
      if (!notifications || !smtp) return { notified: false };
      const user = await db.selectFrom('users').select(['id', 'username', 'external_id']).where('id', '=', input.userId).executeTakeFirstOrThrow();
      const who = user.username ?? user.external_id;
      const domain = /@([^>\s]+)>?\s*$/.exec(notifications.from)?.[1] ?? 'flowthru.invalid';
      const subject = `flowthru: target ${input.target} failed for ${who}`;
      const text = [
        `A push to target ${input.target} of customer ${snap.config.name} failed for good for user ${who}.`,
        '',
        `Reason: ${input.reason}`,
        '',
        `See it with: flowthru target jobs --customer ${snap.config.name} --status failed`,
        `Retry it with: flowthru target provision ${input.target} ${who} --customer ${snap.config.name}`,
        '(or flowthru retry, which runs the user\'s whole pipeline again)',
      ].join('\n');
      const message = await db.transaction().execute((tx) =>
        enqueueEmail(tx, {
          customer_id: snap.customerId,
          user_id: user.id,
          event: `target-failed/${input.target}/${episode}`,
          message_id: `<target-failed.${input.target}.${user.id}.${episode}.${snap.config.name}@${domain}>`,
          to_address: notifications.to.join(', '),
          subject,
          html: `<pre>${text.replace(/&/g, '&amp;').replace(/</g, '&lt;')}</pre>`,
          text,
        }),
      );
      if (message.status !== 'pending') return { notified: message.status === 'sent' };
      try {
        await mailer.send(smtp, { from: notifications.from, to: message.to_address, subject: message.subject, html: message.html, text: message.text, messageId: message.message_id });
      } catch (error) {
        // Best effort: the failure is recorded and visible whatever the mail server does; a pipeline
        // never waits on SMTP for it (the message stays in the outbox, with its error).
        await recordSendFailure(db, message.id, (error as Error).message, error instanceof PermanentError).catch(() => undefined);
        return { notified: false };
      }
      await markSent(db, message.id);
      return { notified: true };
    },

    async listTargetSubjects(input) {
      const snap = await snapshotOf(input.customer, input.configVersion);
      targetOf(snap, input.target);
      return targetSubjects(db, { customerId: snap.customerId, target: input.target, after: input.after, limit: input.limit });
    },

    async markTargetCancelled(input) {
      const snap = await snapshotOf(input.customer, undefined);
      await writeTargetState(db, { customerId: snap.customerId, target: input.target, userId: input.userId }, { status: 'cancelled', last_error: input.reason });
    },
  };
}
