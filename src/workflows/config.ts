import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';

/*
 * The one place that names things in Temporal: task queue, workflow ids, search attributes.
 * Workflows, activities, the worker, the CLI and the tests all build them through here.
 */

export const DEFAULT_TASK_QUEUE = 'flowthru';

/**
 * The shape new user pipelines start with, in their input. Shape 1 takes every path the
 * onboardUser patches introduced (place in one step, line in one step, a push's first try local,
 * a pass's first tries in one step, the outcome with the welcome) without asking `patched()`,
 * which records a marker and upserts TemporalChangeVersion (two history events and a visibility
 * write per patch and run). A later change to the pipeline raises it and branches on it, as these
 * patches did; runs started before keep the shape they started with.
 */
export const PIPELINE_SHAPE = 1;

/**
 * The detail placeUser's failure carries when a step of the line (asked for with `line`) failed for
 * good: the transaction rolled back, the placement with it, and the pipeline places the user alone.
 */
export const LINE_FAILED = 'line';

export type SyncMode = 'add' | 'update' | 'delete';

export const SYNC_MODES = ['add', 'update', 'delete'] as const satisfies readonly SyncMode[];

/** The modes a sync run does, each once, in the order it does them: `modes`, else just `mode`. */
export function syncModes(input: { readonly mode: SyncMode; readonly modes?: readonly SyncMode[] | undefined }): SyncMode[] {
  const modes = input.modes && input.modes.length > 0 ? input.modes : [input.mode];
  return SYNC_MODES.filter((m) => modes.includes(m));
}

/**
 * One sync of a source at a time, whatever its modes: starting it again while it runs joins the
 * running one (a sync started for other modes is refused while it runs).
 */
export function syncWorkflowId(customer: string, source: string): string {
  return `sync/${customer}/${source}`;
}

/**
 * The base id of the syncs a schedule starts (Temporal appends the scheduled time). Such a run
 * waits for no manual sync of the same source: it claims the source first, and skips if it is busy.
 */
export function scheduledSyncWorkflowId(customer: string, source: string): string {
  return `sync/${customer}/${source}/scheduled`;
}

/** flowthru's own Temporal Schedules are known by this prefix; `config apply` touches no other. */
export const SCHEDULE_ID_PREFIX = 'flowthru/';

/** One pipeline per user at a time: changes for a user with a running pipeline are handed to it. */
export function onboardWorkflowId(customer: string, source: string, externalId: string): string {
  return `onboard/${customer}/${source}/${externalId}`;
}

/** One queued job per (customer, target, user): repeated pushes collapse into it. */
export function targetJobWorkflowId(customer: string, target: string, userId: string): string {
  return `target/${customer}/${target}/${userId}`;
}

/** One "reprovision all" per target at a time. */
export function reprovisionWorkflowId(customer: string, target: string): string {
  return `reprovision/${customer}/${target}`;
}

/** One schedule per source; it runs every mode it lists in one read of the source. */
export function scheduleId(customer: string, source: string): string {
  return `${SCHEDULE_ID_PREFIX}${customer}/${source}`;
}

/** Keyword search attributes for filtering runs in Temporal UI; never personal data. */
export const searchAttributes = {
  customer: defineSearchAttributeKey('FlowthruCustomer', SearchAttributeType.KEYWORD),
  site: defineSearchAttributeKey('FlowthruSite', SearchAttributeType.KEYWORD),
  source: defineSearchAttributeKey('FlowthruSource', SearchAttributeType.KEYWORD),
  syncMode: defineSearchAttributeKey('FlowthruSyncMode', SearchAttributeType.KEYWORD),
  status: defineSearchAttributeKey('FlowthruStatus', SearchAttributeType.KEYWORD),
} as const;

export const SEARCH_ATTRIBUTE_NAMES = Object.values(searchAttributes).map((key) => key.name);

/** The modes of a sync as its FlowthruSyncMode search attribute holds them: `add+update`. */
export const syncModeLabel = (modes: readonly SyncMode[]) => modes.join('+');

/** The search attributes of a sync run, manual or scheduled. */
export function syncSearchAttributes(customer: string, source: string, modes: readonly SyncMode[]): SearchAttributePair[] {
  return [
    { key: searchAttributes.customer, value: customer },
    { key: searchAttributes.source, value: source },
    { key: searchAttributes.syncMode, value: syncModeLabel(modes) },
  ];
}

/*
 * Human summaries for Temporal UI (a workflow's static summary, shown in the list and on its page).
 * Like every payload they are encrypted; they name ids, not people, so they read the same decoded
 * or not.
 */

export function syncSummary(customer: string, source: string, modes: readonly SyncMode[], trigger: 'manual' | 'scheduled'): string {
  return `${syncModeLabel(modes)} sync of ${customer}/${source} (${trigger})`;
}

export function pipelineSummary(customer: string, source: string, externalId: string, userId: string): string {
  return `pipeline of ${customer}/${source} user ${externalId} (flowthru user id ${userId})`;
}

/** The details Temporal UI shows under a pipeline's summary: where the user comes from, how to look closer. */
export function pipelineDetails(customer: string, source: string, externalId: string, userId: string): string {
  return [
    `**customer** ${customer} · **source** ${source} · **external id** ${externalId} · **flowthru user id** ${userId}`,
    '',
    `Look closer: \`flowthru user ${externalId} --customer ${customer}\` (status, reason, site, profile, numbers, services, and why).`,
    'Retry a blocked user: `flowthru retry` with the same arguments, or the `retry` signal here.',
  ].join('\n');
}

/** The details Temporal UI shows under a sync's summary. */
export function syncDetails(customer: string, source: string, modes: readonly SyncMode[]): string {
  return [
    `**customer** ${customer} · **source** ${source} · **modes** ${syncModeLabel(modes)}`,
    '',
    'Progress: the `progress` query here. Its pipelines: filter on `FlowthruCustomer` and `FlowthruSource`.',
    `Report: \`flowthru log --customer ${customer}\`.`,
  ].join('\n');
}

export function targetJobSummary(customer: string, target: string, userId: string): string {
  return `queued pushes of flowthru user ${userId} to ${customer}/${target}`;
}

export function reprovisionSummary(customer: string, target: string): string {
  return `reprovision every user of ${customer} in target ${target}`;
}
