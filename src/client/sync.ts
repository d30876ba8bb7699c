import type { Client, WorkflowHandle } from '@temporalio/client';
import { searchAttributes, syncWorkflowId, type SyncMode } from '../workflows/config.js';
import type { SyncReport, SyncSourceInput } from '../workflows/messages.js';
import type { syncSource } from '../workflows/sync-source.js';

export interface StartSyncOptions {
  readonly customer: string;
  readonly source: string;
  readonly mode: SyncMode;
  readonly configVersion: number;
  readonly taskQueue: string;
  readonly pageSize?: number;
  readonly window?: number;
  readonly maxHistoryEvents?: number;
}

/**
 * Starts a sync, or joins the one already running for the same source and mode: a second start
 * never doubles the work (the workflow id is per source and mode; USE_EXISTING).
 */
export async function startSync(client: Client, options: StartSyncOptions): Promise<WorkflowHandle<typeof syncSource>> {
  const input: SyncSourceInput = {
    customer: options.customer,
    source: options.source,
    mode: options.mode,
    configVersion: options.configVersion,
    ...(options.pageSize ? { pageSize: options.pageSize } : {}),
    ...(options.window ? { window: options.window } : {}),
    ...(options.maxHistoryEvents ? { maxHistoryEvents: options.maxHistoryEvents } : {}),
  };
  return client.workflow.start<typeof syncSource>('syncSource', {
    workflowId: syncWorkflowId(options.customer, options.source, options.mode),
    taskQueue: options.taskQueue,
    args: [input],
    workflowIdConflictPolicy: 'USE_EXISTING',
    typedSearchAttributes: [
      { key: searchAttributes.customer, value: options.customer },
      { key: searchAttributes.source, value: options.source },
      { key: searchAttributes.syncMode, value: options.mode },
    ],
  });
}

export async function runSync(client: Client, options: StartSyncOptions): Promise<SyncReport> {
  return (await startSync(client, options)).result();
}
