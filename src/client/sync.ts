import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { searchAttributes, syncModeLabel, syncModes, syncDetails, syncSearchAttributes, syncSummary, syncWorkflowId, type SyncMode } from '../workflows/config.js';
import type { SyncReport, SyncSourceInput } from '../workflows/messages.js';
import type { syncSource } from '../workflows/sync-source.js';

export interface StartSyncOptions {
  readonly customer: string;
  readonly source: string;
  readonly mode: SyncMode;
  /** More modes in the same read (`mode` first); default just `mode`. */
  readonly modes?: readonly SyncMode[];
  /** Default: the newest configuration version when the sync starts. */
  readonly configVersion?: number;
  readonly allowDeletes?: number;
  readonly taskQueue: string;
  readonly pageSize?: number;
  readonly window?: number;
  readonly maxHistoryEvents?: number;
}

/** A sync of the source is running for other modes: it must end before this one starts. */
export class SyncBusyError extends Error {
  constructor(
    readonly workflowId: string,
    readonly runningModes: string,
  ) {
    super(`another sync of this source is running (${workflowId}, ${runningModes}); wait for it to end, then start this one`);
  }
}

/**
 * Starts a sync, or joins the one already running for the same source and modes: a second start
 * never doubles the work (one workflow id per source; USE_EXISTING). A sync of the same source
 * running for other modes is refused (SyncBusyError): one sync of a source at a time.
 */
export async function startSync(client: Client, options: StartSyncOptions): Promise<WorkflowHandle<typeof syncSource>> {
  const modes = syncModes(options);
  const input: SyncSourceInput = {
    customer: options.customer,
    source: options.source,
    mode: modes[0]!,
    ...(modes.length > 1 ? { modes } : {}),
    ...(options.configVersion !== undefined ? { configVersion: options.configVersion } : {}),
    ...(options.allowDeletes !== undefined ? { allowDeletes: options.allowDeletes } : {}),
    trigger: 'cli',
    ...(options.pageSize ? { pageSize: options.pageSize } : {}),
    ...(options.window ? { window: options.window } : {}),
    ...(options.maxHistoryEvents ? { maxHistoryEvents: options.maxHistoryEvents } : {}),
  };
  const workflowId = syncWorkflowId(options.customer, options.source);
  const modeLabel = syncModeLabel(modes);
  let handle: WorkflowHandle<typeof syncSource>;
  try {
    handle = await client.workflow.start<typeof syncSource>('syncSource', {
      workflowId,
      taskQueue: options.taskQueue,
      args: [input],
      // Joining a running sync would drop --allow-deletes: that permission is for a sync it starts.
      workflowIdConflictPolicy: options.allowDeletes === undefined ? 'USE_EXISTING' : 'FAIL',
      typedSearchAttributes: syncSearchAttributes(options.customer, options.source, modes),
      staticSummary: syncSummary(options.customer, options.source, modes, 'manual'),
      staticDetails: syncDetails(options.customer, options.source, modes),
    });
  } catch (error) {
    if (error instanceof WorkflowExecutionAlreadyStartedError) throw new SyncBusyError(workflowId, 'running; --allow-deletes applies to a sync it starts');
    throw error;
  }
  // Joined a running sync: it must be doing what was asked, or the caller would wait for another report.
  const running = (await handle.describe()).typedSearchAttributes.get(searchAttributes.syncMode);
  if (running !== undefined && running !== modeLabel) throw new SyncBusyError(workflowId, running);
  return handle;
}

export async function runSync(client: Client, options: StartSyncOptions): Promise<SyncReport> {
  return (await startSync(client, options)).result();
}
