import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/*
 * The one place that names things in Temporal: task queue, workflow ids, search attributes.
 * Workflows, activities, the worker, the CLI and the tests all build them through here.
 */

export const DEFAULT_TASK_QUEUE = 'flowthru';

export type SyncMode = 'add' | 'update' | 'delete';

/** One sync of a source at a time: starting it again while it runs joins the running one. */
export function syncWorkflowId(customer: string, source: string, mode: SyncMode): string {
  return `sync/${customer}/${source}/${mode}`;
}

/** One pipeline per user at a time: changes for a user with a running pipeline are handed to it. */
export function onboardWorkflowId(customer: string, source: string, externalId: string): string {
  return `onboard/${customer}/${source}/${externalId}`;
}

export function scheduleId(customer: string, source: string, mode: SyncMode): string {
  return `schedule/${customer}/${source}/${mode}`;
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
