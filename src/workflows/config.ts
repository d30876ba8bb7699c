import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/*
 * The one place that names things in Temporal: task queue, workflow ids, search attributes.
 * Workflows, activities, the worker, the CLI and the tests all build them through here.
 */

export const DEFAULT_TASK_QUEUE = 'flowthru';

export type SyncMode = 'add' | 'update' | 'delete';

export const SYNC_MODES = ['add', 'update', 'delete'] as const satisfies readonly SyncMode[];

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
