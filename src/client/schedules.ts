import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
  type ScheduleOptions,
  type ScheduleOptionsStartWorkflowAction,
  type ScheduleUpdateOptions,
} from '@temporalio/client';
import { TypedSearchAttributes, type SearchAttributePair } from '@temporalio/common';
import type { Config } from '../domain/config/schema.js';
import { parseDuration, scheduleInWords, type SourceSchedule } from '../domain/schedule.js';
import type { Settings } from '../settings.js';
import { SCHEDULE_ID_PREFIX, scheduledSyncWorkflowId, scheduleId, searchAttributes, syncModes, syncDetails, syncSearchAttributes, syncSummary, type SyncMode } from '../workflows/config.js';
import type { SyncSourceInput } from '../workflows/messages.js';
import type { syncSource } from '../workflows/sync-source.js';
import { connectClient, ensureSearchAttributes, TemporalUnreachableError } from './temporal.js';

/*
 * flowthru's Temporal Schedules: one per source that declares `schedule:`, id `flowthru/<customer>/<source>`,
 * kept in line with the configuration by `config apply` and by every worker at start.
 */

/**
 * What the action's memo records: the declaration a schedule was made from. It tells a schedule of
 * flowthru's apart, names its source, and lets reconciliation see what the configuration said last
 * (Temporal keeps a cron expression only compiled, and the schedule's own memo cannot be updated).
 */
export const DECLARATION_MEMO = 'flowthruSchedule';

export interface ScheduleDeclaration extends SourceSchedule {
  readonly customer: string;
  readonly source: string;
}

/** A missed run is caught up if the outage was shorter than this; with SKIP, one run, not a burst. */
export const CATCHUP_WINDOW_MS = 3_600_000;

export interface ReconcileResult {
  readonly created: string[];
  readonly updated: string[];
  readonly deleted: string[];
  readonly unchanged: string[];
}

/** Every source of the configuration that declares a schedule, with its schedule. */
export function declaredSchedules(config: Pick<Config, 'customers'>): ScheduleDeclaration[] {
  return config.customers.flatMap((customer) =>
    customer.sources.flatMap((source) => (source.schedule ? [{ customer: customer.name, source: source.name, ...source.schedule }] : [])),
  );
}

const modesOf = (declaration: ScheduleDeclaration): SyncMode[] => syncModes({ mode: declaration.modes[0]!, modes: declaration.modes });

type SyncAction = ScheduleOptionsStartWorkflowAction<typeof syncSource>;

/** The schedule a declaration stands for, as Temporal is asked to hold it. */
export function scheduleOptions(declaration: ScheduleDeclaration, taskQueue: string): ScheduleOptions<SyncAction> {
  const modes = modesOf(declaration);
  // No configVersion: each run takes the newest configuration when it starts.
  const input: SyncSourceInput = { customer: declaration.customer, source: declaration.source, mode: modes[0]!, modes, trigger: 'schedule' };
  const jitter = declaration.jitter === undefined ? undefined : parseDuration(declaration.jitter);
  return {
    scheduleId: scheduleId(declaration.customer, declaration.source),
    spec: {
      ...(declaration.every !== undefined ? { intervals: [{ every: parseDuration(declaration.every)! }] } : { cronExpressions: [declaration.cron!] }),
      timezone: declaration.timeZone,
      ...(jitter ? { jitter } : {}),
    },
    action: {
      type: 'startWorkflow',
      workflowType: 'syncSource',
      workflowId: scheduledSyncWorkflowId(declaration.customer, declaration.source),
      taskQueue,
      args: [input],
      typedSearchAttributes: syncSearchAttributes(declaration.customer, declaration.source, modesOf(declaration)),
      staticSummary: syncSummary(declaration.customer, declaration.source, modes, 'scheduled'),
      staticDetails: syncDetails(declaration.customer, declaration.source, modes),
      memo: { [DECLARATION_MEMO]: declaration },
    },
    policies: { overlap: 'SKIP', catchupWindow: CATCHUP_WINDOW_MS, pauseOnFailure: false },
    typedSearchAttributes: syncSearchAttributes(declaration.customer, declaration.source, modesOf(declaration)),
    memo: { managedBy: 'flowthru', customer: declaration.customer, source: declaration.source },
    state: {
      paused: declaration.paused,
      note: declaration.paused ? PAUSED_BY_CONFIGURATION : `managed by flowthru: declared on source ${declaration.source} of customer ${declaration.customer}; config apply keeps it in line with the configuration`,
    },
  };
}

const PAUSED_BY_CONFIGURATION = 'paused by the configuration (schedule.paused: true)';
const UNPAUSED_BY_CONFIGURATION = 'unpaused by the configuration (schedule.paused: false)';

/** Sorted keys, so that the same content always compares equal whatever its key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

function attribute(attributes: SearchAttributePair[] | TypedSearchAttributes | undefined, key: SearchAttributePair['key']): unknown {
  if (!attributes) return undefined;
  if (attributes instanceof TypedSearchAttributes) return attributes.get(key);
  return attributes.find((pair) => pair.key.name === key.name)?.value;
}

/** flowthru sets durations in milliseconds and Temporal describes them so; absent is zero. */
const toMs = (duration: unknown): number => (typeof duration === 'number' ? duration : 0);

/** What reconciliation compares: everything flowthru sets, in one shape for the wish and for what Temporal holds. */
function comparable(schedule: {
  spec: { intervals?: { every: unknown; offset?: unknown }[]; cronExpressions?: string[]; calendars?: unknown[]; timezone?: string; jitter?: unknown };
  action: { workflowType: unknown; workflowId?: string; taskQueue?: string; args?: unknown; memo?: Record<string, unknown>; typedSearchAttributes?: SearchAttributePair[] | TypedSearchAttributes; staticSummary?: string; staticDetails?: string };
  policies?: { overlap?: string; catchupWindow?: unknown; pauseOnFailure?: boolean };
  typedSearchAttributes?: SearchAttributePair[] | TypedSearchAttributes;
}): string {
  const { spec, action, policies } = schedule;
  const keys = [searchAttributes.customer, searchAttributes.source, searchAttributes.syncMode];
  return canonical({
    // A cron expression comes back compiled into calendars: its text is compared through the declaration in the memo.
    intervals: (spec.intervals ?? []).map((i) => [toMs(i.every), toMs(i.offset)]),
    calendars: (spec.cronExpressions ?? spec.calendars ?? []).length,
    timezone: spec.timezone || 'UTC',
    jitter: toMs(spec.jitter),
    workflowType: typeof action.workflowType === 'string' ? action.workflowType : 'syncSource',
    workflowId: action.workflowId,
    taskQueue: action.taskQueue,
    args: action.args,
    summary: action.staticSummary ?? null,
    details: action.staticDetails ?? null,
    declaration: action.memo?.[DECLARATION_MEMO],
    actionAttributes: keys.map((key) => attribute(action.typedSearchAttributes, key) ?? null),
    scheduleAttributes: keys.map((key) => attribute(schedule.typedSearchAttributes, key) ?? null),
    overlap: policies?.overlap ?? 'SKIP',
    catchupWindow: toMs(policies?.catchupWindow),
    pauseOnFailure: policies?.pauseOnFailure ?? false,
  });
}

/** The declaration a schedule was made from, if flowthru made it. */
export function declarationOf(description: Pick<ScheduleDescription, 'action'>): ScheduleDeclaration | undefined {
  const declaration = description.action.memo?.[DECLARATION_MEMO];
  return declaration && typeof declaration === 'object' ? (declaration as ScheduleDeclaration) : undefined;
}

async function describeOrNothing(handle: ScheduleHandle): Promise<ScheduleDescription | undefined> {
  try {
    return await handle.describe();
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) return undefined;
    throw error;
  }
}

/**
 * Pausing is the operator's too (`flowthru schedule pause`, Temporal UI): an apply changes it only
 * when it creates the schedule or when the configuration's `paused` changed since the last apply.
 */
function stateAfterUpdate(current: ScheduleDescription, declaration: ScheduleDeclaration): ScheduleUpdateOptions['state'] {
  const before = declarationOf(current);
  if (before !== undefined && before.paused === declaration.paused) return { paused: current.state.paused, ...(current.state.note ? { note: current.state.note } : {}) };
  if (before === undefined && current.state.paused === declaration.paused) return { paused: current.state.paused, ...(current.state.note ? { note: current.state.note } : {}) };
  return { paused: declaration.paused, note: declaration.paused ? PAUSED_BY_CONFIGURATION : UNPAUSED_BY_CONFIGURATION };
}

async function createOrUpdate(client: Client, declaration: ScheduleDeclaration, taskQueue: string): Promise<'created' | 'updated' | 'unchanged'> {
  const wanted = scheduleOptions(declaration, taskQueue);
  const handle = client.schedule.getHandle(wanted.scheduleId);
  let current = await describeOrNothing(handle);
  if (current === undefined) {
    try {
      await client.schedule.create(wanted);
      return 'created';
    } catch (error) {
      // Another apply or worker created it a moment ago: compare with theirs.
      if (!(error instanceof ScheduleAlreadyRunning)) throw error;
      current = await handle.describe();
    }
  }
  if (comparable(current) === comparable(wanted)) return 'unchanged';
  const { scheduleId: _id, memo: _memo, ...update } = wanted;
  await handle.update<typeof syncSource>((previous) => ({ ...update, state: stateAfterUpdate(previous, declaration) }));
  return 'updated';
}

/**
 * The ids of every schedule in the namespace that carries flowthru's prefix (listing lags creation a
 * little); with `customer`, only that customer's (by the memo flowthru gives each schedule, else by id).
 */
async function listedScheduleIds(client: Client, customer?: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const summary of client.schedule.list()) {
    if (!summary.scheduleId.startsWith(SCHEDULE_ID_PREFIX)) continue;
    if (customer !== undefined) {
      const owner = summary.memo?.customer;
      if (typeof owner === 'string' ? owner !== customer : !summary.scheduleId.startsWith(scheduleId(customer, ''))) continue;
    }
    ids.push(summary.scheduleId);
  }
  return ids;
}

/** How many schedules are described at once: a namespace shared by many deployments lists many. */
const DESCRIBE_CONCURRENCY = 8;

/** `work` applied to every item, at most `limit` at once, results in the items' order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

/**
 * Makes Temporal's schedules match the configuration: creates one per source with a `schedule`,
 * updates those that differ, and deletes flowthru's schedules whose source has none any more.
 * Only schedules with flowthru's id prefix are touched, and of those only the ones whose runs go
 * to `taskQueue`: another deployment sharing the namespace (another task queue) keeps its own.
 * `alsoCheck` names schedules that may exist but not be listed yet (listing is eventually
 * consistent): those the previous configuration declared.
 */
export async function reconcileSchedules(
  client: Client,
  config: Pick<Config, 'customers'>,
  taskQueue: string,
  options: { alsoCheck?: readonly string[] } = {},
): Promise<ReconcileResult> {
  const result: ReconcileResult = { created: [], updated: [], deleted: [], unchanged: [] };
  const declarations = declaredSchedules(config);
  const wanted = new Set<string>();
  for (const declaration of declarations) {
    const id = scheduleId(declaration.customer, declaration.source);
    wanted.add(id);
    result[await createOrUpdate(client, declaration, taskQueue)].push(id);
  }
  const candidates = new Set([...(await listedScheduleIds(client)), ...(options.alsoCheck ?? []).filter((id) => id.startsWith(SCHEDULE_ID_PREFIX))]);
  for (const id of [...candidates].sort()) {
    if (wanted.has(id)) continue;
    const handle = client.schedule.getHandle(id);
    const current = await describeOrNothing(handle);
    if (current === undefined || current.action.taskQueue !== taskQueue) continue;
    try {
      await handle.delete();
      result.deleted.push(id);
    } catch (error) {
      if (!(error instanceof ScheduleNotFoundError)) throw error;
    }
  }
  return result;
}

/** `created flowthru/acme/hr; deleted flowthru/acme/ldap`, or null when nothing changed. */
export function describeReconcile(result: ReconcileResult): string | null {
  const parts = (['created', 'updated', 'deleted'] as const).filter((what) => result[what].length > 0).map((what) => `${what} ${result[what].join(', ')}`);
  return parts.length > 0 ? parts.join('; ') : null;
}

export type ScheduleSync =
  | { readonly reconciled: true; readonly result: ReconcileResult }
  | { readonly reconciled: false; readonly reason: string }
  /** Neither this configuration nor the one before declares a schedule: Temporal was not asked. */
  | { readonly reconciled: 'not needed' };

/**
 * `config apply`'s part: reconcile after the configuration is committed. A configuration without
 * schedules, replacing one without, has nothing to reconcile and does not need Temporal up.
 */
export async function reconcileAfterApply(
  settings: Settings,
  config: Pick<Config, 'customers'>,
  previous: Pick<Config, 'customers'> | undefined,
): Promise<ScheduleSync> {
  const before = previous ? declaredSchedules(previous).map((d) => scheduleId(d.customer, d.source)) : [];
  if (declaredSchedules(config).length === 0 && before.length === 0) return { reconciled: 'not needed' };
  let client: Client;
  try {
    client = await connectClient(settings);
  } catch (error) {
    if (error instanceof TemporalUnreachableError) return { reconciled: false, reason: error.message };
    return { reconciled: false, reason: `cannot reach Temporal at ${settings.temporalAddress} (${(error as Error).message})` };
  }
  try {
    // Schedules carry flowthru's search attributes: on a server no worker has prepared yet, register them first.
    await ensureSearchAttributes(client).catch(() => undefined);
    return { reconciled: true, result: await reconcileSchedules(client, config, settings.taskQueue, { alsoCheck: before }) };
  } catch (error) {
    return { reconciled: false, reason: (error as Error).message };
  } finally {
    await client.connection.close();
  }
}

/** One schedule as `flowthru schedule list` shows it. */
export interface ScheduleView {
  readonly scheduleId: string;
  readonly customer: string | null;
  readonly source: string | null;
  readonly modes: readonly SyncMode[];
  /** The schedule in words: `every 15 minutes`, `cron "0 6 * * *" in Europe/Berlin`. */
  readonly spec: string;
  readonly paused: boolean;
  readonly note: string | null;
  /** The next three times it runs (jitter included), none while paused. */
  readonly nextRuns: string[];
  /** The most recent runs it started, newest first (Temporal keeps the last ten). */
  readonly recentRuns: { readonly workflowId: string; readonly scheduledAt: string; readonly startedAt: string }[];
  /** Its runs still going. */
  readonly running: string[];
  /** Runs skipped because the one before was still going (overlap SKIP). */
  readonly skippedOverlap: number;
  readonly taskQueue: string | null;
  /** False: the configuration declares it, but Temporal does not have it (not reconciled yet). */
  readonly exists: boolean;
}

export function scheduleView(description: ScheduleDescription): ScheduleView {
  const declaration = declarationOf(description);
  const args = (description.action.args?.[0] ?? {}) as Partial<SyncSourceInput>;
  return {
    scheduleId: description.scheduleId,
    customer: declaration?.customer ?? args.customer ?? null,
    source: declaration?.source ?? args.source ?? null,
    modes: args.mode ? syncModes({ mode: args.mode, ...(args.modes ? { modes: args.modes } : {}) }) : [],
    spec: declaration ? scheduleInWords(declaration) : specInWords(description.spec),
    paused: description.state.paused,
    note: description.state.note ?? null,
    // Temporal still computes the times of a paused schedule; none of them will happen.
    nextRuns: description.state.paused ? [] : description.info.nextActionTimes.slice(0, 3).map((time) => time.toISOString()),
    recentRuns: [...description.info.recentActions].reverse().map((run) => ({
      workflowId: run.action.workflow.workflowId,
      scheduledAt: run.scheduledAt.toISOString(),
      startedAt: run.takenAt.toISOString(),
    })),
    running: description.info.runningActions.map((run) => run.workflow.workflowId),
    skippedOverlap: description.info.numActionsSkippedOverlap,
    taskQueue: description.action.taskQueue ?? null,
    exists: true,
  };
}

/** For a schedule flowthru did not describe (no declaration in its memo): what Temporal says. */
function specInWords(spec: ScheduleDescription['spec']): string {
  const intervals = (spec.intervals ?? []).map((i) => scheduleInWords({ every: `${Math.round(i.every / 1000)}s`, timeZone: 'UTC' }));
  const calendars = (spec.calendars ?? []).length > 0 ? [`${spec.calendars!.length} calendar spec${spec.calendars!.length === 1 ? '' : 's'}`] : [];
  return [...intervals, ...calendars].join(', ') || '-';
}

/**
 * flowthru's schedules on this task queue, as `schedule list` shows them: those Temporal lists, and
 * those `declared` in the configuration (described directly: listing lags, and a declared schedule
 * Temporal does not have is shown as missing); with `customer`, only that customer's.
 */
export async function listSchedules(
  client: Client,
  taskQueue: string,
  declared: readonly ScheduleDeclaration[],
  options: { customer?: string } = {},
): Promise<ScheduleView[]> {
  const wanted = declared.filter((d) => options.customer === undefined || d.customer === options.customer);
  const ids = [...new Set([...wanted.map((d) => scheduleId(d.customer, d.source)), ...(await listedScheduleIds(client, options.customer))])].sort();
  const descriptions = await mapLimited(ids, DESCRIBE_CONCURRENCY, (id) => describeOrNothing(client.schedule.getHandle(id)));
  const views: ScheduleView[] = [];
  for (const [index, id] of ids.entries()) {
    const description = descriptions[index];
    if (description) {
      if (description.action.taskQueue === taskQueue) views.push(scheduleView(description));
      continue;
    }
    const declaration = wanted.find((d) => scheduleId(d.customer, d.source) === id);
    if (!declaration) continue;
    views.push({
      scheduleId: id,
      customer: declaration.customer,
      source: declaration.source,
      modes: modesOf(declaration),
      spec: scheduleInWords(declaration),
      paused: declaration.paused,
      note: 'not in Temporal yet: run flowthru config apply again, or start a worker (it reconciles schedules at start)',
      nextRuns: [],
      recentRuns: [],
      running: [],
      skippedOverlap: 0,
      taskQueue: null,
      exists: false,
    });
  }
  return views;
}
