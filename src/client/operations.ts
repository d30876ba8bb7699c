import { userInfo } from 'node:os';
import { ScheduleNotFoundError, type Client, type ScheduleDescription, type ScheduleHandle } from '@temporalio/client';
import { sql, type Kysely } from 'kysely';
import { loadConfigVersion } from '../adapters/db/config-store.js';
import { findUsers, usersInStatus } from '../adapters/db/queries.js';
import type { Database } from '../adapters/db/schema.js';
import { startUserPipeline } from '../adapters/temporal/user-pipeline.js';
import type { UserStatus } from '../domain/user.js';
import { scheduleId } from '../workflows/config.js';
import { declaredSchedules, scheduleView, type ScheduleView } from './schedules.js';
import { startSync } from './sync.js';

/*
 * What an operator can do to running flowthru, once, for both the CLI and the console: retry
 * users, trigger or pause a schedule, start a sync, let held deletions through. Each is written to
 * the transaction log (kind `operator`) with who did it and from where.
 */

/** A failure the operator can fix (an unknown name, a wrong state): the CLI exits 1 with it, the console shows it. */
export class OperationRefused extends Error {}

/** Who took an action: a name and where from (`cli`, `console 127.0.0.1`). */
export interface Actor {
  readonly name: string;
  readonly via: string;
}

/** The CLI's operator: $USER or $LOGNAME, else the account the process runs as (cron and containers often set neither). */
export const cliActor = (): Actor => ({ name: process.env.USER || process.env.LOGNAME || accountName(), via: 'cli' });

function accountName(): string {
  try {
    return userInfo().username;
  } catch {
    // A uid with no entry in the password database (a container's arbitrary uid).
    return typeof process.getuid === 'function' ? `uid ${process.getuid()}` : 'unknown';
  }
}

/** Writes an operator's action to the transaction log: what, on whom, by whom, and its outcome. */
export async function recordOperatorAction(
  db: Kysely<Database>,
  entry: { customer: string | null; userId?: string | null; action: string; subject: string; actor: Actor; details?: object; error?: string },
): Promise<void> {
  const customer = entry.customer ? await db.selectFrom('customers').select('id').where('name', '=', entry.customer).executeTakeFirst() : undefined;
  await db
    .insertInto('transaction_log')
    .values({
      customer_id: customer?.id ?? null,
      user_id: entry.userId ?? null,
      kind: 'operator',
      action: entry.action,
      subject: `${entry.subject} (by ${entry.actor.name}, ${entry.actor.via})`,
      status: entry.error ? 'failed' : 'succeeded',
      ended_at: new Date(),
      error: entry.error ?? null,
      details: JSON.stringify({ actor: entry.actor, ...entry.details }) as never,
    })
    .execute();
}

export const RETRYABLE_STATUSES = ['blocked', 'failed'] as const satisfies readonly UserStatus[];
export type RetryableStatus = (typeof RETRYABLE_STATUSES)[number];

/** Whom a retry hands back to their pipelines: one user (by id or by name), or every user in a status. */
export type RetrySelection =
  | { readonly userId: string }
  | { readonly who: string; readonly customer?: string | undefined }
  | {
      readonly status: RetryableStatus;
      readonly customer?: string | undefined;
      readonly site?: string | undefined;
      readonly source?: string | undefined;
      /** Users whose line comes from this pool: `customer`, or a site's name. */
      readonly pool?: string | undefined;
    };

export interface RetriedUser {
  readonly customer: string;
  readonly source: string;
  readonly externalId: string;
  readonly username: string | null;
  readonly site: string | null;
  readonly status: string;
  readonly workflowId: string;
}

interface RetryTarget extends Omit<RetriedUser, 'workflowId'> {
  readonly id: string;
  /** At a site: their retry is an update pass (the line and services brought to their profile); else an add. */
  readonly placed: boolean;
}

/** How many pipelines are handed their retry at once. */
const RETRY_CONCURRENCY = 20;

/** The one user `who` names (username, external id or email); unknown or ambiguous is the operator's to fix. */
export async function findOneUser(db: Kysely<Database>, who: string, customer: string | undefined) {
  const users = await findUsers(db, who, customer);
  if (users.length === 0) throw new OperationRefused(`no user "${who}"${customer ? ` for customer ${customer}` : ''}`);
  if (users.length > 1) {
    const which = users.map((u) => `${u.customer}/${u.source}/${u.externalId}`).join(', ');
    throw new OperationRefused(`"${who}" matches ${users.length} users (${which}): say which with --customer, or use the external id`);
  }
  return users[0]!;
}

async function retryTargets(db: Kysely<Database>, selection: RetrySelection): Promise<RetryTarget[]> {
  if ('status' in selection) return usersInStatus(db, selection);
  const user =
    'userId' in selection
      ? await db
          .selectFrom('users as u')
          .innerJoin('customers as c', 'c.id', 'u.customer_id')
          .innerJoin('sync_sources as src', 'src.id', 'u.source_id')
          .select(['u.id', 'u.external_id as externalId', 'u.username', 'u.status', 'c.name as customer', 'src.name as source', sql<boolean>`u.site_id is not null`.as('placed')])
          .where('u.id', '=', selection.userId)
          .executeTakeFirst()
      : await findOneUser(db, selection.who, selection.customer);
  if (!user) throw new OperationRefused(`no user with id ${(selection as { userId: string }).userId}`);
  const name = user.username ?? user.externalId;
  if (user.status === 'deleted') throw new OperationRefused(`user ${name} was offboarded; a sync that sees them again restores them`);
  return [{ ...user, site: null }];
}

/**
 * Runs the pipelines of the selected users again: each is handed a new change (signal-with-start),
 * so a blocked pipeline wakes and runs again, a finished one starts anew. A placed user (blocked or
 * failed at their site) is brought to their profile where they are, as an update does;
 * keep-existing and updateSyncProfile hold, and a first provisioning still welcomes them.
 */
export async function retryPipelines(
  db: Kysely<Database>,
  client: Client,
  taskQueue: string,
  selection: RetrySelection,
  actor: Actor,
): Promise<{ configVersion: number; users: RetriedUser[] }> {
  const version = (await loadConfigVersion(db))?.version;
  if (version === undefined) throw new OperationRefused('no configuration has been applied yet: run flowthru config apply FILE');
  const targets = await retryTargets(db, selection);
  const users: RetriedUser[] = [];
  for (let i = 0; i < targets.length; i += RETRY_CONCURRENCY) {
    const batch = targets.slice(i, i + RETRY_CONCURRENCY);
    const ids = await Promise.all(
      batch.map((user) =>
        startUserPipeline(client, {
          taskQueue,
          customer: user.customer,
          source: user.source,
          externalId: user.externalId,
          userId: user.id,
          change: { configVersion: version, mode: user.placed ? 'update' : 'add', retry: true },
        }),
      ),
    );
    batch.forEach(({ id: _id, placed: _placed, ...user }, j) => users.push({ ...user, workflowId: ids[j]! }));
  }
  if (targets.length === 1 && !('status' in selection)) {
    const user = targets[0]!;
    await recordOperatorAction(db, { customer: user.customer, userId: user.id, action: 'retry', subject: `retry ${user.username ?? user.externalId} (${user.status})`, actor });
  } else if ('status' in selection) {
    const pool = selection.pool && (selection.pool === 'customer' ? "drawing from the customer's pool" : `drawing from the ${selection.pool} pool`);
    const scope = [selection.site && `at site ${selection.site}`, selection.source && `from source ${selection.source}`, pool].filter(Boolean).join(' ');
    const byCustomer = new Map<string, number>();
    for (const user of users) byCustomer.set(user.customer, (byCustomer.get(user.customer) ?? 0) + 1);
    for (const customer of selection.customer ? [selection.customer] : byCustomer.size > 0 ? [...byCustomer.keys()] : [null]) {
      const count = customer ? (byCustomer.get(customer) ?? 0) : 0;
      await recordOperatorAction(db, {
        customer,
        action: 'retry',
        subject: `retry ${count} ${selection.status} user${count === 1 ? '' : 's'}${scope ? ` ${scope}` : ''}`,
        actor,
        details: { status: selection.status, site: selection.site ?? null, source: selection.source ?? null, pool: selection.pool ?? null, users: count },
      });
    }
  }
  return { configVersion: version, users };
}

/** The schedule of SOURCE: the source must exist and declare one, and Temporal must have it. */
export async function scheduleOfSource(
  db: Kysely<Database>,
  client: Client,
  source: string,
  customer: string | undefined,
): Promise<{ customer: string; handle: ScheduleHandle; description: ScheduleDescription }> {
  const found = await loadConfigVersion(db);
  if (!found) throw new OperationRefused('no configuration has been applied yet: run flowthru config apply FILE');
  const owners = found.config.customers.filter((c) => (!customer || c.name === customer) && c.sources.some((s) => s.name === source));
  if (owners.length === 0) throw new OperationRefused(`no source "${source}"${customer ? ` for customer "${customer}"` : ''} in configuration version ${found.version}`);
  if (owners.length > 1) throw new OperationRefused(`source "${source}" exists for customers ${owners.map((c) => c.name).join(', ')}: say which with --customer`);
  const owner = owners[0]!.name;
  if (!declaredSchedules(found.config).some((d) => d.customer === owner && d.source === source)) {
    throw new OperationRefused(`source "${source}" of customer "${owner}" has no schedule: add schedule: to the source in the configuration and apply it`);
  }
  const handle = client.schedule.getHandle(scheduleId(owner, source));
  try {
    return { customer: owner, handle, description: await handle.describe() };
  } catch (error) {
    if (!(error instanceof ScheduleNotFoundError)) throw error;
    throw new OperationRefused(`schedule ${handle.scheduleId} is in the configuration but not in Temporal yet: run flowthru config apply FILE again, or start a worker (it reconciles schedules at start)`);
  }
}

export type TriggerOutcome = { outcome: 'started'; workflowId: string } | { outcome: 'skipped'; running: string[] } | { outcome: 'pending' };

/**
 * Triggers a schedule's run with overlap SKIP (the SDK's default would start one beside a running
 * run), then watches the schedule for a few seconds to say whether it started or was skipped.
 */
export async function triggerSchedule(db: Kysely<Database>, client: Client, source: string, customer: string | undefined, actor: Actor): Promise<{ scheduleId: string } & TriggerOutcome> {
  const { customer: owner, handle, description: before } = await scheduleOfSource(db, client, source, customer);
  await handle.trigger('SKIP');
  let result: TriggerOutcome = { outcome: 'pending' };
  const deadline = Date.now() + 5_000;
  while (Date.now() < deadline) {
    const now = await handle.describe();
    const newest = now.info.recentActions.at(-1);
    if (now.info.numActionsTaken > before.info.numActionsTaken && newest) {
      result = { outcome: 'started', workflowId: newest.action.workflow.workflowId };
      break;
    }
    if (now.info.numActionsSkippedOverlap > before.info.numActionsSkippedOverlap) {
      result = { outcome: 'skipped', running: now.info.runningActions.map((run) => run.workflow.workflowId) };
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await recordOperatorAction(db, { customer: owner, action: 'schedule.trigger', subject: `trigger the schedule of ${source}: ${result.outcome}`, actor, details: { scheduleId: handle.scheduleId, ...result } });
  return { scheduleId: handle.scheduleId, ...result };
}

/** Pauses or unpauses a source's schedule, with a note shown in schedule list and Temporal UI. */
export async function setSchedulePaused(
  db: Kysely<Database>,
  client: Client,
  source: string,
  customer: string | undefined,
  pause: boolean,
  actor: Actor,
  note?: string,
): Promise<ScheduleView> {
  const { customer: owner, handle } = await scheduleOfSource(db, client, source, customer);
  const said = note ?? `${pause ? 'paused' : 'unpaused'} by ${actor.name} (${actor.via})`;
  await (pause ? handle.pause(said) : handle.unpause(said));
  await recordOperatorAction(db, { customer: owner, action: pause ? 'schedule.pause' : 'schedule.unpause', subject: `${pause ? 'pause' : 'unpause'} the schedule of ${source}`, actor, details: { note: said } });
  return scheduleView(await handle.describe());
}

/** Starts a sync of a source (or joins the one running for the same modes), written to the log with who asked. */
export async function startSyncAs(
  db: Kysely<Database>,
  client: Client,
  options: Parameters<typeof startSync>[1],
  actor: Actor,
): Promise<{ workflowId: string; handle: Awaited<ReturnType<typeof startSync>> }> {
  const handle = await startSync(client, options);
  const modes = options.modes ?? [options.mode];
  const what = options.allowDeletes !== undefined ? `let held deletions of ${options.source} through (at most ${options.allowDeletes})` : `sync ${options.source} (${modes.join(', ')})`;
  await recordOperatorAction(db, {
    customer: options.customer,
    action: options.allowDeletes !== undefined ? 'sync.allow-deletes' : 'sync.start',
    subject: what,
    actor,
    details: { workflowId: handle.workflowId, modes, ...(options.allowDeletes !== undefined ? { allowDeletes: options.allowDeletes } : {}) },
  });
  return { workflowId: handle.workflowId, handle };
}
